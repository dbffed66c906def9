// Matrix-vector products for decode (few rows): memory-bound, so the whole game is reading the
// bf16 weights once at full bandwidth — 16-byte loads (8 bf16) per lane, a warp per output row,
// 4 loads in flight per lane. Activations f32, accumulation f32.
//
// gemv_bf16_rR: out (R, N) = x (R, K) · W (N, K)ᵀ for R = 1..4 rows; needs K % 8 == 0 and 16-byte
// aligned rows (the host checks). Grid ceil(N * split / 8) blocks of 256 threads.
// gemv_add_bf16_rR: out += x · Wᵀ. gemv_norm_bf16_rR: out = rmsNorm(x; g, eps) · Wᵀ (g bf16 (K)),
// the norm computed inside the product. gemv_norm_swiglu_bf16_rR: W = [w1; w3] (2N, K), out (R, N)
// = silu(rmsNorm(x) · w1ᵀ) * (rmsNorm(x) · w3ᵀ). gemv_norm_emit_bf16_rR: gemv_norm that also writes
// rmsNorm(x) (R, K) (the MoE router: the expert kernels read the normed rows).
//
// moe_gemv_*: the same for the MoE experts at small batch (see the section at the end): grid
// (blocks of rows, min(E, P)); a block serves one touched expert's pairs (sorted by moe_sort) for its rows,
// so each expert row is read once per step however many of the pairs hit it.
#include "common.cuh"

// acc += Σ_{i<8} f[i] * x[8c + i] (x f32, 16-byte aligned).
__device__ __forceinline__ float dot8(const float* f, const float* x, int c) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4 a = x4[2 * c], b = x4[2 * c + 1];
    return f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
}

// Σ_{i<8} x[8c + i]² (x f32, 16-byte aligned).
__device__ __forceinline__ float sq8(const float* x, int c) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4 a = x4[2 * c], b = x4[2 * c + 1];
    return a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
}

// f[i] *= g[8c + i]: the RMSNorm weight folded into the weight chunk (g bf16).
__device__ __forceinline__ void scale8(float* f, const bf16_t* g, int c) {
    float gf[8];
    unpack8(__ldg(reinterpret_cast<const uint4*>(g) + c), gf);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] *= gf[i];
}

// How a GEMV reads its weight rows: chunks of 8 elements (bf16: 16 bytes; e4m3: 8 bytes), widened
// to f32. SCALED: the weight has one f32 scale per row, applied once to the row's finished dot.
struct GemvBF16 {
    typedef bf16_t T;
    typedef uint4 Chunk;
    static constexpr bool SCALED = false;
    static __device__ __forceinline__ void unpack(Chunk v, float* f) { unpack8(v, f); }
};
struct GemvE4M3 {
    typedef e4m3_t T;
    typedef uint2 Chunk;
    static constexpr bool SCALED = true;
    static __device__ __forceinline__ void unpack(Chunk v, float* f) { unpack8_e4m3(v, f); }
};

