// encode_act_map (tma_map.h). The driver's encoder is looked up in libcuda directly (the module links
// the static runtime, not libcuda): a plain symbol lookup, which is also safe at a first call inside
// a CUDA graph capture.
#include "tma_map.h"

#include <dlfcn.h>

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <mutex>

namespace bitblas_jax {

std::string encode_act_map(const void* A, int64_t rows, int64_t K, int elem_bytes, int box_rows, CUtensorMap* map) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  static std::string lookup_error;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    void* fn = lib != nullptr ? dlsym(lib, "cuTensorMapEncodeTiled") : nullptr;
    if (fn == nullptr)
      lookup_error = "the Hopper GEMMs need cuTensorMapEncodeTiled from the CUDA driver (libcuda.so.1, CUDA 12+): " +
                     std::string(lib == nullptr ? "libcuda.so.1 not loaded" : "symbol not found");
    else
      encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  });
  if (encode == nullptr) return lookup_error;
  if (elem_bytes != 1 && elem_bytes != 2) return "encode_act_map: elements of 1 or 2 bytes";
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(K) * elem_bytes};  // bytes from row to row
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(128 / elem_bytes), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t unit[2] = {1, 1};
  const CUresult r = encode(map, elem_bytes == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16 : CU_TENSOR_MAP_DATA_TYPE_UINT8, 2,
                            const_cast<void*>(A), dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return "cuTensorMapEncodeTiled failed (error " + std::to_string(static_cast<int>(r)) + ") for activations [" +
           std::to_string(rows) + ", " + std::to_string(K) + "], box " + std::to_string(box_rows) + " rows";
  return "";
}

}  // namespace bitblas_jax
