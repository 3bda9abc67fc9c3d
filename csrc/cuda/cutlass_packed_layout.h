// The packed weight (docs/LAYOUT.md; layout.h code_slot) as a cute layout of element offsets, the form in which
// CUTLASS's mixed-input collective takes a reordered weight, for 4- and 8-bit codes. A tile is 16 rows x
// 256 / BITS columns (512 bytes), band by band; in a tile, lane 4g + c holds 16 bytes (128 / BITS codes), the 8
// codes of its wgmma / mma A fragment per k16 step s together. Fragment element i = i0 + 2 i1 + 4 i2
// (row g + 8 i1, column 16 s + 2 c + i0 + 8 i2) sit at element offset, in the tile,
//   4-bit: 128 g + 32 c + 8 s + 4 i0 + 2 i2 + i1       (a 32-bit word per step: nibbles [0 2 4 6 1 3 5 7])
//   8-bit:  64 g + 16 c + 8 s + 4 i2 + 2 i0 + i1       (two words per step, i2 picks the word: bytes [0 2 1 3])
// so, with E = 512 * 8 / BITS elements a tile and T = 256 / BITS columns,
//   n = (g: 8, i1: 2, band: N / 16)              strides (E / 8, 1, (K / T) * E)
//   k = (i0: 2, c: 4, i2: 2, s: T / 16, K / T)   strides (4-bit: 4, 32, 2, 8, E; 8-bit: 2, 16, 4, 8, E)
// K split `split` ways (plan.h gemm_cutlass_choice) is CUTLASS's batch mode: part l holds k in [l K / split,
// (l + 1) K / split), the k mode's last extent K / split / T and the batch stride that many tiles (the band
// stride stays the whole K's). tests/cuda/packed_layout_check.cu checks it against code_slot element by element.
#pragma once

#include <cstdint>

#include "cute/layout.hpp"

namespace bitblas_jax {

template <int BITS>
auto make_packed_layout(int N, int K, int split = 1) {
  using namespace cute;
  static_assert(BITS == 4 || BITS == 8, "gemm_cutlass reads 4- and 8-bit codes");
  constexpr int kTileK = 256 / BITS;                  // columns a tile
  constexpr int kTileElems = 512 * 8 / BITS;          // codes a tile
  using Steps = Int<kTileK / 16>;                     // k16 steps a tile
  using I0 = Int<BITS == 4 ? 4 : 2>;
  using C = Int<BITS == 4 ? 32 : 16>;
  using I2 = Int<BITS == 4 ? 2 : 4>;
  const int part_tiles = K / split / kTileK;
  return make_layout(
      make_shape(make_shape(_8{}, _2{}, N / 16), make_shape(_2{}, _4{}, _2{}, Steps{}, part_tiles), split),
      make_stride(make_stride(Int<kTileElems / 8>{}, _1{}, int64_t(K / kTileK) * kTileElems),
                  make_stride(I0{}, C{}, I2{}, _8{}, Int<kTileElems>{}), int64_t(part_tiles) * kTileElems));
}
template <int BITS>
using PackedLayout = decltype(make_packed_layout<BITS>(0, 0));

}  // namespace bitblas_jax
