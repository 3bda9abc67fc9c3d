#define BBJ_T __half
#define BBJ_ACC16 false
#define BBJ_ENTRY gemv_entry_f16
#include "inst_gemv.inc"
