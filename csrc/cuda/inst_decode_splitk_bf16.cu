#define BBJ_T __nv_bfloat16
#define BBJ_ACC16 false
#define BBJ_ENTRY decode_splitk_entry_bf16
#include "inst_decode_splitk.inc"