// acc[r] += Σ_k x_r[k] * w[k] over chunks first, first + stride, … of one weight row (length K,
// chunks of 8 elements, `WC`); four independent loads in flight per lane.
// NORM: the products use x ⊙ g (g = RMSNorm weight) and, with SS, ss[r] += Σ x_r[k]² over the
// same chunks — the caller applies 1/rms at the end, so the normed x is never stored.
template <int R, bool NORM = false, bool SS = false, class WC = GemvBF16>
__device__ __forceinline__ void row_dot_strided(const typename WC::T* w, const float* const* xs, int K, int first, int stride,
                                                float (&acc)[R], const bf16_t* g = nullptr, float* ss = nullptr) {
    typedef typename WC::Chunk Chunk;
    const Chunk* w4 = reinterpret_cast<const Chunk*>(w);
    const int chunks = K / 8;
    int c = first;
    for (; c + 3 * stride < chunks; c += 4 * stride) {
        Chunk v0 = __ldg(w4 + c), v1 = __ldg(w4 + c + stride), v2 = __ldg(w4 + c + 2 * stride), v3 = __ldg(w4 + c + 3 * stride);
        float f0[8], f1[8], f2[8], f3[8];
        WC::unpack(v0, f0); WC::unpack(v1, f1); WC::unpack(v2, f2); WC::unpack(v3, f3);
        if (NORM) {
            scale8(f0, g, c); scale8(f1, g, c + stride); scale8(f2, g, c + 2 * stride); scale8(f3, g, c + 3 * stride);
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            acc[r] += dot8(f0, xs[r], c) + dot8(f1, xs[r], c + stride) + dot8(f2, xs[r], c + 2 * stride)
                    + dot8(f3, xs[r], c + 3 * stride);
            if (SS) ss[r] += sq8(xs[r], c) + sq8(xs[r], c + stride) + sq8(xs[r], c + 2 * stride) + sq8(xs[r], c + 3 * stride);
        }
    }
    for (; c < chunks; c += stride) {
        float f[8];
        WC::unpack(__ldg(w4 + c), f);
        if (NORM) scale8(f, g, c);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            acc[r] += dot8(f, xs[r], c);
            if (SS) ss[r] += sq8(xs[r], c);
        }
    }
}

// One warp over a whole row (the MoE kernels).
template <int R>
__device__ __forceinline__ void row_dot(const bf16_t* w, const float* const* xs, int K, float (&acc)[R]) {
    row_dot_strided<R>(w, xs, K, threadIdx.x & 31, 32, acc);
}

