#define BBJ_T __half
#define BBJ_ENTRY gemm_wgmma_entry_f16
#include "inst_gemm_wgmma.inc"
