// Shared helpers for every kernel file. Self-contained on purpose: no CUDA headers are needed,
// so NVRTC compiles these at run time on a machine with only the driver and libnvrtc.
//
// Storage types: activations are f32; weights are bf16, f16 or f32 (kept as stored in the
// checkpoint); the paged KV pool is bf16. All arithmetic accumulates in f32.
#pragma once

typedef unsigned short bf16_t;   // raw bfloat16 bits
typedef unsigned short f16_t;    // raw IEEE half bits

__device__ __forceinline__ float bf16_to_f32(bf16_t b) { return __uint_as_float(((unsigned)b) << 16); }

// Round to nearest even, NaN stays NaN (same as PyTorch and Tensors.BFloat16.fromFloat).
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

__device__ __forceinline__ float f16_to_f32(f16_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// Weight element loaders, one per stored dtype; kernels are templates over these.
struct WBF16 { typedef bf16_t T; static __device__ __forceinline__ float load(const T* p, long long i) { return bf16_to_f32(p[i]); } };
struct WF16  { typedef f16_t T;  static __device__ __forceinline__ float load(const T* p, long long i) { return f16_to_f32(p[i]); } };
struct WF32  { typedef float T;  static __device__ __forceinline__ float load(const T* p, long long i) { return p[i]; } };

// Emits `M(suffix, Loader)` for every weight dtype: kernels are exported as name_bf16 etc.
#define FOR_EACH_WEIGHT_TYPE(M) M(bf16, WBF16) M(f16, WF16) M(f32, WF32)

// FP8 e4m3 ("e4m3fn": bias 7, no infinities, 0x7f / 0xff NaN) weights, one f32 scale per output
// row applied by each kernel to the finished dot product (the effective weight is value × scale,
// docs/fp8.md). The widening must equal the CPU's table (Tensors.FP8E4M3) for all 256 codes:
// the 7 magnitude bits placed at f32 bits 20…26 are a float of exponent e and mantissa m (a
// subnormal when e = 0, kept as such: NVRTC compiles without flush-to-zero), and 2¹²⁰ moves the
// exponent bias from 127 to 7 exactly, subnormal codes m · 2⁻⁹ included; the NaN codes would
// come out as ±480 and are selected out (the table's NaN is the positive quiet one).
typedef unsigned char e4m3_t;

__device__ __forceinline__ float e4m3_to_f32(unsigned code) {
    const unsigned mag = code & 0x7fu;
    const float v = __uint_as_float(((code & 0x80u) << 24) | (mag << 20)) * 0x1p120f;
    return mag == 0x7fu ? __uint_as_float(0x7fc00000u) : v;
}

// The element value only; the row scale is the kernel's business (it needs the row).
struct WE4M3 { typedef e4m3_t T; static __device__ __forceinline__ float load(const T* p, long long i) { return e4m3_to_f32(p[i]); } };

// 8 e4m3 codes in a uint2 (lowest byte first) → 8 floats equal to the codes' values × 2⁻¹²⁰,
// for the GEMVs, which multiply each finished dot by E4M3_UNBIAS (2¹²⁰) before its row scale.
// Each code's 7 magnitude bits go to f32 bits 20…26 and its sign to bit 31, as in e4m3_to_f32
// but without its multiply and select: three integer operations a code, where the widening
// had made the e4m3 GEMVs issue-bound at 39% of bandwidth (H200, gpu-notes "Session 7"). The
// rescale is a power of two, so the result equals the table's (subnormal codes included); the
// products stay normal f32 down to |x · w| = 2⁻⁶ and below that lose only bits under 2⁻¹⁴⁹,
// nothing against the dot. The NaN codes (magnitude 0x7f) are patched in by a branch that
// quantized weights never take.
#define E4M3_UNBIAS 0x1p120f
__device__ __forceinline__ void unpack8_e4m3(uint2 v, float* f) {
    const unsigned words[2] = {v.x, v.y};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const unsigned x = words[h];
        f[4 * h + 0] = __uint_as_float(((x << 24) & 0x80000000u) | ((x << 20) & 0x07f00000u));
        f[4 * h + 1] = __uint_as_float(((x << 16) & 0x80000000u) | ((x << 12) & 0x07f00000u));
        f[4 * h + 2] = __uint_as_float(((x << 8) & 0x80000000u) | ((x << 4) & 0x07f00000u));
        f[4 * h + 3] = __uint_as_float((x & 0x80000000u) | ((x >> 4) & 0x07f00000u));
        const unsigned nan = __vcmpeq4(x & 0x7f7f7f7fu, 0x7f7f7f7fu);
        if (nan) {
#pragma unroll
            for (int i = 0; i < 4; ++i) if ((nan >> (8 * i)) & 1u) f[4 * h + i] = __uint_as_float(0x7fc00000u);
        }
    }
}

