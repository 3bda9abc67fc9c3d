// gemm_cutlass's CUTLASS kernels for bfloat16 activations, every tile of plan::kCutlassTiles (sm_90a only;
// built where the CUTLASS headers are found: csrc/CMakeLists.txt).
#include "gemm_cutlass.cuh"
#include "gemm_cutlass.h"

namespace bitblas_jax {

std::string run_gemm_cutlass_bf16(const MatmulArgs& a, int tile, const void* S, const void* Z, cudaStream_t stream) {
  return run_gemm_cutlass<cutlass::bfloat16_t>(a, tile, S, Z, stream);
}

}  // namespace bitblas_jax
