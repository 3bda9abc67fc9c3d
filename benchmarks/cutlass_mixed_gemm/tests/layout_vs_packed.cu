// Host check (no GPU): CUTLASS's shuffled int4 layout (LayoutWR, the example-55 reorder the mixed variants
// read) against bitblas_jax's packed layout (csrc/include/bitblas_jax/layout.h, docs/LAYOUT.md). Both hold,
// in each 32-bit word, the 8 codes a thread needs for one k16 step of the m16n8k16 / wgmma A fragment: rows
// g and g + 8 at k = 2c, 2c+1, 2c+8, 2c+9. The check: every word holds the same elements at the same nibble
// positions in both, and the words differ only in order: CUTLASS's word of (n, k) is
// (k / 16) * (N / 16) * 32 + (n / 16) * 32 + lane (16 x 16 atoms, N-fastest), ours is
// ((n / 16) * (K / 64) + k / 64) * 128 + lane * 4 + (k % 64) / 16 (16 x 64 tiles, a lane's 16 bytes together),
// with lane = 4 (n % 8) + (k % 8) / 2.
// Build: nvcc -std=c++17 --expt-relaxed-constexpr -Ishim -I. -I<cutlass>/include -I<cutlass>/tools/util/include \
//        -I../../csrc/include -I../../csrc/cuda tests/layout_vs_packed.cu -o /tmp/layout_vs_packed   (from this folder)
#include <cstdio>

#include "bitblas_jax/layout.h"
#include "common.hpp"

using namespace bench;

int main() {
  long long bad = 0, total = 0;
  for (auto [N, K] : {std::pair<int, int>{64, 256}, {256, 512}, {4096, 4096}}) {
    LayoutWR L = tile_to_shape(LayoutAtomQuant{}, make_shape(N, K, 1));
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) {
        const long long c = L(n, k, 0);  // nibble offset in CUTLASS's buffer
        const auto s = bitblas_jax::layout::code_slot(K, 4, n, k);
        const long long o = s.byte * 2 + s.shift / 4;  // nibble offset in ours
        const long long lane = 4 * (n % 8) + (k % 8) / 2;
        const long long c_word = (k / 16) * (N / 16) * 32ll + (n / 16) * 32ll + lane;
        const long long o_word = ((n / 16) * (K / 64ll) + k / 64) * 128 + lane * 4 + (k % 64) / 16;
        bad += c % 8 != o % 8 || c / 8 != c_word || o / 8 != o_word;
        ++total;
      }
    printf("N=%d K=%d: %lld of %lld elements disagree with the word formulas or the nibble position\n", N, K, bad,
           total);
  }
  printf(bad ? "FAIL\n" : "PASS: same words, same nibbles, different word order\n");
  return bad != 0;
}
