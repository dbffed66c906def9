// The `sample` op (ComputeBackend.sample, whose doc comment is the contract; the reference is
// Tensors/RowSampler.swift): one block of SAMPLE_THREADS threads per logits row. Nothing here
// depends on host-side values but the launch arguments, so a recorded decode step includes it.
//
// Legend: V vocabulary, R rows, k top-k, N top log-probabilities asked for (≤ SAMPLE_MAX_TOP),
// G tokens gathered into shared memory (≤ GATHER_CAP).
//
// Per row, in the contract's order:
//   1. raw pass over z: NaN check and maximum (each thread keeps its own maximum too: see 4a);
//      logsumexp when logprobs ≥ 0.
//   2. penalties: when the row has (token, count) pairs, w = a copy of z in the row's scratch
//      with them applied, then max w; otherwise w is z itself.
//   3. temperature 0: argmax w, ties → lowest id.
//   4. otherwise the candidates are w ≥ cut (min-p as a threshold on w), then top-k, top-p, draw:
//   4a. top-k ≤ GATHER_MAX_K (the usual case, e.g. 40): the k-th largest of the threads' own
//       maxima is a lower bound for the k-th largest w (k threads hold a value at least that
//       large), so the top-k are among the few tokens at or above it. Those are gathered into
//       shared memory and sorted there by (w desc, id asc); top-p is then a scan over that
//       order, and the draw a scan over the kept tokens in id order. Two passes over the row.
//   4b. otherwise (top-k off or large, or more than GATHER_CAP tokens at the bound, e.g. many
//       ties): thresholds from radix selects over the order-preserving bits of w: the k-th
//       largest (ties at it: the lowest ids), and for top-p a select whose bins weigh mass
//       exp((w − wMax)/T) instead of counts, over the top-k set. The draw walks the kept set in
//       id order: each warp owns a contiguous id range read 32 consecutive ids at a time, the
//       warps' kept mass is added up in order, and the warp whose range holds u·total walks it.
//   5. the top-N raw logits, as 4a over z (4b's select when the gather overflows).
// Sums of mass are in f64 as in the reference (per-thread partial sums of the radix bins in f32);
// they differ from its sequential sums in the order of the additions only, so a token can differ
// only where the draw or the top-p target sits at a boundary.
#include "common.cuh"

#ifndef SAMPLE_THREADS
#define SAMPLE_THREADS 1024
#endif
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define SAMPLE_MAX_TOP 64
#define GATHER_MAX_K SAMPLE_THREADS     // one gathered candidate per thread in the draw
#define GATHER_CAP 2048
#define RADIX_BITS 4
// Lab switch (on in the program): the gathered paths of 4a and 5; off, every row takes 4b, so a
// lab can check the radix path on every case.
#ifndef SAMPLE_GATHER
#define SAMPLE_GATHER 1
#endif
#define RADIX_BINS 16

// Columns of a row's parameters: Tensors.SamplingColumn, in its order.
#define COL_TEMPERATURE 0
#define COL_TOP_K 1
#define COL_TOP_P 2
#define COL_MIN_P 3
#define COL_REPETITION 4
#define COL_PRESENCE 5
#define COL_FREQUENCY 6
#define COL_UNIFORM 7

#define FULL_MASK 0xffffffffu
#define NO_LIMIT 0x7fffffff

typedef unsigned long long u64;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ bool is_finite(float x) { return x == x && x > neg_inf() && x < __int_as_float(0x7f800000); }

