// Decode kernel for int8 activations: C[M, N] = A[M, K] (int8) x W[N, K]^T (int8 .. int1 weights, the
// packed layout of docs/LAYOUT.md) with int32 mma.m16n8k32.s8 tensor-core sums (sm_80+).
// The plan (plan.h quantized_activation_kernel) runs it for int8 activations at decode sizes; the XLA
// FFI handler is ffi_cuda.cc's bitblas_jax_decode_i8. decode_i8.cuh's header says what it computes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

struct DecodeI8Args {
  int64_t M = 0, N = 0, K = 0;
  WFormat w_format = WFormat::kInt8;   // int8, uint4, int4, uint2, int2, uint1, int1
  bool scaled = false;                 // mode "scale" (else "none")
  int64_t group_size = 0;              // scaled: a multiple of 32 dividing K
  const int8_t* A = nullptr;           // [M, K] row-major, 2-byte aligned
  const uint8_t* W = nullptr;          // packed, 16-byte aligned
  const float* scale = nullptr;        // [N, K / group_size] float32 (scaled)
  void* out = nullptr;                 // [M, N]: float32 v (scaled) or int32 S (none)
};

// Launches on `stream`; returns "" or why the arguments cannot run (nothing launched then).
std::string launch_decode_i8(const DecodeI8Args& args, cudaStream_t stream);

}  // namespace bitblas_jax
