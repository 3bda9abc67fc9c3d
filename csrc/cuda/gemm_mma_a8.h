// The int8-activation GEMM for any sm_80+ GPU (gemm_mma_a8.cuh): arguments and the host launcher.
// The plan (plan.h quantized_activation_kernel) runs it for int8 activations above decode sizes where
// gemm_wgmma_a8 does not take the call; the XLA FFI handler is ffi_cuda.cc's bitblas_jax_gemm_mma_a8.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "decode_i8.h"

namespace bitblas_jax {

// decode_i8's operands, modes and outputs (plan::gemm_mma_a8_takes is decode_i8's rule), except that
// A [M, K] comes with each 16-k chunk in kSigma order (gemm_wgmma_a8.cuh; bitblas_jax/primitive.py
// permutes it) and 16-byte aligned (cp.async copies 16 bytes).
using GemmMmaA8Args = DecodeI8Args;

// Launches on `stream`; returns "" or why the arguments cannot run (nothing launched then).
std::string launch_gemm_mma_a8(const GemmMmaA8Args& args, cudaStream_t stream);

}  // namespace bitblas_jax
