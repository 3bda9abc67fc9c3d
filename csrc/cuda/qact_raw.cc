// The torch shim's entries for the int8-activation kernels (bitblas_jax/torch/quantized.py): the same
// launchers as the XLA FFI handlers bitblas_jax_decode_i8 / bitblas_jax_gemm_i8 (ffi_cuda.cc), on raw
// device pointers and a raw stream (torch's current stream, as an int), like matmul_raw. The caller sets
// the device and applies the rest of the epilogue (quantized_dot.finish). A launch the kernel refuses
// raises ValueError, a failed launch RuntimeError; both name the kernel.
#include "qact_raw.h"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/plan.h"
#include "decode_i8.h"
#include "gemm_wgmma_i8.h"

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

// out: int32 S [M, N] (scaled false: mode none) or float32 v (scaled: mode scale, group_size a multiple
// of 32 dividing K; per channel is group_size K).
void decode_i8_raw(int64_t M, int64_t N, int64_t K, int w_format, bool scaled, int64_t group_size, uintptr_t A,
                   uintptr_t W, uintptr_t scale, uintptr_t out, uintptr_t stream) {
  DecodeI8Args d;
  d.M = M;
  d.N = N;
  d.K = K;
  d.w_format = checked_format(w_format, "decode_i8");
  d.scaled = scaled;
  d.group_size = group_size;
  d.A = reinterpret_cast<const int8_t*>(A);
  d.W = reinterpret_cast<const uint8_t*>(W);
  d.scale = reinterpret_cast<const float*>(scale);
  d.out = reinterpret_cast<void*>(out);
  std::string err;
  {
    py::gil_scoped_release release;
    err = launch_decode_i8(d, reinterpret_cast<cudaStream_t>(stream));
  }
  raise_on(err, "decode_i8");
}

// ---- gemm_wgmma_i8 ---------------------------------------------------------------------------------
// Written against launch_gemm_wgmma_i8(GemmI8Args) as the FFI handler bitblas_jax_gemm_i8 fills it: A in
// the kernel's kSigma order (the caller permutes it), W the packed int8 / int4 / uint4 weight, out int32 S
// [M, N], or float32 v when the kernel applies group scales of plan::kGemmI8Group itself
// (plan::gemm_wgmma_i8_scales); mode and group_size as the matmul call's.
void gemm_wgmma_i8_raw(int64_t M, int64_t N, int64_t K, int w_format, int mode, int64_t group_size, uintptr_t A,
                       uintptr_t W, uintptr_t scale, uintptr_t out, uintptr_t stream) {
  const WFormat f = checked_format(w_format, "gemm_wgmma_i8");
  if (!plan::gemm_wgmma_i8_takes(f, mode, group_size, K))
    raise_on("takes int8 / int4 / uint4 weights, K a multiple of 128, mode none or scale per channel or in "
             "groups of 128 (gpu_plan.quantized_activation_kernel)", "gemm_wgmma_i8");
  const bool scales = plan::gemm_wgmma_i8_scales(mode, group_size);
  if (scales && !scale) raise_on("group scales need scale", "gemm_wgmma_i8");
  GemmI8Args g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.A = reinterpret_cast<const int8_t*>(A);
  g.W = reinterpret_cast<const uint8_t*>(W);
  g.bits = format_bits(f);
  g.is_signed = format_is_signed_int(f);
  g.scale = scales ? reinterpret_cast<const float*>(scale) : nullptr;
  g.out = reinterpret_cast<void*>(out);
  std::string err;
  {
    py::gil_scoped_release release;
    err = launch_gemm_wgmma_i8(g, reinterpret_cast<cudaStream_t>(stream));
  }
  raise_on(err, "gemm_wgmma_i8");
}

}  // namespace

void def_qact_raw(py::module_& m) {
  m.def("decode_i8_raw", &decode_i8_raw, py::arg("M"), py::arg("N"), py::arg("K"), py::arg("w_format"),
        py::arg("scaled"), py::arg("group_size"), py::arg("A"), py::arg("W"), py::arg("scale"), py::arg("out"),
        py::arg("stream"),
        "decode_i8 on raw device pointers and a raw cudaStream_t (torch shim): int32 S or float32 v.");
  m.def("gemm_wgmma_i8_raw", &gemm_wgmma_i8_raw, py::arg("M"), py::arg("N"), py::arg("K"), py::arg("w_format"),
        py::arg("mode"), py::arg("group_size"), py::arg("A"), py::arg("W"), py::arg("scale"), py::arg("out"),
        py::arg("stream"),
        "gemm_wgmma_i8 on raw device pointers and a raw cudaStream_t (torch shim; A in kSigma order).");
}

}  // namespace bitblas_jax
