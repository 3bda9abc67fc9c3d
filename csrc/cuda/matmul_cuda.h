// The CUDA backend: every format, mode and dtype of kernel_api.h on f16 / bf16 activations.
// Host-callable from plain C++ (ffi_cuda.cc) and from nvcc code.
//
// The caller names the kernel, its tile and split_k (a plan::Plan from plan::make_plan, which
// bitblas_jax/gpu_plan.py asks through the _bitblas_plan module); matmul_cuda derives the rest with
// plan::finish and launches exactly that, or returns an error naming what does not fit. It never picks
// another kernel. split_k > 1 splits K over CTAs; the fp32 partial sums go to the workspace and the
// last CTA of each output tile reduces them (in split order: deterministic).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/plan.h"

namespace bitblas_jax {

// Computes args.C on `stream`. Returns "" on success, else a message; never
// aborts, never synchronizes, never allocates (CUDA-graph capturable).
// `workspace` must hold plan::workspace_bytes(kernel, tile, split_k, M, N, K, group) bytes; its
// content may be anything on entry.
std::string matmul_cuda(const MatmulArgs& args, plan::Kernel kernel, int tile, int64_t split_k, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream);

// Writes the dequantized weight, row-major [N, K] in args.a_dtype (float16 or
// bfloat16), to args.C: the first half of dequantize_then_dot. A, M, bias unused.
std::string dequantize_cuda(const MatmulArgs& args, cudaStream_t stream);

}  // namespace bitblas_jax
