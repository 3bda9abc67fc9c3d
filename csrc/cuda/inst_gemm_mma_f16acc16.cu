#define BBJ_T __half
#define BBJ_ACC16 true
#define BBJ_ENTRY gemm_mma_entry_f16acc16
#include "inst_gemm_mma.inc"
