// gemm_cutlass: CUTLASS's Hopper mixed-input GEMM (MainloopSm90TmaGmmaRmemAWarpSpecializedMixedInput: TMA loads,
// warp-specialized producer / cooperative consumer warpgroups, the weight decoded into wgmma's register operand,
// persistent tiles) reading the packed weight as it is (docs/LAYOUT.md: its 32-bit words are CUTLASS's
// "shuffled" words; cutlass_packed_layout.h describes the word order), for 4- and 8-bit integer weights and the
// 4-bit table formats nf4 / fp4_e2m1 (a register lookup: cutlass_table4_convert.h) under float16 / bfloat16
// activations. What it computes, its tiles and workspace: plan.h (gemm_cutlass_takes, kCutlassTiles,
// gemm_cutlass_workspace_bytes).
//
// Layers: gemm_cutlass.cu (always built) checks the call and writes the group terms; the CUTLASS kernels
// (gemm_cutlass.cuh, instantiated for sm_90a by inst_gemm_cutlass_{w4,w8,nf4,fp4}_{f16,bf16}.cu, the persistent
// tiles, and inst_gemm_cutlass_{w4,w8,nf4,fp4}_{f16,bf16}_stream_k.cu, the stream-K tiles) are built only where the
// CUTLASS headers are found (BITBLAS_JAX_CUTLASS); elsewhere the launch returns an error and the plan never selects
// the kernel (gemm_cutlass_built).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

// Whether this build holds the CUTLASS kernels.
bool gemm_cutlass_built();

// C[M, N] = A @ dequant(W)^T (+ bias) where plan::gemm_cutlass_takes; tile: a plan::kCutlassTiles id; split: K
// in that many parts (plan::gemm_cutlass_split_ok for the tile; 1: none; a stream-K tile splits in the kernel,
// plan::gemm_cutlass_in_kernel_split_fits); workspace: at least
// plan::gemm_cutlass_workspace_bytes; pdl: launch the GEMM as the programmatic dependent of
// the group terms kernel (sm_90; the GEMM waits for the terms before it reads them). The terms are a.group_terms
// where the caller holds them (then no terms kernel runs; a stream-K tile's flags are cleared by a one-block
// kernel in its place), else written into the workspace. Returns "" or what is wrong (never launches on bad
// arguments).
std::string launch_gemm_cutlass(const MatmulArgs& a, int tile, int64_t split, bool pdl, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream);

// Launches the kernel that writes the group terms on the stream (none where they are held) and zeroes [clear,
// clear + clear_bytes) (16-byte vectors, at most 4 KB); "" or what went wrong.
using WriteTerms = std::function<std::string(void* clear, size_t clear_bytes)>;

// The CUTLASS GEMM on group terms S, Z ([G][N], A's type), which write_terms writes (called once, just before the
// GEMM's launch, with the part of CUTLASS's workspace that must be zero at launch), into C (split 1) or into float32 partials
// [split][M][N] in `scratch` (the workspace past the terms; a stream-K tile keeps CUTLASS's workspace there), for
// 4- or 8-bit integer codes (w4, w8), nf4 or fp4_e2m1 codes (nf4, fp4) and float16 / bfloat16 activations, the
// persistent tiles (run_gemm_cutlass_*) or the stream-K ones (run_gemm_cutlass_*_stream_k).
// The units, one list: code kind (w4, w8, nf4, fp4) x activation type x scheduler.
#define BBJ_GEMM_CUTLASS_UNITS(X)                                                                              \
  X(w4_f16) X(w4_bf16) X(w8_f16) X(w8_bf16) X(nf4_f16) X(nf4_bf16) X(fp4_f16) X(fp4_bf16)                        \
  X(w4_f16_stream_k) X(w4_bf16_stream_k) X(w8_f16_stream_k) X(w8_bf16_stream_k) X(nf4_f16_stream_k)              \
  X(nf4_bf16_stream_k) X(fp4_f16_stream_k) X(fp4_bf16_stream_k)
#define BBJ_GEMM_CUTLASS_RUN(unit)                                                                             \
  std::string run_gemm_cutlass_##unit(const MatmulArgs& a, int tile, int split, bool pdl, const void* S,         \
                                      const void* Z, const WriteTerms& write_terms, void* scratch,               \
                                      cudaStream_t stream);
BBJ_GEMM_CUTLASS_UNITS(BBJ_GEMM_CUTLASS_RUN)
#undef BBJ_GEMM_CUTLASS_RUN

}  // namespace bitblas_jax
