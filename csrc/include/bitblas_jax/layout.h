// Index math of the packed weight layout (docs/LAYOUT.md); mirrors
// bitblas_jax/layout.py. Usable from host and device code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define BBJ_HD __host__ __device__ __forceinline__
#else
#define BBJ_HD inline
#endif

namespace bitblas_jax {
namespace layout {

// Fragment element f of lane l in a tile (f = 8*s + i: k-step s, index i in
// the m16n8k16 A-operand fragment). Row within the tile's 16 rows:
BBJ_HD int frag_row(int lane, int f) { return (lane >> 2) + 8 * ((f >> 1) & 1); }
// Column within the tile's tile_k columns:
BBJ_HD int frag_col(int lane, int f) {
  const int s = f >> 3, i = f & 7;
  return 16 * s + 2 * (lane & 3) + (i & 1) + 8 * (i >> 2);
}

// Within a 32-bit word holding E = 32/bits elements, element e sits in bit
// field (e % 2) * (E / 2) + e / 2: even elements in the low 16 bits, odd ones
// in the high 16 bits, so one mask yields a (low, high) pair of a half2.
BBJ_HD int field_of(int e, int bits) {
  const int E = 32 / bits;
  return (e & 1) * (E >> 1) + (e >> 1);
}

// Where element (n, k)'s code lives: the 32-bit little-endian word at byte
// offset `byte` of the packed buffer, at bit `shift`. O(1), for reference
// paths and tests (kernels read whole 16-byte lane chunks instead).
struct CodeSlot {
  int64_t byte;
  int shift;
};

BBJ_HD CodeSlot code_slot(int64_t K, int bits, int64_t n, int64_t k) {
  const int tk = 256 / bits;
  const int64_t tile = (n / 16) * (K / tk) + k / tk;
  const int r = static_cast<int>(n % 16), c = static_cast<int>(k % tk);
  // Invert frag_row/frag_col: r -> (g, i bit 1), c -> (s, lane&3, i bit 0, i bit 2).
  const int g = r & 7, i1 = r >> 3;
  const int s = c >> 4, cc = c & 15;
  const int i2 = cc >> 3, c4 = (cc & 7) >> 1, i0 = cc & 1;
  const int lane = g * 4 + c4;
  const int f = 8 * s + (i2 << 2) + (i1 << 1) + i0;
  const int E = 32 / bits;
  return {tile * 512 + lane * 16 + 4 * (f / E), field_of(f % E, bits) * bits};
}

// Raw storage code of element (n, k) of a packed buffer.
BBJ_HD uint32_t load_code(const uint8_t* W, int64_t K, int bits, int64_t n, int64_t k) {
  const CodeSlot slot = code_slot(K, bits, n, k);
  const uint8_t* p = W + slot.byte;
  const uint32_t w = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                     (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  const uint32_t mask = bits == 32 ? 0xffffffffu : ((1u << bits) - 1u);
  return (w >> slot.shift) & mask;
}

}  // namespace layout
}  // namespace bitblas_jax
