// FP8 prefill on tensor cores (docs/fp8.md, "Prefill"): the activations are quantized to e4m3 per
// row (dynamic per-token scales), cuBLASLt multiplies e4m3 × e4m3 with unit scales, and the
// kernels here apply the two scale vectors to its output: the token's scale per row and the
// weight's row scale per column. (cuBLASLt's own per-row scale vectors are not offered for FP8
// on every architecture; one elementwise pass over the product costs a few per cent of it.)
//
// The MoE experts (grouped or dense layout, see CUDABackend+FP8GEMM.swift) fuse the scales into
// the SwiGLU, which also quantizes h per row for the down product, and into one pass over y.
#include "common.cuh"

// Nearest e4m3 code to v (ties to even), saturating to ±448; NaN → 0x7f: Tensors.FP8E4M3.fromFloat.
__device__ __forceinline__ unsigned f32_to_e4m3(float v) {
    const unsigned bits = __float_as_uint(v);
    const unsigned sign = (bits >> 24) & 0x80u;
    const unsigned mag = bits & 0x7fffffffu;
    if (mag > 0x7f800000u) return sign | 0x7fu;
    if (mag < 0x3c800000u) return sign | (unsigned)rintf(__uint_as_float(mag) * 512.0f);   // subnormal: k · 2⁻⁹
    const unsigned rounded = (mag + 0x7ffffu + ((mag >> 20) & 1u)) >> 20;
    return sign | min(rounded - (120u << 3), 0x7eu);
}

// Largest value over the block; `scratch` holds at least 32 floats. Every thread gets it.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < warps ? scratch[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) r = fmaxf(r, __shfl_xor_sync(0xffffffffu, r, o));
    return r;
}

// The scale of a row of absolute maximum m: m / 448, as the weights' scheme; a row of zeros gets
// 1 (its codes are 0 either way, and the scale is never a divisor of 0).
__device__ __forceinline__ float e4m3_row_scale(float m) { return m > 0.0f ? m / 448.0f : 1.0f; }

__device__ __forceinline__ float load_act(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float load_act(const bf16_t* p, long long i) { return bf16_to_f32(p[i]); }

// q[r, :] = e4m3(x[r, :] / s[r]), s[r] = absmax(x[r, :]) / 448. Grid (rows), block 256.
template <typename In>
__device__ void quantize_rows(const In* x, e4m3_t* q, float* scales, int cols) {
    __shared__ float red[32];
    const long long base = (long long)blockIdx.x * cols;
    float m = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, fabsf(load_act(x, base + i)));
    const float s = e4m3_row_scale(block_max(m, red));
    if (threadIdx.x == 0) scales[blockIdx.x] = s;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) q[base + i] = (e4m3_t)f32_to_e4m3(load_act(x, base + i) / s);
}

extern "C" __global__ void quantize_rows_e4m3_f32(const float* x, e4m3_t* q, float* scales, int cols) {
    quantize_rows(x, q, scales, cols);
}

extern "C" __global__ void quantize_rows_e4m3_bf16(const bf16_t* x, e4m3_t* q, float* scales, int cols) {
    quantize_rows(x, q, scales, cols);
}

// out[r, c] (+)= acc[r, c] · rowScales[r] · colScales[c] (acc may be out when not accumulating).
// Grid (ceil(cols / 1024), rows), block 256, 4 columns a thread; cols % 4 == 0.
extern "C" __global__ void fp8_scale_epilogue(const float* acc, float* out, const float* rowScales,
                                              const float* colScales, int cols, int accumulate) {
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (c >= cols) return;
    const long long i = (long long)blockIdx.y * cols + c;
    const float rs = rowScales[blockIdx.y];
    const float4 a = *reinterpret_cast<const float4*>(acc + i);
    const float4 w = *reinterpret_cast<const float4*>(colScales + c);
    float4 v = make_float4(a.x * rs * w.x, a.y * rs * w.y, a.z * rs * w.z, a.w * rs * w.w);
    if (accumulate) {
        const float4 o = *reinterpret_cast<const float4*>(out + i);
        v.x += o.x; v.y += o.y; v.z += o.z; v.w += o.w;
    }
    *reinterpret_cast<float4*>(out + i) = v;
}

