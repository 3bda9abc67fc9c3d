// Kernel tables: each inst_*.cu file instantiates the kernels of one (kernel, activation dtype,
// accumulation) combination for every format class, so the CUDA module compiles in parallel pieces.
// Tiles and shapes are the plan's (bitblas_jax/plan.h): an entry is looked up by the plan's tile id.
#pragma once

#include "bitblas_jax/plan.h"
#include "common.cuh"

namespace bitblas_jax {
namespace cudak {

struct KernelEntry {
  const void* fn = nullptr;  // __global__ void(KParams); null where the plan's tile does not exist for the format
  int dyn_smem = 0;          // dynamic shared memory bytes (the most a launch needs)
  int threads = 256;
  bool pdl = false;          // launch with programmatic dependent launch (the kernel calls griddep_wait first)
  bool act_map = false;      // gemm_wgmma: a second argument, the activations' TMA map (a CUtensorMap)
  // decode_splitk: a launch needs fixed_smem + (grouped ? group_smem : 0) + rows * row_smem
  int fixed_smem = 0, group_smem = 0, row_smem = 0;
};

// Lookups by the plan's tile id:
//   decode_splitk: 0: up to 8 rows (one n8 block), 1: up to 16 rows (two);
//   decode: a plan::kDecodeShapes index, + plan::kNumDecodeShapes with zero points;
//   gemm_mma: a plan::MmaTileId; gemm_wgmma: a plan::WgmmaTileId (sm_90a).
KernelEntry decode_splitk_entry(int tc, int fc, int tile);
KernelEntry gemm_mma_entry(int tc, int fc, int tile);
KernelEntry decode_entry(int tc, int fc, int tile);  // f16 / bf16 with float32 accumulation only
KernelEntry gemm_wgmma_entry(int tc, int fc, int tile);  // f16 / bf16 with float32 accumulation only
constexpr int kDequantWarps = 4;  // dequantize.cuh: one 512-byte tile per warp
KernelEntry dequantize_entry(int tc, int fc);             // TC_F16 or TC_BF16 (the output dtype)

KernelEntry decode_splitk_entry_f16(int fc, int tile);
KernelEntry decode_splitk_entry_f16acc16(int fc, int tile);
KernelEntry decode_splitk_entry_bf16(int fc, int tile);
KernelEntry decode_entry_f16(int fc, int tile);
KernelEntry decode_entry_bf16(int fc, int tile);
KernelEntry gemm_mma_entry_f16(int fc, int tile);
KernelEntry gemm_mma_entry_f16acc16(int fc, int tile);
KernelEntry gemm_mma_entry_bf16(int fc, int tile);
KernelEntry gemm_wgmma_entry_f16(int fc, int tile);
KernelEntry gemm_wgmma_entry_bf16(int fc, int tile);

}  // namespace cudak
}  // namespace bitblas_jax
