// The CUDA backend: every format, mode and dtype of kernel_api.h on f16 / bf16
// activations. Host-callable from plain C++ (ffi_cuda.cc) and from nvcc code.
//
// Plans (chosen by bitblas_jax/gpu_plan.py from static shapes; the numbers are
// part of the Python <-> C++ contract of this backend):
//   0  auto: the dispatcher picks a kernel itself, split_k forced to 1, no
//      workspace needed (for callers without a plan).
//   1  "gemv" path for small M (decode): each warp streams two 16-row bands of
//      the packed weight over a K range (16-byte cp.async into a warp-private
//      shared-memory ring), dequantizes each lane's chunk in registers into
//      the m16n8k16 A operand and multiplies with the activations (the B
//      operand, staged in shared memory). 16 rows of M per launch (larger M
//      runs in slices of 16 rows).
//   2  tensor-core GEMM (gemm.cuh), 128 weight rows x 32 or 64 activation
//      rows per CTA (32 for M <= 32), cp.async pipeline.
//   3  the same GEMM with 256 weight rows per CTA (one CTA per SM at 64 activation rows).
//   6  Hopper GEMM (gemm_wgmma.cuh, sm_90a): wgmma with the dequantized weight
//      in registers, 128 weight rows x 32, 64 or 128 activation rows per CTA
//      (the smallest that holds M, at most 128).
//   7  the same with 128 weight rows x 256 activation rows per CTA.
//      Plans 6 / 7 need an sm_90 GPU, float32 accumulation, groups of whole
//      packed tiles, 16-byte aligned activations and K a multiple of
//      wgmma_stage_k(); elsewhere they run plan 2 with the same split_k.
//   4  decode kernel v2 (gemv2.cuh): one CTA per 32 weight rows over all of
//      K, group scales applied to float32 partial sums, no workspace, one
//      launch per 16 rows of M. Cases it cannot run (float16 accumulation,
//      group_size % 16 != 0, too many groups) run plan 1 without split-K.
// split_k > 1 splits K over CTAs; the fp32 partial sums go to the workspace and
// the last CTA of each output tile reduces them (deterministic order).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

enum CudaPlanId : int64_t {
  kPlanAuto = 0,
  kPlanGemv = 1,
  kPlanGemm = 2,
  kPlanGemmWide = 3,
  kPlanGemv2 = 4,
  kPlanWgmma = 6,
  kPlanWgmmaTall = 7,
};

// CTA tile of plans 6 / 7 and its kernel variant (kernels.h); mirrors bitblas_jax/gpu_plan.py wgmma_tile().
struct WgmmaTile {
  int bn, bm, variant;
};
inline WgmmaTile wgmma_tile(int64_t plan, int64_t M) {
  if (plan == kPlanWgmmaTall) return {128, 256, 3};
  return M <= 32 ? WgmmaTile{128, 32, 0} : M <= 64 ? WgmmaTile{128, 64, 1} : WgmmaTile{128, 128, 2};
}

// Whether plans 6 / 7 take stages of at least 128 k (gemm_wgmma.cuh WgmmaCfg::KMIN), which pay the
// stage's waits and scale loads half as often: where enough such stages (BM x 128 activations + 8
// bands x 128 k of weights) fit, four in the two-CTA budget of 106 KB for tiles of <= 64 activation
// rows, three in the one-CTA budget of 220 KB above (128 rows: every format; 256 rows: <= 4 bits).
constexpr int wgmma_long_stage_bytes(int bits, int bm) { return bm * 128 * 2 + 8 * 16 * 128 * bits / 8; }
constexpr bool wgmma_long_stages(int bits, int bm) {
  return bm <= 64 ? 4 * wgmma_long_stage_bytes(bits, bm) <= 106 * 1024
                  : 3 * wgmma_long_stage_bytes(bits, bm) <= 220 * 1024;
}

// k per pipeline stage of plans 6 / 7 (gemm_wgmma.cuh WgmmaCfg::BK): whole packed tiles, at least
// 128 where wgmma_long_stages(), else at least 64.
inline int wgmma_stage_k(int bits, int bm) { return std::max(wgmma_long_stages(bits, bm) ? 128 : 64, 256 / bits); }

// Split-K counters: one per output tile of the smallest tile (128 x 32), padded
// to 256 bytes; mirrors bitblas_jax/gpu_plan.py workspace_bytes().
inline size_t cuda_counter_bytes(int64_t M, int64_t N) {
  const int64_t counters = ((N + 127) / 128) * ((M + 31) / 32);
  return static_cast<size_t>((counters * 4 + 255) / 256 * 256);
}

// Bytes of workspace a (plan, split_k) needs for an M x N output; mirrors
// bitblas_jax/gpu_plan.py workspace_bytes(). 0 when split_k <= 1.
inline size_t cuda_workspace_bytes(int64_t plan, int64_t split_k, int64_t M, int64_t N) {
  if (split_k <= 1 || plan == kPlanAuto || plan == kPlanGemv2) return 0;
  return cuda_counter_bytes(M, N) + static_cast<size_t>(split_k * M * N * 4);
}

// k per pipeline stage of the GEMM plans 2 / 3 (csrc/cuda/gemm.cuh GemmCfg::BK).
inline int gemm_stage_k(int bits) { return (bits >= 4 ? 2 : 1) * (256 / bits); }

// Computes args.C on `stream`. Returns "" on success, else a message; never
// aborts, never synchronizes, never allocates (CUDA-graph capturable).
// `workspace` must hold cuda_workspace_bytes(plan, split_k, M, N) bytes; its
// content may be anything on entry.
std::string matmul_cuda(const MatmulArgs& args, int64_t plan, int64_t split_k, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream);

// Writes the dequantized weight, row-major [N, K] in args.a_dtype (float16 or
// bfloat16), to args.C: the large-M path (then XLA's dot). A, M, bias unused.
std::string dequantize_cuda(const MatmulArgs& args, cudaStream_t stream);

}  // namespace bitblas_jax