// Float bits → an unsigned key with the same order (larger float, larger key; every non-NaN
// float maps above 0). −0 becomes +0 first: the reference compares floats, and −0 == +0 ties.
__device__ __forceinline__ unsigned order_key(float x) {
    if (x == 0.0f) x = 0.0f;
    unsigned u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_value(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Ascending order of these is (w desc, id asc): the order top-k and top-p rank tokens in.
__device__ __forceinline__ u64 rank_key(unsigned key, int id) { return ((u64)(~key) << 32) | (unsigned)id; }
__device__ __forceinline__ int rank_id(u64 r) { return (int)(unsigned)(r & 0xffffffffu); }
__device__ __forceinline__ unsigned rank_order_key(u64 r) { return ~(unsigned)(r >> 32); }

struct SampleShared {
    union {
        u64 gathered[GATHER_CAP];                       // 4a/5: rank keys, sorted in place
        struct { double mass[GATHER_MAX_K]; int id[GATHER_MAX_K]; } byID;   // 4a: kept tokens in id order
    } g;
    double inclusive[SAMPLE_THREADS];                   // block scans: each thread's inclusive sum
    int binCount[SAMPLE_WARPS][RADIX_BINS];
    double binMass[SAMPLE_WARPS][RADIX_BINS];
    int countTotal[RADIX_BINS];
    double massTotal[RADIX_BINS];
    double warpD[SAMPLE_WARPS];
    float warpF[SAMPLE_WARPS];
    int warpI[SAMPLE_WARPS];
    int gatheredCount;
    int result;
    double resultStart;
    // Radix select state, kept by thread 0 between passes.
    unsigned selPrefix;
    int selCountAbove, selTies, selFound;
    double selMassAbove, selTarget;
};

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ float block_max(float v, SampleShared& s) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) s.warpF[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < SAMPLE_WARPS ? s.warpF[threadIdx.x & 31] : neg_inf();
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

__device__ double block_sum_d(double v, SampleShared& s) {
    v = warp_sum_d(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) s.warpD[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < SAMPLE_WARPS ? s.warpD[threadIdx.x & 31] : 0.0;
    return warp_sum_d(v);
}

// Largest value, ties → lowest id, over the block.
__device__ void block_argmax(float& v, int& id, SampleShared& s) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(FULL_MASK, v, o);
        int oid = __shfl_xor_sync(FULL_MASK, id, o);
        if (ov > v || (ov == v && oid < id)) { v = ov; id = oid; }
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) { s.warpF[threadIdx.x >> 5] = v; s.warpI[threadIdx.x >> 5] = id; }
    __syncthreads();
    int lane = threadIdx.x & 31;
    v = lane < SAMPLE_WARPS ? s.warpF[lane] : neg_inf();
    id = lane < SAMPLE_WARPS ? s.warpI[lane] : NO_LIMIT;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(FULL_MASK, v, o);
        int oid = __shfl_xor_sync(FULL_MASK, id, o);
        if (ov > v || (ov == v && oid < id)) { v = ov; id = oid; }
    }
}

// Inclusive scan of one value per thread into s.inclusive (thread t: the sum over threads 0...t).
// The warp prefixes are added up by one thread in order, so thread t's inclusive sum is
// bitwise the value thread t+1 reads as its start: the threads' ranges tile [0, total).
__device__ void block_scan_d(double v, SampleShared& s) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        double y = __shfl_up_sync(FULL_MASK, v, o);
        if (lane >= o) v += y;
    }
    __syncthreads();
    if (lane == 31) s.warpD[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double acc = 0;
        for (int w = 0; w < SAMPLE_WARPS; w++) { double t = s.warpD[w]; s.warpD[w] = acc; acc += t; }
    }
    __syncthreads();
    s.inclusive[threadIdx.x] = s.warpD[warp] + v;
    __syncthreads();
}

// Sorts a[0..n) ascending; n a power of two ≤ 2·SAMPLE_THREADS. Bitonic: log n·(log n + 1)/2
// compare-exchange rounds, one pair per thread each.
__device__ void bitonic_sort(u64* a, int n) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int q = threadIdx.x; q < n / 2; q += SAMPLE_THREADS) {
                int i = 2 * stride * (q / stride) + (q % stride), j = i + stride;
                bool up = (i & size) == 0;
                u64 x = a[i], y = a[j];
                if ((x > y) == up) { a[i] = y; a[j] = x; }
            }
        }
    }
    __syncthreads();
}

// Which tokens are still in: w ≥ cut (min-p), then within the top-k and top-p thresholds
// (value above the threshold key, or equal to it with an id up to the last tie kept).
struct Kept {
    float cut;
    unsigned kKey, pKey;
    int kLastTie, pLastTie;
    __device__ __forceinline__ bool operator()(int i, float x) const {
        if (!(x >= cut)) return false;
        unsigned key = order_key(x);
        if (key < kKey || (key == kKey && i > kLastTie)) return false;
        if (key < pKey || (key == pKey && i > pLastTie)) return false;
        return true;
    }
};

// Elements of `inner` whose key equals `key`.
template <class Pred>
struct TiesAt {
    Pred inner;
    unsigned key;
    __device__ __forceinline__ bool operator()(int i, float x) const { return inner(i, x) && order_key(x) == key; }
};

