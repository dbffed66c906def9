// Mixtral MoE on the device: routing, grouping tokens by expert, the expert FFNs, and the
// weighted sum — no host synchronisation anywhere (the host never sees the routing).
//
// Legend: T tokens, E experts, K experts per token, D model dim, F expert hidden dim,
// P = T*K (token, slot) pairs; pair p = t*K + k.
// logits (T, E) f32; ids (T, K) i32; weights (T, K) f32; x, out (T, D) f32;
// w1, w3 (E, F, D) and w2 (E, D, F) weight dtype; h (P, F) f32 and y (P, D) f32 scratch;
// offsets (E+1) i32 = start of each expert's pairs in `sorted` (P) i32.
#include "tile_gemm.cuh"

// Routing of one token: top-k over its gate logits l (E), *then* softmax over the k chosen
// logits (Mixtral's order; softmax-then-top-k gives different weights). Ties pick the lower expert
// index, as torch.topk. Writes id (K) and w (K).
__device__ void route_token(const float* l, int experts, int topK, int* id, float* w) {
    for (int k = 0; k < topK; ++k) {
        int best = -1;
        float bv = 0.0f;
        for (int e = 0; e < experts; ++e) {
            bool taken = false;
            for (int kk = 0; kk < k; ++kk) taken |= (id[kk] == e);
            if (taken) continue;
            float v = l[e];
            if (best < 0 || v > bv) { best = e; bv = v; }
        }
        id[k] = best;
        w[k] = bv;
    }
    float mx = w[0], sum = 0.0f;
    for (int k = 0; k < topK; ++k) { float e = expf(w[k] - mx); w[k] = e; sum += e; }
    for (int k = 0; k < topK; ++k) w[k] /= sum;
}

// logits (T, E) → ids, weights (T, K). One thread per token.
extern "C" __global__ void moe_route_f32(const float* logits, int* ids, float* weights, int rows, int experts, int topK) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows) return;
    route_token(logits + (long long)t * experts, experts, topK, ids + (long long)t * topK, weights + (long long)t * topK);
}

// Counting sort of the P pairs by expert, in one block: offsets (E+1) and sorted (P).
// Shared memory: 2E ints. Pairs with an id outside [0, E) are left out (and skipped by combine).
extern "C" __global__ void moe_sort(const int* ids, int pairs, int experts, int* offsets, int* sorted) {
    extern __shared__ int counts[];       // (E) counts, then (E) cursors
    int* cursor = counts + experts;
    for (int e = threadIdx.x; e < experts; e += blockDim.x) counts[e] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
        int e = ids[i];
        if (e >= 0 && e < experts) atomicAdd(&counts[e], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int e = 0; e < experts; ++e) { offsets[e] = run; cursor[e] = run; run += counts[e]; }
        offsets[experts] = run;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
        int e = ids[i];
        if (e >= 0 && e < experts) sorted[atomicAdd(&cursor[e], 1)] = i;
    }
}

