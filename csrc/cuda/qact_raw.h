// The torch shim's entries for the 8-bit-activation kernels (qact_raw.cc), added to _bitblas_cuda.
#pragma once

#include <pybind11/pybind11.h>

namespace bitblas_jax {

// Defines decode_i8_raw, gemm_mma_a8_raw and gemm_wgmma_a8_raw on the module.
void def_qact_raw(pybind11::module_& m);

}  // namespace bitblas_jax
