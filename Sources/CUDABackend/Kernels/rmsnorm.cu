// RMSNorm, computed in f32: out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight.
// x (T, D) f32; out (T, D) f32 (rmsnorm_*) or bf16 (rmsnorm_to_bf16_*); weight (D) weight
// dtype. One block per row; the host sizes the block to about D/4 threads (≤ 1024) so each thread handles one float4 at decode sizes: the kernel is
// pure latency (16 KB per row), and fewer, longer-running threads only add serial loads.
#include "common.cuh"

// Stores one output value: f32, or bf16 (the cuBLASLt operand of the product that follows, so the
// normed rows are written once, narrow, instead of f32 and then converted).
__device__ __forceinline__ void store_out(float* o, long long i, float v) { o[i] = v; }
__device__ __forceinline__ void store_out(bf16_t* o, long long i, float v) { o[i] = f32_to_bf16(v); }

template <class W, class O>
__device__ void rmsnorm_impl(const float* x, const typename W::T* weight, O* out, int dim, float eps) {
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * dim;
    O* orow = out + (long long)blockIdx.x * dim;
    float ss = 0.0f;
    if ((dim & 3) == 0) {
        // Rows are 16-byte aligned when D % 4 == 0 (buffers come from cuMemAlloc).
        const float4* r4 = reinterpret_cast<const float4*>(row);
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            float4 v = r4[i];
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        ss = block_sum(ss, scratch);
        const float inv = rsqrtf(ss / (float)dim + eps);
        for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
            float4 v = r4[i];
            const int d = 4 * i;
            store_out(orow, d, v.x * inv * W::load(weight, d));
            store_out(orow, d + 1, v.y * inv * W::load(weight, d + 1));
            store_out(orow, d + 2, v.z * inv * W::load(weight, d + 2));
            store_out(orow, d + 3, v.w * inv * W::load(weight, d + 3));
        }
        return;
    }
    for (int d = threadIdx.x; d < dim; d += blockDim.x) ss += row[d] * row[d];
    ss = block_sum(ss, scratch);
    float inv = rsqrtf(ss / (float)dim + eps);
    for (int d = threadIdx.x; d < dim; d += blockDim.x) store_out(orow, d, row[d] * inv * W::load(weight, d));
}
#define RMSNORM(S, W) \
    extern "C" __global__ void __launch_bounds__(1024) rmsnorm_##S(const float* x, const W::T* weight, float* out, int dim, float eps) \
    { rmsnorm_impl<W>(x, weight, out, dim, eps); } \
    extern "C" __global__ void __launch_bounds__(1024) rmsnorm_to_bf16_##S(const float* x, const W::T* weight, bf16_t* out, int dim, float eps) \
    { rmsnorm_impl<W>(x, weight, out, dim, eps); }
FOR_EACH_WEIGHT_TYPE(RMSNORM)
