// Decode products with e4m3 weights on tensor cores (sm_89+): the dense GEMVs (plain, adding,
// normed, normed SwiGLU) and the GEMV-style MoE experts, for the same launches and results as
// the SIMT e4m3 kernels of gemv.cu, which remain for older GPUs.
//
// Why tensor cores at batch 1: widening a code to f32 in registers costs about three integer
// operations and an FMA a code, and at one byte a weight that made the SIMT kernels issue-bound
// at ~42% of bandwidth (gpu-notes, "Session 7"). Here the hardware converts two codes to f16x2
// in one instruction (cvt.rn.f16x2.e4m3x2, exact: every e4m3 value is an f16) and an mma.sync
// m16n8k16 does 2,048 multiply-adds: by the count of the code, one to two instructions a
// weight instead of about five.
//
// Activations: the mma takes f16, so each activation row is multiplied by a power of two that
// puts its largest |x| in [2¹⁴, 2¹⁵) (f16 cannot hold more than 65504) and rounded to f16 (11
// significant bits, finer than the bf16 the conformance tolerances allow); the dot is divided by
// the same power of two after. The power is taken over the slice of k a warp covers, so no
// block-wide pass is needed: the warp reads its slice once for the maximum and again (from L1)
// for the products. Accumulation is f32 in the tensor core.
//
// Warp layout: a warp computes a tile of 16 weight rows against up to 8 activation rows (the
// mma's N; columns past the live rows are zero). Lane (g = lane / 4, q = lane % 4) loads 16 codes
// of rows g and g + 8 at k0 + 16q, and 16 activations of row g at the same k. A dot product does
// not care in which order k is summed, so those 16 k become the lane's slots (2q, 2q + 1,
// 2q + 8, 2q + 9) of four consecutive mmas: A's and B's fragments come straight from the lane's
// own loads, with no shuffles and no shared memory. Each step covers 64 k of 16 rows; `split`
// warps of a block share a tile, taking every split-th step, their sums meeting in shared memory.
#include "common.cuh"

// Steps (of 64 k) whose weight loads a lane has in flight: for one tile of rows, and for the
// SwiGLU / gate-up pair of tiles (two rows' worth each step). Compile-time constants, settable
// for tuning runs (MIXTRAL_NVRTC_OPTIONS="-DE4M3_TC_STEPS=4"). Blocks are 256 or 512 threads
// (8 or 16 warps: the host picks 16 when a matrix has too few tiles for 8 warps each). The
// kernels are latency-bound, so more resident warps beat deeper loads: docs/gpu-notes.md,
// "Session 8", has the sweep behind these defaults.
#ifndef E4M3_TC_STEPS
#define E4M3_TC_STEPS 2
#endif
#ifndef E4M3_TC_STEPS_PAIR
#define E4M3_TC_STEPS_PAIR 1
#endif
#define E4M3_TC_MAX_WARPS 16
// Tuning variants, for sweeps through MIXTRAL_NVRTC_OPTIONS (docs/gpu-notes.md, "Session 9"):
// E4M3_TC_L2_FETCH=0|128|256 (default 256): the weight loads ask L2 to fetch that many bytes
// around each access (the split's other warps read the neighbouring 64 bytes of the row at about
// the same time); E4M3_TC_MOE_MIN_BLOCKS=N (default 2): __launch_bounds__(512, N) on the experts'
// kernels, whose gate-up pair otherwise takes 106 registers and so one 512-thread block an SM;
// E4M3_TC_MIN_BLOCKS=N: the same for every kernel; E4M3_TC_PIPE=1 (off): the next batch of
// weight loads is issued before the current one is used (two batches of registers);
// E4M3_TC_ACC2=1 (off): odd and even mmas of a step accumulate apart (two dependency chains).
#ifndef E4M3_TC_L2_FETCH
#define E4M3_TC_L2_FETCH 256
#endif
#ifndef E4M3_TC_PIPE
#define E4M3_TC_PIPE 0
#endif
#ifndef E4M3_TC_ACC2
#define E4M3_TC_ACC2 0
#endif
#ifdef E4M3_TC_MIN_BLOCKS
#define E4M3_TC_BOUNDS __launch_bounds__(512, E4M3_TC_MIN_BLOCKS)
#else
#define E4M3_TC_BOUNDS __launch_bounds__(512)
#endif
#ifndef E4M3_TC_MOE_MIN_BLOCKS
#define E4M3_TC_MOE_MIN_BLOCKS 2
#endif
#define E4M3_TC_MOE_BOUNDS __launch_bounds__(512, E4M3_TC_MOE_MIN_BLOCKS)

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define GEMV_TC_BODY(...) { __VA_ARGS__; }

