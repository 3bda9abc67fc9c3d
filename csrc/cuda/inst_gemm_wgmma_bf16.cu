#define BBJ_T __nv_bfloat16
#define BBJ_ENTRY gemm_wgmma_entry_bf16
#include "inst_gemm_wgmma.inc"
