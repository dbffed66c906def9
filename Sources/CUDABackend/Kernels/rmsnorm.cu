// RMSNorm, computed in f32: out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight.
// x, out (T, D) f32; weight (D) weight dtype. One block per row.
#include "common.cuh"

template <class W>
__device__ void rmsnorm_impl(const float* x, const typename W::T* weight, float* out, int dim, float eps) {
    __shared__ float scratch[32];
    const float* row = x + (long long)blockIdx.x * dim;
    float* orow = out + (long long)blockIdx.x * dim;
    float ss = 0.0f;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) ss += row[d] * row[d];
    ss = block_sum(ss, scratch);
    float inv = rsqrtf(ss / (float)dim + eps);
    for (int d = threadIdx.x; d < dim; d += blockDim.x) orow[d] = row[d] * inv * W::load(weight, d);
}
#define RMSNORM(S, W) \
    extern "C" __global__ void rmsnorm_##S(const float* x, const W::T* weight, float* out, int dim, float eps) \
    { rmsnorm_impl<W>(x, weight, out, dim, eps); }
FOR_EACH_WEIGHT_TYPE(RMSNORM)
