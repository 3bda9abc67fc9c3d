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
  // gemv only: a launch needs fixed_smem + (grouped ? group_smem : 0) + rows * row_smem
  int fixed_smem = 0, group_smem = 0, row_smem = 0;
};

// variant: gemv -> 0: M<=8, 1: M<=16 (n8 blocks 1 / 2); gemm -> 0: BM=64, 1: BM=128.
KernelEntry gemv_entry(int tc, int fc, int variant);
KernelEntry gemm_entry(int tc, int fc, int variant);

KernelEntry gemv_entry_f16(int fc, int variant);
KernelEntry gemv_entry_f16acc16(int fc, int variant);
KernelEntry gemv_entry_bf16(int fc, int variant);
KernelEntry gemm_entry_f16(int fc, int variant);
KernelEntry gemm_entry_f16acc16(int fc, int variant);
KernelEntry gemm_entry_bf16(int fc, int variant);

}  // namespace cudak
}  // namespace bitblas_jax
