// Dequantize the packed weight to a row-major [N, K] matrix in A's dtype (the
// large-M path: this, then XLA's own dot, i.e. cuBLAS). Rounds exactly like
// gemm_mma, decode_splitk and bitblas_jax/reference.py: w = (v - z) * s etc. in T.
// One warp per 512-byte tile, 4 per CTA: decode + scale in registers (the m16n8k16
// fragment order of docs/LAYOUT.md), transpose through shared memory, then
// 16-byte row-contiguous stores.
#pragma once

#include "kernels.h"

namespace bitblas_jax {
namespace cudak {

template <int FC, typename T>
__global__ void __launch_bounds__(kDequantWarps * 32) dequantize_kernel(const KParams p) {
  constexpr int TK = 256 / fc_bits(FC), NS = TK / 16, LDT = TK + 8;  // padded row (halves)
  __shared__ __align__(16) uint16_t st[kDequantWarps][16 * LDT];
  __shared__ typename TT<T>::T2 sTab[nf4_tab_words<FC>()];
  if constexpr (FC == FC_NF4) {
    init_nf4_tab<T>(sTab);
    __syncthreads();
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const long long tile = static_cast<long long>(blockIdx.x) * kDequantWarps + warp;
  if (tile >= (p.N >> 4) * p.KT) return;
  const long long band = tile / p.KT;
  const int t = static_cast<int>(tile - band * p.KT);
  const uint4 w = ldg_stream(p.W + tile * 512 + lane * 16);
  const long long n0 = band * 16 + g;
  const int k0 = t * TK;
  const RowP<T> base = rowp_base<FC, T>(p);
  uint16_t* s = st[warp];
  static_for<0, NS>([&](auto I) {
    constexpr int S = decltype(I)::value;
    RowP<T> P[2][2];  // [k-block h][row g / g+8]
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t s2, z2;
      load_group_raw(p, n0, (k0 + 16 * S + 8 * h) / p.gs, s2, z2);
      rowp_make2<FC, T>(p, base, s2, z2, P[h][0], P[h][1]);
    }
    uint32_t a[4];
    dequant_kstep<FC, T, S>(w, P[0][0], P[0][1], P[1][0], P[1][1], sTab, a);
    const int col = 16 * S + 2 * c;
    *reinterpret_cast<uint32_t*>(s + g * LDT + col) = a[0];
    *reinterpret_cast<uint32_t*>(s + (g + 8) * LDT + col) = a[1];
    *reinterpret_cast<uint32_t*>(s + g * LDT + col + 8) = a[2];
    *reinterpret_cast<uint32_t*>(s + (g + 8) * LDT + col + 8) = a[3];
  });
  __syncwarp();
  constexpr int VPR = TK / 8;  // 16-byte vectors per row
  T* out = reinterpret_cast<T*>(p.C);
  for (int v = lane; v < 16 * VPR; v += 32) {
    const int r = v / VPR, j = v - r * VPR;
    *reinterpret_cast<uint4*>(out + (band * 16 + r) * p.K + k0 + 8 * j) =
        *reinterpret_cast<const uint4*>(s + r * LDT + 8 * j);
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
