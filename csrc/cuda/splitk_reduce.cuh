// Split-K over CTAs: each CTA of an output tile writes an fp32 partial, the last to arrive
// (a counter per tile) sums the partials in split order and writes the output.
#pragma once

#include "epilogue.cuh"
#include "params.cuh"

namespace bitblas_jax {
namespace cudak {

// Split-K: every CTA of an output tile writes its fp32 partial, then the last
// one to arrive sums all partials in split order and runs the epilogue.
// Returns true in the CTA that must reduce (after a block-wide barrier). NT > 0: only threads
// 0..NT-1 take part (named barrier 1), the rest of the block having left.
template <int NT = 0>
__device__ __forceinline__ bool splitk_arrive(const KParams& p, int tile) {
  __shared__ int s_last;
  auto sync = [] {
    if constexpr (NT > 0)
      asm volatile("bar.sync 1, %0;\n" ::"n"(NT) : "memory");
    else
      __syncthreads();
  };
  __threadfence();
  sync();
  if (threadIdx.x == 0) {
    const unsigned prev = atomicAdd(p.counters + tile, 1u);
    s_last = prev == static_cast<unsigned>(p.split - 1);
  }
  sync();
  if (s_last) __threadfence();
  return s_last != 0;
}

// NT > 0: threads 0..NT-1 reduce (as in splitk_arrive). A thread sums R float4 column vectors at
// a time, the loads of all of them and of SB splits in flight together (one scalar L2 load after
// another keeps the reducing CTA waiting: 27 us of a 76 us kernel at 128 x 128 tiles on 8192^2),
// adding in split order. R x SB x 4 registers hold the loads: the caller sizes them to its
// kernel's register budget (larger batches spill). N is a multiple of 16 (the host checks) and
// ncols too, so the vectors are whole and 16-byte aligned.
template <typename T, int W = 128, int NT = 0, int R = 2, int SB = 2>
__device__ __forceinline__ void splitk_reduce(const KParams& p, long long m0, int mrows, long long n0,
                                              int ncols) {
  constexpr int VPR = W / 4;  // vectors per tile row
  const int nthreads = NT > 0 ? NT : static_cast<int>(blockDim.x);
  const int total = mrows * VPR;
  const long long split_stride = p.M * p.N / 4;  // float4s per partial
  const float4* part = reinterpret_cast<const float4*>(p.partial);
  for (int i0 = threadIdx.x; i0 < total; i0 += R * nthreads) {
    long long off[R];
    bool ok[R];
    float4 sum[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = i0 + r * nthreads, j = (i % VPR) * 4;
      ok[r] = i < total && j < ncols;
      off[r] = ((m0 + i / VPR) * p.N + n0 + j) / 4;
      sum[r] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    for (int s0 = 0; s0 < p.split; s0 += SB) {
      float4 v[SB][R];
#pragma unroll
      for (int s = 0; s < SB; ++s)
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (ok[r] && s0 + s < p.split) v[s][r] = __ldcg(part + (s0 + s) * split_stride + off[r]);
#pragma unroll
      for (int s = 0; s < SB; ++s)
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (ok[r] && s0 + s < p.split) {
            sum[r].x += v[s][r].x;
            sum[r].y += v[s][r].y;
            sum[r].z += v[s][r].z;
            sum[r].w += v[s][r].w;
          }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (!ok[r]) continue;
      const int i = i0 + r * nthreads;
      const long long m = m0 + i / VPR, n = n0 + (i % VPR) * 4;
      store_out<T>(p, m, n, sum[r].x);
      store_out<T>(p, m, n + 1, sum[r].y);
      store_out<T>(p, m, n + 2, sum[r].z);
      store_out<T>(p, m, n + 3, sum[r].w);
    }
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
