#define BBJ_T __half
#define BBJ_ENTRY decode_entry_f16
#include "inst_decode.inc"
