#define BBJ_T __nv_bfloat16
#define BBJ_ENTRY decode_entry_bf16
#include "inst_decode.inc"