// out[r, c] = silu(acc[r, c] · sr · w[c]) · (acc[r, F + c] · sr · w[F + c]) for the gated FFN's
// joined [w1; w3] product (acc (rows, 2F) unscaled, w the 2F row scales, sr = rowScales[r]): the
// scale pass and the SwiGLU in one read of acc. Grid (ceil(F / 1024), rows), block 256; F % 4 == 0.
extern "C" __global__ void fp8_scale_swiglu(const float* acc, float* out, const float* rowScales,
                                            const float* colScales, int hidden) {
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (c >= hidden) return;
    const float rs = rowScales[blockIdx.y];
    const float* a = acc + (long long)blockIdx.y * 2 * hidden;
    const float4 g = *reinterpret_cast<const float4*>(a + c), u = *reinterpret_cast<const float4*>(a + hidden + c);
    const float4 wg = *reinterpret_cast<const float4*>(colScales + c), wu = *reinterpret_cast<const float4*>(colScales + hidden + c);
    float4 v;
    v.x = silu(g.x * rs * wg.x) * (u.x * rs * wu.x);
    v.y = silu(g.y * rs * wg.y) * (u.y * rs * wu.y);
    v.z = silu(g.z * rs * wg.z) * (u.z * rs * wu.z);
    v.w = silu(g.w * rs * wg.w) * (u.w * rs * wu.w);
    *reinterpret_cast<float4*>(out + (long long)blockIdx.y * hidden + c) = v;
}

// The expert of row r of the grouped layout: experts' rows in blocks padded to `pad`, in expert
// order (moe_gather_padded); `experts` for a row past the last block.
__device__ __forceinline__ int padded_row_expert(int r, const int* offsets, int experts, int pad) {
    int start = 0;
    for (int e = 0; e < experts; ++e) {
        const int count = offsets[e + 1] - offsets[e];
        start += (count + pad - 1) / pad * pad;
        if (r < start) return e;
    }
    return experts;
}

// h = silu(G · sx · s1) · (U · sx · s3), quantized per row: hq[r, :] = e4m3(h / sh[r]). G, U are
// the unscaled bf16 products of the e4m3 x rows with w1[e], w3[e]; sx the x row's scale, s1 / s3
// the stacked (E, F) weight row scales. Layouts: grouped (denseExperts 0): row r is a gathered
// pair of expert padded_row_expert(r), its x scale sx[r]; dense (denseExperts E): G is (T, E·F)
// and row r = t·E + e is token t's segment for expert e, its x scale sx[t]. Grid (rows), block 256.
extern "C" __global__ void moe_swiglu_e4m3(const bf16_t* g, const bf16_t* u, const float* xScales,
                                           const float* s1, const float* s3, e4m3_t* hq, float* hScales,
                                           const int* offsets, int hidden, int experts, int pad, int denseExperts) {
    __shared__ float red[32];
    const int r = blockIdx.x;
    int e, t;
    if (denseExperts > 0) { e = r % denseExperts; t = r / denseExperts; }
    else { e = padded_row_expert(r, offsets, experts, pad); t = r; }
    const long long base = (long long)r * hidden;
    const float sx = xScales[t];
    const float* a = s1 + (long long)min(e, experts - 1) * hidden;
    const float* b = s3 + (long long)min(e, experts - 1) * hidden;
    float m = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x)
        m = fmaxf(m, fabsf(silu(bf16_to_f32(g[base + i]) * sx * a[i]) * (bf16_to_f32(u[base + i]) * sx * b[i])));
    const float s = e4m3_row_scale(block_max(m, red));
    if (threadIdx.x == 0) hScales[r] = s;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        const float h = silu(bf16_to_f32(g[base + i]) * sx * a[i]) * (bf16_to_f32(u[base + i]) * sx * b[i]);
        hq[base + i] = (e4m3_t)f32_to_e4m3(h / s);
    }
}

// y[q, :] ·= sh · s2[e, :] in place (f32), the unscaled down products of the quantized h rows.
// Grouped (denseTokens 0): row q is padded row q, sh = hScales[q]. Dense (denseTokens T): y is
// (E, T, D), row q = e·T + t, and its h row is t·E + e. Grid (ceil(dim / 1024), rows), block 256.
extern "C" __global__ void moe_scale_down_e4m3(float* y, const float* hScales, const float* s2, const int* offsets,
                                               int dim, int experts, int pad, int denseTokens) {
    const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (c >= dim) return;
    const int q = blockIdx.y;
    int e, hrow;
    if (denseTokens > 0) { e = q / denseTokens; hrow = (q % denseTokens) * experts + e; }
    else { e = padded_row_expert(q, offsets, experts, pad); hrow = q; }
    const float sh = hScales[hrow];
    const float4 w = *reinterpret_cast<const float4*>(s2 + (long long)min(e, experts - 1) * dim + c);
    float4* p = reinterpret_cast<float4*>(y + (long long)q * dim + c);
    float4 v = *p;
    v.x *= sh * w.x; v.y *= sh * w.y; v.z *= sh * w.z; v.w *= sh * w.w;
    *p = v;
}
