// gemm_cutlass: CUTLASS's Hopper mixed-input GEMM (MainloopSm90TmaGmmaRmemAWarpSpecializedMixedInput: TMA loads,
// warp-specialized producer / cooperative consumer warpgroups, the weight decoded into wgmma's register operand,
// persistent tiles) reading the packed weight as it is (docs/LAYOUT.md: its 32-bit words are CUTLASS's
// "shuffled" words; cutlass_packed_layout.h describes the word order), for 4- and 8-bit integer weights under
// float16 / bfloat16 activations. What it computes, its tiles and workspace: plan.h (gemm_cutlass_takes,
// kCutlassTiles, gemm_cutlass_workspace_bytes).
//
// Layers: gemm_cutlass.cu (always built) checks the call and writes the group terms; the CUTLASS kernels
// (gemm_cutlass.cuh, instantiated by inst_gemm_cutlass_{w4,w8}_{f16,bf16}.cu for sm_90a) are built only where the
// CUTLASS headers are found (BITBLAS_JAX_CUTLASS); elsewhere the launch returns an error and the plan never
// selects the kernel (gemm_cutlass_built).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

// Whether this build holds the CUTLASS kernels.
bool gemm_cutlass_built();

// C[M, N] = A @ dequant(W)^T (+ bias) where plan::gemm_cutlass_takes; tile: a plan::kCutlassTiles id; split: K
// in that many parts (plan::gemm_cutlass_split_ok for the tile; 1: none); workspace: at least
// plan::gemm_cutlass_workspace_bytes. Returns "" or what is wrong (never launches on bad arguments).
std::string launch_gemm_cutlass(const MatmulArgs& a, int tile, int64_t split, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream);

// The CUTLASS GEMM alone, on group terms S, Z ([G][N], A's type) already written, into C (split 1) or into
// float32 partials [split][M][N] in `scratch` (the workspace past the terms; a stream-K tile keeps CUTLASS's
// workspace there), for 4- or 8-bit codes (w4, w8) and float16 / bfloat16 activations:
// inst_gemm_cutlass_{w4,w8}_{f16,bf16}.cu.
#define BBJ_GEMM_CUTLASS_RUN(name)                                                                     \
  std::string name(const MatmulArgs& a, int tile, int split, const void* S, const void* Z, void* scratch, \
                   cudaStream_t stream);
BBJ_GEMM_CUTLASS_RUN(run_gemm_cutlass_w4_f16)
BBJ_GEMM_CUTLASS_RUN(run_gemm_cutlass_w4_bf16)
BBJ_GEMM_CUTLASS_RUN(run_gemm_cutlass_w8_f16)
BBJ_GEMM_CUTLASS_RUN(run_gemm_cutlass_w8_bf16)
#undef BBJ_GEMM_CUTLASS_RUN

}  // namespace bitblas_jax
