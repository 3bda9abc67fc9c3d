// The host launcher of gemm_wgmma_a8 (gemm_wgmma_a8.cuh) and its int8-activation instantiations:
// int8 / int4 / uint4 weights, int32 sums (64, 128 or 256 activation rows per CTA) or group scales
// of 128 k (64 or 128 rows). The float8 ones are inst_gemm_wgmma_a8_f8.cu.
#include "bitblas_jax/plan.h"
#include "qact_epilogue_args.h"
#include "inst_gemm_wgmma_a8.inc"

namespace bitblas_jax {
namespace a8 {

std::string launch_int8(const GemmA8Args& a, int num_sms, cudaStream_t stream) {
  if (a.scale) {
    switch (a.w_format) {
      case WFormat::kInt8: return launch_m<DType::kI8, WFormat::kInt8, true, false>(a, num_sms, stream);
      case WFormat::kInt4: return launch_m<DType::kI8, WFormat::kInt4, true, false>(a, num_sms, stream);
      case WFormat::kUInt4: return launch_m<DType::kI8, WFormat::kUInt4, true, false>(a, num_sms, stream);
      default: break;
    }
  } else {
    switch (a.w_format) {
      case WFormat::kInt8: return launch_m<DType::kI8, WFormat::kInt8, false, true>(a, num_sms, stream);
      case WFormat::kInt4: return launch_m<DType::kI8, WFormat::kInt4, false, true>(a, num_sms, stream);
      case WFormat::kUInt4: return launch_m<DType::kI8, WFormat::kUInt4, false, true>(a, num_sms, stream);
      default: break;
    }
  }
  return "gemm_wgmma_a8: int8 activations take int8, int4 and uint4 weights";
}

}  // namespace a8

std::string launch_gemm_wgmma_a8(const GemmA8Args& a, cudaStream_t stream) {
  if (a.M < 0 || a.N <= 0 || a.N % 16 || a.K <= 0 || a.K % plan::kGemmA8Stage)
    return "gemm_wgmma_a8: N a positive multiple of 16, K of 128, M >= 0";
  if (a.scale) {
    const bool int8_groups = a.act == DType::kI8 && a.group_size == plan::kGemmA8Stage;
    const bool float8_groups = plan::is_float8(a.act) && a.group_size > 0 &&
                               a.group_size % plan::kGemmA8Stage == 0 && a.K % a.group_size == 0;
    if (!int8_groups && !float8_groups)
      return "gemm_wgmma_a8: group scales of 128 k (int8 activations) or whole multiples of 128 dividing K (float8)";
    if (reinterpret_cast<uintptr_t>(a.scale) % 4) return "gemm_wgmma_a8: scale must be 4-byte aligned";
  }
  const bool int32_sums = a.act == DType::kI8 && !a.scale;
  if (std::string err = check_qact_epilogue("gemm_wgmma_a8", a.out_dtype, int32_sums, a.scale, a.col_scale, a.row_scale,
                                            a.bias);
      !err.empty())
    return err;
  if (a.M == 0) return "";
  if (!a.A || !a.W || !a.out) return "gemm_wgmma_a8: A, W and out must not be null";
  if (reinterpret_cast<uintptr_t>(a.A) % 16 || reinterpret_cast<uintptr_t>(a.W) % 16 ||
      reinterpret_cast<uintptr_t>(a.out) % 16)
    return "gemm_wgmma_a8: A, W and out must be 16-byte aligned";
  int dev = 0, major = 0, minor = 0, num_sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return std::string("CUDA error in cudaDeviceGetAttribute: ") + cudaGetErrorString(e);
  if (major != 9 || minor != 0) return "gemm_wgmma_a8 needs an sm_90 GPU";
  if (a.act == DType::kI8) return a8::launch_int8(a, num_sms, stream);
  if (plan::is_float8(a.act)) return a8::launch_float8(a, num_sms, stream);
  return "gemm_wgmma_a8: activations must be int8, float8_e4m3fn or float8_e5m2";
}

}  // namespace bitblas_jax
