// Instantiations and the host launcher of gemm_wgmma_i8 (gemm_wgmma_i8.cuh): int8 / int4 / uint4
// weights, int32 sums or group scales of 128 k; 64, 128 or 256 activation rows per CTA, the smallest
// that holds M (128 at most with group scales).
#include "gemm_wgmma_i8.cuh"
#include "tma_map.h"

namespace bitblas_jax {
namespace {

template <int BITS, bool SIGNED, bool GROUPED, int BM>
std::string launch_rows(const GemmI8Args& a, cudaStream_t stream) {
  using Cfg = cudak::GemmI8Cfg<BITS, BM>;
  const void* fn = reinterpret_cast<const void*>(&cudak::gemm_wgmma_i8_kernel<BITS, SIGNED, GROUPED, BM>);
  cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM);
  if (e != cudaSuccess) return std::string("CUDA error in cudaFuncSetAttribute: ") + cudaGetErrorString(e);
  CUtensorMap map;
  if (std::string err = encode_act_map(a.A, a.M, a.K, 1, BM, &map); !err.empty()) return err;
  const dim3 grid(static_cast<unsigned>((a.N + 127) / 128), static_cast<unsigned>((a.M + BM - 1) / BM));
  cudak::gemm_wgmma_i8_kernel<BITS, SIGNED, GROUPED, BM><<<grid, Cfg::THREADS, Cfg::SMEM, stream>>>(a, map);
  e = cudaGetLastError();
  return e == cudaSuccess ? "" : std::string("CUDA error in the gemm_wgmma_i8 launch: ") + cudaGetErrorString(e);
}

}  // namespace

std::string launch_gemm_wgmma_i8(const GemmI8Args& a, cudaStream_t stream) {
  if (a.M < 0 || a.N <= 0 || a.N % 16 || a.K <= 0 || a.K % 128)
    return "gemm_wgmma_i8: N a positive multiple of 16, K of 128, M >= 0";
  if (a.M == 0) return "";
  if (!a.A || !a.W || !a.out) return "gemm_wgmma_i8: A, W and out must not be null";
  if (a.scale && reinterpret_cast<uintptr_t>(a.scale) % 4) return "gemm_wgmma_i8: scale must be 4-byte aligned";
  if (reinterpret_cast<uintptr_t>(a.A) % 16 || reinterpret_cast<uintptr_t>(a.W) % 16)
    return "gemm_wgmma_i8: A and W must be 16-byte aligned";
  if ((a.M + 63) / 64 > 65535) return "gemm_wgmma_i8: M too large for one launch";
  int dev = 0, major = 0, minor = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e != cudaSuccess) return std::string("CUDA error in cudaDeviceGetAttribute: ") + cudaGetErrorString(e);
  if (major != 9 || minor != 0) return "gemm_wgmma_i8 needs an sm_90 GPU";
  // GROUPED holds three accumulator sets: 64 or 128 activation rows (M > 128 in 128-row CTAs)
  auto rows = [&](auto launch64, auto launch128, auto launch256) {
    return a.M <= 64 ? launch64(a, stream) : a.M <= 128 || a.scale ? launch128(a, stream) : launch256(a, stream);
  };
  if (a.scale) {
    if (a.bits == 8 && a.is_signed)
      return rows(launch_rows<8, true, true, 64>, launch_rows<8, true, true, 128>, launch_rows<8, true, true, 128>);
    if (a.bits == 4 && a.is_signed)
      return rows(launch_rows<4, true, true, 64>, launch_rows<4, true, true, 128>, launch_rows<4, true, true, 128>);
    if (a.bits == 4)
      return rows(launch_rows<4, false, true, 64>, launch_rows<4, false, true, 128>, launch_rows<4, false, true, 128>);
  } else {
    if (a.bits == 8 && a.is_signed)
      return rows(launch_rows<8, true, false, 64>, launch_rows<8, true, false, 128>, launch_rows<8, true, false, 256>);
    if (a.bits == 4 && a.is_signed)
      return rows(launch_rows<4, true, false, 64>, launch_rows<4, true, false, 128>, launch_rows<4, true, false, 256>);
    if (a.bits == 4)
      return rows(launch_rows<4, false, false, 64>, launch_rows<4, false, false, 128>,
                  launch_rows<4, false, false, 256>);
  }
  return "gemm_wgmma_i8 takes int8, int4 and uint4 weights";
}

}  // namespace bitblas_jax