// Mixtral routing and the counting sort by expert, by one warp, for P = T·K ≤ 32 pairs and E ≤ 32
// experts; `logits` (T, E) may be in shared memory. ids, weights (P) are what
// moe_route_f32 writes (top-k of the logits, *then* softmax over the k chosen: Mixtral's order;
// ties → the lower expert index, as torch.topk); offsets (E+1) and sorted (P) what moe_sort
// writes, except that an expert's pairs come in pair order (moe_sort's order is arbitrary).
// Example, T 2, K 2, E 4, ids [[2, 0], [2, 3]] (pairs 0..3): offsets [0, 1, 1, 3, 4],
// sorted [1, 0, 2, 3] (expert 0: pair 1; expert 2: pairs 0, 2; expert 3: pair 3).
__device__ void warp_route_sort(const float* logits, int rows, int experts, int topK,
                                int* ids, float* weights, int* offsets, int* sorted) {
    const int lane = threadIdx.x & 31, pairs = rows * topK;
    if (lane < rows) {
        const float* l = logits + lane * experts;
        int* id = ids + lane * topK;
        float* w = weights + lane * topK;
        unsigned taken = 0u;
        for (int k = 0; k < topK; ++k) {
            int best = -1;
            float bv = 0.0f;
            for (int e = 0; e < experts; ++e) {
                if ((taken >> e) & 1u) continue;
                const float v = l[e];
                if (best < 0 || v > bv) { best = e; bv = v; }   // strictly greater: lower index wins a tie
            }
            taken |= 1u << best;
            id[k] = best;
            w[k] = bv;
        }
        // Softmax over the k chosen logits (the first is the largest), as moe_route_f32.
        float mx = w[0], sum = 0.0f;
        for (int k = 0; k < topK; ++k) { float e = expf(w[k] - mx); w[k] = e; sum += e; }
        for (int k = 0; k < topK; ++k) w[k] /= sum;
    }
    __syncwarp();
    const int id = lane < pairs ? ids[lane] : -1;
    const unsigned below = (1u << lane) - 1u;
    int run = 0;
    for (int e = 0; e < experts; ++e) {
        const unsigned m = __ballot_sync(0xffffffffu, id == e);
        if (lane == 0) offsets[e] = run;
        if (id == e) sorted[run + __popc(m & below)] = lane;
        run += __popc(m);
    }
    if (lane == 0) offsets[experts] = run;
    __syncwarp();
}

// moe_route_f32 and moe_sort in one launch for decode steps (P = T·K ≤ 32, E ≤ 32; the host
// checks): one warp, everything in shared memory (the logits, ≤ 1024 floats, loaded with all
// loads in flight), then ids, weights (T, K), offsets (E+1) and sorted (P) written once. Saves a
// launch and moe_route_f32's global-memory re-reads (3.3 + 2.0 µs on an H200 for the pair).
extern "C" __global__ void __launch_bounds__(32) moe_route_sort(const float* logits, int* ids, float* weights,
                                                                int* offsets, int* sorted, int rows, int experts, int topK) {
    __shared__ float sLogits[32 * 32];                 // (T, E)
    __shared__ float sWeights[32];                     // (P)
    __shared__ int sIds[32], sSorted[32], sOffsets[33];
    const int lane = threadIdx.x, pairs = rows * topK;
    for (int i = lane; i < rows * experts; i += 32) sLogits[i] = logits[i];
    __syncwarp();
    warp_route_sort(sLogits, rows, experts, topK, sIds, sWeights, sOffsets, sSorted);
    if (lane < pairs) { ids[lane] = sIds[lane]; weights[lane] = sWeights[lane]; sorted[lane] = sSorted[lane]; }
    for (int e = lane; e <= experts; e += 32) offsets[e] = sOffsets[e];
}

