// gemm_cutlass's CUTLASS kernels for 8-bit codes and float16 activations: every tile of plan::kCutlassTiles
// (persistent and stream-K), and the persistent ones of at most plan::kCutlassMaxSplitRows rows with K split
// (float32 partials). sm_90a only; built where the CUTLASS headers are found (csrc/CMakeLists.txt). One unit
// per (bits, dtype): about 3 minutes of one core.
#include "gemm_cutlass.cuh"
#include "gemm_cutlass.h"

namespace bitblas_jax {

std::string run_gemm_cutlass_w8_f16(const MatmulArgs& a, int tile, int split, const void* S, const void* Z,
                                  void* scratch, cudaStream_t stream) {
  return run_gemm_cutlass<cutlass::half_t, 8>(a, tile, split, S, Z, scratch, stream);
}

}  // namespace bitblas_jax
