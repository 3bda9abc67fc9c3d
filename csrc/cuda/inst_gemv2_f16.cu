#define BBJ_T __half
#define BBJ_ENTRY gemv2_entry_f16
#include "inst_gemv2.inc"
