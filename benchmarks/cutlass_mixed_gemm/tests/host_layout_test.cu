// Host-only sanity test (no GPU needed): the reordered int4 weight layout used by the shuffled variants is a
// bijection of [0, N*K) for our shapes (size == cosize == N*K, no duplicate / out-of-range offsets).
// words_mixing_rows is informational: the layout follows the GMMA A-fragment thread/value order, so one
// 32-bit word holds values of rows n and n+8 (that is expected, not an error).
// Build: nvcc -std=c++17 --expt-relaxed-constexpr -Ishim -I<cutlass>/include -I<cutlass>/tools/util/include \
//        tests/host_layout_test.cu -o /tmp/host_layout_test
#include "../common.hpp"
#include <cstdio>
using namespace bench;
int main() {
  print("LayoutAtomQuant: "); print(LayoutAtomQuant{}); print("\n");
  int shapes[][2] = {{256, 512}, {4096, 4096}, {18944, 3584}, {29568, 8192}, {28672, 8192}, {8192, 8192}, {14336, 4096}};
  for (auto& s : shapes) {
    int N = s[0], K = s[1];
    auto shape_w = make_shape(N, K, 1);
    LayoutWR L = tile_to_shape(LayoutAtomQuant{}, shape_w);
    long long sz = size(L), cs = cosize(L);
    bool full = (long long)N * K <= 64ll * 1024 * 1024;
    long long dup = 0, oob = 0, rowmix = 0;
    if (full) {
      std::vector<uint8_t> seen((size_t)N * K, 0);
      std::vector<int> row_of_word((size_t)N * K / 8, -1);
      for (int n = 0; n < N; ++n)
        for (int k = 0; k < K; ++k) {
          long long o = L(n, k, 0);
          if (o < 0 || o >= (long long)N * K) { ++oob; continue; }
          if (seen[o]++) ++dup;
          int& r = row_of_word[o / 8];
          if (r == -1) r = n; else if (r != n) ++rowmix;
        }
    }
    printf("N=%6d K=%5d size=%lld cosize=%lld expect=%lld %s dup=%lld oob=%lld words_mixing_rows=%lld\n", N, K, sz, cs,
           (long long)N * K, full ? "(full check)" : "(size only)", dup, oob, rowmix);
    if (N == 256) { print("layout(256x512): "); print(L); print("\n");
      printf("first 16 offsets of row 0: "); for (int k = 0; k < 16; ++k) printf("%lld ", (long long)L(0, k, 0)); printf("\n");
      printf("offsets of (n, 0) for n<16: "); for (int n = 0; n < 16; ++n) printf("%lld ", (long long)L(n, 0, 0)); printf("\n"); }
  }
  return 0;
}
