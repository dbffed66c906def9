// Prefill attention on tensor cores (flash-attention-2 style), same semantics as attention_paged.
//
// Why: attention_paged runs one block per (query token, KV head) in SIMT f32, so a 2048-token
// prompt re-reads every earlier key for every query and runs at a few TFLOP/s. Here a block takes
// BQ = 16·WARPS consecutive query tokens of one sequence for one query head and streams the
// visible keys through shared memory in tiles of BK = 64, so each K/V row fetched from L2 serves
// BQ queries, and both products run as mma.sync m16n8k16 bf16 → f32 (sm_80+; Hopper's wgmma
// would be faster still, not used here). Q and P are rounded to bf16 for the products (K and V
// already are): about 2e-3 normalised error against a float64 reference, 6e-3 with peaky scores.
//
// Grid (H, tiles): blockIdx.x = query head (the H/G heads of one KV group are neighbours, so
// their identical K/V reads hit L2 together), blockIdx.y = query tile, numbered so that y = 0 is
// the last tile of the last sequence: the tiles with the most keys start first (causal load
// balance). tiles = Σ_s ceil(n_s / BQ), computed by the host from queryStart.
//
// Per warp: 16 query rows. Registers hold Q (bf16 A fragments, loaded once), the 16×64 score
// tile S (f32), the 16×Dh output O (f32) and a running max m and partial sum l per row (online
// softmax in base 2: m stays in raw score units, scale·log2 e is folded into one FFMA per score
// before ex2.approx; O is rescaled only when some row's max moved, rare after the first tiles).
// Fragment layout (PTX ISA, m16n8k16): g = lane>>2, tig = lane&3; A a0 (row g, k 2tig..+1),
// a1 (row g+8, same k), a2 (row g, k 2tig+8..), a3 (row g+8, k 2tig+8..); B b0 (k 2tig..+1,
// col g), b1 (k 2tig+8.., col g); C c0,c1 (row g, cols 2tig,+1), c2,c3 (row g+8, same cols).
//   S = Q·Kᵀ: B fragments of K come from ldmatrix (K tile row-major [key][dim] is exactly the
//   "col" layout: k = dim contiguous). P·V: the C fragments of S, rounded to bf16, are already
//   the A fragments of P (c of n-tiles 2k, 2k+1 = a of k-step k); V's B fragments need k = key
//   contiguous, which ldmatrix.trans produces from the same row-major [key][dim] tile.
// Shared memory: K and V tiles, double-buffered (cp.async for tile i+1 overlaps the mma work of
// tile i), rows padded by 8 bf16 (16 bytes) so the 8 rows of one ldmatrix 8×8 matrix fall in
// distinct banks. 2 · 2 · 64 · (Dh+8) · 2 bytes = 69632 bytes for Dh = 128, 36864 for Dh = 64.
//
// Key range: the block loads keys max(0, pmin − W + 1) .. pmax (pmin/pmax over its rows); a warp
// skips a tile that none of its rows sees, and masks (−inf) only tiles that straddle a row's
// causal or window edge. Keys past pmax in the last tile are loaded as copies of key pmax (no
// out-of-range reads, finite values) and masked. Rows past the sequence's end repeat its last
// row and are not stored. Every row sees at least its own key, so l > 0 at the end.
// Requires sm_80+ (the body compiles empty below that; the host only launches it on sm_80+),
// Dh ∈ {64, 128} (template), 16-byte aligned pool rows (Dh multiple of 8).
// (Legend and the general kernel, attention_paged: attention.cu.)
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define ATTN_PREFILL_MMA 1
#endif

// Two floats → packed bf16x2 (lo in the low half: the lower k / column index), round to nearest.
__device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi) {
    unsigned r;
#ifdef ATTN_PREFILL_MMA
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    r = (unsigned)f32_to_bf16(lo) | ((unsigned)f32_to_bf16(hi) << 16);
#endif
    return r;
}

__device__ __forceinline__ float fast_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

#ifdef ATTN_PREFILL_MMA
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}

#endif

#define PF_BK 64   // keys per shared-memory tile

