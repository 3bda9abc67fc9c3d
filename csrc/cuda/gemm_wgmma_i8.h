// The int8-activation Hopper GEMM (gemm_wgmma_i8.cuh): arguments and the host launcher.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace bitblas_jax {

struct GemmI8Args {
  int64_t M = 0, N = 0, K = 0;
  const int8_t* A = nullptr;   // [M, K] int8, each 16-k chunk in kSigma order (gemm_wgmma_i8.cuh)
  const uint8_t* W = nullptr;  // the packed weight (docs/LAYOUT.md): int8 / int4 (offset binary) or uint4
  int bits = 8;                // 8 or 4
  bool is_signed = true;       // int8 / int4; false: uint4
  // Group scales of 128 k (one stage), float32 [N, K / 128]: out is then float32 v, the sum over the
  // groups of s * (the group's exact int32 sum), in group order; null: out is the int32 sums S
  // (wrapping mod 2^32).
  const float* scale = nullptr;
  void* out = nullptr;         // [M, N]
};

// "" or the reason it did not launch (sm_90 only).
std::string launch_gemm_wgmma_i8(const GemmI8Args& a, cudaStream_t stream);

}  // namespace bitblas_jax
