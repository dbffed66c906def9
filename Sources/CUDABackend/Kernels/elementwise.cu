// Elementwise and row-copy kernels. Shapes in each comment; one thread per element (grid-stride).
#include "common.cuh"

// out[t, n] = silu(both[t, n]) * both[t, F + n]: the gated FFN from a product with [w1; w3].
// both (T, 2F), out (T, F) f32.
extern "C" __global__ void swiglu_split_f32(const float* both, float* out, int rows, int hidden) {
    long long n = (long long)rows * hidden;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long t = i / hidden, c = i % hidden;
        out[i] = silu(both[t * 2 * hidden + c]) * both[t * 2 * hidden + hidden + c];
    }
}

// h = silu(gate) * up in bf16 (the MoE cuBLASLt paths' hidden activations; h may be gate);
// gate, up, h (n) bf16. Eight elements per thread per step (n % 8 == 0, 16-byte aligned).
extern "C" __global__ void swiglu_bf16(const bf16_t* gate, const bf16_t* up, bf16_t* h, long long n) {
    long long n8 = n / 8;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8; i += (long long)gridDim.x * blockDim.x) {
        uint4 g = reinterpret_cast<const uint4*>(gate)[i], u = reinterpret_cast<const uint4*>(up)[i];
        float gf[8], uf[8];
        unpack8(g, gf);
        unpack8(u, uf);
        unsigned o[4];
        for (int j = 0; j < 4; ++j)
            o[j] = (unsigned)f32_to_bf16(silu(gf[2 * j]) * uf[2 * j]) | ((unsigned)f32_to_bf16(silu(gf[2 * j + 1]) * uf[2 * j + 1]) << 16);
        reinterpret_cast<uint4*>(h)[i] = make_uint4(o[0], o[1], o[2], o[3]);
    }
}

// x += y; x, y (n) f32.
extern "C" __global__ void add_f32(float* x, const float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] += y[i];
}

// out[s, :] = x[rows[s], :]; x (T, D), rows (S) i32, out (S, D).
extern "C" __global__ void gather_rows_f32(const float* x, const int* rows, float* out, int count, int dim) {
    long long n = (long long)count * dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long s = i / dim, d = i % dim;
        out[i] = x[(long long)rows[s] * dim + d];
    }
}

// Narrows f32 activations to bf16 (the cuBLASLt operand); in, out (n).
extern "C" __global__ void convert_f32_to_bf16(const float* in, bf16_t* out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = f32_to_bf16(in[i]);
}

// out[t, :] = table[ids[t], :]; ids (T) i32, table (V, D) weight dtype, out (T, D) f32.
// An id outside [0, V) writes NaN, so a bad token id is visible instead of reading wild memory.
template <class W>
__device__ void embed_impl(const int* ids, const typename W::T* table, float* out, int rows, int dim, int vocab) {
    long long n = (long long)rows * dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long t = i / dim, d = i % dim;
        int id = ids[t];
        out[i] = (id >= 0 && id < vocab) ? W::load(table, (long long)id * dim + d) : __int_as_float(0x7fc00000);
    }
}
#define EMBED(S, W) \
    extern "C" __global__ void embed_##S(const int* ids, const W::T* table, float* out, int rows, int dim, int vocab) \
    { embed_impl<W>(ids, table, out, rows, dim, vocab); }
FOR_EACH_WEIGHT_TYPE(EMBED)
