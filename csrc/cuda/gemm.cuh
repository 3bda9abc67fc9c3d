// Plans 2 / 3: the tensor-core GEMM for larger M.
//
// Grid (ceil(N/128), ceil(M/BM), split). A CTA computes a 128 (n) x BM (m)
// tile of C^T over a K range, BK = max(64, tile_k) per stage, in a
// STAGES-deep cp.async pipeline: the packed weight tiles of its 8 bands go to
// shared memory as they are (contiguous 512-byte tiles), the activations as a
// BM x BK tile (row stride BK+8 halves: conflict-free ldmatrix). 8 warps = 4
// (n, 2 bands each) x 2 (m, BM/2 rows each). Each warp reads its lane's 16-byte
// chunk of a tile (ld.shared.v4), dequantizes it into m16n8k16 A fragments
// and multiplies with B fragments from ldmatrix.x4.
#pragma once

#include "common.cuh"

namespace bitblas_jax {
namespace cudak {

template <int FC, int BM>
struct GemmCfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = 256 / BITS;
  static constexpr int BK = TK > 64 ? TK : 64;
  static constexpr int TPB = BK / TK;  // tiles per band per stage
  static constexpr int STAGES = BK >= 256 ? 2 : 3;
  static constexpr int LDA = BK + 8;
  static constexpr int W_BYTES = 8 * TPB * 512;
  static constexpr int A_BYTES = BM * LDA * 2;
  static constexpr int STAGE_BYTES = W_BYTES + A_BYTES;
  static constexpr int SMEM = STAGES * STAGE_BYTES;
};

template <int FC, typename T, bool ACC16, int BM>
__global__ void __launch_bounds__(256, BM == 64 ? 2 : 1) gemm_kernel(const KParams p) {
  using X = TT<T>;
  using T2 = typename X::T2;
  using Cfg = GemmCfg<FC, BM>;
  constexpr int TK = Cfg::TK, BK = Cfg::BK, TPB = Cfg::TPB, STAGES = Cfg::STAGES, LDA = Cfg::LDA;
  constexpr int NS = TK / 16;  // k-steps per tile
  constexpr int WM = BM / 2;   // m rows per warp
  constexpr int MBW = WM / 8;  // n8 blocks per warp
  static_assert(MBW % 2 == 0, "ldmatrix.x4 loads two n8 blocks");

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ T2 sTab[FC == FC_NF4 ? 256 : 1];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const int wn = warp & 3, wm = warp >> 2;
  const long long M = p.M, N = p.N, K = p.K;
  const int nbands = static_cast<int>(N >> 4);
  const int bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
  const long long m0 = static_cast<long long>(by) * BM;
  const int KB = static_cast<int>((K + BK - 1) / BK);
  const int kb0 = static_cast<int>(static_cast<long long>(bz) * KB / p.split);
  const int kb1 = static_cast<int>(static_cast<long long>(bz + 1) * KB / p.split);
  const int KT = p.KT;
  const int gs = p.gs;

  if constexpr (FC == FC_NF4) init_nf4_tab<T>(sTab);  // visible after the first barrier

  const uint16_t* Ag = reinterpret_cast<const uint16_t*>(p.A);

  auto load_stage = [&](int st, int kb) {
    uint8_t* sw = smem + st * Cfg::STAGE_BYTES;
    uint16_t* sa = reinterpret_cast<uint16_t*>(sw + Cfg::W_BYTES);
    const long long k0 = static_cast<long long>(kb) * BK;
    const int ntv = static_cast<int>(min(static_cast<long long>(TPB), (K - k0) / TK));
    // weights: 8 bands x TPB tiles x 32 chunks of 16 bytes, contiguous per band
#pragma unroll
    for (int i = tid; i < 8 * TPB * 32; i += 256) {
      const int bi = i / (TPB * 32), rest = i % (TPB * 32);
      const int bg = bx * 8 + bi;
      if (bg < nbands && rest / 32 < ntv)
        cp_async16(sw + bi * TPB * 512 + rest * 16,
                   p.W + (static_cast<long long>(bg) * KT + k0 / TK) * 512 + rest * 16);
    }
    // activations: BM rows x BK columns (zero outside [M, K])
    constexpr int VPR = BK / 8;
#pragma unroll 4
    for (int i = tid; i < BM * VPR; i += 256) {
      const int r = i / VPR, v = i % VPR;
      const long long m = m0 + r, k = k0 + v * 8;
      uint16_t* dst = sa + r * LDA + v * 8;
      if (m < M && k < K) {
        const uint16_t* src = Ag + m * K + k;
        if (p.a_aligned) {
          cp_async16(dst, src);
        } else {
#pragma unroll
          for (int j = 0; j < 8; ++j) dst[j] = src[j];
        }
      } else {
        *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
      }
    }
    cp_async_commit();
  };

  Acc<ACC16> acc[2][MBW];
#pragma unroll
  for (int bi = 0; bi < 2; ++bi)
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb) acc[bi][mb].zero();

