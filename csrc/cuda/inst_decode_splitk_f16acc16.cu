#define BBJ_T __half
#define BBJ_ACC16 true
#define BBJ_ENTRY decode_splitk_entry_f16acc16
#include "inst_decode_splitk.inc"
