// Mixtral MoE on the device: routing, grouping tokens by expert, the expert FFNs, and the
// weighted sum — no host synchronisation anywhere (the host never sees the routing).
//
// Legend: T tokens, E experts, K experts per token, D model dim, F expert hidden dim,
// P = T*K (token, slot) pairs; pair p = t*K + k.
// logits (T, E) f32; ids (T, K) i32; weights (T, K) f32; x, out (T, D) f32;
// w1, w3 (E, F, D) and w2 (E, D, F) weight dtype; h (P, F) f32 and y (P, D) f32 scratch;
// offsets (E+1) i32 = start of each expert's pairs in `sorted` (P) i32.
#include "tile_gemm.cuh"

// Routing: top-k over the gate logits, *then* softmax over the k chosen logits (Mixtral's order;
// softmax-then-top-k gives different weights). Ties pick the lower expert index, as torch.topk.
// One thread per token.
extern "C" __global__ void moe_route_f32(const float* logits, int* ids, float* weights, int rows, int experts, int topK) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows) return;
    const float* l = logits + (long long)t * experts;
    int* id = ids + (long long)t * topK;
    float* w = weights + (long long)t * topK;
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

// h[p] = silu(w1[e] · x[t]) * (w3[e] · x[t]) for the pairs p = (t, k) routed to expert e.
// Grid (ceil(F/BN), ceil(P/BM), E): block (n, r, e) takes rows r*BM.. of expert e's pairs and
// exits at once when the expert has fewer (the bound is not known on the host: no sync).
template <class W>
__device__ void moe_gate_up_impl(const float* x, const typename W::T* w1, const typename W::T* w3,
                                 const int* offsets, const int* sorted, float* h, int dim, int hidden, int topK) {
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
    if (n0 + tx < hidden)
        for (int i = 0; i < 8; ++i) {
            int r = ty + 4 * i;
            if (r < rowCount) h[(long long)rowPair[r] * hidden + n0 + tx] = silu(g[i]) * u[i];
        }
}

// y[p] = w2[e] · h[p] for the pairs routed to expert e. Grid (ceil(D/BN), ceil(P/BM), E).
template <class W>
__device__ void moe_down_impl(const float* h, const typename W::T* w2, const int* offsets, const int* sorted,
                              float* y, int dim, int hidden) {
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
    if (n0 + tx < dim)
        for (int i = 0; i < 8; ++i) {
            int r = ty + 4 * i;
            if (r < rowCount) y[(long long)rowPair[r] * dim + n0 + tx] = acc[i];
        }
}

#define MOE(S, W) \
    extern "C" __global__ void __launch_bounds__(256) moe_gate_up_##S(const float* x, const W::T* w1, const W::T* w3, \
        const int* offsets, const int* sorted, float* h, int dim, int hidden, int topK) \
    { moe_gate_up_impl<W>(x, w1, w3, offsets, sorted, h, dim, hidden, topK); } \
    extern "C" __global__ void __launch_bounds__(256) moe_down_##S(const float* h, const W::T* w2, \
        const int* offsets, const int* sorted, float* y, int dim, int hidden) \
    { moe_down_impl<W>(h, w2, offsets, sorted, y, dim, hidden); }
FOR_EACH_WEIGHT_TYPE(MOE)

// out[t] = Σ_k weights[t, k] · y[t*K + k]; a pair with an invalid expert id contributes nothing.
extern "C" __global__ void moe_combine(const float* y, const int* ids, const float* weights, float* out,
                                       int rows, int dim, int topK, int experts) {
    long long n = (long long)rows * dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long t = i / dim, d = i % dim;
        float s = 0.0f;
        for (int k = 0; k < topK; ++k) {
            long long p = t * topK + k;
            int e = ids[p];
            if (e >= 0 && e < experts) s += weights[p] * y[p * dim + d];
        }
        out[i] = s;
    }
}
