// gemm_cutlass: CUTLASS's Hopper mixed-input GEMM (MainloopSm90TmaGmmaRmemAWarpSpecializedMixedInput: TMA loads,
// warp-specialized producer / cooperative consumer warpgroups, the weight decoded into wgmma's register operand,
// persistent tiles) reading the packed 4-bit weight as it is (docs/LAYOUT.md: its 32-bit words are CUTLASS's
// "shuffled" words; make_packed_layout describes the word order), for 4-bit integer weights under float16 /
// bfloat16 activations. Measured against gemm_wgmma by benchmarks/cutlass_mixed_gemm.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

// Activation rows per CTA tile (the weight rows are 128), by the plan's tile index.
constexpr int kGemmCutlassRows[2] = {128, 256};

// The group terms CUTLASS's "scale with zero" conversion takes (w = code * S + Z per group, S and Z in the
// activations' type, [G][N]): 2 * G * N elements of A's type.
inline int64_t gemm_cutlass_workspace_bytes(int64_t N, int64_t K, int64_t group_size) {
  return 2 * (K / group_size) * N * 2;
}

// C[M, N] = A @ dequant(W)^T (+ bias) for a.w_format int4 / uint4, a.a_dtype == a.out_dtype float16 or
// bfloat16, float32 accumulation, any mode, group_size a multiple of 64 dividing K (or K). workspace: at
// least gemm_cutlass_workspace_bytes. Returns "" or what is wrong (never launches on bad arguments).
std::string launch_gemm_cutlass(const MatmulArgs& a, int tile, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream);

}  // namespace bitblas_jax
