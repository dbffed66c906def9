// Matrix-vector products for decode (few rows): memory-bound, so the whole game is reading the
// bf16 weights once at full bandwidth — 16-byte loads (8 bf16) per lane, a warp per output row,
// 4 loads in flight per lane. Activations f32, accumulation f32.
//
// gemv_bf16_rR: out (R, N) = x (R, K) · W (N, K)ᵀ for R = 1..4 rows; needs K % 8 == 0 and 16-byte
// aligned rows (the host checks). Grid ceil(N * split / 8) blocks of 256 threads.
// gemv_add_bf16_rR: out += x · Wᵀ. gemv_swiglu_bf16_rR: W = [w1; w3] (2N, K), out (R, N) =
// silu(x · w1ᵀ) * (x · w3ᵀ).
//
// moe_gemv_*: the same for the MoE experts at small batch (P = T*K ≤ 16 pairs): grid
// (ceil(rows / 8), E); a block serves expert e's pairs (sorted by moe_sort) for its 8 output rows,
// so each expert row is read once per step however many of the pairs hit it.
#include "common.cuh"

// acc += Σ_{i<8} f[i] * x[8c + i] (x f32, 16-byte aligned).
__device__ __forceinline__ float dot8(const float* f, const float* x, int c) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4 a = x4[2 * c], b = x4[2 * c + 1];
    return f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
}

// acc[r] += Σ_k x_r[k] * w[k] over chunks first, first + stride, … of one weight row (length K,
// 16-byte chunks of 8 bf16); four independent loads in flight per lane.
template <int R>
__device__ __forceinline__ void row_dot_strided(const bf16_t* w, const float* const* xs, int K, int first, int stride,
                                                float (&acc)[R]) {
    const uint4* w4 = reinterpret_cast<const uint4*>(w);
    const int chunks = K / 8;
    int c = first;
    for (; c + 3 * stride < chunks; c += 4 * stride) {
        uint4 v0 = __ldg(w4 + c), v1 = __ldg(w4 + c + stride), v2 = __ldg(w4 + c + 2 * stride), v3 = __ldg(w4 + c + 3 * stride);
        float f0[8], f1[8], f2[8], f3[8];
        unpack8(v0, f0); unpack8(v1, f1); unpack8(v2, f2); unpack8(v3, f3);
#pragma unroll
        for (int r = 0; r < R; ++r)
            acc[r] += dot8(f0, xs[r], c) + dot8(f1, xs[r], c + stride) + dot8(f2, xs[r], c + 2 * stride)
                    + dot8(f3, xs[r], c + 3 * stride);
    }
    for (; c < chunks; c += stride) {
        float f[8];
        unpack8(__ldg(w4 + c), f);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] += dot8(f, xs[r], c);
    }
}

// One warp over a whole row (the MoE kernels).
template <int R>
__device__ __forceinline__ void row_dot(const bf16_t* w, const float* const* xs, int K, float (&acc)[R]) {
    row_dot_strided<R>(w, xs, K, threadIdx.x & 31, 32, acc);
}

// What a GEMV does with each output value s of row n (token r):
// STORE out[r, n] = s; ACCUMULATE out[r, n] += s (residual add fused into the product, one
// writer per element so no atomics); SWIGLU: the weight is [w1; w3] (2N, K) and
// out[r, n] = silu(w1[n]·x[r]) * (w3[n]·x[r]) (the gated FFN's first half in one launch).
enum GemvMode { STORE = 0, ACCUMULATE = 1, SWIGLU = 2 };