// h[p] = silu(w1[e] · x[t]) * (w3[e] · x[t]) for the pairs p = (t, k) routed to expert e.
// Grid (ceil(F/BN), ceil(P/BM), E): block (n, r, e) takes rows r*BM.. of expert e's pairs and
// exits at once when the expert has fewer (the bound is not known on the host: no sync).
// s1, s3 (E, F): e4m3 row scales of w1, w3 (nullptr: none), applied before the SwiGLU.
template <class W>
__device__ void moe_gate_up_impl(const float* x, const typename W::T* w1, const typename W::T* w3,
                                 const int* offsets, const int* sorted, float* h, int dim, int hidden, int topK,
                                 const float* s1 = nullptr, const float* s3 = nullptr) {
    __shared__ float As[BM][BK + 1];
    __shared__ float Ws[BN][BK + 1];
    __shared__ const float* rowPtr[BM];
    __shared__ int rowPair[BM];
    const int e = blockIdx.z, base = offsets[e], count = offsets[e + 1] - base, r0 = blockIdx.y * BM;
    if (r0 >= count) return;
    const int rowCount = min(BM, count - r0), n0 = blockIdx.x * BN;
    if (threadIdx.x < BM) {
        int pair = sorted[base + r0 + min((int)threadIdx.x, rowCount - 1)];
        rowPair[threadIdx.x] = pair;
        rowPtr[threadIdx.x] = x + (long long)(pair / topK) * dim;
    }
    __syncthreads();
    const long long expertOffset = (long long)e * hidden * dim;
    float g[8] = {0, 0, 0, 0, 0, 0, 0, 0}, u[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    tile_mac<W>(rowPtr, rowCount, w1 + expertOffset, n0, hidden, dim, g, As, Ws);
    tile_mac<W>(rowPtr, rowCount, w3 + expertOffset, n0, hidden, dim, u, As, Ws);
    const int tx = threadIdx.x % BN, ty = threadIdx.x / BN;
    if (n0 + tx < hidden) {
        const float sg = s1 ? s1[(long long)e * hidden + n0 + tx] : 1.0f, su = s3 ? s3[(long long)e * hidden + n0 + tx] : 1.0f;
        for (int i = 0; i < 8; ++i) {
            int r = ty + 4 * i;
            if (r < rowCount) h[(long long)rowPair[r] * hidden + n0 + tx] = s1 ? silu(g[i] * sg) * (u[i] * su) : silu(g[i]) * u[i];
        }
    }
}

// y[p] = w2[e] · h[p] for the pairs routed to expert e. Grid (ceil(D/BN), ceil(P/BM), E).
// s2 (E, D): e4m3 row scales of w2 (nullptr: none).
template <class W>
__device__ void moe_down_impl(const float* h, const typename W::T* w2, const int* offsets, const int* sorted,
                              float* y, int dim, int hidden, const float* s2 = nullptr) {
    __shared__ float As[BM][BK + 1];
    __shared__ float Ws[BN][BK + 1];
    __shared__ const float* rowPtr[BM];
    __shared__ int rowPair[BM];
    const int e = blockIdx.z, base = offsets[e], count = offsets[e + 1] - base, r0 = blockIdx.y * BM;
    if (r0 >= count) return;
    const int rowCount = min(BM, count - r0), n0 = blockIdx.x * BN;
    if (threadIdx.x < BM) {
        int pair = sorted[base + r0 + min((int)threadIdx.x, rowCount - 1)];
        rowPair[threadIdx.x] = pair;
        rowPtr[threadIdx.x] = h + (long long)pair * hidden;
    }
    __syncthreads();
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    tile_mac<W>(rowPtr, rowCount, w2 + (long long)e * dim * hidden, n0, dim, hidden, acc, As, Ws);
    const int tx = threadIdx.x % BN, ty = threadIdx.x / BN;
    if (n0 + tx < dim) {
        const float scale = s2 ? s2[(long long)e * dim + n0 + tx] : 1.0f;
        for (int i = 0; i < 8; ++i) {
            int r = ty + 4 * i;
            if (r < rowCount) y[(long long)rowPair[r] * dim + n0 + tx] = s2 ? acc[i] * scale : acc[i];
        }
    }
}

// Router logits with f32 activations: logits (T, E) = x (T, D) f32 · W (E, D)ᵀ (weight dtype).
// Routing is a discrete choice, so x is not narrowed to bf16 here (that flips near-tied experts
// against the f32 reference). One block of 8 warps per token; warp w takes experts w, w + 8, …,
// its lanes striding D (coalesced); W (E·D, 64 KB at Mixtral shapes) stays in L2 for all blocks.
template <class W>
__device__ void moe_router_impl(const float* x, const typename W::T* w, float* logits, int dim, int experts) {
    const int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float* xr = x + (long long)t * dim;
    for (int e = warp; e < experts; e += blockDim.x >> 5) {
        const typename W::T* we = w + (long long)e * dim;
        float s = 0.0f;
#pragma unroll 8
        for (int k = lane; k < dim; k += 32) s += W::load(we, k) * xr[k];
        s = warp_sum(s);
        if (lane == 0) logits[(long long)t * experts + e] = s;
    }
}

// The MoE block's opening for steps past the GEMV sizes, one launch instead of four (rmsNorm,
// router, route, convert): per token (one block of 8 warps) x̂ = rmsNorm(x; g, eps) rounded as
// rmsnorm.cu ((x · inv) · g), kept in shared memory and written as the experts' bf16 operand xb
// (and as f32 `normed` when non-null, for the SIMT experts); the router logits from x̂ in f32, as
// moe_router_*; then top-k and softmax into ids, weights (T, K), as moe_route_f32.
// Dynamic shared memory (D + E) floats.
template <class W>
__device__ void moe_norm_route_impl(const float* x, const typename W::T* g, float eps, const typename W::T* router,
                                    int dim, int experts, int topK, float* normed, bf16_t* xb, int* ids, float* weights) {
    extern __shared__ float sh[];
    float* xn = sh;           // (D)
    float* lg = sh + dim;     // (E)
    __shared__ float red[32];
    const int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float* xr = x + (long long)t * dim;
    float ss = 0.0f;
    for (int k = threadIdx.x; k < dim; k += blockDim.x) { const float v = xr[k]; ss += v * v; }
    const float inv = rsqrtf(block_sum(ss, red) / (float)dim + eps);
    for (int k = threadIdx.x; k < dim; k += blockDim.x) {
        const float n = xr[k] * inv * W::load(g, k);
        xn[k] = n;
        xb[(long long)t * dim + k] = f32_to_bf16(n);
        if (normed) normed[(long long)t * dim + k] = n;
    }
    __syncthreads();
    for (int e = warp; e < experts; e += blockDim.x >> 5) {
        const typename W::T* we = router + (long long)e * dim;
        float s = 0.0f;
#pragma unroll 8
        for (int k = lane; k < dim; k += 32) s += W::load(we, k) * xn[k];
        s = warp_sum(s);
        if (lane == 0) lg[e] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) route_token(lg, experts, topK, ids + (long long)t * topK, weights + (long long)t * topK);
}

#define MOE(S, W) \
    extern "C" __global__ void __launch_bounds__(256) moe_norm_route_##S(const float* x, const W::T* g, float eps, \
        const W::T* router, int dim, int experts, int topK, float* normed, bf16_t* xb, int* ids, float* weights) \
    { moe_norm_route_impl<W>(x, g, eps, router, dim, experts, topK, normed, xb, ids, weights); } \
    extern "C" __global__ void __launch_bounds__(256) moe_router_##S(const float* x, const W::T* w, float* logits, \
        int dim, int experts) \
    { moe_router_impl<W>(x, w, logits, dim, experts); } \
    extern "C" __global__ void __launch_bounds__(256) moe_gate_up_##S(const float* x, const W::T* w1, const W::T* w3, \
        const int* offsets, const int* sorted, float* h, int dim, int hidden, int topK) \
    { moe_gate_up_impl<W>(x, w1, w3, offsets, sorted, h, dim, hidden, topK); } \
    extern "C" __global__ void __launch_bounds__(256) moe_down_##S(const float* h, const W::T* w2, \
        const int* offsets, const int* sorted, float* y, int dim, int hidden) \
    { moe_down_impl<W>(h, w2, offsets, sorted, y, dim, hidden); }
