// The packed 4-bit weight (docs/LAYOUT.md; layout.h code_slot) as a cute layout of element (nibble) offsets, the
// form in which CUTLASS's mixed-input collective takes a reordered weight: 16 x 64 tiles of 1024 nibbles, band by
// band; in a tile, lane 4g + c holds 16 bytes, one 32-bit word per k16 step s; in a word the nibble of (row half
// i1, k bit 0 i0, k bit 3 i2) is 4 i0 + 2 i2 + i1.
//   n = (g: 8, i1: 2, band: N / 16)          strides (128, 1, (K / 64) * 1024)
//   k = (i0: 2, c: 4, i2: 2, s: 4, K / 64)   strides (4, 32, 2, 8, 1024)
// K split `split` ways (plan.h gemm_cutlass_choice) is CUTLASS's batch mode: part l holds k in [l K / split,
// (l + 1) K / split), the k mode's last extent K / split / 64 and the batch stride K / split / 64 tiles of
// 1024 nibbles (the band stride stays the whole K's).
// benchmarks/cutlass_mixed_gemm/tests/layout_vs_packed.cu checks it against code_slot element by element.
#pragma once

#include <cstdint>

#include "cute/layout.hpp"

namespace bitblas_jax {

inline auto make_packed_layout(int N, int K, int split = 1) {
  using namespace cute;
  const int part_tiles = K / split / 64;
  return make_layout(
      make_shape(make_shape(_8{}, _2{}, N / 16), make_shape(_2{}, _4{}, _2{}, _4{}, part_tiles), split),
      make_stride(make_stride(_128{}, _1{}, int64_t(K / 64) * 1024), make_stride(_4{}, _32{}, _2{}, _8{}, _1024{}),
                  int64_t(part_tiles) * 1024));
}
using PackedLayout4 = decltype(make_packed_layout(0, 0));

}  // namespace bitblas_jax