// 8 bf16 in a uint4 → 8 floats.
__device__ __forceinline__ void unpack8(uint4 v, float* f) {
    f[0] = __uint_as_float(v.x << 16); f[1] = __uint_as_float(v.x & 0xffff0000u);
    f[2] = __uint_as_float(v.y << 16); f[3] = __uint_as_float(v.y & 0xffff0000u);
    f[4] = __uint_as_float(v.z << 16); f[5] = __uint_as_float(v.z & 0xffff0000u);
    f[6] = __uint_as_float(v.w << 16); f[7] = __uint_as_float(v.w & 0xffff0000u);
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// Sum over a warp (all 32 lanes active).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; `scratch` holds at least 32 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(r);
}

// Programmatic dependent launch (sm_90): a kernel launched with the PDL attribute may be
// scheduled while the previous kernel drains; it waits here for that kernel to complete (its
// writes are then visible) before reading anything, then lets the next kernel begin launching.
// Launched the ordinary way, the wait returns at once.
__device__ __forceinline__ void pdl_prologue() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Shared-memory address of a generic pointer, and 16-byte asynchronous copies global → shared
// (sm_80+; L2 only). src_bytes = 0 zero-fills the destination without reading `src`.
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
// 16-byte async copy; src_bytes = 0 zero-fills the destination without reading `src`.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int srcBytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(srcBytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }

// --- shared by the decode GEMVs (gemv.cu, gemv_e4m3.cu) ---

// What a GEMV does with each output value s of row n (token r):
// STORE out[r, n] = s; ACCUMULATE out[r, n] += s (residual add fused into the product, one
// writer per element so no atomics); SWIGLU: the weight is [w1; w3] (2N, K) and
// out[r, n] = silu(w1[n]·x[r]) * (w3[n]·x[r]) (the gated FFN's first half in one launch).
enum GemvMode { STORE = 0, ACCUMULATE = 1, SWIGLU = 2 };

// 16-byte streaming weight load (read once: no L1 allocation where the PTX has the qualifier).
__device__ __forceinline__ uint4 ld_weight16(const uint4* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750 && !defined(MOE_GEMV_LDG)
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
#else
    return __ldg(p);
#endif
}

// The j-th expert (in index order) with at least one pair, or -1 when fewer have pairs. Called
// by whole warps; every lane gets the answer.
__device__ __forceinline__ int nth_active_expert(const int* offsets, int experts, int j) {
    const int lane = threadIdx.x & 31;
    for (int e0 = 0; e0 < experts; e0 += 32) {
        const int e = e0 + lane;
        const bool live = e < experts && offsets[e + 1] > offsets[e];
        const unsigned mask = __ballot_sync(0xffffffffu, live);
        const int n = __popc(mask);
        if (j < n) {
            const bool mine = live && __popc(mask & ((1u << lane) - 1u)) == j;
            return e0 + __ffs(__ballot_sync(0xffffffffu, mine)) - 1;
        }
        j -= n;
    }
    return -1;
}


// The normed GEMVs' staging: the block writes x ⊙ g (R, K) f32 to `staged` (dynamic shared
// memory) and sums x² on the way; xs[r] points at staged row r and inv[r] = 1/rms(x[r]), which
// the caller applies to the finished dots, so the normed x is never stored. Ends with a
// barrier. Every thread of the block calls it.
template <int R>
__device__ __forceinline__ void gemv_stage_norm(const float* x, const bf16_t* g, float eps, int K, float4* staged,
                                                const float* (&xs)[R], float (&inv)[R]) {
    __shared__ float red[32];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float4* x4 = reinterpret_cast<const float4*>(x + (long long)r * K);
        float4* s4 = staged + (long long)r * (K / 4);
        float ss = 0.0f;
        for (int c = threadIdx.x; c < K / 4; c += blockDim.x) {
            float4 v = x4[c];
            uint2 gb = __ldg(reinterpret_cast<const uint2*>(g) + c);
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            s4[c] = make_float4(v.x * __uint_as_float(gb.x << 16), v.y * __uint_as_float(gb.x & 0xffff0000u),
                                v.z * __uint_as_float(gb.y << 16), v.w * __uint_as_float(gb.y & 0xffff0000u));
        }
        inv[r] = rsqrtf(block_sum(ss, red) / (float)K + eps);
        xs[r] = reinterpret_cast<const float*>(s4);
    }
    __syncthreads();
}
