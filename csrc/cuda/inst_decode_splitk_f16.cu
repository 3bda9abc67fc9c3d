#define BBJ_T __half
#define BBJ_ACC16 false
#define BBJ_ENTRY decode_splitk_entry_f16
#include "inst_decode_splitk.inc"