struct Everything {
    __device__ __forceinline__ bool operator()(int, float) const { return true; }
};

// The k largest (rank order) of the elements with pred(i, x), sorted into s.g.gathered[0..count),
// count = min(k, how many there are); −1 when more than GATHER_CAP lie at or above the bound
// (the caller then takes the radix path). `threadMax` is this thread's largest key over its
// strided elements i ≡ threadIdx.x (mod SAMPLE_THREADS), or 0 when it has none; pred must keep
// every element above any value it keeps (a threshold), so the bound argument holds for it.
template <class Pred>
__device__ int gather_top(const float* w, int V, const Pred& pred, int k, unsigned threadMax, SampleShared& s) {
    // The bound: the k-th largest of the threads' maxima (k ≤ SAMPLE_THREADS).
    s.g.gathered[threadIdx.x] = rank_key(threadMax, threadIdx.x);
    bitonic_sort(s.g.gathered, SAMPLE_THREADS);
    const unsigned bound = rank_order_key(s.g.gathered[k - 1]);
    if (threadIdx.x == 0) s.gatheredCount = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
        float x = w[i];
        unsigned key = order_key(x);
        if (key >= bound && pred(i, x)) {
            int slot = atomicAdd(&s.gatheredCount, 1);
            if (slot < GATHER_CAP) s.g.gathered[slot] = rank_key(key, i);
        }
    }
    __syncthreads();
    const int count = s.gatheredCount;
    if (count > GATHER_CAP) return -1;
    int n = 2;
    while (n < count) n <<= 1;
    for (int j = count + threadIdx.x; j < n; j += SAMPLE_THREADS) s.g.gathered[j] = ~0ull;
    bitonic_sort(s.g.gathered, n);
    return min(count, k);
}

struct Selection {
    unsigned key;       // the threshold
    int countAbove;     // elements with a larger key
    double massAbove;   // their mass (MASS selects)
    int ties;           // elements with key == threshold
    bool found;         // false: the elements' total weight never reaches the target
};

