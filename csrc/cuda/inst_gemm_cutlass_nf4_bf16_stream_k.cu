// gemm_cutlass's stream-K tiles (plan::kCutlassTiles, stream_k) for nf4 codes (a register table lookup) and bfloat16 activations.
// sm_90a only; built where the CUTLASS headers are found (csrc/CMakeLists.txt).
// the GEMM waits on the grid before it (the group terms): it may launch as that grid's programmatic dependent
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "gemm_cutlass.cuh"
#include "gemm_cutlass.h"

namespace bitblas_jax {

BBJ_GEMM_CUTLASS_UNIT(run_gemm_cutlass_nf4_bf16_stream_k, cutlass::bfloat16_t, Table4Code<WFormat::kNF4>,
                      /*STREAM_K_TILES=*/true)

}  // namespace bitblas_jax
