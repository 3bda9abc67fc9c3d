// The torch shim's entries for the 8-bit-activation kernels (bitblas_jax/torch/quantized_cuda.py): the same
// launchers as the XLA FFI handlers bitblas_jax_decode_i8 / bitblas_jax_gemm_a8 (ffi_cuda.cc), on raw
// device pointers and a raw stream (torch's current stream, as an int), like matmul_raw. Each writes the
// output itself (its epilogue: per-channel and activation scales, bias, the cast); the caller sets the device. A launch
// the kernel refuses raises ValueError, a failed launch RuntimeError; both name the kernel.
#include "qact_raw.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/plan.h"
#include "decode_i8.h"
#include "gemm_mma_a8.h"
#include "gemm_wgmma_a8.h"

namespace py = pybind11;
namespace bitblas_jax {
namespace {

void raise_on(const std::string& err, const char* kernel) {
  if (err.empty()) return;
  const std::string msg = std::string("bitblas_jax ") + kernel + " (cuda): " + err;
  if (err.rfind("CUDA error", 0) == 0) throw std::runtime_error(msg);
  throw std::invalid_argument(msg);
}

WFormat checked_format(int w_format, const char* kernel) {
  if (w_format < 0 || w_format >= kNumWFormats)
    throw std::invalid_argument(std::string("bitblas_jax ") + kernel + " (cuda): bad w_format id");
  return static_cast<WFormat>(w_format);
}

// The kernels of DecodeI8Args (decode_i8, and gemm_mma_a8 with A in kSigma order), as the FFI handler
// fills them: mode and group_size as the matmul call's (group scales in the main loop, per-channel ones
// in the epilogue: plan::a8_kernel_scales), bias float32 [N] or 0, row_scale (the activation scales)
// float32 [M] or 0, out [M, N] of out_dtype (a DType id; int32: the exact sums in mode none, without bias).
template <std::string (*LAUNCH)(const DecodeI8Args&, cudaStream_t), bool (*TAKES)(WFormat, int, int64_t, int64_t)>
void int8_sums_raw(const char* kernel, int64_t M, int64_t N, int64_t K, int w_format, int mode, int64_t group_size,
                   uintptr_t A, uintptr_t W, uintptr_t scale, uintptr_t bias, uintptr_t row_scale, int out_dtype,
                   uintptr_t out, uintptr_t stream) {
  if (out_dtype < 0 || out_dtype >= kNumDTypes) raise_on("bad out_dtype id", kernel);
  if (!TAKES(checked_format(w_format, kernel), mode, group_size, K))
    raise_on("takes int8, int4 .. int1 and uint4 .. uint1 weights, mode none, or mode scale with a group_size "
             "that is a multiple of 32 dividing K (gpu_plan.quantized_activation_kernel)", kernel);
  const bool scaled = mode == static_cast<int>(ScaleMode::kScale);
  const bool group_scales = plan::a8_kernel_scales(mode, group_size, K);
  if (scaled && !scale) raise_on("mode scale needs scale", kernel);
  DecodeI8Args d;
  d.M = M;
  d.N = N;
  d.K = K;
  d.w_format = checked_format(w_format, kernel);
  d.scaled = group_scales;
  d.group_size = group_scales ? group_size : K;
  d.A = reinterpret_cast<const int8_t*>(A);
  d.W = reinterpret_cast<const uint8_t*>(W);
  d.scale = group_scales ? reinterpret_cast<const float*>(scale) : nullptr;
  d.col_scale = scaled && !group_scales ? reinterpret_cast<const float*>(scale) : nullptr;
  d.bias = reinterpret_cast<const float*>(bias);
  d.row_scale = reinterpret_cast<const float*>(row_scale);
  d.out_dtype = static_cast<DType>(out_dtype);
  d.out = reinterpret_cast<void*>(out);
  std::string err;
  {
    py::gil_scoped_release release;
    err = LAUNCH(d, reinterpret_cast<cudaStream_t>(stream));
  }
  raise_on(err, kernel);
}

void decode_i8_raw(int64_t M, int64_t N, int64_t K, int w_format, int mode, int64_t group_size, uintptr_t A,
                   uintptr_t W, uintptr_t scale, uintptr_t bias, uintptr_t row_scale, int out_dtype, uintptr_t out,
                   uintptr_t stream) {
  int8_sums_raw<launch_decode_i8, plan::decode_i8_takes>("decode_i8", M, N, K, w_format, mode, group_size, A, W,
                                                         scale, bias, row_scale, out_dtype, out, stream);
}

void gemm_mma_a8_raw(int64_t M, int64_t N, int64_t K, int w_format, int mode, int64_t group_size, uintptr_t A,
                     uintptr_t W, uintptr_t scale, uintptr_t bias, uintptr_t row_scale, int out_dtype, uintptr_t out,
                     uintptr_t stream) {
  int8_sums_raw<launch_gemm_mma_a8, plan::gemm_mma_a8_takes>("gemm_mma_a8", M, N, K, w_format, mode, group_size, A,
                                                             W, scale, bias, row_scale, out_dtype, out, stream);
}

// ---- gemm_wgmma_a8 ---------------------------------------------------------------------------------
// As the FFI handler bitblas_jax_gemm_a8 fills GemmA8Args: A (int8 / float8, a DType id) in the kernel's
// kSigma order (the caller permutes it), W the packed weight, scale as the matmul call's (group scales
// in the main loop, per-channel ones in the epilogue: plan::a8_kernel_scales), bias float32 [N] or 0,
// row_scale (the activation scales) float32 [M] or 0, out [M, N] of out_dtype (a DType id; int32: the
// exact sums of int8 A in mode none, without bias).
void gemm_wgmma_a8_raw(int64_t M, int64_t N, int64_t K, int a_dtype, int w_format, int mode, int64_t group_size,
                       uintptr_t A, uintptr_t W, uintptr_t scale, uintptr_t bias, uintptr_t row_scale, int out_dtype,
                       uintptr_t out, uintptr_t stream) {
  const WFormat f = checked_format(w_format, "gemm_wgmma_a8");
  if (a_dtype < 0 || a_dtype >= kNumDTypes) raise_on("bad a_dtype id", "gemm_wgmma_a8");
  if (out_dtype < 0 || out_dtype >= kNumDTypes) raise_on("bad out_dtype id", "gemm_wgmma_a8");
  const DType act = static_cast<DType>(a_dtype);
  if (!plan::gemm_wgmma_a8_takes(act, f, mode, group_size, K))
    raise_on("takes K a multiple of 128 and mode none or scale: int8 A with int8 / int4 / uint4 weights, per "
             "channel or in groups of 128; float8 A with float8 / int4 weights, per channel or in groups of a "
             "multiple of 128 (gpu_plan.quantized_activation_kernel)", "gemm_wgmma_a8");
  const bool scaled = mode == static_cast<int>(ScaleMode::kScale);
  const bool group_scales = plan::a8_kernel_scales(mode, group_size, K);
  if (scaled && !scale) raise_on("mode scale needs scale", "gemm_wgmma_a8");
  GemmA8Args g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.A = reinterpret_cast<const void*>(A);
  g.act = act;
  g.W = reinterpret_cast<const uint8_t*>(W);
  g.w_format = f;
  g.scale = group_scales ? reinterpret_cast<const float*>(scale) : nullptr;
  g.group_size = group_size;
  g.col_scale = scaled && !group_scales ? reinterpret_cast<const float*>(scale) : nullptr;
  g.bias = reinterpret_cast<const float*>(bias);
  g.row_scale = reinterpret_cast<const float*>(row_scale);
  g.out_dtype = static_cast<DType>(out_dtype);
  g.out = reinterpret_cast<void*>(out);
  std::string err;
  {
    py::gil_scoped_release release;
    err = launch_gemm_wgmma_a8(g, reinterpret_cast<cudaStream_t>(stream));
  }
  raise_on(err, "gemm_wgmma_a8");
}

}  // namespace

void def_qact_raw(py::module_& m) {
  m.def("decode_i8_raw", &decode_i8_raw, py::arg("M"), py::arg("N"), py::arg("K"), py::arg("w_format"),
        py::arg("mode"), py::arg("group_size"), py::arg("A"), py::arg("W"), py::arg("scale"), py::arg("bias"),
        py::arg("row_scale"), py::arg("out_dtype"), py::arg("out"), py::arg("stream"),
        "decode_i8 on raw device pointers and a raw cudaStream_t (torch shim): the output with per-channel "
        "and activation scales, bias and the cast applied.");
  m.def("gemm_mma_a8_raw", &gemm_mma_a8_raw, py::arg("M"), py::arg("N"), py::arg("K"), py::arg("w_format"),
        py::arg("mode"), py::arg("group_size"), py::arg("A"), py::arg("W"), py::arg("scale"), py::arg("bias"),
        py::arg("row_scale"), py::arg("out_dtype"), py::arg("out"), py::arg("stream"),
        "gemm_mma_a8 on raw device pointers and a raw cudaStream_t (torch shim; A in kSigma order): as decode_i8_raw.");
  m.def("gemm_wgmma_a8_raw", &gemm_wgmma_a8_raw, py::arg("M"), py::arg("N"), py::arg("K"), py::arg("a_dtype"),
        py::arg("w_format"), py::arg("mode"), py::arg("group_size"), py::arg("A"), py::arg("W"), py::arg("scale"),
        py::arg("bias"), py::arg("row_scale"), py::arg("out_dtype"), py::arg("out"), py::arg("stream"),
        "gemm_wgmma_a8 on raw device pointers and a raw cudaStream_t (torch shim; A in kSigma order): the "
        "output with per-channel and activation scales, bias and the cast applied.");
}

}  // namespace bitblas_jax
