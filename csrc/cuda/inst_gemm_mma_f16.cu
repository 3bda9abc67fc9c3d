#define BBJ_T __half
#define BBJ_ACC16 false
#define BBJ_ENTRY gemm_mma_entry_f16
#include "inst_gemm_mma.inc"
