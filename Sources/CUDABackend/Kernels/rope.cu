// Interleaved (complex-pair) rotary embedding, as mistral-inference: pair i of a head,
// (x[2i], x[2i+1]), rotates by angle positions[t] * theta^(-2i/Dh); positions (T) i32.
// The angle is computed in f64: positions reach 10^5 and an f32 angle would be off by ~1e-2 rad.
#include "common.cuh"

__device__ __forceinline__ void rope_angle(int position, int i, int headDim, float theta, float* c, float* s) {
    double freq = pow((double)theta, -2.0 * (double)i / (double)headDim);
    double sd, cd;
    sincos((double)position * freq, &sd, &cd);
    *c = (float)cd;
    *s = (float)sd;
}

// The attention block's glue in one launch, after the joined q/k/v product:
// qkv (T, H + 2G, Dh) f32 → q (T, H, Dh) = rope(q heads); kPool/vPool (N, B, G, Dh) bf16 at slot
// slots[t] (negative: skipped) get rope(k heads) and the v heads. One thread per pair.
extern "C" __global__ void rope_append_kv(const float* qkv, float* q, bf16_t* kPool, bf16_t* vPool,
                                          const int* positions, const int* slots, int rows, int heads,
                                          int kvHeads, int headDim, float theta) {
    pdl_prologue();
    const int half = headDim / 2;
    const long long roped = (long long)(heads + kvHeads) * half;   // pairs rotated per token
    const long long perToken = roped + (long long)kvHeads * half;  // + v pairs copied
    const long long rowWidth = (long long)(heads + 2 * kvHeads) * headDim;
    const long long slotWidth = (long long)kvHeads * headDim;
    const long long total = (long long)rows * perToken;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total; p += (long long)gridDim.x * blockDim.x) {
        const long long t = p / perToken, r = p % perToken;
        const float* src = qkv + t * rowWidth + 2 * r;   // pair r of the token's row (q, k, then v heads)
        const int slot = slots[t];
        if (r < roped) {
            const int h = (int)(r / half), i = (int)(r % half);
            float c, s;
            rope_angle(positions[t], i, headDim, theta, &c, &s);
            const float a = src[0], b = src[1];
            const float re = a * c - b * s, im = a * s + b * c;
            if (h < heads) {
                float* d = q + (t * heads + h) * headDim + 2 * i;
                d[0] = re;
                d[1] = im;
            } else if (slot >= 0) {
                bf16_t* d = kPool + slot * slotWidth + (long long)(h - heads) * headDim + 2 * i;
                d[0] = f32_to_bf16(re);
                d[1] = f32_to_bf16(im);
            }
        } else if (slot >= 0) {
            const long long e = 2 * (r - roped);   // element within the v heads
            bf16_t* d = vPool + slot * slotWidth + e;
            d[0] = f32_to_bf16(src[0]);
            d[1] = f32_to_bf16(src[1]);
        }
    }
}
