// Instantiations and the host launcher of gemm_wgmma_i8 (gemm_wgmma_i8.cuh): int8 / int4 / uint4
// weights; 64, 128 or 256 activation rows per CTA, the smallest that holds M.
#include "gemm_wgmma_i8.cuh"
#include "tma_map.h"

namespace bitblas_jax {
namespace {

template <int BITS, bool SIGNED, int BM>
std::string launch_rows(const GemmI8Args& a, cudaStream_t stream) {
  using Cfg = cudak::GemmI8Cfg<BITS, BM>;
  const void* fn = reinterpret_cast<const void*>(&cudak::gemm_wgmma_i8_kernel<BITS, SIGNED, BM>);
  cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM);
  if (e != cudaSuccess) return std::string("CUDA error in cudaFuncSetAttribute: ") + cudaGetErrorString(e);
  CUtensorMap map;
  if (std::string err = encode_act_map(a.A, a.M, a.K, 1, BM, &map); !err.empty()) return err;
  const dim3 grid(static_cast<unsigned>((a.N + 127) / 128), static_cast<unsigned>((a.M + BM - 1) / BM));
  cudak::gemm_wgmma_i8_kernel<BITS, SIGNED, BM><<<grid, Cfg::THREADS, Cfg::SMEM, stream>>>(a, map);
  e = cudaGetLastError();
  return e == cudaSuccess ? "" : std::string("CUDA error in the gemm_wgmma_i8 launch: ") + cudaGetErrorString(e);
}

}  // namespace

std::string launch_gemm_wgmma_i8(const GemmI8Args& a, cudaStream_t stream) {
  if (a.M < 0 || a.N <= 0 || a.N % 16 || a.K <= 0 || a.K % 128)
    return "gemm_wgmma_i8: N a positive multiple of 16, K of 128, M >= 0";
  if (a.M == 0) return "";
  if (!a.A || !a.W || !a.out) return "gemm_wgmma_i8: A, W and out must not be null";
  if (reinterpret_cast<uintptr_t>(a.A) % 16 || reinterpret_cast<uintptr_t>(a.W) % 16)
    return "gemm_wgmma_i8: A and W must be 16-byte aligned";
  if ((a.M + 63) / 64 > 65535) return "gemm_wgmma_i8: M too large for one launch";
  int dev = 0, major = 0, minor = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e != cudaSuccess) return std::string("CUDA error in cudaDeviceGetAttribute: ") + cudaGetErrorString(e);
  if (major != 9 || minor != 0) return "gemm_wgmma_i8 needs an sm_90 GPU";
  auto rows = [&](auto launch64, auto launch128, auto launch256) {
    return a.M <= 64 ? launch64(a, stream) : a.M <= 128 ? launch128(a, stream) : launch256(a, stream);
  };
  if (a.bits == 8 && a.is_signed)
    return rows(launch_rows<8, true, 64>, launch_rows<8, true, 128>, launch_rows<8, true, 256>);
  if (a.bits == 4 && a.is_signed)
    return rows(launch_rows<4, true, 64>, launch_rows<4, true, 128>, launch_rows<4, true, 256>);
  if (a.bits == 4)
    return rows(launch_rows<4, false, 64>, launch_rows<4, false, 128>, launch_rows<4, false, 256>);
  return "gemm_wgmma_i8 takes int8, int4 and uint4 weights";
}

}  // namespace bitblas_jax
