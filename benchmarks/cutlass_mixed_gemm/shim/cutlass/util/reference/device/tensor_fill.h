// Shim: cutlass/util/mixed_dtype_utils.hpp includes the device tensor_fill reference header, which needs
// curand_kernel.h (not shipped with this CUDA 13 toolkit). mixed_dtype_utils.hpp uses nothing from it
// (compute_memory_reordering_atom / reorder_tensor only need cute + device_memory.h), so an empty header
// placed first on the include path is enough.
#pragma once