// Shared-memory staging of K/V tiles. Thread layout of one tile copy: CH = Dh/8 16-byte chunks
// per key row; thread tid copies chunk part = tid % CH of keys tid / CH + i·(NT/CH), i < PER, so
// consecutive lanes read consecutive 16 bytes of one row (full 32-byte sectors) and each thread
// always copies the same column `part`. The pool slot of a key (block table lookup, an integer
// division and a dependent global load) is computed once per key, not once per chunk: lane
// L < KPW of each warp owns key warp·KPL + L % KPL + (L / KPL)·(NT/CH) (exactly the keys its
// warp copies) and the copying lanes fetch it with a shuffle. The lookup for tile i+2 is issued
// while tile i is computed, so its latency is hidden (see the main loop).
template <int DH, int NT>
struct PrefillLoader {
    static constexpr int CH = DH / 8, KPL = 32 / CH, PER = PF_BK * CH / NT;
    static constexpr unsigned ROW_BYTES = (DH + 8) * 2, STEP_BYTES = (NT / CH) * ROW_BYTES;
    static_assert(PF_BK * CH % NT == 0 && NT % CH == 0 && CH <= 32, "tile chunks must divide over the threads");
    int myKey;              // key offset in the tile whose slot this lane looks up
    unsigned soBase;        // this thread's first chunk, bytes into a buffer
    const bf16_t* kSrc;     // pool + head offset + chunk column
    const bf16_t* vSrc;
    unsigned rowBytes;      // bytes per pool slot (G·Dh·2)
    int srcLane;            // lane holding the slot of this thread's key in chunk 0

    __device__ __forceinline__ PrefillLoader(const bf16_t* kPool, const bf16_t* vPool, int kvHead, int kvHeads) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = lane % CH;
        myKey = warp * KPL + lane % KPL + (lane / KPL) * (NT / CH);
        soBase = (unsigned)((warp * KPL + lane / CH) * ROW_BYTES + part * 16);
        rowBytes = (unsigned)(kvHeads * DH * 2);
        kSrc = kPool + (long long)kvHead * DH + part * 8;
        vSrc = vPool + (long long)kvHead * DH + part * 8;
        srcLane = lane / CH;
    }
    // Slot of key min(j0 + myKey, kLast) of the sequence whose block table is `table`.
    __device__ __forceinline__ void lookup(const int* table, int j0, int kLast, int blockSize, int& blk, int& off) const {
        const int j = min(j0 + myKey, kLast);
        const int b = j / blockSize;
        blk = table[b];
        off = j - b * blockSize;
    }
    // Queues the copies of one tile (cp.async) into the buffers at kDst / vDst.
    __device__ __forceinline__ void issue(unsigned kDst, unsigned vDst, int blk, int off, int blockSize) const {
#ifdef ATTN_PREFILL_MMA
        const int slot = blk * blockSize + off;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const int si = __shfl_sync(0xffffffffu, slot, i * KPL + srcLane);
            // One 32×32→64-bit multiply-add per pointer (slot ≥ 0, the product is the byte offset).
            const unsigned long long e = (unsigned long long)(unsigned)si * rowBytes;
            cp_async16(kDst + soBase + i * STEP_BYTES, reinterpret_cast<const char*>(kSrc) + e, 16);
            cp_async16(vDst + soBase + i * STEP_BYTES, reinterpret_cast<const char*>(vSrc) + e, 16);
        }
#endif
    }
};

