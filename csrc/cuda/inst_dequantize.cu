// The dequantize kernels: every format class x {f16, bf16}.
#include "dequantize.cuh"
#include "kernels.h"

namespace bitblas_jax {
namespace cudak {

template <typename T>
static KernelEntry dequantize_pick(int fc) {
  KernelEntry e;
  switch (fc) {
    case FC_I1: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_I1, T>); break;
    case FC_I2: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_I2, T>); break;
    case FC_I4: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_I4, T>); break;
    case FC_I8: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_I8, T>); break;
    case FC_NF4: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_NF4, T>); break;
    case FC_FP4: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_FP4, T>); break;
    case FC_E4M3: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_E4M3, T>); break;
    case FC_E5M2: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_E5M2, T>); break;
    case FC_F16: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_F16, T>); break;
    case FC_BF16: e.fn = reinterpret_cast<const void*>(&dequantize_kernel<FC_BF16, T>); break;
    default: break;
  }
  e.threads = kDequantWarps * 32;
  return e;
}

KernelEntry dequantize_entry(int tc, int fc) {
  return tc == TC_BF16 ? dequantize_pick<__nv_bfloat16>(fc) : dequantize_pick<__half>(fc);
}

}  // namespace cudak
}  // namespace bitblas_jax
