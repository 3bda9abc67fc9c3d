// The CPU kernel: every format, mode and dtype of kernel_api.h.
#pragma once

#include <string>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {

// Computes args.C. Returns "" on success, else a message (never aborts).
std::string matmul_cpu(const MatmulArgs& args);

// The checks both CPU kernels share (format, mode, shapes, operands present): "" or a message.
std::string check_problem(const MatmulArgs& args);

}  // namespace bitblas_jax
