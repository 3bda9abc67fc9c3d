#define BBJ_T __nv_bfloat16
#define BBJ_ENTRY wgmma_entry_bf16
#include "inst_wgmma.inc"
