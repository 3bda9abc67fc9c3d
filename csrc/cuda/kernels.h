// Kernel tables: each inst_*.cu file instantiates the kernels of one
// (path, activation dtype, accumulation) combo for every format class, so
// the CUDA module compiles in parallel pieces.
#pragma once

#include "common.cuh"

namespace bitblas_jax {
namespace cudak {

struct KernelEntry {
  const void* fn = nullptr;  // __global__ void(KParams)
  int dyn_smem = 0;          // dynamic shared memory bytes (the most a launch needs)
  int threads = 256;
  bool pdl = false;          // launch with programmatic dependent launch (the kernel calls griddep_wait first)
  // gemv only: a launch needs fixed_smem + (grouped ? group_smem : 0) + rows * row_smem
  int fixed_smem = 0, group_smem = 0, row_smem = 0;
  int stage_smem = 0;  // gemv2: the staged scales, after the activations (not under kGemv2SmemCap)
};

// Dynamic shared memory cap of the v2 decode kernel's ring and activations: two CTAs per H100 SM
// (mirrored by bitblas_jax/gpu_plan.py GEMV2_SMEM_CAP). The staged scales (3 KB, 4-tile kernels) come
// on top; every such launch stays under 113 KB, so two CTAs (1 KB reserved each, nf4's 128-byte table)
// still fit an H100 SM's 228 KB.
constexpr int kGemv2SmemCap = 110 * 1024;

// Dynamic shared memory of a launch (mirrored by bitblas_jax/gpu_plan.py gemv2_smem_bytes).
__host__ __device__ constexpr int gemv2_smem(int ring_bytes, int a_row_bytes, int M) {
  return ring_bytes + M * a_row_bytes;
}

// Shapes of the v2 decode kernel (variants 0..kGemv2Shapes - 1; + kGemv2Shapes with zero points).
constexpr int kGemv2Shapes = 4;

// variant: gemv -> 0: M<=8, 1: M<=16 (n8 blocks 1 / 2); gemv2 -> 0: one n8 block, 4 tiles per warp
// and chunk, 1: one block, 2 tiles, 2: two blocks, 2 tiles, 3: two blocks, 1 tile; + kGemv2Shapes with zero points; gemm -> 0: 128 (weight rows)
// x 32 (activation rows) tile, 1: 128 x 64, 2: 256 x 32, 3: 256 x 64, 4: 128 x 32 for groups
// that end inside packed tiles; wgmma (sm_90a) -> weight rows x activation rows per CTA, 0: 128 x 32,
// 1: 128 x 64, 2: 128 x 128, 3: 128 x 256 (a null fn where the stages do not fit).
KernelEntry gemv_entry(int tc, int fc, int variant);
KernelEntry gemm_entry(int tc, int fc, int variant);
KernelEntry gemv2_entry(int tc, int fc, int variant);  // f16 / bf16 with float32 accumulation only
KernelEntry wgmma_entry(int tc, int fc, int variant);  // f16 / bf16 with float32 accumulation only
constexpr int kDequantWarps = 4;  // dequant.cuh: one 512-byte tile per warp
KernelEntry dequant_entry(int tc, int fc);             // TC_F16 or TC_BF16 (the output dtype)

KernelEntry gemv_entry_f16(int fc, int variant);
KernelEntry gemv_entry_f16acc16(int fc, int variant);
KernelEntry gemv_entry_bf16(int fc, int variant);
KernelEntry gemv2_entry_f16(int fc, int variant);
KernelEntry gemv2_entry_bf16(int fc, int variant);
KernelEntry gemm_entry_f16(int fc, int variant);
KernelEntry gemm_entry_f16acc16(int fc, int variant);
KernelEntry gemm_entry_bf16(int fc, int variant);
KernelEntry wgmma_entry_f16(int fc, int variant);
KernelEntry wgmma_entry_bf16(int fc, int variant);

}  // namespace cudak
}  // namespace bitblas_jax