// 16 weight codes, read once: not kept in L1.
__device__ __forceinline__ uint4 ld_codes16(const e4m3_t* p) {
    uint4 v;
#if E4M3_TC_L2_FETCH == 256
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
#elif E4M3_TC_L2_FETCH == 128
    asm("ld.global.nc.L1::no_allocate.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
#else
    v = ld_weight16(reinterpret_cast<const uint4*>(p));
#endif
    return v;
}

// Two codes (low byte first) of each 16-bit half of `w` → two f16x2 (the lower code in the
// lower half).
__device__ __forceinline__ void f16x2_from_e4m3x4(unsigned w, unsigned& lo, unsigned& hi) {
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.rn.f16x2.e4m3x2 %0, l; cvt.rn.f16x2.e4m3x2 %1, h; }"
        : "=r"(lo), "=r"(hi) : "r"(w));
}

// (lo, hi) → f16x2, round to nearest even.
__device__ __forceinline__ unsigned f16x2_from_f32(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// c += A(16×16, row) · B(16×8, col), f16 operands, f32 accumulators.
__device__ __forceinline__ void mma_f16_16816(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                              unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The power of two 2^s with amax · 2^s in [2¹⁴, 2¹⁵) (s clamped to the normal range); 1 for a
// row of zeros, infinities or NaN, which then go through as they are.
__device__ __forceinline__ float f16_range_scale(float amax) {
    if (!(amax > 0.0f) || amax > 3.0e38f) return 1.0f;
    int e;
    frexpf(amax, &e);                        // amax = m · 2^e, m in [0.5, 1)
    const int s = min(126, 15 - e);
    return __int_as_float((s + 127) << 23);
}

// max |xr[k]| over the warp's steps base = first, first + stride, … (64 k each; every lane
// gets it). K % 16 == 0.
__device__ __forceinline__ float slice_amax(const float* xr, int K, int first, int stride) {
    const int lane = threadIdx.x & 31;
    float m = 0.0f;
#pragma unroll 4
    for (int base = first; base < K; base += stride) {
        const int k = base + 2 * lane;
        if (k < K) {
            const float2 v = *reinterpret_cast<const float2*>(xr + k);
            m = fmaxf(m, fmaxf(fabsf(v.x), fabsf(v.y)));
        }
    }
    return warp_max(m);
}

// The scale of this lane's activation column, and the column's row (g = lane / 4 < cols:
// row(g), the slice maximum of which sets the scale; dead columns: nullptr and 1). Every lane of
// the warp calls it; `row(j)` is the activation row of column j.
template <class Row>
__device__ __forceinline__ float column_scale(Row row, int cols, int K, int first, int stride, const float*& xg) {
    const int g = (threadIdx.x & 31) >> 2;
    float amax = 0.0f;
    xg = nullptr;
    for (int j = 0; j < cols; ++j) {
        const float* xj = row(j);
        const float m = slice_amax(xj, K, first, stride);
        if (g == j) { amax = m; xg = xj; }
    }
    return f16_range_scale(amax);
}

// The lane's weight codes of one batch of U steps from base (zeros past K): 16 codes of rows g
// and g + 8 of each tile per step.
template <int T, int U>
__device__ __forceinline__ void tile_load(const e4m3_t* const (&rows)[T][2], int base, int K, int stride, uint4 (&w)[U][T][2]) {
    const int q = threadIdx.x & 3;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int k = base + u * stride + 16 * q;
#pragma unroll
        for (int t = 0; t < T; ++t)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                w[u][t][h] = k < K ? ld_codes16(rows[t][h] + k) : make_uint4(0u, 0u, 0u, 0u);
    }
}

// c[t] += tile t's 16 rows · 8 activation columns over the warp's steps base = first,
// first + stride, … < K, U steps' loads in flight. rows[t][h]: the lane's weight row g + 8h of
// tile t; w: the first batch, already loaded by tile_load (callers issue it before they wait for
// the previous kernel or read the activations, so the weights are in flight meanwhile); xg: the
// lane's activation row (nullptr for a dead column), multiplied by xs before rounding.
// c[t] = (row g, col 2q), (row g, col 2q + 1), (row g + 8, col 2q), (row g + 8, col 2q + 1).
template <int T, int U>
__device__ __forceinline__ void e4m3_tile_dot(const e4m3_t* const (&rows)[T][2], uint4 (&w)[U][T][2], const float* xg,
                                              float xs, int K, int first, int stride, float (&c)[T][4]) {
    const int q = threadIdx.x & 3;
#if E4M3_TC_ACC2
    float c2[T][4];
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
        for (int i = 0; i < 4; ++i) c2[t][i] = 0.0f;
#endif
    for (int base = first; base < K; base += U * stride) {
#if E4M3_TC_PIPE
        uint4 cur[U][T][2];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int t = 0; t < T; ++t) { cur[u][t][0] = w[u][t][0]; cur[u][t][1] = w[u][t][1]; }
        if (base + U * stride < K) tile_load<T, U>(rows, base + U * stride, K, stride, w);
#else
        uint4 (&cur)[U][T][2] = w;
        if (base != first) tile_load<T, U>(rows, base, K, stride, w);
#endif
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int k = base + u * stride + 16 * q;
            unsigned b[8];
            if (xg != nullptr && k < K) {
                const float4* x4 = reinterpret_cast<const float4*>(xg + k);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float4 v = x4[i];
                    b[2 * i] = f16x2_from_f32(v.x * xs, v.y * xs);
                    b[2 * i + 1] = f16x2_from_f32(v.z * xs, v.w * xs);
                }
            } else {
#pragma unroll
                for (int i = 0; i < 8; ++i) b[i] = 0u;
            }
#pragma unroll
            for (int t = 0; t < T; ++t) {
                const unsigned r0[4] = {cur[u][t][0].x, cur[u][t][0].y, cur[u][t][0].z, cur[u][t][0].w};
                const unsigned r1[4] = {cur[u][t][1].x, cur[u][t][1].y, cur[u][t][1].z, cur[u][t][1].w};
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    // codes 4j, 4j + 1 → slots 2q, 2q + 1; codes 4j + 2, 4j + 3 → slots 2q + 8, 2q + 9
                    unsigned a0, a1, a2, a3;
                    f16x2_from_e4m3x4(r0[j], a0, a2);
                    f16x2_from_e4m3x4(r1[j], a1, a3);
#if E4M3_TC_ACC2
                    mma_f16_16816((j & 1) ? c2[t] : c[t], a0, a1, a2, a3, b[2 * j], b[2 * j + 1]);
#else
                    mma_f16_16816(c[t], a0, a1, a2, a3, b[2 * j], b[2 * j + 1]);
#endif
                }
            }
        }
    }