template <int DH, int WARPS>
__device__ __forceinline__ void attention_prefill_body(
    const float* __restrict__ q, const bf16_t* __restrict__ kPool, const bf16_t* __restrict__ vPool,
    const int* __restrict__ queryStart, const int* __restrict__ positions, const int* __restrict__ blockTables,
    float* __restrict__ out, int sequences, int heads, int kvHeads, int blockSize, int maxBlocks, int window,
    float scale)
{
#ifdef ATTN_PREFILL_MMA
    constexpr int NT = WARPS * 32, BQ = 16 * WARPS, LD = DH + 8;   // LD: padded smem row (bf16)
    constexpr int KSTEPS = DH / 16, NTILES_O = DH / 8;
    extern __shared__ __align__(16) unsigned char prefill_smem[];
    bf16_t* kBuf = reinterpret_cast<bf16_t*>(prefill_smem);         // [2][BK][LD]
    bf16_t* vBuf = kBuf + 2 * PF_BK * LD;                           // [2][BK][LD]
    __shared__ int rangeLo, rangeHi;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tig = lane & 3;
    const int h = blockIdx.x, kvh = h / (heads / kvHeads);

    // Tile number (y = 0 → the last tile of the last sequence) → (sequence s, first row t0).
    int idx = (int)gridDim.y - 1 - (int)blockIdx.y, s = 0;
    for (; s < sequences; ++s) {
        const int tiles = (queryStart[s + 1] - queryStart[s] + BQ - 1) / BQ;
        if (idx < tiles) break;
        idx -= tiles;
    }
    if (s >= sequences) return;   // more blocks than tiles (host miscounted): nothing to do
    const int seqBegin = queryStart[s], seqEnd = queryStart[s + 1];
    const int t0 = seqBegin + idx * BQ;

    // This thread's two rows (g and g+8 of its warp's 16), clamped to the sequence's last token.
    const int rowA = t0 + warp * 16 + g, rowB = rowA + 8;
    const int tA = min(rowA, seqEnd - 1), tB = min(rowB, seqEnd - 1);
    const int pA = positions[tA], pB = positions[tB];

    if (tid == 0) { rangeLo = 0x7fffffff; rangeHi = -1; }
    __syncthreads();
    // Warp range of positions, then the block's, through shared atomics.
    int wLo = min(pA, pB), wHi = max(pA, pB);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        wLo = min(wLo, __shfl_xor_sync(0xffffffffu, wLo, o));
        wHi = max(wHi, __shfl_xor_sync(0xffffffffu, wHi, o));
    }
    if (lane == 0) { atomicMin(&rangeLo, wLo); atomicMax(&rangeHi, wHi); }

    // Q fragments (bf16), one A fragment per 16-wide k-step of the head dim.
    unsigned qa[KSTEPS][4];
    {
        const float* qA = q + ((long long)tA * heads + h) * DH + 2 * tig;
        const float* qB = q + ((long long)tB * heads + h) * DH + 2 * tig;
#pragma unroll
        for (int k = 0; k < KSTEPS; ++k) {
            const float2 a0 = *reinterpret_cast<const float2*>(qA + 16 * k);
            const float2 a1 = *reinterpret_cast<const float2*>(qB + 16 * k);
            const float2 a2 = *reinterpret_cast<const float2*>(qA + 16 * k + 8);
            const float2 a3 = *reinterpret_cast<const float2*>(qB + 16 * k + 8);
            qa[k][0] = pack_bf16x2(a0.x, a0.y);
            qa[k][1] = pack_bf16x2(a1.x, a1.y);
            qa[k][2] = pack_bf16x2(a2.x, a2.y);
            qa[k][3] = pack_bf16x2(a3.x, a3.y);
        }
    }
    __syncthreads();
    const int pLo = rangeLo, pHi = rangeHi;
    const int kFirst = window > 0 ? max(0, pLo - window + 1) : 0, kLast = pHi;
    const int nTiles = (kLast - kFirst) / PF_BK + 1;

    const int* table = blockTables + (long long)s * maxBlocks;
    const unsigned kBase = smem_u32(kBuf), vBase = smem_u32(vBuf);
    constexpr unsigned BUF_BYTES = PF_BK * LD * 2;
    const PrefillLoader<DH, NT> loader(kPool, vPool, kvh, kvHeads);

    float o[NTILES_O][4];
