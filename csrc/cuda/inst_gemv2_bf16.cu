#define BBJ_T __nv_bfloat16
#define BBJ_ENTRY gemv2_entry_bf16
#include "inst_gemv2.inc"