#if E4M3_TC_ACC2
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
        for (int i = 0; i < 4; ++i) c[t][i] += c2[t][i];
#endif
}

// The warp's tile sums, each divided by its column's scale, into part[t][m][col] (16 rows ×
// `cols` ≤ 8 columns).
template <int T>
__device__ __forceinline__ void store_tile(const float (&c)[T][4], float xs, int cols, float (*part)[16][8]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const float d0 = 1.0f / __shfl_sync(0xffffffffu, xs, 8 * q), d1 = 1.0f / __shfl_sync(0xffffffffu, xs, 8 * q + 4);
#pragma unroll
    for (int t = 0; t < T; ++t) {
        if (2 * q < cols) { part[t][g][2 * q] = c[t][0] * d0; part[t][g + 8][2 * q] = c[t][2] * d0; }
        if (2 * q + 1 < cols) { part[t][g][2 * q + 1] = c[t][1] * d1; part[t][g + 8][2 * q + 1] = c[t][3] * d1; }
    }
}

// out (R, N) (=, += or SwiGLU of) x (R, K) · W (N or 2N, K)ᵀ, each dot × the row's scale (and
// 1/rms for NORM: x staged as x ⊙ g by gemv_stage_norm). A block of W warps (256 or 512
// threads) covers W / split tiles of 16 rows; grid ceil(ceil(N / 16) · split / W). K % 16 == 0,
// 16-byte aligned rows.
template <int R, int MODE, bool NORM>
__device__ void gemv_tc_e4m3_impl(const float* x, const e4m3_t* w, float* out, int K, int N, int split,
                                  const bf16_t* g, float eps, const float* wscale) {
    constexpr int T = MODE == SWIGLU ? 2 : 1;
    constexpr int U = T == 2 ? E4M3_TC_STEPS_PAIR : E4M3_TC_STEPS;
    __shared__ float partial[E4M3_TC_MAX_WARPS][T][16][8];
    extern __shared__ float4 staged[];          // NORM: (R, K / 4) of x ⊙ g
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gl = lane >> 2;
    const int row0 = (blockIdx.x * (warps / split) + warp / split) * 16, part = warp % split;
    const int first = part * 64, stride = 64 * split;
    const e4m3_t* rows[T][2];
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h) rows[t][h] = w + ((long long)t * N + min(row0 + gl + 8 * h, N - 1)) * K;
    uint4 wq[U][T][2];
    tile_load<T, U>(rows, first, K, stride, wq);   // the weights are not the previous kernel's: no wait
    pdl_prologue();
    const float* xs[R];
    float inv[R];
    if (NORM) gemv_stage_norm<R>(x, g, eps, K, staged, xs, inv);
    else {
#pragma unroll
        for (int r = 0; r < R; ++r) { xs[r] = x + (long long)r * K; inv[r] = 1.0f; }
    }
    const float* xg;
    const float scale = column_scale([&](int j) {
        const float* p = xs[0];
#pragma unroll
        for (int r = 1; r < R; ++r) if (j == r) p = xs[r];
        return p;
    }, R, K, first, stride, xg);
    float c[T][4];
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
        for (int i = 0; i < 4; ++i) c[t][i] = 0.0f;
    e4m3_tile_dot<T, U>(rows, wq, xg, scale, K, first, stride, c);
    store_tile<T>(c, scale, R, partial[warp]);
    __syncthreads();
    if (part != 0) return;
    for (int i = lane; i < 16 * R; i += 32) {
        const int m = i / R, r = i % R, n = row0 + m;
        if (n >= N) continue;
        float s = 0.0f, u = 0.0f, iv = 1.0f;
        for (int p = 0; p < split; ++p) {
            s += partial[warp + p][0][m][r];
            if (MODE == SWIGLU) u += partial[warp + p][T - 1][m][r];
        }
#pragma unroll
        for (int j = 0; j < R; ++j) if (j == r) iv = inv[j];
        s *= iv * wscale[n];
        float* o = out + (long long)r * N + n;
        if (MODE == STORE) *o = s;
        else if (MODE == ACCUMULATE) *o += s;
        else *o = silu(s) * (u * iv * wscale[N + n]);
    }
}