// Among elements with pred(i, x), the one at which the running weight in (value desc, id asc)
// order first reaches the target: weight 1 each (MASS false, target = k: the k-th largest), or
// mass exp((x − wMax)·invT) (MASS true, target = fraction × the total mass). Eight passes of
// 4 bits over the keys, each a 16-bin histogram of the elements that share the prefix so far;
// bins are per-thread registers summed over the block (no shared-memory atomics, which would
// all hit the one or two bins that logits of similar size share).
template <bool MASS, class Pred>
__device__ Selection radix_select(const float* w, int V, const Pred& pred, double target, double fraction,
                                  float wMax, float invT, SampleShared& s) {
    if (threadIdx.x == 0) {
        s.selPrefix = 0; s.selCountAbove = 0; s.selMassAbove = 0; s.selFound = 1; s.selTarget = target; s.selTies = 0;
    }
    __syncthreads();
    unsigned mask = 0;
    for (int shift = 32 - RADIX_BITS; shift >= 0; shift -= RADIX_BITS) {
        unsigned prefix = s.selPrefix;
        int c[RADIX_BINS];
        float m[RADIX_BINS];
#pragma unroll
        for (int b = 0; b < RADIX_BINS; b++) { c[b] = 0; m[b] = 0.0f; }
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
            float x = w[i];
            if (!pred(i, x)) continue;
            unsigned key = order_key(x);
            if ((key & mask) != prefix) continue;
            unsigned d = (key >> shift) & (RADIX_BINS - 1);
            float mi = MASS ? expf((x - wMax) * invT) : 0.0f;
#pragma unroll
            for (int b = 0; b < RADIX_BINS; b++) {
                c[b] += d == (unsigned)b ? 1 : 0;
                if (MASS) m[b] += d == (unsigned)b ? mi : 0.0f;
            }
        }
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
        for (int b = 0; b < RADIX_BINS; b++) {
            int cs = c[b];
            for (int o = 16; o > 0; o >>= 1) cs += __shfl_xor_sync(FULL_MASK, cs, o);
            double ms = MASS ? warp_sum_d((double)m[b]) : 0.0;
            if (lane == 0) { s.binCount[warp][b] = cs; s.binMass[warp][b] = ms; }
        }
        __syncthreads();
        if (threadIdx.x < RADIX_BINS) {
            int ct = 0;
            double mt = 0;
            for (int v = 0; v < SAMPLE_WARPS; v++) { ct += s.binCount[v][threadIdx.x]; mt += s.binMass[v][threadIdx.x]; }
            s.countTotal[threadIdx.x] = ct;
            s.massTotal[threadIdx.x] = mt;
        }
        __syncthreads();
        if (threadIdx.x == 0 && s.selFound) {
            if (MASS && shift == 32 - RADIX_BITS) {
                double total = 0;
                for (int b = 0; b < RADIX_BINS; b++) total += s.massTotal[b];
                s.selTarget = fraction * total;
            }
            double above = MASS ? s.selMassAbove : (double)s.selCountAbove;
            int chosen = -1, lowest = -1;
            for (int b = RADIX_BINS - 1; b >= 0; b--) {
                if (s.countTotal[b] == 0) continue;
                lowest = b;
                double wb = MASS ? s.massTotal[b] : (double)s.countTotal[b];
                if (above + wb >= s.selTarget) { chosen = b; break; }
                above += wb;
            }
            if (chosen < 0 && shift == 32 - RADIX_BITS) {
                s.selFound = 0;          // the whole set weighs less than the target
            } else {
                // Past the first pass the sub-bins of the bin chosen before can add up to a hair
                // less than it did (another order of additions): take the last one then.
                if (chosen < 0) chosen = lowest;
                for (int b = RADIX_BINS - 1; b > chosen; b--) {
                    s.selCountAbove += s.countTotal[b];
                    s.selMassAbove += s.massTotal[b];
                }
                s.selPrefix = prefix | ((unsigned)chosen << shift);
                s.selTies = s.countTotal[chosen];
            }
        }
        __syncthreads();
        if (!s.selFound) break;
        mask |= (unsigned)(RADIX_BINS - 1) << shift;
    }
    Selection r;
    r.key = s.selPrefix;
    r.countAbove = s.selCountAbove;
    r.massAbove = s.selMassAbove;
    r.ties = s.selTies;
    r.found = s.selFound != 0;
    __syncthreads();
    return r;
}

// Each warp's contiguous id range [lo, hi), a multiple of 32 long: the id-order walks read it
// 32 consecutive ids (one per lane) at a time.
__device__ __forceinline__ void warp_range(int V, int& lo, int& hi) {
    int span = ((V + SAMPLE_WARPS - 1) / SAMPLE_WARPS + 31) / 32 * 32;
    lo = min(V, (int)(threadIdx.x >> 5) * span);
    hi = min(V, lo + span);
}

// The id of the m-th (1-based) element in id order with pred(i, x); NO_LIMIT when there are
// fewer than m.
template <class Pred>
__device__ int nth_in_id_order(const float* w, int V, const Pred& pred, int m, SampleShared& s) {
    int lo, hi;
    warp_range(V, lo, hi);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int count = 0;
    for (int base = lo; base < hi; base += 32) {
        int i = base + lane;
        count += __popc(__ballot_sync(FULL_MASK, i < hi && pred(i, w[i])));
    }
    __syncthreads();
    if (lane == 0) s.warpI[warp] = count;
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0;
        s.result = -1;
        for (int v = 0; v < SAMPLE_WARPS; v++) {
            if (acc + s.warpI[v] >= m) { s.result = v; break; }
            acc += s.warpI[v];
        }
        s.resultStart = acc;
    }
    __syncthreads();
    const int owner = s.result;
    int found = NO_LIMIT;
    if (owner == warp) {
        int acc = (int)s.resultStart;
        for (int base = lo; base < hi; base += 32) {
            int i = base + lane;
            unsigned bits = __ballot_sync(FULL_MASK, i < hi && pred(i, w[i]));
            int c = __popc(bits);
            if (acc + c >= m) {
                for (int b = 0; b < 32; b++) {
                    if (((bits >> b) & 1u) && ++acc == m) { found = base + b; break; }
                }
                break;
            }
            acc += c;
        }
    }
    __syncthreads();
    if (owner == warp && lane == 0) s.result = found;
    if (owner < 0 && threadIdx.x == 0) s.result = NO_LIMIT;
    __syncthreads();
    int r = s.result;
    __syncthreads();
    return r;
}

