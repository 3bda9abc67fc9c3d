// MatmulArgs from the integer ids and raw pointers that the torch shim passes to
// the modules' matmul_raw (bitblas_jax/torch/ops.py). Host code only.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

// Throws std::invalid_argument (a Python ValueError through pybind11) on a bad id.
inline MatmulArgs raw_matmul_args(int64_t M, int64_t N, int64_t K, int w_format, int a_dtype,
                                  int accum_dtype, int out_dtype, int mode, int64_t group_size,
                                  uintptr_t A, uintptr_t W, uintptr_t scale, uintptr_t zeros,
                                  uintptr_t bias, uintptr_t C) {
  if (w_format < 0 || w_format >= kNumWFormats) throw std::invalid_argument("bad w_format");
  if (a_dtype < 0 || a_dtype >= kNumDTypes || accum_dtype < 0 || accum_dtype >= kNumDTypes ||
      out_dtype < 0 || out_dtype >= kNumDTypes)
    throw std::invalid_argument("bad dtype id");
  if (mode < 0 || mode >= kNumScaleModes) throw std::invalid_argument("bad mode");
  MatmulArgs a;
  a.M = M;
  a.N = N;
  a.K = K;
  a.w_format = static_cast<WFormat>(w_format);
  a.a_dtype = static_cast<DType>(a_dtype);
  a.accum_dtype = static_cast<DType>(accum_dtype);
  a.out_dtype = static_cast<DType>(out_dtype);
  a.mode = static_cast<ScaleMode>(mode);
  a.group_size = group_size;
  a.A = reinterpret_cast<const void*>(A);
  a.W = reinterpret_cast<const uint8_t*>(W);
  a.scale = reinterpret_cast<const void*>(scale);
  a.zeros = reinterpret_cast<const void*>(zeros);
  a.bias = reinterpret_cast<const void*>(bias);
  a.C = reinterpret_cast<void*>(C);
  return a;
}

}  // namespace bitblas_jax