FOR_EACH_WEIGHT_TYPE(MOE)

// The grouped SIMT experts with e4m3 weights (the FP8 scheme's prefill experts, docs/fp8.md): the
// tiles widen the codes to f32 (WE4M3) and each output is multiplied by its weight row's scale;
// s1, s3 (E, F) and s2 (E, D) are the stacked row scales. Same grids as moe_gate_up_* / moe_down_*.
extern "C" __global__ void __launch_bounds__(256) moe_gate_up_e4m3(const float* x, const e4m3_t* w1, const e4m3_t* w3,
    const int* offsets, const int* sorted, float* h, int dim, int hidden, int topK, const float* s1, const float* s3)
{ moe_gate_up_impl<WE4M3>(x, w1, w3, offsets, sorted, h, dim, hidden, topK, s1, s3); }
extern "C" __global__ void __launch_bounds__(256) moe_down_e4m3(const float* h, const e4m3_t* w2,
    const int* offsets, const int* sorted, float* y, int dim, int hidden, const float* s2)
{ moe_down_impl<WE4M3>(h, w2, offsets, sorted, y, dim, hidden, s2); }

// The grouped cuBLASLt path's gather: xs holds each expert's rows in a block of its own, padded
// to a multiple of `pad` rows (so a few GEMM shapes serve every count), in expert order:
// xs[start_e + j] = xb[token of sorted[offsets[e] + j]] for j < count_e, zero rows after, with
// start_e = Σ_{e' < e} roundup(count_e', pad); rowOf[pair] = its row in xs (and in the products).
// One block per xs row (grid = the padded total, known to the host after it read `offsets`).
// xb (T, D) bf16; xs (rows, D) bf16; rowOf (P) i32; D % 8 == 0.
extern "C" __global__ void moe_gather_padded(const bf16_t* xb, const int* offsets, const int* sorted, bf16_t* xs,
                                             int* rowOf, int dim, int topK, int experts, int pad) {
    int row = blockIdx.x;
    int start = 0, e = 0;
    for (; e < experts; ++e) {
        int count = offsets[e + 1] - offsets[e];
        int padded = (count + pad - 1) / pad * pad;
        if (row < start + padded) break;
        start += padded;
    }
    uint4* dst = reinterpret_cast<uint4*>(xs + (long long)row * dim);
    int j = row - start;
    if (e == experts || j >= offsets[e + 1] - offsets[e]) {
        for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) dst[i] = make_uint4(0, 0, 0, 0);
        return;
    }
    int pair = sorted[offsets[e] + j];
    if (threadIdx.x == 0) rowOf[pair] = row;
    const uint4* src = reinterpret_cast<const uint4*>(xb + (long long)(pair / topK) * dim);
    for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) dst[i] = src[i];
}

