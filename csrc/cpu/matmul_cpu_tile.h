// The packed weight, read on the CPU: one 512-byte tile -> element values, and
// the code -> value table of every <= 8-bit format. Shared by the CPU kernel of
// 16/32-bit float activations (matmul_cpu.cc) and that of int8 / float8
// activations (matmul_cpu_qact.cc), so both read the layout the same way.
#pragma once

#include <cstdint>

#include "bitblas_jax/kernel_api.h"
#include "matmul_cpu_convert.h"

namespace bitblas_jax {
namespace cpu {

inline uint32_t load_le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Decodes one 512-byte tile into out[col * 16 + row] (col < tile_k) with
// out = dec(code, row). Walks the tile as 32 lanes x 4 words (the layout's
// 16-byte lane chunks) and places every field with layout.h's frag_row /
// frag_col, inlined so that, the word and element loops being unrolled,
// every shift and offset is a constant. T: float, or an integer type for
// integer element values.
template <int BITS, class T, class Dec>
inline void decode_tile(const uint8_t* tile, Dec dec, T* out) {
  constexpr int E = 32 / BITS;
  constexpr uint32_t kMask = (1u << BITS) - 1u;
  for (int lane = 0; lane < 32; ++lane) {
    const uint8_t* chunk = tile + lane * 16;
    const int row0 = lane >> 2;
    T* lane_out = out + 2 * (lane & 3) * kTileN + row0;
#pragma GCC unroll 4
    for (int word = 0; word < 4; ++word) {
      const uint32_t w = load_le32(chunk + 4 * word);
#pragma GCC unroll 32
      for (int e = 0; e < E; ++e) {
        const int f = word * E + e, i = f & 7;
        const int field = (e & 1) * (E / 2) + (e >> 1);
        const int drow = 8 * ((i >> 1) & 1);                       // row = row0 + drow
        const int col = 16 * (f >> 3) + (i & 1) + 8 * (i >> 2);   // + 2 * (lane & 3)
        lane_out[col * kTileN + drow] = dec((w >> (field * BITS)) & kMask, row0 + drow);
      }
    }
  }
}

// code -> element value, formats.py decode_codes (exact in float32 for every format).
inline void build_lut(WFormat f, float* lut) {
  const int bits = format_bits(f);
  for (int c = 0; c < (1 << bits); ++c) {
    float v = 0.0f;
    switch (f) {
      case WFormat::kInt1: v = float(2 * c - 1); break;
      case WFormat::kInt2: case WFormat::kInt4: case WFormat::kInt8:
        v = float(c - (1 << (bits - 1))); break;
      case WFormat::kUInt1: case WFormat::kUInt2: case WFormat::kUInt4: case WFormat::kUInt8:
        v = float(c); break;
      case WFormat::kNF4: v = kNF4Values[c]; break;
      case WFormat::kFP4E2M1: v = kFP4E2M1Values[c]; break;
      case WFormat::kFP8E4M3: v = fp8_e4m3fn_to_f32(uint8_t(c)); break;
      case WFormat::kFP8E5M2: v = fp8_e5m2_to_f32(uint8_t(c)); break;
      default: break;
    }
    lut[c] = v;
  }
}

}  // namespace cpu
}  // namespace bitblas_jax