// Launched with programmatic dependent launch (sm_90), a GEMV's blocks may be scheduled while
// the previous kernel is finishing; each waits for that kernel (griddepcontrol.wait: its writes
// are visible after it) before reading x or touching out, then lets the next kernel begin
// launching. Launched the ordinary way, the wait returns at once. (Prefetching the weight rows
// into L2 before the wait was tried and measured slower: 4 × 32 lines per warp overfill the L2.)
__device__ __forceinline__ void gemv_prologue() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// `split` warps (1, 2, 4 or 8) share a row, so short matrices still put enough loads in flight:
// a block of 8 warps covers 8 / split rows; partial sums meet in shared memory.
// NORM: x is the residual stream and the product is taken with rmsNorm(x; g, eps). The block
// first stages x ⊙ g (R, K) f32 in dynamic shared memory and sums x² on the way (1/rms is applied
// to the dot products at the end), so the weight loop is the plain one: folding g into every
// weight chunk instead cost 76 registers against 36 (3 resident blocks per SM instead of 6).
// EMIT (with NORM): block 0 also writes the normed rows, normed (R, K) = rmsNorm(x; g, eps), for a
// consumer that needs them whole (the MoE router: the experts then read them instead of
// normalising again).
// WC: the weight's codec (GemvBF16, GemvE4M3); a scaled one multiplies each finished dot by its
// row's scale from `wscale` (N) — for SWIGLU (2N): gate row n by wscale[n], up row by wscale[N + n].
template <int R, int MODE, bool NORM, bool EMIT = false, class WC = GemvBF16>
__device__ void gemv_impl(const float* x, const typename WC::T* w, float* out, int K, int N, int split,
                          const bf16_t* g = nullptr, float eps = 0.0f, float* normed = nullptr,
                          const float* wscale = nullptr) {
    constexpr int P = MODE == SWIGLU ? 2 : 1;   // products per output: gate and up for SWIGLU
    __shared__ float partial[8][P * R];
    extern __shared__ float4 staged[];          // NORM: (R, K / 4) of x ⊙ g
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n = blockIdx.x * (8 / split) + warp / split, part = warp % split;
    float acc[P * R];
#pragma unroll
    for (int r = 0; r < P * R; ++r) acc[r] = 0.0f;
    gemv_prologue();
    const float* xs[R];
    float inv[R];
    if (NORM) gemv_stage_norm<R>(x, g, eps, K, staged, xs, inv);
    else {
#pragma unroll
        for (int r = 0; r < R; ++r) { xs[r] = x + (long long)r * K; inv[r] = 1.0f; }
    }
    if (n < N) {
        float a[R];
#pragma unroll
        for (int r = 0; r < R; ++r) a[r] = 0.0f;
        row_dot_strided<R, false, false, WC>(w + (long long)n * K, xs, K, part * 32 + lane, 32 * split, a);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = a[r];
        if (MODE == SWIGLU) {
#pragma unroll
            for (int r = 0; r < R; ++r) a[r] = 0.0f;
            row_dot_strided<R, false, false, WC>(w + (long long)(N + n) * K, xs, K, part * 32 + lane, 32 * split, a);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[R + r] = a[r];
        }
    }
#pragma unroll
    for (int r = 0; r < P * R; ++r) {
        float v = warp_sum(acc[r]);
        if (lane == 0) partial[warp][r] = v;
    }
    __syncthreads();
    if (n < N && part == 0 && lane < R) {
        float s = 0.0f, u = 0.0f, scale = 1.0f;
#pragma unroll
        for (int r = 0; r < R; ++r) if (lane == r) scale = inv[r];
        for (int i = 0; i < split; ++i) {
            s += partial[warp + i][lane];
            if (MODE == SWIGLU) u += partial[warp + i][R + lane];
        }
        s *= scale;
        u *= scale;
        if (WC::SCALED) {
            s = s * E4M3_UNBIAS * wscale[n];
            if (MODE == SWIGLU) u = u * E4M3_UNBIAS * wscale[N + n];
        }
        float* o = out + (long long)lane * N + n;
        if (MODE == STORE) *o = s;
        else if (MODE == ACCUMULATE) *o += s;
        else *o = silu(s) * u;
    }
    if (EMIT && blockIdx.x == 0) {
        // normed[r, k] = x[r, k] * inv_r * g[k], rounded as rmsnorm.cu does ((x · inv) · g); every
        // thread holds inv from the staging pass. Four floats per thread and step (K % 8 == 0).
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float iv = inv[r];
            const float4* x4 = reinterpret_cast<const float4*>(x + (long long)r * K);
            float4* o4 = reinterpret_cast<float4*>(normed + (long long)r * K);
#pragma unroll 4
            for (int c = threadIdx.x; c < K / 4; c += blockDim.x) {
                const float4 v = x4[c];
                const uint2 gb = __ldg(reinterpret_cast<const uint2*>(g) + c);
                o4[c] = make_float4(v.x * iv * __uint_as_float(gb.x << 16), v.y * iv * __uint_as_float(gb.x & 0xffff0000u),
                                    v.z * iv * __uint_as_float(gb.y << 16), v.w * iv * __uint_as_float(gb.y & 0xffff0000u));
            }
        }
    }
}

#define GEMV(R) \
    extern "C" __global__ void __launch_bounds__(256) gemv_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, int split) \
    { gemv_impl<R, STORE, false>(x, w, out, K, N, split); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_add_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, int split) \
    { gemv_impl<R, ACCUMULATE, false>(x, w, out, K, N, split); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_norm_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, int split, \
                                                                          const bf16_t* g, float eps) \
    { gemv_impl<R, STORE, true>(x, w, out, K, N, split, g, eps); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_norm_swiglu_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, \
                                                                                 int split, const bf16_t* g, float eps) \
    { gemv_impl<R, SWIGLU, true>(x, w, out, K, N, split, g, eps); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_norm_emit_bf16_r##R(const float* x, const bf16_t* w, float* out, int K, int N, \
                                                                               int split, const bf16_t* g, float eps, float* normed) \
    { gemv_impl<R, STORE, true, true>(x, w, out, K, N, split, g, eps, normed); }
GEMV(1) GEMV(2) GEMV(3) GEMV(4)