// The last tie to keep when `keep` of the `ties` elements at `key` are kept (lowest ids first).
template <class Pred>
__device__ int last_tie(const float* w, int V, const Pred& pred, unsigned key, int keep, int ties, SampleShared& s) {
    if (keep >= ties) return NO_LIMIT;
    TiesAt<Pred> at{pred, key};
    return nth_in_id_order(w, V, at, keep, s);
}

// The draw over every kept token (4b): the first kept id, ascending, at which the running mass
// exceeds u · total; the last kept id if rounding leaves u · total at or past the total.
__device__ int draw_in_id_order(const float* w, int V, const Kept& kept, float wMax, float invT, double u, SampleShared& s) {
    int lo, hi;
    warp_range(V, lo, hi);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double mine = 0.0;
    int last = -1;
    for (int i = lo + lane; i < hi; i += 32) {
        float x = w[i];
        if (kept(i, x)) { mine += (double)expf((x - wMax) * invT); last = i; }
    }
    mine = warp_sum_d(mine);
    for (int o = 16; o > 0; o >>= 1) last = max(last, __shfl_xor_sync(FULL_MASK, last, o));
    __syncthreads();
    if (lane == 0) { s.warpD[warp] = mine; s.warpI[warp] = last; }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0;
        int lastKept = -1;
        for (int v = 0; v < SAMPLE_WARPS; v++) { total += s.warpD[v]; lastKept = max(lastKept, s.warpI[v]); }
        const double target = u * total;
        double acc = 0;
        s.result = -1;
        for (int v = 0; v < SAMPLE_WARPS; v++) {
            if (acc <= target && target < acc + s.warpD[v]) { s.result = v; break; }
            acc += s.warpD[v];
        }
        s.resultStart = acc;
        s.inclusive[0] = target;
        s.gatheredCount = lastKept;   // reused as a broadcast slot
    }
    __syncthreads();
    const int owner = s.result;
    const double target = s.inclusive[0];
    int chosen = -1;
    if (owner == warp) {
        double acc = s.resultStart;
        chosen = s.warpI[warp];
        for (int base = lo; base < hi; base += 32) {
            int i = base + lane;
            double m = 0.0;
            if (i < hi) { float x = w[i]; if (kept(i, x)) m = (double)expf((x - wMax) * invT); }
            double incl = m;
            for (int o = 1; o < 32; o <<= 1) {
                double y = __shfl_up_sync(FULL_MASK, incl, o);
                if (lane >= o) incl += y;
            }
            unsigned over = __ballot_sync(FULL_MASK, acc + incl > target);
            if (over) { chosen = base + __ffs(over) - 1; break; }
            acc += __shfl_sync(FULL_MASK, incl, 31);
        }
    }
    __syncthreads();
    if (owner == warp && lane == 0) s.result = chosen;
    if (owner < 0 && threadIdx.x == 0) s.result = max(s.gatheredCount, 0);
    __syncthreads();
    int r = s.result;
    __syncthreads();
    return r;
}

