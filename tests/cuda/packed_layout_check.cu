// Host check (no GPU): cutlass_packed_layout.h's cute layout of the packed weight, as gemm_cutlass hands it to
// CUTLASS, against layout.h's code_slot (docs/LAYOUT.md), element by element, for 4- and 8-bit codes and K split
// 1 to 8 ways (batch l, column k of the part: the whole weight's column l K / split + k).
//   nvcc -std=c++17 --expt-relaxed-constexpr -Icsrc/include -Icsrc/cuda -I<cutlass>/include \
//     tests/cuda/packed_layout_check.cu -o /tmp/packed_layout_check && /tmp/packed_layout_check
#include <cstdio>
#include <utility>

#include "bitblas_jax/layout.h"
#include "cutlass_packed_layout.h"

template <int BITS>
long long mismatches(int N, int K, int split) {
  const auto L = bitblas_jax::make_packed_layout<BITS>(N, K, split);
  const int part = K / split;
  long long bad = 0;
  for (int l = 0; l < split; ++l)
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < part; ++k) {
        const long long ours = L(n, k, l);  // element offset
        const auto s = bitblas_jax::layout::code_slot(K, BITS, n, l * part + k);
        const long long want = (s.byte * 8 + s.shift) / BITS;
        if (ours != want && ++bad <= 3)
          std::printf("  %d-bit N=%d K=%d split %d: (n %d, k %d, part %d) at %lld, code_slot says %lld\n", BITS, N, K,
                      split, n, k, l, ours, want);
      }
  return bad;
}

int main() {
  long long bad = 0;
  int cases = 0;
  for (auto [N, K] : {std::pair<int, int>{16, 64}, {64, 256}, {272, 1024}, {128, 4096}})
    for (int split : {1, 2, 4, 8}) {
      if ((K / split) % 64) continue;
      bad += mismatches<4>(N, K, split) + mismatches<8>(N, K, split);
      cases += 2;
    }
  std::printf("%s packed layout check: %d cases, %lld mismatches\n", bad ? "FAIL" : "PASS", cases, bad);
  return bad ? 1 : 0;
}