// The same four products with e4m3 weights and their row scales `ws` (N; 2N for the SwiGLU pair,
// as the rows are joined), dequantised in the kernel: 8-byte loads of 8 codes per lane, widened
// to f32 ×2⁻¹²⁰ (unpack8_e4m3), the dot accumulated in f32 and multiplied by E4M3_UNBIAS and the row scale once.
#define GEMV_E4M3(R) \
    extern "C" __global__ void __launch_bounds__(256) gemv_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, int split, \
                                                                     const float* ws) \
    { gemv_impl<R, STORE, false, false, GemvE4M3>(x, w, out, K, N, split, nullptr, 0.0f, nullptr, ws); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_add_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, int split, \
                                                                         const float* ws) \
    { gemv_impl<R, ACCUMULATE, false, false, GemvE4M3>(x, w, out, K, N, split, nullptr, 0.0f, nullptr, ws); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_norm_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, int split, \
                                                                          const bf16_t* g, float eps, const float* ws) \
    { gemv_impl<R, STORE, true, false, GemvE4M3>(x, w, out, K, N, split, g, eps, nullptr, ws); } \
    extern "C" __global__ void __launch_bounds__(256) gemv_norm_swiglu_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, \
                                                                                 int split, const bf16_t* g, float eps, const float* ws) \
    { gemv_impl<R, SWIGLU, true, false, GemvE4M3>(x, w, out, K, N, split, g, eps, nullptr, ws); }
GEMV_E4M3(1) GEMV_E4M3(2) GEMV_E4M3(3) GEMV_E4M3(4)

// ---------------------------------------------------------------------------------------------
// GEMV-style MoE experts for small batches (≤ 16 pairs at Mixtral shapes; the host picks).
//
// Grid (ceil(rows / rows per block), min(E, P)): block row j serves the j-th expert that has
// pairs (in expert order; found from `offsets` by every warp, one ballot per 32 experts), so no
// block is spent on an untouched expert at batch 1–4 — the launch depends only on T. Each warp
// streams NR weight rows at once (gate/up: its w1 row and w3 row; down: NR rows of w2), U 16-byte
// chunks of each in flight per lane, and reads each activation chunk once for all NR rows. The
// expert's pairs go through in passes of up to 4, each an exact-width instantiation (no padded
// duplicate pairs); a second pass re-reads the rows from L2, not DRAM.
// Weight loads bypass L1 (ld.global.nc.L1::no_allocate) so x / h, which every warp of the SM
// re-reads, stay there: at 1 pair the L1 traffic is the weights plus one activation chunk per
// NR weight chunks, not four.

// acc += Σ_{i<8} w[i] * x[i] for 8 bf16 weights and two float4 of activations.
__device__ __forceinline__ void fma8(uint4 w, float4 a, float4 b, float& acc) {
    acc = fmaf(__uint_as_float(w.x << 16), a.x, acc); acc = fmaf(__uint_as_float(w.x & 0xffff0000u), a.y, acc);
    acc = fmaf(__uint_as_float(w.y << 16), a.z, acc); acc = fmaf(__uint_as_float(w.y & 0xffff0000u), a.w, acc);
    acc = fmaf(__uint_as_float(w.z << 16), b.x, acc); acc = fmaf(__uint_as_float(w.z & 0xffff0000u), b.y, acc);
    acc = fmaf(__uint_as_float(w.w << 16), b.z, acc); acc = fmaf(__uint_as_float(w.w & 0xffff0000u), b.w, acc);
}

