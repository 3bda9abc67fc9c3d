// TMA maps of row-major activations for the Hopper GEMMs (gemm_wgmma, gemm_wgmma_a8).
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cstdint>
#include <string>

namespace bitblas_jax {

// The activations [rows, K] (elements of `elem_bytes` = 1 or 2 bytes, row-major, 16-byte aligned,
// K * elem_bytes a multiple of 16) as a TMA map whose box is 128 bytes of k x box_rows rows,
// 128-byte swizzled: the stage layout of the Hopper GEMMs (rows past `rows` arrive as zeros).
// "" or the reason it failed.
std::string encode_act_map(const void* A, int64_t rows, int64_t K, int elem_bytes, int box_rows, CUtensorMap* map);

}  // namespace bitblas_jax
