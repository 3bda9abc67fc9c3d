// XLA FFI handler (platform "CUDA") and the pybind11 module _bitblas_cuda.
// Compiled by the host C++ compiler; the kernels live in the .cu files.
#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bitblas_jax/ffi_args.h"
#include "bitblas_jax/raw_args.h"
#include "decode_i8.h"
#include "gemm_cutlass.h"
#include "gemm_mma_a8.h"
#include "gemm_wgmma_a8.h"
#include "matmul_cuda.h"
#include "qact_raw.h"

namespace py = pybind11;
namespace bitblas_jax {
namespace {

ffi::Error to_ffi_error(const std::string& err, const char* target = "bitblas_jax_matmul") {
  const std::string msg = std::string(target) + " (cuda): " + err;
  if (err.rfind("CUDA error", 0) == 0) return ffi::Error::Internal(msg);
  return ffi::Error::InvalidArgument(msg);
}

ffi::Error MatmulCudaImpl(cudaStream_t stream, ffi::AnyBuffer A, ffi::AnyBuffer W, ffi::AnyBuffer scale,
                          ffi::AnyBuffer zeros, ffi::AnyBuffer bias, ffi::AnyBuffer group_terms,
                          ffi::Result<ffi::AnyBuffer> C, ffi::Result<ffi::AnyBuffer> workspace, int64_t w_format,
                          int64_t mode, int64_t group_size, int64_t accum_dtype, int64_t N, int64_t K,
                          int64_t kernel, int64_t tile, int64_t split_k) {
  MatmulArgs args;
  if (ffi::Error e = make_matmul_args(A, W, scale, zeros, bias, *C, w_format, mode, group_size,
                                      accum_dtype, N, K, &args);
      e.failure())
    return e;
  if (ffi::Error e = set_group_terms(group_terms, &args); e.failure()) return e;
  if (workspace->element_type() != ffi::DataType::U8 || workspace->dimensions().size() != 1)
    return arg_error("workspace must be a 1-D uint8 buffer");
  const std::string err =
      matmul_cuda(args, static_cast<plan::Kernel>(kernel), static_cast<int>(tile), split_k,
                  workspace->untyped_data(), workspace->size_bytes(), stream);
  if (!err.empty()) return to_ffi_error(err);
  return ffi::Error::Success();
}

// Binding: stream, A, W, scale, zeros, bias, group_terms, C, workspace, the CPU attributes + the plan's kernel,
// tile and split_k (bitblas_jax/gpu_plan.py, from plan::make_plan).
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    bitblas_jax_matmul_cuda, MatmulCudaImpl,
    BITBLAS_JAX_MATMUL_ATTRS(
        BITBLAS_JAX_MATMUL_OPERANDS(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>())
            .Ret<ffi::AnyBuffer>() /* workspace */)
        .Attr<int64_t>("kernel")
        .Attr<int64_t>("tile")
        .Attr<int64_t>("split_k"),
    {ffi::Traits::kCmdBufferCompatible});

// dequantize_then_dot's first half: the dequantized weight [N, K] in the output's
// dtype (f16 / bf16), then XLA's dot (bitblas_jax/primitive.py).
ffi::Error DequantizeCudaImpl(cudaStream_t stream, ffi::AnyBuffer W, ffi::AnyBuffer scale, ffi::AnyBuffer zeros,
                              ffi::Result<ffi::AnyBuffer> out, int64_t w_format, int64_t mode, int64_t group_size,
                              int64_t N, int64_t K) {
  MatmulArgs args;
  const ffi::DataType t = out->element_type();
  if (t != ffi::DataType::F16 && t != ffi::DataType::BF16) return arg_error("dequantize: out must be f16 or bf16");
  args.a_dtype = t == ffi::DataType::F16 ? DType::kF16 : DType::kBF16;
  if (ffi::Error e = set_weight_args(W, scale, zeros, t, w_format, mode, group_size, N, K, &args); e.failure())
    return e;
  auto od = out->dimensions();
  if (od.size() != 2 || od[0] != N || od[1] != K) return arg_error("dequantize: out must be [N, K]");
  args.C = out->untyped_data();
  const std::string err = dequantize_cuda(args, stream);
  if (!err.empty()) return to_ffi_error(err);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(bitblas_jax_dequantize_cuda, DequantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()  // W
                                  .Arg<ffi::AnyBuffer>()  // scale
                                  .Arg<ffi::AnyBuffer>()  // zeros
                                  .Ret<ffi::AnyBuffer>()  // out
                                  .Attr<int64_t>("w_format")
                                  .Attr<int64_t>("mode")
                                  .Attr<int64_t>("group_size")
                                  .Attr<int64_t>("N")
                                  .Attr<int64_t>("K"),
                              {ffi::Traits::kCmdBufferCompatible});

// The kernels of int8 activations that return decode_i8's sums: the same operands, checks and
// outputs, each with its plan.h rule and launcher.
struct Int8SumsKernel {
  const char* name;    // in messages
  const char* target;  // the custom call
  bool (*takes)(WFormat, int, int64_t, int64_t);
  std::string (*launch)(const DecodeI8Args&, cudaStream_t);
};
// decode_i8 (decode_i8.cuh): int8 activations at decode sizes, on the packed weight of every path.
constexpr Int8SumsKernel kDecodeI8{"decode_i8", "bitblas_jax_decode_i8", plan::decode_i8_takes, launch_decode_i8};
// gemm_mma_a8 (gemm_mma_a8.cuh): int8 activations above decode sizes on any sm_80+ GPU, A with each
// 16-k chunk in kSigma order (bitblas_jax/primitive.py permutes it).
constexpr Int8SumsKernel kGemmMmaA8{"gemm_mma_a8", "bitblas_jax_gemm_mma_a8", plan::gemm_mma_a8_takes,
                                    launch_gemm_mma_a8};

// The 8-bit kernels' a_scale operand: the activation scales (Matmul's a_scale, one per row of A), float32
// [M], or empty for none. *row_scale: its data, or null.
ffi::Error row_scale_arg(const std::string& name, ffi::AnyBuffer a_scale, int64_t M, const float** row_scale) {
  *row_scale = nullptr;
  if (a_scale.element_count() == 0) return ffi::Error::Success();
  if (a_scale.element_type() != ffi::DataType::F32 || a_scale.element_count() != static_cast<size_t>(M))
    return arg_error(name + ": a_scale must be float32 [M] (one activation scale per row of A) or empty");
  *row_scale = static_cast<const float*>(a_scale.untyped_data());
  return ffi::Error::Success();
}

// C itself: the kernel's sums (the exact int32 sums, or the float32 sums of the scaled int32 group sums
// with groups smaller than K) through its epilogue: per-channel scales (one group: the kernel runs as
// for mode none), the activation scales (a_scale, per row), the bias and the output cast
// (plan::a8_kernel_scales says which scales go where). An int32 C is the sums themselves (mode none, no
// scales, no bias). Operands and attributes as the matmul call's, then a_scale; zeros is empty in both modes.
template <const Int8SumsKernel& kern>
ffi::Error Int8SumsCudaImpl(cudaStream_t stream, ffi::AnyBuffer A, ffi::AnyBuffer W, ffi::AnyBuffer scale,
                            ffi::AnyBuffer zeros, ffi::AnyBuffer bias, ffi::AnyBuffer a_scale,
                            ffi::Result<ffi::AnyBuffer> out, int64_t w_format, int64_t mode, int64_t group_size,
                            int64_t accum_dtype, int64_t N, int64_t K) {
  const std::string name = kern.name;
  if (A.element_type() != ffi::DataType::S8) return arg_error(name + ": A must be s8");
  if (accum_dtype != static_cast<int64_t>(DType::kI32)) return arg_error(name + ": accum_dtype must be int32");
  MatmulArgs args;
  if (ffi::Error e = make_matmul_args(A, W, scale, zeros, bias, *out, w_format, mode, group_size, accum_dtype,
                                      N, K, &args);
      e.failure())
    return e;
  const bool group_scales = plan::a8_kernel_scales(static_cast<int>(args.mode), group_size, K);
  const bool per_channel = args.mode == ScaleMode::kScale && !group_scales;
  if (!kern.takes(args.w_format, static_cast<int>(args.mode), group_size, K))
    return arg_error(name + " takes int8 .. int1 / uint4 .. uint1 weights, mode none, or mode scale with "
                     "a group_size that is a multiple of 32 (gpu_plan.quantized_activation_kernel)");
  DecodeI8Args d;
  if (ffi::Error e = row_scale_arg(name, a_scale, args.M, &d.row_scale); e.failure()) return e;
  d.M = args.M;
  d.N = N;
  d.K = K;
  d.w_format = args.w_format;
  d.scaled = group_scales;      // per-channel scales are the epilogue's: the kernel sums as for mode none
  d.group_size = group_scales ? group_size : K;
  d.A = static_cast<const int8_t*>(args.A);
  d.W = args.W;
  d.scale = group_scales ? static_cast<const float*>(args.scale) : nullptr;
  d.col_scale = per_channel ? static_cast<const float*>(args.scale) : nullptr;
  d.bias = static_cast<const float*>(args.bias);
  d.out_dtype = args.out_dtype;
  d.out = args.C;
  const std::string err = kern.launch(d, stream);
  if (!err.empty()) return to_ffi_error(err, kern.target);
  return ffi::Error::Success();
}

// The handlers' binding: A, W, scale, zeros, bias, a_scale, out and the matmul call's attributes.
#define BITBLAS_JAX_INT8_SUMS_BINDING                                                   \
  BITBLAS_JAX_MATMUL_ATTRS(ffi::Ffi::Bind()                                             \
                               .Ctx<ffi::PlatformStream<cudaStream_t>>()                \
                               .Arg<ffi::AnyBuffer>() /* A */                           \
                               .Arg<ffi::AnyBuffer>() /* W */                           \
                               .Arg<ffi::AnyBuffer>() /* scale */                       \
                               .Arg<ffi::AnyBuffer>() /* zeros */                       \
                               .Arg<ffi::AnyBuffer>() /* bias */                        \
                               .Arg<ffi::AnyBuffer>() /* a_scale */                     \
                               .Ret<ffi::AnyBuffer>() /* out */)

XLA_FFI_DEFINE_HANDLER_SYMBOL(bitblas_jax_decode_i8_cuda, Int8SumsCudaImpl<kDecodeI8>, BITBLAS_JAX_INT8_SUMS_BINDING,
                              {ffi::Traits::kCmdBufferCompatible});
XLA_FFI_DEFINE_HANDLER_SYMBOL(bitblas_jax_gemm_mma_a8_cuda, Int8SumsCudaImpl<kGemmMmaA8>,
                              BITBLAS_JAX_INT8_SUMS_BINDING, {ffi::Traits::kCmdBufferCompatible});

// gemm_wgmma_a8 (gemm_wgmma_a8.cuh): int8 / float8 activations above decode sizes on sm_90, the weights
// in the packed layout of every path. A comes with each 16-k chunk in the kernel's kSigma order
// (bitblas_jax/primitive.py permutes it). The output is C itself: the kernel's epilogue applies
// per-channel and activation scales, the bias and the cast (int32 C: the exact int32 sums, mode none
// without scales or bias). Operands and attributes as the matmul call's (zeros only for the checks), then
// a_scale (row_scale_arg).
ffi::Error GemmA8CudaImpl(cudaStream_t stream, ffi::AnyBuffer A, ffi::AnyBuffer W, ffi::AnyBuffer scale,
                          ffi::AnyBuffer zeros, ffi::AnyBuffer bias, ffi::AnyBuffer a_scale,
                          ffi::Result<ffi::AnyBuffer> out, int64_t w_format, int64_t mode, int64_t group_size,
                          int64_t accum_dtype, int64_t N, int64_t K) {
  DType act;
  switch (A.element_type()) {
    case ffi::DataType::S8: act = DType::kI8; break;
    case ffi::DataType::F8E4M3FN: act = DType::kF8E4M3; break;
    case ffi::DataType::F8E5M2: act = DType::kF8E5M2; break;
    default: return arg_error("gemm_wgmma_a8: A must be s8, f8e4m3fn or f8e5m2");
  }
  const DType accum = act == DType::kI8 ? DType::kI32 : DType::kF32;
  if (accum_dtype != static_cast<int64_t>(accum))
    return arg_error("gemm_wgmma_a8: accum_dtype must be int32 (int8 A) or float32 (float8 A)");
  MatmulArgs args;
  if (ffi::Error e = make_matmul_args(A, W, scale, zeros, bias, *out, w_format, mode, group_size, accum_dtype,
                                      N, K, &args);
      e.failure())
    return e;
  if (!plan::gemm_wgmma_a8_takes(act, args.w_format, static_cast<int>(args.mode), group_size, K))
    return arg_error("gemm_wgmma_a8 takes K a multiple of 128 and mode none or scale: int8 A with int8 / int4 / "
                     "uint4 weights, per channel or in groups of 128; float8 A with float8 / int4 weights, per "
                     "channel or in groups of a multiple of 128 (gpu_plan.quantized_activation_kernel)");
  const bool scaled = args.mode == ScaleMode::kScale;
  const bool group_scales = plan::a8_kernel_scales(static_cast<int>(args.mode), group_size, K);
  GemmA8Args g;
  if (ffi::Error e = row_scale_arg("gemm_wgmma_a8", a_scale, args.M, &g.row_scale); e.failure()) return e;
  g.M = args.M;
  g.N = N;
  g.K = K;
  g.A = args.A;
  g.act = act;
  g.W = args.W;
  g.w_format = args.w_format;
  g.scale = group_scales ? static_cast<const float*>(args.scale) : nullptr;
  g.group_size = group_size;
  g.col_scale = scaled && !group_scales ? static_cast<const float*>(args.scale) : nullptr;
  g.bias = static_cast<const float*>(args.bias);
  g.out_dtype = args.out_dtype;
  g.out = args.C;
  const std::string err = launch_gemm_wgmma_a8(g, stream);
  if (!err.empty()) return to_ffi_error(err, "bitblas_jax_gemm_a8");
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    bitblas_jax_gemm_a8_cuda, GemmA8CudaImpl,
    BITBLAS_JAX_MATMUL_ATTRS(ffi::Ffi::Bind()
                                 .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                 .Arg<ffi::AnyBuffer>()   // A (kSigma order)
                                 .Arg<ffi::AnyBuffer>()   // W
                                 .Arg<ffi::AnyBuffer>()   // scale
                                 .Arg<ffi::AnyBuffer>()   // zeros
                                 .Arg<ffi::AnyBuffer>()   // bias
                                 .Arg<ffi::AnyBuffer>()   // a_scale
                                 .Ret<ffi::AnyBuffer>()), // out
    {ffi::Traits::kCmdBufferCompatible});

// For the torch shim: the same dispatcher on raw device pointers and a raw
// stream (torch's current stream, as an int); the caller sets the device. group_terms: held group terms
// (MatmulArgs::group_terms, checked by the caller: bitblas_jax/torch/ops.py), or 0.
void matmul_raw(int64_t M, int64_t N, int64_t K, int w_format, int a_dtype, int accum_dtype, int out_dtype,
                int mode, int64_t group_size, uintptr_t A, uintptr_t W, uintptr_t scale, uintptr_t zeros,
                uintptr_t bias, uintptr_t C, int64_t kernel, int64_t tile, int64_t split_k, uintptr_t workspace,
                int64_t workspace_bytes, uintptr_t stream, uintptr_t group_terms) {
  if (workspace_bytes < 0) throw std::invalid_argument("bad workspace_bytes");
  MatmulArgs a = raw_matmul_args(M, N, K, w_format, a_dtype, accum_dtype, out_dtype, mode,
                                 group_size, A, W, scale, zeros, bias, C);
  a.group_terms = reinterpret_cast<const void*>(group_terms);
  std::string err;
  {
    py::gil_scoped_release release;
    err = matmul_cuda(a, static_cast<plan::Kernel>(kernel), static_cast<int>(tile), split_k,
                      reinterpret_cast<void*>(workspace),
                      static_cast<size_t>(workspace_bytes), reinterpret_cast<cudaStream_t>(stream));
  }
  if (!err.empty()) throw std::runtime_error("bitblas_jax matmul (cuda): " + err);
}

}  // namespace
}  // namespace bitblas_jax

