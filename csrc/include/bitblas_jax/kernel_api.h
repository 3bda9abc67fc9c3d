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

namespace bitblas_jax {

// Order and values must match bitblas_jax/formats.py (FORMAT_IDS).
enum class WFormat : int32_t {
  kInt8 = 0, kInt4 = 1, kInt2 = 2, kInt1 = 3,
  kUInt8 = 4, kUInt4 = 5, kUInt2 = 6, kUInt1 = 7,
  kNF4 = 8, kFP4E2M1 = 9, kFP8E4M3 = 10, kFP8E5M2 = 11,
  kF16 = 12, kBF16 = 13,
};

// Activation / accumulation / output dtypes (bitblas_jax/formats.py DTYPE_IDS).
enum class DType : int32_t { kF16 = 0, kBF16 = 1, kF32 = 2 };

// How scale / zeros enter the decode (bitblas_jax/formats.py MODE_IDS).
//   kNone:      w
//   kScale:     w * s
//   kOriginal:  (w - z) * s        z in A dtype
//   kRescale:   w * s - z          z in A dtype
//   kQuantized: (w - qz) * s       qz an integer in the weight's value range
enum class ScaleMode : int32_t {
  kNone = 0, kScale = 1, kOriginal = 2, kRescale = 3, kQuantized = 4,
};

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
};

// Bits per stored weight element.
inline int format_bits(WFormat f) {
  switch (f) {
    case WFormat::kInt8: case WFormat::kUInt8:
    case WFormat::kFP8E4M3: case WFormat::kFP8E5M2: return 8;
    case WFormat::kInt4: case WFormat::kUInt4:
    case WFormat::kNF4: case WFormat::kFP4E2M1: return 4;
    case WFormat::kInt2: case WFormat::kUInt2: return 2;
    case WFormat::kInt1: case WFormat::kUInt1: return 1;
    case WFormat::kF16: case WFormat::kBF16: return 16;
  }
  return 0;
}

inline bool format_is_signed_int(WFormat f) {
  return f == WFormat::kInt8 || f == WFormat::kInt4 || f == WFormat::kInt2 ||
         f == WFormat::kInt1;
}

// Tile of the packed layout: 16 rows (n) x tile_k(bits) columns (k), 512 bytes.
constexpr int kTileN = 16;
constexpr int kTileBytes = 512;
inline int tile_k(int bits) { return 256 / bits; }

}  // namespace bitblas_jax