// MoE experts at decode (the GEMV-style path's launches): block row y serves the y-th touched
// expert e (nth_active_expert), x tiles as above over that expert's rows, its pairs 8 at a time
// as the mma's columns. T = 2: gate/up, wa = w1, wb = w3 (E, F, D), act = x (T, D) read at
// pair / topK, out = h (P, F) = silu(w1·x · s1) · (w3·x · s3); T = 1: down, wa = w2 (E, D, F),
// act = h (P, F), out = y (P, D) = w2·h · s2. `rows` = F or D, K = D or F.
template <int T>
__device__ void moe_gemv_tc_e4m3_impl(const float* act, int actDiv, const e4m3_t* wa, const e4m3_t* wb,
                                      const float* sa, const float* sb, const int* offsets, const int* sorted,
                                      float* out, int K, int rows, int experts, int split) {
    constexpr int U = T == 2 ? E4M3_TC_STEPS_PAIR : E4M3_TC_STEPS;
    __shared__ float partial[E4M3_TC_MAX_WARPS][T][16][8];
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gl = lane >> 2;
    const int row0 = (blockIdx.x * (warps / split) + warp / split) * 16, part = warp % split;
    pdl_prologue();
    const int e = nth_active_expert(offsets, experts, blockIdx.y);
    if (e < 0) return;                          // the whole block: e depends on blockIdx.y only
    const int base = offsets[e], count = offsets[e + 1] - base;
    const int first = part * 64, stride = 64 * split;
    const e4m3_t* rowp[T][2];
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            rowp[t][h] = (t == 0 ? wa : wb) + ((long long)e * rows + min(row0 + gl + 8 * h, rows - 1)) * K;
    for (int p0 = 0; p0 < count; p0 += 8) {
        const int cols = min(8, count - p0);
        uint4 wq[U][T][2];
        tile_load<T, U>(rowp, first, K, stride, wq);   // in flight while the scales are found
        const float* xg;
        const int* pairs = sorted + base + p0;
        const float scale = column_scale([&](int j) { return act + (long long)(pairs[j] / actDiv) * K; },
                                         cols, K, first, stride, xg);
        float c[T][4];
#pragma unroll
        for (int t = 0; t < T; ++t)
#pragma unroll
            for (int i = 0; i < 4; ++i) c[t][i] = 0.0f;
        e4m3_tile_dot<T, U>(rowp, wq, xg, scale, K, first, stride, c);
        store_tile<T>(c, scale, cols, partial[warp]);
        __syncthreads();
        if (part == 0) {
            for (int i = lane; i < 16 * cols; i += 32) {
                const int m = i / cols, j = i % cols, n = row0 + m;
                if (n >= rows) continue;
                float s = 0.0f, u = 0.0f;
                for (int p = 0; p < split; ++p) {
                    s += partial[warp + p][0][m][j];
                    if (T == 2) u += partial[warp + p][T - 1][m][j];
                }
                const long long srow = (long long)e * rows + n;
                out[(long long)pairs[j] * rows + n] = T == 2 ? silu(s * sa[srow]) * (u * sb[srow]) : s * sa[srow];
            }
        }
        __syncthreads();                        // partial is reused by the next 8 pairs
    }
}
#else
// cvt.rn.f16x2.e4m3x2 needs sm_89: below it the bodies are a trap and the host never launches
// them (KernelSelection: e4m3GemvPath).
#define GEMV_TC_BODY(...) { asm volatile("trap;"); }
#endif

