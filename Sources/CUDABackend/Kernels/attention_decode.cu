// Decode attention (flash-decoding): every sequence has exactly one query token (T == S, token
// t = sequence t), same semantics as attention_paged.
//
// Why: attention_paged stages 32-key tiles through shared memory with three block barriers per
// tile and a serial softmax, so one decode step is latency-bound far below memory bandwidth.
// Here the K/V rows stream straight from the pool into registers: a block of NW warps serves
// one (sequence, KV head, ≤ QM query heads of its group, key split); in a warp CH = Dh/8 lanes
// own one key row (one 16-byte load of K and of V each, lane c holding dims 8c..8c+7) and the
// warp holds KPW = 32/CH keys per load step, U steps per iteration (U·KPW keys, all loads issued
// before any use). Each lane keeps the Q query heads' 8-dim slices of q (pre-scaled), a running
// max m, sum l and 8-dim output slice per head (online softmax in registers), so every K/V byte
// loaded serves all Q heads of the group (GQA). Scores: 8-dim partial dot, then an xor-shuffle
// sum over the CH lanes of the row. Warps take interleaved iterations of the block's keys; the
// lanes' states are merged by shuffles (key groups of a warp), then once through shared memory
// (warps of the block), the only barrier.
// Block-table slots: lane L < U·KPW looks up key L of the iteration (others duplicate), the
// loading lanes fetch it by shuffle; the lookup of the next iteration is issued before this
// iteration's K/V loads are used, so its latency overlaps them. Keys past the range in the last
// iteration load key `end` again (valid, finite) and are masked (−inf).
//
// Grid (S, G · chunks, splits), chunks = ceil(Q / QM). Split z takes keys start..end with
// share = max(ceil(len / splits), minShare), start = first + z · share, so the host may size
// `splits` for the longest possible context (CUDA graph replay) and short contexts leave the
// trailing splits empty (m = −inf, l = 0: the merge skips them). splits == 1 writes out
// directly; otherwise partials go to pm, pl (T, H, splits), pacc (T, H, splits, Dh) and
// attention_decode_merge combines them.
// Template: DH ∈ {64, 128}, QM ∈ {1, 2, 4, 8} (query heads per block, the smallest power of two
// ≥ Q, 8 and chunks for Q > 8). Pool rows 16-byte aligned (Dh multiple of 8).
// (Legend and the general kernel, attention_paged: attention.cu.)
#include "common.cuh"

#ifndef ATTN_DECODE_WARPS
#define ATTN_DECODE_WARPS 4
#endif
#ifndef ATTN_DECODE_UNROLL
#define ATTN_DECODE_UNROLL 4
#endif

template <int DH, int QM, int NW>
__device__ __forceinline__ void attention_decode_body(
    const float* __restrict__ q, const bf16_t* __restrict__ kPool, const bf16_t* __restrict__ vPool,
    const int* __restrict__ positions, const int* __restrict__ blockTables, float* __restrict__ out,
    int heads, int kvHeads, int blockSize, int maxBlocks, int window, float scale, int splits, int minShare,
    float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ pacc)
{
    constexpr int CH = DH / 8, KPW = 32 / CH;
    constexpr int U = ATTN_DECODE_UNROLL;
    constexpr int KPI = U * KPW;   // keys per warp iteration
    static_assert(CH * KPW == 32 && KPI <= 32, "key groups must tile the warp");
    __shared__ float sm_m[NW][QM], sm_l[NW][QM];
    __shared__ __align__(16) float sm_acc[NW][QM][DH];
    const float NEG_INF = __int_as_float(0xff800000);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int t = blockIdx.x;
    const int Q = heads / kvHeads, chunks = (Q + QM - 1) / QM;
    const int g = blockIdx.y / chunks, h0 = (blockIdx.y - g * chunks) * QM;
    const int nq = min(QM, Q - h0);
    const long long headBase = (long long)t * heads + g * Q + h0;   // first query head row of this block

    const int kk = lane / CH, c = lane - kk * CH;
    float qr[QM][8];
#pragma unroll
    for (int h = 0; h < QM; ++h) {
        if (h < nq) {
            const float4* src = reinterpret_cast<const float4*>(q + (headBase + h) * DH + 8 * c);
            const float4 a = src[0], b = src[1];
            qr[h][0] = a.x * scale; qr[h][1] = a.y * scale; qr[h][2] = a.z * scale; qr[h][3] = a.w * scale;
            qr[h][4] = b.x * scale; qr[h][5] = b.y * scale; qr[h][6] = b.z * scale; qr[h][7] = b.w * scale;
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) qr[h][e] = 0.0f;
        }
    }
    const int p = positions[t];
    const int first = window > 0 ? max(0, p - window + 1) : 0;
    const int share = max((p - first + splits) / splits, minShare);   // ceil(len / splits), len = p - first + 1
    const int start = first + (int)blockIdx.z * share;
    const int end = min(p, start + share - 1);
    if (start > end) {   // empty split (short context): nothing seen
        if (threadIdx.x < nq) {
            const long long slot = (headBase + threadIdx.x) * splits + blockIdx.z;
            pm[slot] = NEG_INF; pl[slot] = 0.0f;
        }
        return;
    }

    float m[QM], l[QM], acc[QM][8];
