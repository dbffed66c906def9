// Paged KV append: k[t], v[t] (T, G, Dh) f32 are narrowed to bf16 and written to flat pool slot
// slots[t] (= block * B + offset) of kPool, vPool (N, B, G, Dh) bf16. A negative slot is skipped.
#include "common.cuh"

extern "C" __global__ void append_kv_bf16(const float* k, const float* v, bf16_t* kPool, bf16_t* vPool,
                                          const int* slots, int rows, int kvHeads, int headDim) {
    long long per = (long long)kvHeads * headDim;
    long long n = (long long)rows * per;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long t = i / per, e = i % per;
        int slot = slots[t];
        if (slot < 0) continue;
        kPool[(long long)slot * per + e] = f32_to_bf16(k[i]);
        vPool[(long long)slot * per + e] = f32_to_bf16(v[i]);
    }
}
