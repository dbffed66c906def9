// Interleaved (complex-pair) rotary embedding in place, as mistral-inference:
// pair i of a head, (x[2i], x[2i+1]), rotates by angle positions[t] * theta^(-2i/Dh).
// x (T, heads, Dh) f32; positions (T) i32. One thread per pair.
// The angle is computed in f64: positions reach 10^5 and an f32 angle would be off by ~1e-2 rad.
#include "common.cuh"

extern "C" __global__ void rope_f32(float* x, const int* positions, int rows, int heads, int headDim, float theta) {
    int half = headDim / 2;
    long long pairs = (long long)rows * heads * half;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < pairs; p += (long long)gridDim.x * blockDim.x) {
        int i = (int)(p % half);
        long long t = p / ((long long)heads * half);
        double freq = pow((double)theta, -2.0 * (double)i / (double)headDim);
        double angle = (double)positions[t] * freq;
        double s, c;
        sincos(angle, &s, &c);
        float* v = x + 2 * p;
        float a = v[0], b = v[1];
        v[0] = (float)(a * c - b * s);
        v[1] = (float)(a * s + b * c);
    }
}
