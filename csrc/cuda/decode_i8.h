// Decode kernel for int8 activations: C[M, N] = A[M, K] (int8) x W[N, K]^T (int8 .. int1 weights, the
// packed layout of docs/LAYOUT.md) with int32 mma.m16n8k32.s8 tensor-core sums (sm_80+).
// The plan (plan.h quantized_activation_kernel) runs it for int8 activations at decode sizes; the XLA
// FFI handler is ffi_cuda.cc's bitblas_jax_decode_i8. decode_i8.cuh's header says what it computes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/plan.h"
#include "qact_epilogue_args.h"

namespace bitblas_jax {

struct DecodeI8Args {
  int64_t M = 0, N = 0, K = 0;
  WFormat w_format = WFormat::kInt8;   // int8, uint4, int4, uint2, int2, uint1, int1
  bool scaled = false;                 // mode "scale" (else "none")
  int64_t group_size = 0;              // scaled: a multiple of 32 dividing K
  const int8_t* A = nullptr;           // [M, K] row-major, each 32-k block in lane order
                                       // (a8_fragment.cuh a8_lane_order_k), 8-byte aligned
  const uint8_t* W = nullptr;          // packed, 16-byte aligned
  const float* scale = nullptr;        // [N, K / group_size] float32 (scaled)
  // The epilogue: C[m, n] = out_dtype(row_scale[m] * col_scale[n] * x + bias[n]) in float32, x the int32
  // sum S (none) or the float32 v (scaled); int8 rounds half to even and saturates (NaN -> 0), as
  // bitblas_jax/quantized_dot.py cast_out. col_scale (per-channel scales: mode scale with one group,
  // run as mode none) and bias: float32 [N] or null; row_scale (the activation scales, Matmul's a_scale):
  // float32 [M] or null. An int32 output is S itself (none, no scales, no bias).
  const float* col_scale = nullptr;
  const float* row_scale = nullptr;
  const float* bias = nullptr;
  DType out_dtype = DType::kI32;       // kI32, kF32, kF16, kBF16 or kI8
  void* out = nullptr;                 // [M, N] of out_dtype
};

// Launches on `stream`; returns "" or why the arguments cannot run (nothing launched then).
std::string launch_decode_i8(const DecodeI8Args& args, cudaStream_t stream);

// The argument checks of the kernels that take DecodeI8Args (decode_i8, gemm_mma_a8): "" or why `kernel`
// cannot run them; `takes` is its plan.h rule, `a_align` the alignment its loads need of A (bytes).
// M == 0 passes: there is nothing to launch.
inline std::string check_int8_sums_args(const DecodeI8Args& a, const std::string& kernel,
                                        bool (*takes)(WFormat, int, int64_t, int64_t), uintptr_t a_align) {
  const int mode = static_cast<int>(a.scaled ? ScaleMode::kScale : ScaleMode::kNone);
  if (!takes(a.w_format, mode, a.group_size, a.K))
    return kernel + ": takes int8, int4 .. int1 and uint4 .. uint1 weights, K a multiple of the packed "
                    "tile's k, and for mode scale a group_size that is a multiple of 32 and divides K";
  if (a.M < 0 || a.N <= 0 || a.N % kTileN) return kernel + ": N must be a positive multiple of 16, M >= 0";
  if (a.scaled && !a.scale) return kernel + ": mode scale needs scale";
  if (std::string err =
          check_qact_epilogue(kernel, a.out_dtype, !a.scaled, a.scaled, a.col_scale, a.row_scale, a.bias);
      !err.empty())
    return err;
  if (a.M == 0) return "";
  if (!a.A || !a.W || !a.out) return kernel + ": A, W and out must not be null";
  if (reinterpret_cast<uintptr_t>(a.A) % a_align || reinterpret_cast<uintptr_t>(a.W) % 16)
    return kernel + ": A must be " + std::to_string(a_align) + "-byte and W 16-byte aligned";
  return "";
}

}  // namespace bitblas_jax
