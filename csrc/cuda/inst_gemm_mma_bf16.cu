#define BBJ_T __nv_bfloat16
#define BBJ_ACC16 false
#define BBJ_ENTRY gemm_mma_entry_bf16
#include "inst_gemm_mma.inc"
