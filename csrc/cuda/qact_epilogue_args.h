// The host check of the 8-bit kernels' epilogue arguments (decode_i8, gemm_mma_a8, gemm_wgmma_a8; the
// device side is epilogue.cuh store_qact_sum).
#pragma once

#include <cstdint>
#include <string>

#include "bitblas_jax/formats_generated.h"

namespace bitblas_jax {

// "" or why `kernel` cannot write this output: int32 holds the exact int32 sums alone (int32_sums: int8
// activations without group scales; no per-channel or activation scale, no bias); float32 / float16 /
// bfloat16 / int8 take any sums; per-channel scales and group scales exclude each other; col_scale,
// row_scale and bias are float32.
inline std::string check_qact_epilogue(const std::string& kernel, DType out_dtype, bool int32_sums,
                                       bool group_scales, const float* col_scale, const float* row_scale,
                                       const float* bias) {
  switch (out_dtype) {
    case DType::kI32:
      if (!int32_sums || col_scale || row_scale || bias)
        return kernel + ": an int32 output holds the int32 sums alone (int8 A, no scales, no bias)";
      break;
    case DType::kF32: case DType::kF16: case DType::kBF16: case DType::kI8: break;
    default: return kernel + ": out_dtype must be int32, float32, float16, bfloat16 or int8";
  }
  if (group_scales && col_scale) return kernel + ": group scales or per-channel scales, not both";
  if (reinterpret_cast<uintptr_t>(col_scale) % 4 || reinterpret_cast<uintptr_t>(row_scale) % 4 ||
      reinterpret_cast<uintptr_t>(bias) % 4)
    return kernel + ": col_scale, row_scale and bias must be 4-byte aligned";
  return "";
}

}  // namespace bitblas_jax