PYBIND11_MODULE(_bitblas_cuda, m) {
  m.doc() = "bitblas_jax CUDA kernels";
  m.def("registrations", []() {
    py::dict d;
    d["bitblas_jax_matmul"] =
        py::capsule(reinterpret_cast<void*>(bitblas_jax::bitblas_jax_matmul_cuda), "xla._CUSTOM_CALL_TARGET");
    d["bitblas_jax_dequantize"] = py::capsule(reinterpret_cast<void*>(bitblas_jax::bitblas_jax_dequantize_cuda),
                                              "xla._CUSTOM_CALL_TARGET");
    d["bitblas_jax_decode_i8"] = py::capsule(reinterpret_cast<void*>(bitblas_jax::bitblas_jax_decode_i8_cuda),
                                             "xla._CUSTOM_CALL_TARGET");
    d["bitblas_jax_gemm_a8"] = py::capsule(reinterpret_cast<void*>(bitblas_jax::bitblas_jax_gemm_a8_cuda),
                                           "xla._CUSTOM_CALL_TARGET");
    d["bitblas_jax_gemm_mma_a8"] = py::capsule(reinterpret_cast<void*>(bitblas_jax::bitblas_jax_gemm_mma_a8_cuda),
                                               "xla._CUSTOM_CALL_TARGET");
    return d;
  });
  m.def("has_cutlass", &bitblas_jax::gemm_cutlass_built,
        "Whether this build holds gemm_cutlass (CUTLASS's Hopper mixed-input GEMM; the nvidia-cutlass headers).");
  m.def("matmul_raw", &bitblas_jax::matmul_raw,
        "Run the CUDA kernels on raw device pointers and a raw cudaStream_t (torch shim).");
  bitblas_jax::def_qact_raw(m);
}