#define GEMV_TC_E4M3(R) \
    extern "C" __global__ void E4M3_TC_BOUNDS gemv_tc_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, \
                                                                        int split, const float* ws) \
    GEMV_TC_BODY(gemv_tc_e4m3_impl<R, STORE, false>(x, w, out, K, N, split, nullptr, 0.0f, ws)) \
    extern "C" __global__ void E4M3_TC_BOUNDS gemv_tc_add_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, \
                                                                            int split, const float* ws) \
    GEMV_TC_BODY(gemv_tc_e4m3_impl<R, ACCUMULATE, false>(x, w, out, K, N, split, nullptr, 0.0f, ws)) \
    extern "C" __global__ void E4M3_TC_BOUNDS gemv_tc_norm_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, int N, \
                                                                             int split, const bf16_t* g, float eps, const float* ws) \
    GEMV_TC_BODY(gemv_tc_e4m3_impl<R, STORE, true>(x, w, out, K, N, split, g, eps, ws)) \
    extern "C" __global__ void E4M3_TC_BOUNDS gemv_tc_norm_swiglu_e4m3_r##R(const float* x, const e4m3_t* w, float* out, int K, \
                                                                                    int N, int split, const bf16_t* g, float eps, \
                                                                                    const float* ws) \
    GEMV_TC_BODY(gemv_tc_e4m3_impl<R, SWIGLU, true>(x, w, out, K, N, split, g, eps, ws))
GEMV_TC_E4M3(1) GEMV_TC_E4M3(2) GEMV_TC_E4M3(3) GEMV_TC_E4M3(4)

// Grids: gate/up (ceil(ceil(F / 16) · split / W), min(E, P)), down (ceil(ceil(D / 16) · split / W), min(E, P)).
extern "C" __global__ void E4M3_TC_MOE_BOUNDS moe_gemv_tc_gate_up_e4m3(
    const float* x, const e4m3_t* w1, const e4m3_t* w3, const int* offsets, const int* sorted,
    float* h, int dim, int hidden, int topK, int experts, const float* s1, const float* s3, int split)
GEMV_TC_BODY(moe_gemv_tc_e4m3_impl<2>(x, topK, w1, w3, s1, s3, offsets, sorted, h, dim, hidden, experts, split))

extern "C" __global__ void E4M3_TC_MOE_BOUNDS moe_gemv_tc_down_e4m3(
    const float* h, const e4m3_t* w2, const int* offsets, const int* sorted, float* y, int dim, int hidden, int experts,
    const float* s2, int split)
GEMV_TC_BODY(moe_gemv_tc_e4m3_impl<1>(h, 1, w2, w2, s2, s2, offsets, sorted, y, hidden, dim, experts, split))
