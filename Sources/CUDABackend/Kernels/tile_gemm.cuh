// The shared tile loop of the SIMT matrix products (matmul.cu, moe.cu).
//
// Tile: BM=32 rows × BN=64 outputs × BK=32 of the reduction; 256 threads, 8 outputs each
// (rows ty + 4i, column tx). Shared rows are padded by one float to avoid bank conflicts.
#pragma once
#include "common.cuh"

#define BM 32
#define BN 64
#define BK 32

// acc[i] += Σ_k A[rowOf(ty + 4i), k] * W[n0 + tx, k] over all k; rows ≥ rowCount contribute 0.
// `rowPtr[r]` is the start of row r of A (so callers can gather rows without copying).
template <class W>
__device__ __forceinline__ void tile_mac(const float* const* rowPtr, int rowCount,
                                         const typename W::T* w, int n0, int N, int K,
                                         float (&acc)[8], float (*As)[BK + 1], float (*Ws)[BK + 1]) {
    const int tid = threadIdx.x, tx = tid % BN, ty = tid / BN;
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = tid; e < BM * BK; e += 256) {
            int r = e / BK, c = e % BK;
            As[r][c] = (r < rowCount && k0 + c < K) ? rowPtr[r][k0 + c] : 0.0f;
        }
        for (int e = tid; e < BN * BK; e += 256) {
            int r = e / BK, c = e % BK;
            Ws[r][c] = (n0 + r < N && k0 + c < K) ? W::load(w, (long long)(n0 + r) * K + k0 + c) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < BK; ++kk) {
            float wv = Ws[tx][kk];
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[i] += As[ty + 4 * i][kk] * wv;
        }
        __syncthreads();
    }
}

