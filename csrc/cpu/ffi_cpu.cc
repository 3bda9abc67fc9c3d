// XLA FFI handler (platform "cpu") and the pybind11 module _bitblas_cpu.
#include <pybind11/pybind11.h>

#include "bitblas_jax/ffi_args.h"
#include "bitblas_jax/raw_args.h"
#include "matmul_cpu.h"

namespace py = pybind11;
namespace bitblas_jax {
namespace {

ffi::Error MatmulCpuImpl(ffi::AnyBuffer A, ffi::AnyBuffer W, ffi::AnyBuffer scale,
                         ffi::AnyBuffer zeros, ffi::AnyBuffer bias, ffi::AnyBuffer group_terms,
                         ffi::Result<ffi::AnyBuffer> C, int64_t w_format, int64_t mode, int64_t group_size,
                         int64_t accum_dtype, int64_t N, int64_t K) {
  MatmulArgs args;
  if (ffi::Error e = make_matmul_args(A, W, scale, zeros, bias, *C, w_format, mode, group_size,
                                      accum_dtype, N, K, &args);
      e.failure())
    return e;
  if (ffi::Error e = set_group_terms(group_terms, &args); e.failure()) return e;  // checked; the CPU reads scale
  std::string err = matmul_cpu(args);
  if (!err.empty()) return ffi::Error::InvalidArgument("bitblas_jax_matmul (cpu): " + err);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER(
    kMatmulCpu, MatmulCpuImpl,
    BITBLAS_JAX_MATMUL_ATTRS(BITBLAS_JAX_MATMUL_OPERANDS(ffi::Ffi::Bind())));

// For the torch shim: the same kernel on raw host pointers.
void matmul_raw(int64_t M, int64_t N, int64_t K, int w_format, int a_dtype, int accum_dtype,
                int out_dtype, int mode, int64_t group_size, uintptr_t A, uintptr_t W,
                uintptr_t scale, uintptr_t zeros, uintptr_t bias, uintptr_t C) {
  const MatmulArgs a = raw_matmul_args(M, N, K, w_format, a_dtype, accum_dtype, out_dtype, mode,
                                       group_size, A, W, scale, zeros, bias, C);
  std::string err;
  {
    py::gil_scoped_release release;
    err = matmul_cpu(a);
  }
  if (!err.empty()) throw std::invalid_argument("bitblas_jax matmul (cpu): " + err);
}

}  // namespace
}  // namespace bitblas_jax

PYBIND11_MODULE(_bitblas_cpu, m) {
  m.doc() = "bitblas_jax CPU kernels";
  m.def("registrations", []() {
    py::dict d;
    d["bitblas_jax_matmul"] =
        py::capsule(reinterpret_cast<void*>(bitblas_jax::kMatmulCpu), "xla._CUSTOM_CALL_TARGET");
    return d;
  });
  m.def("matmul_raw", &bitblas_jax::matmul_raw, "Run the CPU kernel on raw pointers (torch shim).");
}
