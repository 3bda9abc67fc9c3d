// gemm_cutlass's persistent tiles (plan::kCutlassTiles) for fp4_e2m1 codes (a register table lookup) and float16 activations, whole
// and, for those of at most plan::kCutlassMaxSplitRows rows, with K split (float32 partials). sm_90a only;
// built where the CUTLASS headers are found (csrc/CMakeLists.txt).
// the GEMM waits on the grid before it (the group terms): it may launch as that grid's programmatic dependent
#define CUTLASS_ENABLE_GDC_FOR_SM90
#include "gemm_cutlass.cuh"
#include "gemm_cutlass.h"

namespace bitblas_jax {

BBJ_GEMM_CUTLASS_UNIT(run_gemm_cutlass_fp4_f16, cutlass::half_t, Table4Code<WFormat::kFP4E2M1>,
                      /*STREAM_K_TILES=*/false)

}  // namespace bitblas_jax
