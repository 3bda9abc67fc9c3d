// The one contract between the Python layer, the XLA FFI handlers, the torch
// shim and the kernels. Every front end fills a MatmulArgs and calls a backend.
//
//   C[M, N] = cast_out( sum_k A[m, k] * Wd[n, k] ) + bias[n]
//   Wd[n, k] = round_to_A_dtype( decode(W)[n, k] with scale / zeros of group k / group_size )
//
// The packed weight layout is described in docs/LAYOUT.md and implemented in
// bitblas_jax/layout.py (NumPy) and csrc/include/bitblas_jax/layout.h (C++/CUDA).
#pragma once

#include <cstddef>
#include <cstdint>

#include "bitblas_jax/formats_generated.h"

namespace bitblas_jax {

// WFormat, DType, ScaleMode and their ids, bits and names come from formats_generated.h
// (generated from bitblas_jax/formats.py). How scale / zeros enter the decode:
//   kNone:      w
//   kScale:     w * s
//   kOriginal:  (w - z) * s        z in A dtype
//   kRescale:   w * s - z          z in A dtype
//   kQuantized: (w - qz) * s       qz an integer in the weight's value range

struct MatmulArgs {
  int64_t M = 0, N = 0, K = 0;
  WFormat w_format = WFormat::kInt4;
  DType a_dtype = DType::kF16;
  DType accum_dtype = DType::kF32;
  DType out_dtype = DType::kF16;
  ScaleMode mode = ScaleMode::kNone;
  int64_t group_size = 0;  // already resolved: K when the user said -1

  const void* A = nullptr;      // [M, K] a_dtype, row-major
  const uint8_t* W = nullptr;   // packed, N*K*bits/8 bytes (docs/LAYOUT.md)
  const void* scale = nullptr;  // [N, K/group_size] a_dtype, or null
  const void* zeros = nullptr;  // [N, K/group_size]: a_dtype (original, rescale),
                                // int8 (quantized, signed formats),
                                // uint8 (quantized, unsigned formats); or null
  const void* bias = nullptr;   // [N] a_dtype, or null
  void* C = nullptr;            // [M, N] out_dtype
  // gemm_cutlass's group terms held with the weight (Matmul.group_terms): [2][rows][N] in a_dtype, S then Z, rows
  // plan::gemm_cutlass_held_terms_rows; or null: a gemm_cutlass call writes its own. The other kernels read scale
  // and zeros.
  const void* group_terms = nullptr;
};

// Tile of the packed layout: 16 rows (n) x tile_k(bits) columns (k), 512 bytes.
constexpr int kTileN = 16;
constexpr int kTileBytes = 512;
inline int tile_k(int bits) { return 256 / bits; }

}  // namespace bitblas_jax