// `split` warps (1, 2, 4 or 8) share a row, so short matrices still put enough loads in flight:
// a block of 8 warps covers 8 / split rows; partial sums meet in shared memory.
template <int R, int MODE>
__device__ void gemv_impl(const float* x, const bf16_t* w, float* out, int K, int N, int split) {
    constexpr int P = MODE == SWIGLU ? 2 : 1;   // products per output: gate and up for SWIGLU
    __shared__ float partial[8][P * R];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n = blockIdx.x * (8 / split) + warp / split, part = warp % split;
    float acc[P * R];
#pragma unroll
    for (int r = 0; r < P * R; ++r) acc[r] = 0.0f;
    if (n < N) {
        const float* xs[R];
#pragma unroll
        for (int r = 0; r < R; ++r) xs[r] = x + (long long)r * K;
        float a[R];
#pragma unroll
        for (int r = 0; r < R; ++r) a[r] = 0.0f;
        row_dot_strided<R>(w + (long long)n * K, xs, K, part * 32 + lane, 32 * split, a);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = a[r];
        if (MODE == SWIGLU) {
#pragma unroll
            for (int r = 0; r < R; ++r) a[r] = 0.0f;
            row_dot_strided<R>(w + (long long)(N + n) * K, xs, K, part * 32 + lane, 32 * split, a);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[(P - 1) * R + r] = a[r];
        }
    }
#pragma unroll
    for (int r = 0; r < P * R; ++r) {
        float v = warp_sum(acc[r]);
        if (lane == 0) partial[warp][r] = v;
    }
    __syncthreads();
    if (n < N && part == 0 && lane < R) {
        float s = 0.0f, u = 0.0f;
        for (int i = 0; i < split; ++i) {
            s += partial[warp + i][lane];
            if (MODE == SWIGLU) u += partial[warp + i][R + lane];
        }
        float* o = out + (long long)lane * N + n;
        if (MODE == STORE) *o = s;
        else if (MODE == ACCUMULATE) *o += s;
        else *o = silu(s) * u;
    }
}

#define GEMV(R) \
    extern "C" __global__ void __launch_bounds__(256) gemv_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, int split) \
    { gemv_impl<R, STORE>(x, w, out, K, N, split); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_add_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, int split) \
    { gemv_impl<R, ACCUMULATE>(x, w, out, K, N, split); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_swiglu_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, int split) \
    { gemv_impl<R, SWIGLU>(x, w, out, K, N, split); }
GEMV(1) GEMV(2) GEMV(3) GEMV(4)

// h[p, n] = silu(w1[e, n] · x[t]) * (w3[e, n] · x[t]) for expert e's pairs p = (t, k), up to 4
// pairs per pass. x (T, D); w1, w3 (E, F, D) bf16; h (P, F).
extern "C" __global__ void __launch_bounds__(256) moe_gemv_gate_up_bf16(
    const float* x, const bf16_t* w1, const bf16_t* w3, const int* offsets, const int* sorted,
    float* h, int dim, int hidden, int topK)
{
    const int e = blockIdx.y, n = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int base = offsets[e], count = offsets[e + 1] - base;
    if (count == 0 || n >= hidden) return;
    const long long row = ((long long)e * hidden + n) * dim;
    for (int p0 = 0; p0 < count; p0 += 4) {
        const int np = min(4, count - p0);
        const float* xs[4];
        int pairs[4];
        for (int i = 0; i < 4; ++i) {
            pairs[i] = sorted[base + p0 + min(i, np - 1)];
            xs[i] = x + (long long)(pairs[i] / topK) * dim;
        }
        float g[4] = {0, 0, 0, 0}, u[4] = {0, 0, 0, 0};
        row_dot<4>(w1 + row, xs, dim, g);
        row_dot<4>(w3 + row, xs, dim, u);
        for (int i = 0; i < 4; ++i) {
            float gs = warp_sum(g[i]), us = warp_sum(u[i]);
            if ((threadIdx.x & 31) == 0 && i < np) h[(long long)pairs[i] * hidden + n] = silu(gs) * us;
        }
    }
}

// y[p, n] = w2[e, n] · h[p] for expert e's pairs. h (P, F); w2 (E, D, F) bf16; y (P, D).
extern "C" __global__ void __launch_bounds__(256) moe_gemv_down_bf16(
    const float* h, const bf16_t* w2, const int* offsets, const int* sorted, float* y, int dim, int hidden)
{
    const int e = blockIdx.y, n = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int base = offsets[e], count = offsets[e + 1] - base;
    if (count == 0 || n >= dim) return;
    const long long row = ((long long)e * dim + n) * hidden;
    for (int p0 = 0; p0 < count; p0 += 4) {
        const int np = min(4, count - p0);
        const float* xs[4];
        int pairs[4];
        for (int i = 0; i < 4; ++i) {
            pairs[i] = sorted[base + p0 + min(i, np - 1)];
            xs[i] = h + (long long)pairs[i] * hidden;
        }
        float acc[4] = {0, 0, 0, 0};
        row_dot<4>(w2 + row, xs, hidden, acc);
        for (int i = 0; i < 4; ++i) {
            float s = warp_sum(acc[i]);
            if ((threadIdx.x & 31) == 0 && i < np) y[(long long)pairs[i] * dim + n] = s;
        }
    }
}