#pragma unroll
    for (int n = 0; n < NTILES_O; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    const float NEG_INF = __int_as_float(0xff800000);
    // Running max m (in raw score units) and partial sum l of this thread's two rows.
    float mA = NEG_INF, mB = NEG_INF, lA = 0.0f, lB = 0.0f;
    const float scaleLog2 = scale * 1.4426950408889634f;   // exp(x·scale) = 2^(x·scale·log2 e)

    // ldmatrix lane addresses (bytes within a buffer), see the fragment notes above.
    //   K (non-trans): matrix mi = lane>>3 covers keys (mi>>1)*8.., dims (mi&1)*8.. of a 16×16 block.
    //   V (trans):     matrix mi covers keys (mi&1)*8.., dims (mi>>1)*8.. of a 16×16 block.
    const unsigned kLane = (unsigned)((((lane >> 4) << 3) + (lane & 7)) * LD + ((lane >> 3) & 1) * 8) * 2;
    const unsigned vLane = (unsigned)(((((lane >> 3) & 1) << 3) + (lane & 7)) * LD + (lane >> 4) * 8) * 2;

    // Pipeline: tile 0 is copied before the loop; iteration i queues the copy of tile i+1 (slots
    // looked up during iteration i-1) and the slot lookup of tile i+2, then computes tile i.
    int blk, off;
    loader.lookup(table, kFirst, kLast, blockSize, blk, off);
    loader.issue(kBase, vBase, blk, off, blockSize);
    cp_async_commit();
    if (nTiles > 1) loader.lookup(table, kFirst + PF_BK, kLast, blockSize, blk, off);

    for (int it = 0; it < nTiles; ++it) {
        const int j0 = kFirst + it * PF_BK;
        if (it + 1 < nTiles) {
            const unsigned nb = ((it + 1) & 1) * BUF_BYTES;
            loader.issue(kBase + nb, vBase + nb, blk, off, blockSize);
            cp_async_commit();
            if (it + 2 < nTiles) loader.lookup(table, j0 + 2 * PF_BK, kLast, blockSize, blk, off);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const unsigned kb = kBase + (it & 1) * BUF_BYTES, vb = vBase + (it & 1) * BUF_BYTES;

        // Does this warp see any key of the tile, and is any key hidden from one of its rows?
        const bool any = j0 <= wHi && (window <= 0 || j0 + PF_BK - 1 > wLo - window);
        if (any) {
            const bool needMask = j0 + PF_BK - 1 > wLo || (window > 0 && j0 <= wHi - window);
            float sc[PF_BK / 8][4];
#pragma unroll
            for (int n = 0; n < PF_BK / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
            for (int k = 0; k < KSTEPS; ++k) {
#pragma unroll
                for (int np = 0; np < PF_BK / 16; ++np) {
                    unsigned b0, b1, b2, b3;
                    ldmatrix_x4(kb + kLane + (unsigned)((np * 16 * LD + k * 16) * 2), b0, b1, b2, b3);
                    mma_bf16(sc[2 * np], qa[k], b0, b1);
                    mma_bf16(sc[2 * np + 1], qa[k], b2, b3);
                }
            }
            // Mask, row max (a row's 64 scores are spread over the 4 lanes of a quad). Scores stay
            // unscaled here; the scale is folded into the exponent below (scale > 0 keeps the order).
            float mxA = NEG_INF, mxB = NEG_INF;
#pragma unroll
            for (int n = 0; n < PF_BK / 8; ++n) {
                if (needMask) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int key = j0 + n * 8 + 2 * tig + (e & 1);
                        const int p = e < 2 ? pA : pB;
                        if (key > p || (window > 0 && key <= p - window)) sc[n][e] = NEG_INF;
                    }
                }
                mxA = fmaxf(mxA, fmaxf(sc[n][0], sc[n][1]));
                mxB = fmaxf(mxB, fmaxf(sc[n][2], sc[n][3]));
            }
            mxA = fmaxf(mxA, __shfl_xor_sync(0xffffffffu, mxA, 1));
            mxA = fmaxf(mxA, __shfl_xor_sync(0xffffffffu, mxA, 2));
            mxB = fmaxf(mxB, __shfl_xor_sync(0xffffffffu, mxB, 1));
            mxB = fmaxf(mxB, __shfl_xor_sync(0xffffffffu, mxB, 2));
            const float newA = fmaxf(mA, mxA), newB = fmaxf(mB, mxB);
            // A row that has seen no key yet keeps m = −inf; subtract 0 then so exp2 gives 0, not NaN.
            const float useA = newA == NEG_INF ? 0.0f : newA, useB = newB == NEG_INF ? 0.0f : newB;
            const float corrA = fast_exp2((mA - useA) * scaleLog2), corrB = fast_exp2((mB - useB) * scaleLog2);
            const float biasA = -useA * scaleLog2, biasB = -useB * scaleLog2;
            mA = newA; mB = newB;
            float sumA = 0.0f, sumB = 0.0f;
            unsigned pa[PF_BK / 16][4];
#pragma unroll
            for (int n = 0; n < PF_BK / 8; ++n) {
                const float e0 = fast_exp2(fmaf(sc[n][0], scaleLog2, biasA)), e1 = fast_exp2(fmaf(sc[n][1], scaleLog2, biasA));
                const float e2 = fast_exp2(fmaf(sc[n][2], scaleLog2, biasB)), e3 = fast_exp2(fmaf(sc[n][3], scaleLog2, biasB));
                sumA += e0 + e1; sumB += e2 + e3;
                pa[n >> 1][(n & 1) * 2 + 0] = pack_bf16x2(e0, e1);
                pa[n >> 1][(n & 1) * 2 + 1] = pack_bf16x2(e2, e3);
            }
            lA = lA * corrA + sumA; lB = lB * corrB + sumB;
            // Rescale O only when some row's max moved (after the first tiles it rarely does).
            if (__any_sync(0xffffffffu, corrA != 1.0f || corrB != 1.0f)) {
#pragma unroll
                for (int n = 0; n < NTILES_O; ++n) { o[n][0] *= corrA; o[n][1] *= corrA; o[n][2] *= corrB; o[n][3] *= corrB; }
            }
            // O += P·V over the tile's 4 k-steps of 16 keys.
#pragma unroll
            for (int k = 0; k < PF_BK / 16; ++k) {
#pragma unroll
                for (int dp = 0; dp < DH / 16; ++dp) {
                    unsigned b0, b1, b2, b3;
                    ldmatrix_x4_trans(vb + vLane + (unsigned)((k * 16 * LD + dp * 16) * 2), b0, b1, b2, b3);
                    mma_bf16(o[2 * dp], pa[k], b0, b1);
                    mma_bf16(o[2 * dp + 1], pa[k], b2, b3);
                }
            }
        }
        __syncthreads();   // everyone is done with this buffer before the next prefetch overwrites it
    }

    // Row sums over the quad, normalise, store (rows past the sequence's end are duplicates).
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float invA = 1.0f / lA, invB = 1.0f / lB;
    if (rowA < seqEnd) {
        float* dst = out + ((long long)rowA * heads + h) * DH + 2 * tig;
#pragma unroll
        for (int n = 0; n < NTILES_O; ++n)
            *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[n][0] * invA, o[n][1] * invA);
    }
    if (rowB < seqEnd) {
        float* dst = out + ((long long)rowB * heads + h) * DH + 2 * tig;
#pragma unroll
        for (int n = 0; n < NTILES_O; ++n)
            *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[n][2] * invB, o[n][3] * invB);
    }
