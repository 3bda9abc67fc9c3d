// Host check of one output element of an 8-bit-activation kernel's epilogue (csrc/cuda/epilogue.cuh
// store_qact_sum): the element, of out_dtype, against its float64 value v within `bound` (the float32
// roundings before the cast) plus the cast's rounding; int8 outputs within half a unit of v saturated to
// [-128, 127].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../csrc/cpu/matmul_cpu_convert.h"
#include "bitblas_jax/formats_generated.h"

namespace qact_out_check {

// The element at e as a double.
inline double element(const uint8_t* e, bitblas_jax::DType out_dtype) {
  using bitblas_jax::DType;
  switch (out_dtype) {
    case DType::kI8: return static_cast<int8_t>(e[0]);
    case DType::kF32: {
      float f;
      std::memcpy(&f, e, 4);
      return f;
    }
    default: {
      uint16_t h;
      std::memcpy(&h, e, 2);
      return out_dtype == DType::kF16 ? bitblas_jax::cpu::f16_to_f32(h) : bitblas_jax::cpu::bf16_to_f32(h);
    }
  }
}

inline int element_bytes(bitblas_jax::DType out_dtype) {
  using bitblas_jax::DType;
  return out_dtype == DType::kF32 ? 4 : out_dtype == DType::kI8 ? 1 : 2;
}

inline bool within(double got, bitblas_jax::DType out_dtype, double v, double bound) {
  using bitblas_jax::DType;
  if (out_dtype == DType::kI8) return std::fabs(got - std::min(127.0, std::max(-128.0, v))) <= 0.5 + bound;
  const double u = out_dtype == DType::kF16 ? 0x1p-11 : out_dtype == DType::kBF16 ? 0x1p-8 : 0x1p-24;
  return std::fabs(got - v) <= bound + u * (std::fabs(v) + bound);
}

}  // namespace qact_out_check
