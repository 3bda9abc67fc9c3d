// Turns the XLA FFI operands of the "bitblas_jax_matmul" custom call into a
// checked MatmulArgs. Shared by the CPU and CUDA handlers so both read the
// same call the same way. Python (bitblas_jax/primitive.py) always passes six
// operands: A [M, K], W (packed uint8), scale, zeros, bias, group_terms; an
// absent optional operand is an empty array.
#pragma once

#include <string>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/plan.h"
#include "xla/ffi/api/ffi.h"

namespace bitblas_jax {

namespace ffi = xla::ffi;

inline bool to_dtype(ffi::DataType t, DType* out) {
  switch (t) {
    case ffi::DataType::F16: *out = DType::kF16; return true;
    case ffi::DataType::BF16: *out = DType::kBF16; return true;
    case ffi::DataType::F32: *out = DType::kF32; return true;
    case ffi::DataType::S8: *out = DType::kI8; return true;
    case ffi::DataType::S32: *out = DType::kI32; return true;
    case ffi::DataType::F8E4M3FN: *out = DType::kF8E4M3; return true;
    case ffi::DataType::F8E5M2: *out = DType::kF8E5M2; return true;
    default: return false;
  }
}

// scale, float zeros and bias: in A's dtype, except under int8 / float8 activations, which
// cannot hold them: float32 there (formats.py scale_dtype).
inline ffi::DataType scale_type_for(ffi::DataType a_type) {
  switch (a_type) {
    case ffi::DataType::S8: case ffi::DataType::F8E4M3FN: case ffi::DataType::F8E5M2:
      return ffi::DataType::F32;
    default: return a_type;
  }
}

inline ffi::Error arg_error(const std::string& what) {
  return ffi::Error::InvalidArgument("bitblas_jax_matmul: " + what);
}

// The packed weight and its scale / zeros (shared by the matmul and the
// dequantize calls; a_type is the activation / dequantized dtype, whose
// scale_type_for is the dtype of scale and float zeros).
inline ffi::Error set_weight_args(ffi::AnyBuffer W, ffi::AnyBuffer scale, ffi::AnyBuffer zeros,
                                  ffi::DataType a_type, int64_t w_format, int64_t mode, int64_t group_size,
                                  int64_t N, int64_t K, MatmulArgs* args) {
  if (w_format < 0 || w_format >= kNumWFormats) return arg_error("bad w_format");
  if (mode < 0 || mode >= kNumScaleModes) return arg_error("bad mode");
  args->w_format = static_cast<WFormat>(w_format);
  args->mode = static_cast<ScaleMode>(mode);
  const int bits = format_bits(args->w_format);
  args->N = N;
  args->K = K;
  if (N <= 0 || K <= 0 || N % kTileN != 0 || K % tile_k(bits) != 0)
    return arg_error("N, K do not fit the packed tile");
  if (group_size <= 0 || K % group_size != 0) return arg_error("group_size must divide K");
  args->group_size = group_size;
  if (W.element_type() != ffi::DataType::U8 || W.element_count() * 8 != static_cast<size_t>(N * K * bits))
    return arg_error("W must be uint8 holding N*K*bits/8 bytes");
  const size_t groups = static_cast<size_t>(N * (K / group_size));
  const ffi::DataType s_type = scale_type_for(a_type);
  const bool has_scale = args->mode != ScaleMode::kNone;
  const bool has_zeros = args->mode >= ScaleMode::kOriginal;
  if (has_scale != (scale.element_count() > 0) || (has_scale && scale.element_count() != groups) ||
      (has_scale && scale.element_type() != s_type))
    return arg_error("scale must be [N, K/group_size] in A's dtype (float32 for int8 / float8 A) "
                     "exactly when the mode scales");
  if (has_zeros != (zeros.element_count() > 0) || (has_zeros && zeros.element_count() != groups))
    return arg_error("zeros must be [N, K/group_size] exactly when the mode has zeros");
  if (has_zeros) {
    const ffi::DataType want = args->mode != ScaleMode::kQuantized ? s_type
                               : format_is_signed_int(args->w_format) ? ffi::DataType::S8
                                                                      : ffi::DataType::U8;
    if (zeros.element_type() != want) return arg_error("zeros has the wrong dtype for the mode");
  }
  args->W = static_cast<const uint8_t*>(W.untyped_data());
  args->scale = has_scale ? scale.untyped_data() : nullptr;
  args->zeros = has_zeros ? zeros.untyped_data() : nullptr;
  return ffi::Error::Success();
}

// Fills *args from the call; every mismatch is an InvalidArgument error.
inline ffi::Error make_matmul_args(ffi::AnyBuffer A, ffi::AnyBuffer W, ffi::AnyBuffer scale,
                                   ffi::AnyBuffer zeros, ffi::AnyBuffer bias,
                                   ffi::AnyBuffer C, int64_t w_format, int64_t mode,
                                   int64_t group_size, int64_t accum_dtype, int64_t N, int64_t K,
                                   MatmulArgs* args) {
  if (accum_dtype < 0 || accum_dtype >= kNumDTypes) return arg_error("bad accum_dtype");
  args->accum_dtype = static_cast<DType>(accum_dtype);
  if (!to_dtype(A.element_type(), &args->a_dtype))
    return arg_error("A must be f16, bf16, f32, s8, f8e4m3fn or f8e5m2");
  if (!to_dtype(C.element_type(), &args->out_dtype))
    return arg_error("C must be f16, bf16, f32, s8 or s32");
  if (ffi::Error e = set_weight_args(W, scale, zeros, A.element_type(), w_format, mode, group_size, N, K, args);
      e.failure())
    return e;
  auto ad = A.dimensions();
  if (ad.size() != 2 || ad[1] != K) return arg_error("A must be [M, K]");
  args->M = ad[0];
  auto cd = C.dimensions();
  if (cd.size() != 2 || cd[0] != args->M || cd[1] != N) return arg_error("C must be [M, N]");
  if (bias.element_count() != 0 &&
      (bias.element_count() != static_cast<size_t>(N) ||
       bias.element_type() != scale_type_for(A.element_type())))
    return arg_error("bias must be [N] in A's dtype (float32 for int8 / float8 A)");
  args->A = A.untyped_data();
  args->bias = bias.element_count() ? bias.untyped_data() : nullptr;
  args->C = C.untyped_data();
  return ffi::Error::Success();
}

// gemm_cutlass's group terms held with the weight (Matmul.group_terms), on a call whose weight operands *args
// already holds: [2, rows, N] in A's dtype (rows: plan::gemm_cutlass_held_terms_rows), or empty. Every platform
// checks them; only gemm_cutlass reads them (the other kernels, and the CPU, read scale and zeros).
inline ffi::Error set_group_terms(ffi::AnyBuffer terms, MatmulArgs* args) {
  args->group_terms = nullptr;
  if (terms.element_count() == 0) return ffi::Error::Success();
  // the rule bitblas_jax/group_terms.py takes asks too: a call gemm_cutlass can run
  const bool a16 = args->a_dtype == DType::kF16 || args->a_dtype == DType::kBF16;
  if (!a16 || !plan::gemm_cutlass_takes(args->w_format, args->out_dtype == args->a_dtype,
                                        args->accum_dtype == DType::kF32, args->group_size, args->N, args->K))
    return arg_error("group_terms serve only calls gemm_cutlass can run (float16 / bfloat16 A and output, float32 "
                     "accumulation, int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights, groups of whole 64-k "
                     "stages or one per row); pass an empty array");
  const int64_t rows = plan::gemm_cutlass_held_terms_rows(static_cast<int>(args->mode), args->group_size, args->K);
  ffi::DataType want = args->a_dtype == DType::kF16 ? ffi::DataType::F16 : ffi::DataType::BF16;
  auto d = terms.dimensions();
  if (terms.element_type() != want || d.size() != 3 || d[0] != 2 || d[1] != rows || d[2] != args->N)
    return arg_error("group_terms must be [2, " + std::to_string(rows) + ", N] in A's dtype "
                     "(Matmul.group_terms of this call's scale and zeros)");
  args->group_terms = terms.untyped_data();
  return ffi::Error::Success();
}

// The binding shared by both platforms' handlers (the CUDA one adds a stream,
// a workspace result and its plan attributes).
#define BITBLAS_JAX_MATMUL_OPERANDS(binding)                                       \
  binding.Arg<ffi::AnyBuffer>()     /* A */                                        \
      .Arg<ffi::AnyBuffer>()        /* W */                                        \
      .Arg<ffi::AnyBuffer>()        /* scale */                                    \
      .Arg<ffi::AnyBuffer>()        /* zeros */                                    \
      .Arg<ffi::AnyBuffer>()        /* bias */                                     \
      .Arg<ffi::AnyBuffer>()        /* group_terms */                              \
      .Ret<ffi::AnyBuffer>()        /* C */

#define BITBLAS_JAX_MATMUL_ATTRS(binding)                                          \
  binding.Attr<int64_t>("w_format")                                                \
      .Attr<int64_t>("mode")                                                       \
      .Attr<int64_t>("group_size")                                                 \
      .Attr<int64_t>("accum_dtype")                                                \
      .Attr<int64_t>("N")                                                          \
      .Attr<int64_t>("K")

}  // namespace bitblas_jax