#endif
}

// Exported as attention_prefill_d<Dh>: 4 warps (BQ = 64 query rows) per block, block = 128
// threads, shared = 4 · 64 · (Dh + 8) · 2 bytes (dynamic), grid (H, Σ_s ceil(n_s / 64)).
// MINB = blocks per SM asked of the register allocator. Measured on an H100 (docs/gpu-notes.md):
// Dh 128: 2 blocks (217 registers) beat 3 blocks (168 registers: the tighter allocation stalls on
// ldmatrix → mma dependencies) and 8-warp blocks of 128 rows; Dh 64: 4 blocks (128 registers)
// beat 2. Both reach 8–16 warps per SM, enough to keep the mma pipe about a third busy.
#define ATTN_PREFILL(DH, WARPS, MINB)                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * WARPS, MINB) attention_prefill_d##DH(                 \
        const float* q, const bf16_t* kPool, const bf16_t* vPool, const int* queryStart, const int* positions, \
        const int* blockTables, float* out, int sequences, int heads, int kvHeads, int blockSize,             \
        int maxBlocks, int window, float scale) {                                                             \
        attention_prefill_body<DH, WARPS>(q, kPool, vPool, queryStart, positions, blockTables, out, sequences, \
                                          heads, kvHeads, blockSize, maxBlocks, window, scale);               \
    }
ATTN_PREFILL(64, 4, 4)
ATTN_PREFILL(128, 4, 2)