// 8-byte streaming load of 8 e4m3 codes (as ld_weight16).
__device__ __forceinline__ uint2 ld_weight8(const uint2* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750 && !defined(MOE_GEMV_LDG)
    uint2 v;
    asm("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
#else
    return __ldg(p);
#endif
}

// acc += Σ_{i<8} w[i] · 2⁻¹²⁰ · x[i] for 8 e4m3 codes (unpack8_e4m3; the caller multiplies the
// dot by E4M3_UNBIAS and the row scale) and two float4 of activations, in fma8's order.
__device__ __forceinline__ void fma8_e4m3(uint2 w, float4 a, float4 b, float& acc) {
    float f[8];
    unpack8_e4m3(w, f);
    acc = fmaf(f[0], a.x, acc); acc = fmaf(f[1], a.y, acc); acc = fmaf(f[2], a.z, acc); acc = fmaf(f[3], a.w, acc);
    acc = fmaf(f[4], b.x, acc); acc = fmaf(f[5], b.y, acc); acc = fmaf(f[6], b.z, acc); acc = fmaf(f[7], b.w, acc);
}

// How the MoE GEMVs stream a weight row: 8 elements a chunk (bf16 16 bytes, e4m3 8 bytes).
// SCALED: one f32 scale per weight row, multiplied into the row's finished dot.
struct MoeWBF16 {
    typedef bf16_t T;
    typedef uint4 Chunk;
    static constexpr bool SCALED = false;
    static __device__ __forceinline__ Chunk load(const Chunk* p) { return ld_weight16(p); }
    static __device__ __forceinline__ void fma(Chunk w, float4 a, float4 b, float& acc) { fma8(w, a, b, acc); }
};
struct MoeWE4M3 {
    typedef e4m3_t T;
    typedef uint2 Chunk;
    static constexpr bool SCALED = true;
    static __device__ __forceinline__ Chunk load(const Chunk* p) { return ld_weight8(p); }
    static __device__ __forceinline__ void fma(Chunk w, float4 a, float4 b, float& acc) { fma8_e4m3(w, a, b, acc); }
};

// acc[q][r] += ws[q] · xs[r] (per-lane partial sums) for NR weight rows and R activation rows of
// length K (K % 8 == 0, rows aligned to a chunk): lane l takes chunks l, l + 32, …, U per row in flight.
template <int NR, int R, int U, class WC = MoeWBF16>
__device__ __forceinline__ void rows_dot(const typename WC::T* const (&ws)[NR], const float* const (&xs)[R], int K,
                                         float (&acc)[NR][R]) {
    typedef typename WC::Chunk Chunk;
    const int chunks = K / 8;
    int c = threadIdx.x & 31;
    for (; c + 32 * (U - 1) < chunks; c += 32 * U) {
        Chunk v[U][NR];
#pragma unroll
        for (int i = 0; i < U; ++i)
#pragma unroll
            for (int q = 0; q < NR; ++q) v[i][q] = WC::load(reinterpret_cast<const Chunk*>(ws[q]) + c + 32 * i);
#pragma unroll
        for (int i = 0; i < U; ++i)
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const float4* x4 = reinterpret_cast<const float4*>(xs[r]) + 2 * (c + 32 * i);
                const float4 a = __ldg(x4), b = __ldg(x4 + 1);
#pragma unroll
                for (int q = 0; q < NR; ++q) WC::fma(v[i][q], a, b, acc[q][r]);
            }
    }
    for (; c < chunks; c += 32) {
        Chunk v[NR];
#pragma unroll
        for (int q = 0; q < NR; ++q) v[q] = WC::load(reinterpret_cast<const Chunk*>(ws[q]) + c);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float4* x4 = reinterpret_cast<const float4*>(xs[r]) + 2 * c;
            const float4 a = __ldg(x4), b = __ldg(x4 + 1);
#pragma unroll
            for (int q = 0; q < NR; ++q) WC::fma(v[q], a, b, acc[q][r]);
        }
    }
}

