// The 8-bit-activation Hopper GEMM (gemm_wgmma_a8.cuh): arguments and the host launcher.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bitblas_jax/formats_generated.h"

namespace bitblas_jax {

// The (activation, weight) pairs it takes (plan.h gemm_wgmma_a8_takes owns the rule):
//   int8 A:    int8, int4, uint4 weights; out = the exact int32 sums S (wrapping mod 2^32), or with
//              group scales of 128 the float32 v = sum over groups of s * S_g (each S_g exact)
//   float8 A:  float8_e4m3fn, float8_e5m2, int4 weights; out = float32: the tensor cores' sums of
//              each 128-k stage, added in float32 (times the stage's group scale, when given)
struct GemmA8Args {
  int64_t M = 0, N = 0, K = 0;
  const void* A = nullptr;     // [M, K], each 16-k chunk in kSigma order (gemm_wgmma_a8.cuh)
  DType act = DType::kI8;      // kI8, kF8E4M3 or kF8E5M2
  const uint8_t* W = nullptr;  // the packed weight (docs/LAYOUT.md)
  WFormat w_format = WFormat::kInt8;
  // Group scales, float32 [N, K / group_size]; null: none. int8 A: group_size 128 (plan::kGemmA8Stage);
  // float8 A: a multiple of 128.
  const float* scale = nullptr;
  int64_t group_size = 0;
  // The epilogue: C[m, n] = out_dtype(row_scale[m] * col_scale[n] * x + bias[n]), in float32, x the sums
  // or v above; int8 rounds half to even and saturates (NaN -> 0), as bitblas_jax/quantized_dot.py
  // cast_out. col_scale (per-channel scales) and bias: float32 [N], or null; row_scale (the activation
  // scales, Matmul's a_scale): float32 [M], or null. out_dtype int32 (int8 A without any scales) stores
  // the sums themselves: no scales, no bias.
  const float* col_scale = nullptr;
  const float* row_scale = nullptr;
  const float* bias = nullptr;
  DType out_dtype = DType::kI32;  // kI32, kF32, kF16, kBF16 or kI8
  void* out = nullptr;            // [M, N] of out_dtype
};

// "" or the reason it did not launch (sm_90 only).
std::string launch_gemm_wgmma_a8(const GemmA8Args& a, cudaStream_t stream);

}  // namespace bitblas_jax