// out[t] (+)= Σ_k weights[t, k] · y[row(t*K + k)]; a pair with an invalid expert id contributes
// nothing. row(p) = rowOf[p] when given (grouped GEMM path: padded per-expert blocks), else
// e*denseRows + t when denseRows > 0 (dense path: y is (E, T, D)), else p (y is (P, D)).
// accumulate != 0 adds onto out (the residual) instead of overwriting it. yBF16 != 0: y holds
// bf16 values (the grouped cuBLASLt path halves its largest write that way).
extern "C" __global__ void moe_combine(const float* y, const int* ids, const float* weights, float* out,
                                       int rows, int dim, int topK, int experts,
                                       const int* rowOf, int denseRows, int accumulate, int yBF16) {
    long long n = (long long)rows * dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long t = i / dim, d = i % dim;
        float s = 0.0f;
        for (int k = 0; k < topK; ++k) {
            long long p = t * topK + k;
            int e = ids[p];
            if (e < 0 || e >= experts) continue;
            long long r = rowOf ? (long long)rowOf[p] : (denseRows > 0 ? (long long)e * denseRows + t : p);
            s += weights[p] * (yBF16 ? bf16_to_f32(reinterpret_cast<const bf16_t*>(y)[r * dim + d]) : y[r * dim + d]);
        }
        out[i] = accumulate ? out[i] + s : s;
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core experts for bf16 weights (mma.sync m16n8k16 bf16 → f32, inline PTX; sm_80+).
//
// Same grouped products as moe_gate_up / moe_down, with bf16 activations: the gate/up kernel
// reads xb (T, D) bf16 (x narrowed by convert_f32_to_bf16 first, as the cuBLASLt dense path
// does) and writes h (P, F) as bf16; the down kernel reads that h and writes y (P, D) f32.
// Narrowing up front lets every operand travel global → shared by cp.async (16 bytes, no
// registers), which is what keeps enough bytes in flight at decode batch sizes.
//
// Tile: TBN weight rows (n) × TBM pairs (m) per block, K in chunks of KC (64), a STAGES-deep
// cp.async ring in dynamic shared memory. Stage layout: W tile(s) (TBN rows, two for gate/up:
// w1 then w3), then the TBM gathered activation rows (row = pair / actDiv: the token for gate/up,
// the pair for down; rows past the expert's count are zero-filled, never read). Shared rows are
// padded by 8 bf16 (KC 64: 144-byte rows) so the 8 row addresses of each ldmatrix hit distinct
// banks.
// Warps form WARPS_N × WARPS_M; each owns WN × WM outputs as (WN/16) × (WM/8) m16n8 tiles, with
// A = the W rows (row-major, n × k) and B = the activation rows (k contiguous: the "col" operand),
// so C is (n, pair). Warps (and m8 tiles) wholly past the expert's count skip their MMAs — at
// decode only ~8–16 pairs per expert are live and the weights stream is all that matters.
//
// Grid (1-D, no host sync): block b → m tile b % mTiles, n tile b / mTiles. m tiles are numbered
// expert by expert (expert e owns ceil(count_e / TBM) of them, found by walking `offsets`), and
// the host launches mTiles = ceil(P / TBM) + E, an upper bound; blocks past the last tile exit.
// m varies fastest so the blocks in flight share one n tile of each expert's weights: at prefill
// (~500 pairs per expert) a weight tile is read from DRAM once and from L2 by the other m tiles.
// Requires N % TBN == 0 and K % KC == 0 (the host checks).

__device__ __forceinline__ void ldsm_x4(unsigned addr, unsigned (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// c += A(16×16, row) · B(16×8, col), bf16 operands, f32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// DUAL: gate/up (wa = w1, wb = w3, out = h bf16, silu(g)·u); else down (wa = w2, out = y f32).
// Weights (E, N, K) bf16; act rows of length K bf16; out (P, N).
template <bool DUAL, int WARPS_N, int WARPS_M, int WN, int WM, int KC, int STAGES>
__device__ __forceinline__ void moe_mma_impl(const bf16_t* act, int actDiv, const bf16_t* wa, const bf16_t* wb,
                                             const int* offsets, const int* sorted, void* out,
                                             int N, int K, int experts, int mTiles) {
    constexpr int THREADS = 32 * WARPS_N * WARPS_M;
    constexpr int TBN = WARPS_N * WN, TBM = WARPS_M * WM;
    constexpr int FN = WN / 16, FM = WM / 8;
    constexpr int WROWS = (DUAL ? 2 : 1) * TBN;
    constexpr int LD = KC + 8, CH = KC / 8;        // padded row (bf16), 16-byte chunks per row
    constexpr unsigned STAGE_BYTES = (WROWS + TBM) * LD * 2;
    static_assert(WN % 16 == 0 && WM % 16 == 0, "warp tile: n multiple of 16, m multiple of 16");
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ long long rowOff[TBM];     // element offset of each activation row, -1 past the count
    __shared__ int rowPair[TBM];

    int mt = blockIdx.x % mTiles;
    const int nt = blockIdx.x / mTiles;
    int e = 0, base = 0, count = 0;
    for (; e < experts; ++e) {
        base = offsets[e];
        count = offsets[e + 1] - base;
        const int tiles = (count + TBM - 1) / TBM;
        if (mt < tiles) break;
        mt -= tiles;
    }
    if (e == experts) return;
    const int tid = threadIdx.x, m0 = mt * TBM, rows = min(TBM, count - m0), n0 = nt * TBN;
    for (int i = tid; i < TBM; i += THREADS) {
        const int p = i < rows ? sorted[base + m0 + i] : -1;
        rowPair[i] = p;
        rowOff[i] = p >= 0 ? (long long)(p / actDiv) * K : -1;
    }
    __syncthreads();

    const long long wOff = (long long)e * N * K + (long long)n0 * K;
    const bf16_t* wA = wa + wOff;
    const bf16_t* wB = DUAL ? wb + wOff : wa;
    const unsigned sbase = smem_u32(smem);
    auto load = [&](int stage, int kt) {
        const int k0 = kt * KC;
        const unsigned s = sbase + stage * STAGE_BYTES;
#pragma unroll
        for (int c = tid; c < TBN * CH; c += THREADS) {
            const int r = c / CH, col = (c % CH) * 8;
            cp_async16(s + (r * LD + col) * 2, wA + (long long)r * K + k0 + col, 16);
        }
        if (DUAL) {
#pragma unroll
            for (int c = tid; c < TBN * CH; c += THREADS) {
                const int r = c / CH, col = (c % CH) * 8;
                cp_async16(s + ((TBN + r) * LD + col) * 2, wB + (long long)r * K + k0 + col, 16);
            }
        }
#pragma unroll
        for (int c = tid; c < TBM * CH; c += THREADS) {
            const int r = c / CH, col = (c % CH) * 8;
            const long long off = rowOff[r];
            cp_async16(s + ((WROWS + r) * LD + col) * 2, off >= 0 ? act + off + k0 + col : act, off >= 0 ? 16 : 0);
        }
    };

    const int warp = tid >> 5, lane = tid & 31, wn = warp / WARPS_M, wm = warp % WARPS_M;
    const bool warpLive = wm * WM < rows;
    float acc1[FN][FM][4], acc3[DUAL ? FN : 1][FM][4];
#pragma unroll
    for (int i = 0; i < FN; ++i)
#pragma unroll
        for (int j = 0; j < FM; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) { acc1[i][j][q] = 0.0f; if (DUAL) acc3[DUAL ? i : 0][j][q] = 0.0f; }

    // ldmatrix lane addresses. A (16×16): lanes 0–15 rows 0–15 at k 0, lanes 16–31 the same rows
    // at k 8 → a0..a3 in mma order. B (two n8 tiles × k16): lanes 0–7 / 8–15 pairs 0–7 at k 0 / 8,
    // lanes 16–23 / 24–31 pairs 8–15 at k 0 / 8 → {b0, b1} of tile 0, then of tile 1.
    const int aRow = lane & 15, aCol = (lane >> 4) * 8;
    const int bRow = (lane & 7) + ((lane >> 4) << 3), bCol = ((lane >> 3) & 1) * 8;
    const int kTiles = K / KC;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < kTiles) load(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < kTiles; ++kt) {
        cp_async_wait<STAGES - 2>();   // chunk kt has landed (this thread's copies) …
        __syncthreads();               // … everyone's, and chunk kt-1's slot is free
        if (kt + STAGES - 1 < kTiles) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
        cp_async_commit();
        if (!warpLive) continue;
        const unsigned s = sbase + (kt % STAGES) * STAGE_BYTES;
#pragma unroll
        for (int kk = 0; kk < KC; kk += 16) {
            unsigned a1[FN][4], a3[DUAL ? FN : 1][4], b[FM / 2][4];
#pragma unroll
            for (int i = 0; i < FN; ++i) {
                ldsm_x4(s + ((wn * WN + i * 16 + aRow) * LD + kk + aCol) * 2, a1[i]);
                if (DUAL) ldsm_x4(s + ((TBN + wn * WN + i * 16 + aRow) * LD + kk + aCol) * 2, a3[DUAL ? i : 0]);
            }
#pragma unroll
            for (int j = 0; j < FM / 2; ++j)
                if (wm * WM + j * 16 < rows)
                    ldsm_x4(s + ((WROWS + wm * WM + j * 16 + bRow) * LD + kk + bCol) * 2, b[j]);
#pragma unroll
            for (int j = 0; j < FM; ++j) {
                if (wm * WM + j * 8 >= rows) continue;
#pragma unroll
                for (int i = 0; i < FN; ++i) {
                    mma_bf16_16816(acc1[i][j], a1[i], b[j / 2][(j & 1) * 2], b[j / 2][(j & 1) * 2 + 1]);
                    if (DUAL) mma_bf16_16816(acc3[DUAL ? i : 0][j], a3[DUAL ? i : 0], b[j / 2][(j & 1) * 2], b[j / 2][(j & 1) * 2 + 1]);
                }
            }
        }
    }
    cp_async_wait<0>();
    if (!warpLive) return;

    // C fragment: c0, c1 = (n g, pairs 2·tig, 2·tig+1); c2, c3 = (n g+8, same pairs).
    const int g = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int i = 0; i < FN; ++i)
#pragma unroll
        for (int j = 0; j < FM; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int m = wm * WM + j * 8 + 2 * tig + (q & 1);
                if (m >= rows) continue;
                const long long idx = (long long)rowPair[m] * N + n0 + wn * WN + i * 16 + g + (q >> 1) * 8;
                if (DUAL) ((bf16_t*)out)[idx] = f32_to_bf16(silu(acc1[i][j][q]) * acc3[DUAL ? i : 0][j][q]);
                else ((float*)out)[idx] = acc1[i][j][q];
            }
}

// Exported configurations (chosen on an H100 SXM, Mixtral shapes; docs/gpu-notes.md):
//                          warps   warp tile  block tile (n × m)  K chunk  stages  shared bytes
//   gate_up_m32_bf16       2 × 2   32 × 16    64 × 32              64       4        92,160
//   gate_up_m128_bf16      2 × 4   32 × 32    64 × 128             64       3       110,592
//   down_m64_bf16          4 × 2   32 × 32    128 × 64             64       3        82,944
//   down_m128_bf16         4 × 2   32 × 64    128 × 128            64       3       110,592
// The _m32/_m64 ones are for decode-sized batches (≤ 256 pairs: ≲ 32 per expert, the weights
// stream is the cost and small m tiles waste no shared memory), the _m128 ones for prefill (more
// reuse of each staged W tile). Arguments: (xb, w1, w3, offsets, sorted, h, dim, hidden, topK,
// experts, mTiles) and (h, w2, offsets, sorted, y, dim, hidden, experts, mTiles); block size is
// 32 · warps; launch mTiles · (N / TBN) blocks with the shared bytes above as dynamic memory.
// mma.sync with bf16 needs sm_80: below that the bodies compile to a trap and the host never
// launches them (moe.cu must still compile there for the SIMT kernels).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define MOE_MMA_BODY(...) { __VA_ARGS__; }
#else
#define MOE_MMA_BODY(...) { asm volatile("trap;"); }
#endif
#define MOE_MMA_GATE_UP(NAME, WNS, WMS, WN, WM, KC, ST) \
    extern "C" __global__ void __launch_bounds__(32 * WNS * WMS) moe_mma_gate_up_##NAME(const bf16_t* xb, \
        const bf16_t* w1, const bf16_t* w3, const int* offsets, const int* sorted, bf16_t* h, \
        int dim, int hidden, int topK, int experts, int mTiles) \
    MOE_MMA_BODY(moe_mma_impl<true, WNS, WMS, WN, WM, KC, ST>(xb, topK, w1, w3, offsets, sorted, h, hidden, dim, experts, mTiles))
#define MOE_MMA_DOWN(NAME, WNS, WMS, WN, WM, KC, ST) \
    extern "C" __global__ void __launch_bounds__(32 * WNS * WMS) moe_mma_down_##NAME(const bf16_t* h, \
        const bf16_t* w2, const int* offsets, const int* sorted, float* y, \
        int dim, int hidden, int experts, int mTiles) \
    MOE_MMA_BODY(moe_mma_impl<false, WNS, WMS, WN, WM, KC, ST>(h, 1, w2, nullptr, offsets, sorted, y, dim, hidden, experts, mTiles))
MOE_MMA_GATE_UP(m32_bf16, 2, 2, 32, 16, 64, 4)
MOE_MMA_GATE_UP(m128_bf16, 2, 4, 32, 32, 64, 3)
MOE_MMA_DOWN(m64_bf16, 4, 2, 32, 32, 64, 3)
MOE_MMA_DOWN(m128_bf16, 4, 2, 32, 64, 64, 3)