// One pass over R of expert rows' pairs (`pairs` = their slice of `sorted`): out[p, n + q] for
// q < NR (rows past `rows` not written). SWIGLU_OUT: NR = 2 rows are (w1 n, w3 n) and
// out[p, n] = silu(g) * u; else out[p, n + q] = the dot of row q. act rows: p / actDiv.
// WC scaled: sc[q] is weight row q's scale (unused otherwise).
template <int NR, int R, int U, bool SWIGLU_OUT, class WC = MoeWBF16>
__device__ __forceinline__ void moe_gemv_pass(const float* act, int actDiv, const typename WC::T* const (&ws)[NR],
                                              const int* pairs, float* out, int K, int N, int n, int rows,
                                              const float (&sc)[NR]) {
    int p[R];
    const float* xs[R];
#pragma unroll
    for (int r = 0; r < R; ++r) { p[r] = pairs[r]; xs[r] = act + (long long)(p[r] / actDiv) * K; }
    float acc[NR][R];
#pragma unroll
    for (int q = 0; q < NR; ++q)
#pragma unroll
        for (int r = 0; r < R; ++r) acc[q][r] = 0.0f;
    rows_dot<NR, R, U, WC>(ws, xs, K, acc);
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        if (SWIGLU_OUT) {
            float g = warp_sum(acc[0][r]), u = warp_sum(acc[NR - 1][r]);
            if (WC::SCALED) { g = g * E4M3_UNBIAS * sc[0]; u = u * E4M3_UNBIAS * sc[NR - 1]; }
            if (lane == 0) out[(long long)p[r] * N + n] = silu(g) * u;
        } else {
#pragma unroll
            for (int q = 0; q < NR; ++q) {
                float s = warp_sum(acc[q][r]);
                if (WC::SCALED) s = s * E4M3_UNBIAS * sc[q];
                if (lane == q && n + q < rows) out[(long long)p[r] * N + n + q] = s;
            }
        }
    }
}

template <int NR, int U, bool SWIGLU_OUT, class WC = MoeWBF16>
__device__ __forceinline__ void moe_gemv_passes(const float* act, int actDiv, const typename WC::T* const (&ws)[NR],
                                                const int* pairs, int count, float* out, int K, int N, int n, int rows,
                                                const float (&sc)[NR]) {
    for (int p0 = 0; p0 < count; p0 += 4) {
        switch (min(4, count - p0)) {
        case 1: moe_gemv_pass<NR, 1, U, SWIGLU_OUT, WC>(act, actDiv, ws, pairs + p0, out, K, N, n, rows, sc); break;
        case 2: moe_gemv_pass<NR, 2, U, SWIGLU_OUT, WC>(act, actDiv, ws, pairs + p0, out, K, N, n, rows, sc); break;
        case 3: moe_gemv_pass<NR, 3, U, SWIGLU_OUT, WC>(act, actDiv, ws, pairs + p0, out, K, N, n, rows, sc); break;
        default: moe_gemv_pass<NR, 4, U, SWIGLU_OUT, WC>(act, actDiv, ws, pairs + p0, out, K, N, n, rows, sc); break;
        }
    }
}

// h[p, n] = silu(w1[e, n] · x[t]) * (w3[e, n] · x[t]) for expert e's pairs p = (t, k).
// x (T, D); w1, w3 (E, F, D) bf16; h (P, F). A warp per n: grid (ceil(F / 8), min(E, P)).
// Scaled codecs (e4m3): s1, s3 (E, F) are the row scales of w1, w3.
template <int U, class WC = MoeWBF16>
__device__ __forceinline__ void moe_gemv_gate_up_impl(const float* x, const typename WC::T* w1, const typename WC::T* w3,
                                                      const int* offsets, const int* sorted, float* h,
                                                      int dim, int hidden, int topK, int experts,
                                                      const float* s1 = nullptr, const float* s3 = nullptr) {
    const int n = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (n >= hidden) return;
    const int e = nth_active_expert(offsets, experts, blockIdx.y);
    if (e < 0) return;
    const int base = offsets[e], count = offsets[e + 1] - base;
    const long long row = ((long long)e * hidden + n) * dim;
    const typename WC::T* const ws[2] = {w1 + row, w3 + row};
    float sc[2] = {1.0f, 1.0f};
    if (WC::SCALED) { sc[0] = s1[(long long)e * hidden + n]; sc[1] = s3[(long long)e * hidden + n]; }
    moe_gemv_passes<2, U, true, WC>(x, topK, ws, sorted + base, count, h, dim, hidden, n, hidden, sc);
}

