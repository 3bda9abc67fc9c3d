#define BBJ_T __half
#define BBJ_ENTRY wgmma_entry_f16
#include "inst_wgmma.inc"
