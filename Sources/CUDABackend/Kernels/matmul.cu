// Tiled SIMT matrix products with bf16/f16/f32 weights and f32 activations, f32 accumulation.
//
// `matmul_*` is out = x · Wᵀ (nn.Linear): x (T, K), W (N, K), out (T, N). It is the fallback when
// cuBLASLt is unavailable and the reference the cuBLASLt path is checked against.
// The MoE kernels run the same tile loop over rows gathered per expert (see moe.cu).
#include "tile_gemm.cuh"

// `scales` (N): e4m3 weights' row scales, multiplied into each finished output (nullptr: none).
template <class W>
__device__ void matmul_impl(const float* x, const typename W::T* w, float* out, int rows, int K, int N,
                            const float* scales = nullptr) {
    __shared__ float As[BM][BK + 1];
    __shared__ float Ws[BN][BK + 1];
    __shared__ const float* rowPtr[BM];
    const int r0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int rowCount = min(BM, rows - r0);
    if (threadIdx.x < BM) rowPtr[threadIdx.x] = x + (long long)(r0 + min((int)threadIdx.x, rowCount - 1)) * K;
    __syncthreads();
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    tile_mac<W>(rowPtr, rowCount, w, n0, N, K, acc, As, Ws);
    const int tx = threadIdx.x % BN, ty = threadIdx.x / BN;
    if (n0 + tx < N) {
        const float scale = scales ? scales[n0 + tx] : 1.0f;
        for (int i = 0; i < 8; ++i) {
            int r = ty + 4 * i;
            if (r < rowCount) out[(long long)(r0 + r) * N + n0 + tx] = scales ? acc[i] * scale : acc[i];
        }
    }
}
#define MATMUL(S, W) \
    extern "C" __global__ void __launch_bounds__(256) matmul_##S(const float* x, const W::T* w, float* out, int rows, int K, int N) \
    { matmul_impl<W>(x, w, out, rows, K, N); }
FOR_EACH_WEIGHT_TYPE(MATMUL)

// e4m3 weights with one f32 scale per output row (ws (N)): the tile widens the codes to f32 in
// shared memory (WE4M3) and each output is multiplied by its row's scale. The prefill fallback of
// the FP8 scheme (docs/fp8.md): correct, not tensor-core fast.
extern "C" __global__ void __launch_bounds__(256) matmul_e4m3(const float* x, const e4m3_t* w, float* out, int rows, int K, int N,
                                                              const float* ws)
{ matmul_impl<WE4M3>(x, w, out, rows, K, N, ws); }