// y[p, n] = w2[e, n] · h[p] for expert e's pairs. h (P, F); w2 (E, D, F) bf16; y (P, D).
// NR rows per warp: grid (ceil(D / (8 NR)), min(E, P)).
// Scaled codecs (e4m3): s2 (E, D) are the row scales of w2.
template <int NR, int U, class WC = MoeWBF16>
__device__ __forceinline__ void moe_gemv_down_impl(const float* h, const typename WC::T* w2, const int* offsets, const int* sorted,
                                                   float* y, int dim, int hidden, int experts, const float* s2 = nullptr) {
    const int n = (blockIdx.x * 8 + (threadIdx.x >> 5)) * NR;
    if (n >= dim) return;
    const int e = nth_active_expert(offsets, experts, blockIdx.y);
    if (e < 0) return;
    const int base = offsets[e], count = offsets[e + 1] - base;
    const typename WC::T* ws[NR];
    float sc[NR];
#pragma unroll
    for (int q = 0; q < NR; ++q) {
        ws[q] = w2 + ((long long)e * dim + min(n + q, dim - 1)) * hidden;
        sc[q] = WC::SCALED ? s2[(long long)e * dim + min(n + q, dim - 1)] : 1.0f;
    }
    const typename WC::T* const (&cws)[NR] = ws;
    moe_gemv_passes<NR, U, false, WC>(h, 1, cws, sorted + base, count, y, hidden, dim, n, dim, sc);
}

// Exported (H200, Mixtral shapes, docs/gpu-notes.md): gate/up U = 4 (8 loads of 16 bytes in flight
// per lane), down NR = 4, U = 4 (16 in flight; 128 registers, no spills). Grids: gate/up
// (ceil(F / 8), min(E, P)), down (ceil(D / 32), min(E, P)).
extern "C" __global__ void __launch_bounds__(256) moe_gemv_gate_up_bf16(
    const float* x, const bf16_t* w1, const bf16_t* w3, const int* offsets, const int* sorted,
    float* h, int dim, int hidden, int topK, int experts)
{ moe_gemv_gate_up_impl<4>(x, w1, w3, offsets, sorted, h, dim, hidden, topK, experts); }

extern "C" __global__ void __launch_bounds__(256) moe_gemv_down_bf16(
    const float* h, const bf16_t* w2, const int* offsets, const int* sorted, float* y, int dim, int hidden, int experts)
{ moe_gemv_down_impl<4, 4>(h, w2, offsets, sorted, y, dim, hidden, experts); }

// The same experts with e4m3 weights (8-byte loads of 8 codes, widened in the kernel, each dot
// multiplied by its row's scale): s1, s3 (E, F) and s2 (E, D) are the stacked row scales. Same
// grids and tiling as the bf16 kernels.
extern "C" __global__ void __launch_bounds__(256) moe_gemv_gate_up_e4m3(
    const float* x, const e4m3_t* w1, const e4m3_t* w3, const int* offsets, const int* sorted,
    float* h, int dim, int hidden, int topK, int experts, const float* s1, const float* s3)
{ moe_gemv_gate_up_impl<4, MoeWE4M3>(x, w1, w3, offsets, sorted, h, dim, hidden, topK, experts, s1, s3); }

extern "C" __global__ void __launch_bounds__(256) moe_gemv_down_e4m3(
    const float* h, const e4m3_t* w2, const int* offsets, const int* sorted, float* y, int dim, int hidden, int experts,
    const float* s2)
{ moe_gemv_down_impl<4, 4, MoeWE4M3>(h, w2, offsets, sorted, y, dim, hidden, experts, s2); }