#pragma unroll
    for (int h = 0; h < QM; ++h) {
        m[h] = NEG_INF; l[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] = 0.0f;
    }

    const int* table = blockTables + (long long)t * maxBlocks;
    const long long rowStride = (long long)kvHeads * DH;   // elements per pool slot
    const bf16_t* kSrc = kPool + (long long)g * DH + 8 * c;
    const bf16_t* vSrc = vPool + (long long)g * DH + 8 * c;
    const int myKey = lane % KPI;
    int base = start + warp * KPI;
    int slotNext = 0;
    if (base <= end) {
        const int j = min(base + myKey, end), b = j / blockSize;
        slotNext = table[b] * blockSize + (j - b * blockSize);
    }
    for (; base <= end; base += NW * KPI) {
        const int slotCur = slotNext;
        const int nb = base + NW * KPI;
        if (nb <= end) {
            const int j = min(nb + myKey, end), b = j / blockSize;
            slotNext = table[b] * blockSize + (j - b * blockSize);
        }
        uint4 kr[U], vr[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int sl = __shfl_sync(0xffffffffu, slotCur, u * KPW + kk);
            kr[u] = __ldg(reinterpret_cast<const uint4*>(kSrc + (long long)sl * rowStride));
            vr[u] = __ldg(reinterpret_cast<const uint4*>(vSrc + (long long)sl * rowStride));
        }
        float sc[U][QM];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float kf[8];
            unpack8(kr[u], kf);
            const bool valid = base + u * KPW + kk <= end;
#pragma unroll
            for (int h = 0; h < QM; ++h) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; ++e) d = fmaf(qr[h][e], kf[e], d);
#pragma unroll
                for (int o = CH / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                sc[u][h] = valid ? d : NEG_INF;
            }
        }
#pragma unroll
        for (int h = 0; h < QM; ++h) {
            float mx = m[h];
#pragma unroll
            for (int u = 0; u < U; ++u) mx = fmaxf(mx, sc[u][h]);
            const float ms = mx == NEG_INF ? 0.0f : mx;   // all masked so far: keep exp finite
            const float corr = __expf(m[h] - ms);
            float sum = l[h] * corr;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[h][e] *= corr;
#pragma unroll
            for (int u = 0; u < U; ++u) { sc[u][h] = __expf(sc[u][h] - ms); sum += sc[u][h]; }
            m[h] = mx; l[h] = sum;
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float vf[8];
            unpack8(vr[u], vf);
#pragma unroll
            for (int h = 0; h < QM; ++h)
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[h][e] = fmaf(sc[u][h], vf[e], acc[h][e]);
        }
    }
    // Merge the KPW key groups of the warp (lanes c, c + CH, ... hold the same dims).
#pragma unroll
    for (int o = CH; o < 32; o <<= 1) {
#pragma unroll
        for (int h = 0; h < QM; ++h) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[h], o), lo = __shfl_xor_sync(0xffffffffu, l[h], o);
            const float mx = fmaxf(m[h], mo), ms = mx == NEG_INF ? 0.0f : mx;
            const float a = __expf(m[h] - ms), b = __expf(mo - ms);
            l[h] = a * l[h] + b * lo;
            m[h] = mx;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[h][e] = a * acc[h][e] + b * __shfl_xor_sync(0xffffffffu, acc[h][e], o);
        }
    }
    if (lane < CH) {
#pragma unroll
        for (int h = 0; h < QM; ++h) {
            float4* dst = reinterpret_cast<float4*>(&sm_acc[warp][h][8 * lane]);
            dst[0] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
            dst[1] = make_float4(acc[h][4], acc[h][5], acc[h][6], acc[h][7]);
            if (lane == 0) { sm_m[warp][h] = m[h]; sm_l[warp][h] = l[h]; }
        }
    }
    __syncthreads();
    // Merge the warps (one has keys at least, so M is finite); thread → (head, dim).
    for (int i = threadIdx.x; i < nq * DH; i += NW * 32) {
        const int h = i / DH, d = i - h * DH;
        float M = sm_m[0][h];
#pragma unroll
        for (int w = 1; w < NW; ++w) M = fmaxf(M, sm_m[w][h]);
        float num = 0.0f, den = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; ++w) {
            const float a = __expf(sm_m[w][h] - M);   // 0 for a warp without keys (m = −inf)
            den += a * sm_l[w][h];
            num += a * sm_acc[w][h][d];
        }
        if (splits == 1) {
            out[(headBase + h) * DH + d] = num / den;
        } else {
            const long long slot = (headBase + h) * splits + blockIdx.z;
            pacc[slot * DH + d] = num;
            if (d == 0) { pm[slot] = M; pl[slot] = den; }
        }
    }
}

