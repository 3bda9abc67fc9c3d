// The CPU kernel: every format, mode and dtype of kernel_api.h.
#pragma once

#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

// Computes args.C. Returns "" on success, else a message (never aborts).
std::string matmul_cpu(const MatmulArgs& args);

}  // namespace bitblas_jax