// 4a's draw from the sorted top candidates s.g.gathered[0..count): top-p over that order, then
// the draw over the kept ones in id order.
__device__ int draw_from_gathered(int count, float topP, float wMax, float invT, double u, SampleShared& s) {
    const int j = threadIdx.x;
    int id = -1;
    double m = 0.0;
    if (j < count) {
        u64 r = s.g.gathered[j];
        id = rank_id(r);
        m = (double)expf((key_value(rank_order_key(r)) - wMax) * invT);
    }
    int keep = count;
    if (topP < 1.0f && count > 1) {
        block_scan_d(m, s);
        const double reach = (double)topP * s.inclusive[count - 1];
        if (threadIdx.x == 0) s.result = count;
        __syncthreads();
        if (j < count && s.inclusive[j] >= reach && (j == 0 || s.inclusive[j - 1] < reach)) s.result = j + 1;
        __syncthreads();
        keep = s.result;
        __syncthreads();
    }
    // Rank of each kept token by id, then the kept masses in id order (the union's other half:
    // every thread holds its candidate in registers by now).
    __syncthreads();
    int rank = 0;
    if (j < keep) {
        for (int q = 0; q < keep; q++) rank += rank_id(s.g.gathered[q]) < id ? 1 : 0;
    }
    __syncthreads();
    if (j < keep) { s.g.byID.mass[rank] = m; s.g.byID.id[rank] = id; }
    __syncthreads();
    block_scan_d(j < keep ? s.g.byID.mass[j] : 0.0, s);
    const double keptTotal = keep > 0 ? s.inclusive[keep - 1] : 0.0;
    const double target = u * keptTotal;
    if (threadIdx.x == 0) s.result = keep > 0 ? s.g.byID.id[keep - 1] : 0;
    __syncthreads();
    if (j < keep && target < s.inclusive[j] && (j == 0 || s.inclusive[j - 1] <= target)) s.result = s.g.byID.id[j];
    __syncthreads();
    int r = s.result;
    __syncthreads();
    return r;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_rows(
    const float* logits,          // (R, V)
    const float* parameters,      // (R, columns)
    const int* penaltyOffsets,    // (R+1)
    const int* penalties,         // (P, 2) (token, count)
    float* out,                   // (R, 2 + 2N)
    float* penalised,             // (R, V) scratch
    int V, int columns, int logprobs, int penaltyPairs /* capacity of `penalties` in pairs */) {
    __shared__ SampleShared s;
    const int row = blockIdx.x;
    const int n = logprobs > 0 ? min(logprobs, SAMPLE_MAX_TOP) : 0;
    const float* z = logits + (size_t)row * V;
    const float* p = parameters + (size_t)row * columns;
    float* o = out + (size_t)row * (2 + 2 * n);

    // 1. Raw pass: validity and maximum, then logsumexp.
    float zm = neg_inf();
    int nan = 0;
    for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
        float x = z[i];
        nan |= x != x;
        zm = fmaxf(zm, x);
    }
    nan = __syncthreads_or(nan);
    const unsigned zThreadMax = (int)threadIdx.x < V ? order_key(zm) : 0u;
    const float zMax = block_max(zm, s);
    if (nan || !is_finite(zMax)) {
        if (threadIdx.x == 0) { o[0] = -1.0f; o[1] = quiet_nan(); }
        for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) { o[2 + j] = -1.0f; o[2 + n + j] = quiet_nan(); }
        return;
    }
    float lse = 0.0f;
    if (logprobs >= 0) {
        double sum = 0.0;
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) sum += (double)expf(z[i] - zMax);
        sum = block_sum_d(sum, s);
        lse = zMax + (float)log(sum);
    }

    // 2. Penalties, on a copy (z stays raw for the log-probabilities).
    const float* w = z;
    float wMax = zMax;
    unsigned wThreadMax = zThreadMax;
    int pStart = penaltyOffsets[row], pEnd = penaltyOffsets[row + 1];
    pStart = max(pStart, 0);
    pEnd = min(pEnd, penaltyPairs);
    if (pEnd > pStart) {
        float* copy = penalised + (size_t)row * V;
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) copy[i] = z[i];
        __syncthreads();
        const float rep = p[COL_REPETITION], presence = p[COL_PRESENCE], frequency = p[COL_FREQUENCY];
        for (int j = pStart + threadIdx.x; j < pEnd; j += SAMPLE_THREADS) {
            int token = penalties[2 * j], count = penalties[2 * j + 1];
            if (token < 0 || token >= V) continue;
            float x = z[token];     // one pair per distinct token: z[token] is the copy's value
            if (rep != 1.0f) x = x > 0.0f ? x / rep : __fmul_rn(x, rep);
            // The reference's x −= count·frequency + (count > 0 ? presence : 0), unfused.
            x = __fsub_rn(x, __fadd_rn(__fmul_rn((float)count, frequency), count > 0 ? presence : 0.0f));
            copy[token] = x;
        }
        __syncthreads();
        float m = neg_inf();
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) { float x = copy[i]; if (x > m) m = x; }
        wThreadMax = (int)threadIdx.x < V ? order_key(m) : 0u;
        wMax = block_max(m, s);
        w = copy;
    }

    // 3./4. The token.
    const float temperature = p[COL_TEMPERATURE];
    int chosen;
    if (temperature == 0.0f || !is_finite(wMax)) {
        float bv = neg_inf();
        int bi = NO_LIMIT;
        for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
            float x = w[i];
            if (bi == NO_LIMIT || x > bv) { bv = x; bi = i; }
        }
        block_argmax(bv, bi, s);
        chosen = bi == NO_LIMIT ? 0 : bi;
    } else {
        const float invT = 1.0f / temperature;
        const float minP = p[COL_MIN_P], topP = p[COL_TOP_P], kf = p[COL_TOP_K];
        const double u = (double)p[COL_UNIFORM];
        // Swift's Int(topK): truncation; ≤ 0 means off.
        const int topK = kf >= 1.0f ? (kf >= (float)V ? V : (int)kf) : 0;
        const int k = topK > 0 ? topK : V;
        Kept kept;
        // softmax(s)_i ≥ minP · max ⇔ w_i ≥ wMax + T·ln(minP), unfused as the reference computes it.
        kept.cut = minP > 0.0f ? __fadd_rn(wMax, __fmul_rn(temperature, logf(minP))) : neg_inf();
        kept.kKey = 0; kept.pKey = 0; kept.kLastTie = NO_LIMIT; kept.pLastTie = NO_LIMIT;
        chosen = -2;
        if (SAMPLE_GATHER && k < V && k <= GATHER_MAX_K) {
            const int gathered = gather_top(w, V, kept, k, wThreadMax, s);
            if (gathered >= 0) chosen = draw_from_gathered(gathered, topP, wMax, invT, u, s);
        }
        if (chosen == -2) {
            if (k < V) {
                Selection sel = radix_select<false>(w, V, kept, (double)k, 0.0, wMax, invT, s);
                if (sel.found) {
                    kept.kLastTie = last_tie(w, V, kept, sel.key, k - sel.countAbove, sel.ties, s);
                    kept.kKey = sel.key;
                }
            }
            if (topP < 1.0f) {
                Selection sel = radix_select<true>(w, V, kept, 0.0, (double)topP, wMax, invT, s);
                if (sel.found) {
                    // Ties share one mass: keep the fewest (lowest ids first) that reach the target.
                    const double mt = (double)expf((key_value(sel.key) - wMax) * invT);
                    const double need = mt > 0.0 ? ceil((s.selTarget - sel.massAbove) / mt) : 1.0;
                    const int keep = need < 1.0 ? 1 : (need > (double)sel.ties ? sel.ties : (int)need);
                    const int lastP = last_tie(w, V, kept, sel.key, keep, sel.ties, s);
                    kept.pKey = sel.key;
                    kept.pLastTie = lastP;
                }
            }
            chosen = draw_in_id_order(w, V, kept, wMax, invT, u, s);
        }
    }
    if (threadIdx.x == 0) {
        o[0] = (float)chosen;
        o[1] = logprobs >= 0 ? z[chosen] - lse : 0.0f;
    }

    // 5. The N largest raw logits (ties → lowest id), most likely first.
    if (n > 0) {
        const int kn = min(n, V);
        Everything all;
        int count = SAMPLE_GATHER ? gather_top(z, V, all, kn, zThreadMax, s) : -1;
        if (count < 0) {
            Selection sel = radix_select<false>(z, V, all, (double)kn, 0.0, zMax, 1.0f, s);
            const int lastTop = last_tie(z, V, all, sel.key, kn - sel.countAbove, sel.ties, s);
            if (threadIdx.x == 0) s.gatheredCount = 0;
            __syncthreads();
            for (int i = threadIdx.x; i < V; i += SAMPLE_THREADS) {
                unsigned key = order_key(z[i]);
                if (key > sel.key || (key == sel.key && i <= lastTop)) {
                    int slot = atomicAdd(&s.gatheredCount, 1);
                    if (slot < SAMPLE_MAX_TOP) s.g.gathered[slot] = rank_key(key, i);
                }
            }
            __syncthreads();
            count = min(s.gatheredCount, kn);
            int m = 2;
            while (m < count) m <<= 1;
            for (int j = count + threadIdx.x; j < m; j += SAMPLE_THREADS) s.g.gathered[j] = ~0ull;
            bitonic_sort(s.g.gathered, m);
        }
        for (int j = threadIdx.x; j < n; j += SAMPLE_THREADS) {
            if (j < count) {
                int id = rank_id(s.g.gathered[j]);
                o[2 + j] = (float)id;
                o[2 + n + j] = z[id] - lse;
            } else {
                o[2 + j] = -1.0f;
                o[2 + n + j] = neg_inf();
            }
        }
    }
}