#define ATTN_DECODE(DH, QM) \
    extern "C" __global__ void __launch_bounds__(ATTN_DECODE_WARPS * 32) attention_decode_d##DH##_q##QM( \
        const float* __restrict__ q, const bf16_t* __restrict__ kPool, const bf16_t* __restrict__ vPool, \
        const int* __restrict__ positions, const int* __restrict__ blockTables, float* __restrict__ out, \
        int heads, int kvHeads, int blockSize, int maxBlocks, int window, float scale, int splits, int minShare, \
        float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ pacc) { \
        pdl_prologue(); \
        attention_decode_body<DH, QM, ATTN_DECODE_WARPS>(q, kPool, vPool, positions, blockTables, out, heads, kvHeads, \
            blockSize, maxBlocks, window, scale, splits, minShare, pm, pl, pacc); \
    }
ATTN_DECODE(64, 1)
ATTN_DECODE(64, 2)
ATTN_DECODE(64, 4)
ATTN_DECODE(64, 8)
ATTN_DECODE(128, 1)
ATTN_DECODE(128, 2)
ATTN_DECODE(128, 4)
ATTN_DECODE(128, 8)

// Split merge of attention_decode: out[t, h] = Σ_z w_z · acc_z / Σ_z w_z · l_z, w_z = exp(m_z − M),
// M = max_z m_z. The non-empty splits are a prefix (z · share < len) and have l ≥ 1; the empty
// ones (l = 0, pacc never written) are not read. Grid (T · H), block 256 threads (8 warps): the
// weights are computed once in parallel (block max / sum through shared memory); then warp w
// sums splits w, w + 8, … with lane L holding dims 4L..4L+3 (16-byte loads, several in flight),
// and the 8 warp sums are added through shared memory. Requires splits ≤ 1024, headDim ≤ 128
// and a multiple of 4 (decode head dims 64 / 128).
extern "C" __global__ void __launch_bounds__(256) attention_decode_merge(
    const float* __restrict__ pm, const float* __restrict__ pl, const float* __restrict__ pacc,
    float* __restrict__ out, int headDim, int splits)
{
    pdl_prologue();
    constexpr int MW = 8;   // warps (256 threads, as launched)
    __shared__ float w_s[1024];
    __shared__ __align__(16) float part[MW][128];
    __shared__ float red_m[MW], red_l[MW];
    __shared__ int red_n[MW];
    const long long th = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float mx = __int_as_float(0xff800000);
    int used = 0;
    for (int z = tid; z < splits; z += MW * 32) {
        if (pl[th * splits + z] > 0.0f) { mx = fmaxf(mx, pm[th * splits + z]); used = z + 1; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        used = max(used, __shfl_xor_sync(0xffffffffu, used, o));
    }
    if (lane == 0) { red_m[warp] = mx; red_n[warp] = used; }
    __syncthreads();
    mx = red_m[0]; used = red_n[0];
#pragma unroll
    for (int w = 1; w < MW; ++w) { mx = fmaxf(mx, red_m[w]); used = max(used, red_n[w]); }   // split 0 is never empty
    float den = 0.0f;
    for (int z = tid; z < used; z += MW * 32) {
        const float w = __expf(pm[th * splits + z] - mx);
        w_s[z] = w;
        den += w * pl[th * splits + z];
    }
    den = warp_sum(den);
    if (lane == 0) red_l[warp] = den;
    __syncthreads();
    const int d4 = headDim >> 2;
    if (lane < d4) {
        const float4* acc = reinterpret_cast<const float4*>(pacc + th * splits * headDim) + lane;
        float4 n = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
        for (int z = warp; z < used; z += MW) {
            const float4 a = acc[(long long)z * d4];
            const float w = w_s[z];
            n.x = fmaf(w, a.x, n.x); n.y = fmaf(w, a.y, n.y); n.z = fmaf(w, a.z, n.z); n.w = fmaf(w, a.w, n.w);
        }
        reinterpret_cast<float4*>(part[warp])[lane] = n;
    }
    __syncthreads();
    if (tid < headDim) {
        float total = 0.0f, num = 0.0f;
#pragma unroll
        for (int w = 0; w < MW; ++w) { total += red_l[w]; num += part[w][tid]; }
        out[th * headDim + tid] = num / total;
    }
}
