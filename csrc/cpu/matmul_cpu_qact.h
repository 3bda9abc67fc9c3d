// The CPU kernel of int8 and float8 activations (README, "int8 and float8 activations").
#pragma once

#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

inline bool is_quantized_activation(DType t) {
  return t == DType::kI8 || t == DType::kF8E4M3 || t == DType::kF8E5M2;
}

// Computes args.C for int8 / float8 A. Returns "" on success, else a message.
std::string matmul_cpu_quantized(const MatmulArgs& args);

}  // namespace bitblas_jax
