// Instantiations and the host launcher of gemm_mma_a8 (gemm_mma_a8.cuh): every integer weight format
// int8 activations take, mode none / scale, 64 or 128 activation rows per CTA (28 kernels).
#include <climits>

#include "gemm_mma_a8.cuh"

namespace bitblas_jax {
namespace {

template <WFormat WF, bool SCALED, int BM>
cudaError_t launch_rows(const GemmMmaA8Args& a, cudaStream_t stream) {
  using Cfg = cudak::GemmMmaA8Cfg<WF, BM>;
  const auto kernel = &cudak::gemm_mma_a8_kernel<WF, SCALED, BM>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM);
  if (e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>((a.N + cudak::kGemmMmaA8WeightRows - 1) / cudak::kGemmMmaA8WeightRows),
                  static_cast<unsigned>((a.M + BM - 1) / BM));
  kernel<<<grid, cudak::kGemmMmaA8Threads, Cfg::SMEM, stream>>>(a);
  return cudaGetLastError();
}

template <WFormat WF, bool SCALED>
cudaError_t launch_m(const GemmMmaA8Args& a, cudaStream_t stream) {
  if (a.M <= cudak::kGemmMmaA8SmallRows) return launch_rows<WF, SCALED, cudak::kGemmMmaA8SmallRows>(a, stream);
  return launch_rows<WF, SCALED, cudak::kGemmMmaA8LargeRows>(a, stream);
}

template <bool SCALED>
cudaError_t launch_format(const GemmMmaA8Args& a, cudaStream_t stream) {
  switch (a.w_format) {
    case WFormat::kInt8: return launch_m<WFormat::kInt8, SCALED>(a, stream);
    case WFormat::kInt4: return launch_m<WFormat::kInt4, SCALED>(a, stream);
    case WFormat::kUInt4: return launch_m<WFormat::kUInt4, SCALED>(a, stream);
    case WFormat::kInt2: return launch_m<WFormat::kInt2, SCALED>(a, stream);
    case WFormat::kUInt2: return launch_m<WFormat::kUInt2, SCALED>(a, stream);
    case WFormat::kInt1: return launch_m<WFormat::kInt1, SCALED>(a, stream);
    case WFormat::kUInt1: return launch_m<WFormat::kUInt1, SCALED>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

std::string launch_gemm_mma_a8(const GemmMmaA8Args& a, cudaStream_t stream) {
  // cp.async copies 16-byte chunks of A
  if (std::string err = check_int8_sums_args(a, "gemm_mma_a8", plan::gemm_mma_a8_takes, 16); !err.empty() || a.M == 0)
    return err;
  // the kernel's k loop runs in int, a stage (256 k at most) past K
  if (a.K > INT_MAX - 256) return "gemm_mma_a8: K must be below 2^31 - 256";
  if ((a.M + cudak::kGemmMmaA8LargeRows - 1) / cudak::kGemmMmaA8LargeRows > 65535)   // grid.y of the large tile
    return "gemm_mma_a8: M too large for one launch";
  const cudaError_t e = a.scaled ? launch_format<true>(a, stream) : launch_format<false>(a, stream);
  return e == cudaSuccess ? "" : std::string("CUDA error in the gemm_mma_a8 launch: ") + cudaGetErrorString(e);
}

}  // namespace bitblas_jax
