// Causal (optionally sliding-window) GQA attention of packed queries over the paged KV pools.
//
// Legend: T packed query tokens, S sequences, H query heads, G KV heads, Q = H/G query heads per
// KV head, Dh head dim, B tokens per block, TILE keys staged in shared memory at once.
// q (T, H, Dh) f32 already roped; out (T, H, Dh) f32; kPool, vPool (N, B, G, Dh) bf16;
// queryStart (S+1), positions (T), blockTables (S, maxBlocks) i32.
//
// One block per (query token t, KV head g): it serves the Q query heads of the group together,
// so each K/V row is read from the pool once per group (GQA), and keeps a running max / sum per
// head (online softmax) so any context length fits in fixed shared memory.
// A query at position p sees keys j with max(0, p - W + 1) <= j <= p (W = window, 0 = none).
//
// Split-KV (flash-decoding): with few query tokens (decode) the (t, g) grid cannot fill the GPU,
// so grid.z = `splits` blocks each take a contiguous share of the keys and write their partial
// (max, sum, unnormalised output) to pm, pl (T, H, splits) and pacc (T, H, splits, Dh);
// attention_merge then combines them by log-sum-exp. With splits == 1 the output is written
// directly.
#include "common.cuh"

extern "C" __global__ void attention_paged(
    const float* q, const bf16_t* kPool, const bf16_t* vPool,
    const int* queryStart, const int* positions, const int* blockTables, float* out,
    int sequences, int heads, int kvHeads, int headDim, int blockSize, int maxBlocks,
    int window, int tile, float scale, int splits, float* pm, float* pl, float* pacc)
{
    extern __shared__ float smem[];
    const int t = blockIdx.x, g = blockIdx.y, tid = threadIdx.x;
    const int Q = heads / kvHeads, Dh = headDim, ks = Dh + 1;   // ks: padded K row stride (banks)
    float* q_s = smem;                     // (Q, Dh)
    float* acc = q_s + Q * Dh;             // (Q, Dh)
    float* k_s = acc + Q * Dh;             // (TILE, Dh+1)
    float* v_s = k_s + tile * ks;          // (TILE, Dh)
    float* p_s = v_s + tile * Dh;          // (Q, TILE) scores, then probabilities
    float* m_s = p_s + Q * tile;           // (Q) running max
    float* l_s = m_s + Q;                  // (Q) running sum
    float* c_s = l_s + Q;                  // (Q) rescale factor of this tile
    long long* slot_s = reinterpret_cast<long long*>(c_s + Q + (Q & 1));   // (TILE) pool slots, 8-byte aligned

    // The sequence of token t: the last s with queryStart[s] <= t.
    int lo = 0, hi = sequences - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (queryStart[mid] <= t) lo = mid; else hi = mid - 1;
    }
    const int s = lo;
    const int p = positions[t];
    const int first = window > 0 ? max(0, p - window + 1) : 0;
    const int share = (p - first + 1 + splits - 1) / splits;
    const int start = first + (int)blockIdx.z * share;
    const int end = min(p, start + share - 1);          // this block's keys: start..end
    const long long rowStride = (long long)kvHeads * Dh;   // one pool slot

    for (int i = tid; i < Q * Dh; i += blockDim.x) {
        int h = i / Dh, d = i % Dh;
        q_s[i] = q[((long long)t * heads + g * Q + h) * Dh + d] * scale;
        acc[i] = 0.0f;
    }
    if (tid < Q) { m_s[tid] = __int_as_float(0xff800000); /* -inf */ l_s[tid] = 0.0f; }
    __syncthreads();

    for (int j0 = start; j0 <= end; j0 += tile) {
        const int n = min(tile, end - j0 + 1);
        // Pool slots of this tile's keys first (one table lookup per key, not per element), so
        // the K/V loads below depend on shared memory only and can all be in flight at once.
        for (int jj = tid; jj < n; jj += blockDim.x) {
            int j = j0 + jj;
            slot_s[jj] = (long long)blockTables[(long long)s * maxBlocks + j / blockSize] * blockSize + j % blockSize;
        }
        __syncthreads();
        const long long headOffset = (long long)g * Dh;
        if ((Dh & 7) == 0) {
            // 16-byte loads: 8 bf16 of K and of V per thread per step.
            const int vecs = Dh >> 3;
            for (int i = tid; i < n * vecs; i += blockDim.x) {
                int jj = i / vecs, c = i - jj * vecs;
                long long off = slot_s[jj] * rowStride + headOffset + 8 * c;
                uint4 kv = __ldg(reinterpret_cast<const uint4*>(kPool + off));
                uint4 vv = __ldg(reinterpret_cast<const uint4*>(vPool + off));
                float f[8];
                unpack8(kv, f);
#pragma unroll
                for (int e = 0; e < 8; ++e) k_s[jj * ks + 8 * c + e] = f[e];
                unpack8(vv, f);
#pragma unroll
                for (int e = 0; e < 8; ++e) v_s[jj * Dh + 8 * c + e] = f[e];
            }
        } else {
            for (int i = tid; i < n * Dh; i += blockDim.x) {
                int jj = i / Dh, d = i % Dh;
                long long off = slot_s[jj] * rowStride + headOffset + d;
                k_s[jj * ks + d] = bf16_to_f32(kPool[off]);
                v_s[jj * Dh + d] = bf16_to_f32(vPool[off]);
            }
        }
        __syncthreads();
        for (int i = tid; i < Q * n; i += blockDim.x) {
            int h = i / n, jj = i % n;
            const float* qh = q_s + h * Dh;
            const float* kj = k_s + jj * ks;
            float dot = 0.0f;
            for (int d = 0; d < Dh; ++d) dot += qh[d] * kj[d];
            p_s[h * tile + jj] = dot;
        }
        __syncthreads();
        if (tid < Q) {
            const int h = tid;
            float mx = m_s[h];
            for (int jj = 0; jj < n; ++jj) mx = fmaxf(mx, p_s[h * tile + jj]);
            float corr = __expf(m_s[h] - mx);   // 0 on the first tile (m = -inf)
            float sum = l_s[h] * corr;
            for (int jj = 0; jj < n; ++jj) {
                float e = __expf(p_s[h * tile + jj] - mx);
                p_s[h * tile + jj] = e;
                sum += e;
            }
            m_s[h] = mx; l_s[h] = sum; c_s[h] = corr;
        }
        __syncthreads();
        for (int i = tid; i < Q * Dh; i += blockDim.x) {
            int h = i / Dh, d = i % Dh;
            float a = acc[i] * c_s[h];
            const float* ph = p_s + h * tile;
            for (int jj = 0; jj < n; ++jj) a += ph[jj] * v_s[jj * Dh + d];
            acc[i] = a;
        }
        __syncthreads();
    }
    if (splits == 1) {
        for (int i = tid; i < Q * Dh; i += blockDim.x) {
            int h = i / Dh, d = i % Dh;
            out[((long long)t * heads + g * Q + h) * Dh + d] = acc[i] / l_s[h];
        }
        return;
    }
    // Partial results; an empty share (start > end) leaves m = -inf, l = 0, acc = 0.
    for (int i = tid; i < Q * Dh; i += blockDim.x) {
        int h = i / Dh, d = i % Dh;
        long long slot = ((long long)t * heads + g * Q + h) * splits + blockIdx.z;
        pacc[slot * Dh + d] = acc[i];
        if (d == 0) { pm[slot] = m_s[h]; pl[slot] = l_s[h]; }
    }
}

// out[t, h] = Σ_z exp(m_z − M) · acc_z / Σ_z exp(m_z − M) · l_z, M = max_z m_z.
// Grid (T, H), block Dh threads (≤ 1024).
extern "C" __global__ void attention_merge(const float* pm, const float* pl, const float* pacc, float* out,
                                           int heads, int headDim, int splits) {
    const long long th = (long long)blockIdx.x * heads + blockIdx.y;
    const float* m = pm + th * splits;
    const float* l = pl + th * splits;
    float mx = __int_as_float(0xff800000);
    for (int z = 0; z < splits; ++z) mx = fmaxf(mx, m[z]);
    float den = 0.0f, num = 0.0f;
    for (int z = 0; z < splits; ++z) {
        if (l[z] == 0.0f) continue;          // empty share
        float w = __expf(m[z] - mx);
        den += w * l[z];
        num += w * pacc[(th * splits + z) * headDim + threadIdx.x];
    }
    out[th * headDim + threadIdx.x] = num / den;
}