  const RowP<T> pbase = rowp_base<FC, T>(p);
  const long long nrow0 = (static_cast<long long>(bx) * 8 + 2 * wn) * 16 + g;  // band 0 row g
  const bool band_ok[2] = {bx * 8 + 2 * wn < nbands, bx * 8 + 2 * wn + 1 < nbands};

  // ldmatrix.x4 lane address part: matrix (lane>>3): n8 block +(lane>>4), k half (lane>>3)&1
  const uint32_t a_lane_off =
      2u * static_cast<uint32_t>((wm * WM + ((lane >> 4) << 3) + (lane & 7)) * LDA + ((lane >> 3) & 1) * 8);

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (kb0 + s < kb1)
      load_stage(s, kb0 + s);
    else
      cp_async_commit();
  }

  // Scale / zero prefetch, one tile ahead (tiles run in k order over [kb0*BK, min(K, kb1*BK))).
  const bool has_groups = p.mode != MODE_NONE;
  int tiles_left = static_cast<int>((min(K, static_cast<long long>(kb1) * BK) - static_cast<long long>(kb0) * BK) / TK);
  int gi_run = 0, rem_run = 0;
  uint32_t s_nx[2] = {0u, 0u}, z_nx[2] = {0u, 0u};
  bool fit_nx = true;
  auto prefetch = [&]() {
    if (!has_groups || tiles_left <= 0) return;
    fit_nx = rem_run + TK <= gs;
#pragma unroll
    for (int bi = 0; bi < 2; ++bi)
      if (band_ok[bi]) load_group_raw(p, nrow0 + 16 * bi, gi_run, s_nx[bi], z_nx[bi]);
    rem_run += TK;
    if (rem_run >= gs) {
      if (gs >= TK) {
        rem_run -= gs;
        gi_run += 1;
      } else {
        gi_run += rem_run / gs;
        rem_run %= gs;
      }
    }
  };
  if (has_groups) {
    const int k0 = kb0 * BK;
    gi_run = k0 / gs;
    rem_run = k0 - gi_run * gs;
  }
  prefetch();

  for (int kb = kb0, it = 0; kb < kb1; ++kb, ++it) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    {
      const int nk = kb + STAGES - 1;
      if (nk < kb1)
        load_stage((it + STAGES - 1) % STAGES, nk);
      else
        cp_async_commit();
    }
    const int st = it % STAGES;
    const uint8_t* sw = smem + st * Cfg::STAGE_BYTES;
    const uint32_t sa_addr = smem_addr(sw + Cfg::W_BYTES) + a_lane_off;
    const uint32_t sw_addr = smem_addr(sw) + (2 * wn) * TPB * 512 + lane * 16;
    const long long k0 = static_cast<long long>(kb) * BK;
    const int ntv = static_cast<int>(min(static_cast<long long>(TPB), (K - k0) / TK));
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      if (tt < ntv) {
        const uint32_t s_cur[2] = {s_nx[0], s_nx[1]}, z_cur[2] = {z_nx[0], z_nx[1]};
        const bool fit = fit_nx;
        --tiles_left;
        prefetch();
        RowP<T> P[2][2];
#pragma unroll
        for (int bi = 0; bi < 2; ++bi) rowp_make2<FC, T>(p, pbase, s_cur[bi], z_cur[bi], P[bi][0], P[bi][1]);
        const uint4 w0 = lds128(sw_addr + tt * 512);
        const uint4 w1 = lds128(sw_addr + TPB * 512 + tt * 512);
        if (fit) {
          static_for<0, NS>([&](auto I) {
            constexpr int S = decltype(I)::value;
            uint32_t bf[MBW][2];
#pragma unroll
            for (int j = 0; j < MBW / 2; ++j)
              ldmatrix_x4(sa_addr + 2u * (16 * j * LDA + tt * TK + S * 16), bf[2 * j][0], bf[2 * j][1],
                          bf[2 * j + 1][0], bf[2 * j + 1][1]);
            uint32_t a[4];
            dequant_kstep<FC, T, S>(w0, P[0][0], P[0][1], P[0][0], P[0][1], sTab, a);
#pragma unroll
            for (int mb = 0; mb < MBW; ++mb) acc[0][mb].template mma<T>(a, bf[mb][0], bf[mb][1]);
            dequant_kstep<FC, T, S>(w1, P[1][0], P[1][1], P[1][0], P[1][1], sTab, a);
#pragma unroll
            for (int mb = 0; mb < MBW; ++mb) acc[1][mb].template mma<T>(a, bf[mb][0], bf[mb][1]);
          });
        } else {
          // several groups in this tile: 8-wide k blocks, parameters reloaded at each boundary
          const int kbase = static_cast<int>(k0) + tt * TK;
          int gi = kbase / gs;
          int bound = (gi + 1) * gs - kbase;
          auto advance = [&](int blk) {
            if (8 * blk >= bound) {
              gi += 1;
              bound += gs;
#pragma unroll
              for (int bi = 0; bi < 2; ++bi) {
                uint32_t s2 = 0u, z2 = 0u;
                if (band_ok[bi]) load_group_raw(p, nrow0 + 16 * bi, gi, s2, z2);
                rowp_make2<FC, T>(p, pbase, s2, z2, P[bi][0], P[bi][1]);
              }
            }
          };
#pragma unroll 1
          for (int S = 0; S < NS; ++S) {
            uint32_t bf[MBW][2];
#pragma unroll
            for (int j = 0; j < MBW / 2; ++j)
              ldmatrix_x4(sa_addr + 2u * (16 * j * LDA + tt * TK + S * 16), bf[2 * j][0], bf[2 * j][1],
                          bf[2 * j + 1][0], bf[2 * j + 1][1]);
            advance(2 * S);
            const RowP<T> Q00 = P[0][0], Q01 = P[0][1], Q10 = P[1][0], Q11 = P[1][1];
            advance(2 * S + 1);
            uint32_t a[4];
            dequant_kstep_rt<FC, T>(w0, S, Q00, Q01, P[0][0], P[0][1], sTab, a);
#pragma unroll
            for (int mb = 0; mb < MBW; ++mb) acc[0][mb].template mma<T>(a, bf[mb][0], bf[mb][1]);
            dequant_kstep_rt<FC, T>(w1, S, Q10, Q11, P[1][0], P[1][1], sTab, a);
#pragma unroll
            for (int mb = 0; mb < MBW; ++mb) acc[1][mb].template mma<T>(a, bf[mb][0], bf[mb][1]);
          }
        }
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue ----
  const long long mw = m0 + wm * WM;
  if (p.split == 1) {
#pragma unroll
    for (int bi = 0; bi < 2; ++bi) {
      if (!band_ok[bi]) continue;
#pragma unroll
      for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const long long m = mw + mb * 8 + 2 * c + (e & 1);
          if (m < M) store_out<T>(p, m, nrow0 + 16 * bi + 8 * (e >> 1), acc[bi][mb].get(e));
        }
    }
    return;
  }
  float* part = p.partial + static_cast<long long>(bz) * M * N;
#pragma unroll
  for (int bi = 0; bi < 2; ++bi) {
    if (!band_ok[bi]) continue;
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const long long m = mw + mb * 8 + 2 * c + (e & 1);
        if (m < M) part[m * N + nrow0 + 16 * bi + 8 * (e >> 1)] = acc[bi][mb].get(e);
      }
  }
  if (splitk_arrive(p, by * gridDim.x + bx)) {
    const long long nb0 = static_cast<long long>(bx) * 128;
    splitk_reduce<T>(p, m0, static_cast<int>(min(static_cast<long long>(BM), M - m0)), nb0,
                     static_cast<int>(min(128LL, N - nb0)));
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
