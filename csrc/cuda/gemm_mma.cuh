// The mma.sync tensor-core GEMM (any sm_80+ GPU) for M past the decode kernels.
//
// Grid (ceil(N/BN), ceil(M/BM), split). A CTA of 8 warps computes a BN (weight
// rows) x BM (activation rows) tile of C^T over a K range: BN = 128 or 256
// (plan.h kMmaTiles: the wide tile halves the activation reads), BM = 32 (M <= 32) or 64. The warps stand
// WNW along n and 8/WNW along m; each owns two 16-row bands and WM = BM*WNW/8
// activation rows, so every decoded weight fragment feeds WM/8 mma.
// Stages of BK = TPB packed tiles per band (TPB = 2 for 4 to 16 bits, else 1)
// run through a STAGES-deep cp.async pipeline with one barrier per stage: the
// packed tiles of the CTA's bands go to shared memory as they are (contiguous
// 512-byte tiles), the activations as a BM x BK tile (row stride BK+8 halves:
// conflict-free ldmatrix). Each lane reads its 16-byte chunk of a tile
// (ld.shared.v4) and dequantizes it in registers (scale and zeros applied in
// A's dtype, so the weight is rounded like the reference) into m16n8k16 A
// fragments; the B fragments come from ldmatrix.x4. The group scales / zeros
// of the next stage's tiles are read from global memory (L1-cached) while
// the current stage computes.
#pragma once

#include "band_copy.cuh"
#include "bitblas_jax/plan.h"
#include "common.cuh"

namespace bitblas_jax {
namespace cudak {

template <int FC, int BM, int WNW>
struct GemmMmaCfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = plan::packed_tile_k(BITS);   // k per packed tile
  static constexpr int TPB = plan::mma_tiles_per_stage(BITS);  // tiles per band and stage
  static constexpr int BK = plan::mma_stage_k(BITS);      // k per stage
  static constexpr int BN = WNW * 32;              // weight rows per CTA (two bands per warp)
  static constexpr int NB = BN / 16;               // bands per CTA
  static constexpr int WM = BM * WNW / 8;          // activation rows per warp
  static constexpr int MBW = WM / 8;               // n8 blocks per warp
  static constexpr int LDA = plan::mma_act_stride(BITS);
  static constexpr int W_BYTES = NB * TPB * 512;
  static constexpr int A_BYTES = BM * LDA * 2;
  static constexpr int STAGE_BYTES = W_BYTES + A_BYTES;
  // the plan's tile of these dimensions: its stage count and shared memory (plan.h)
  static constexpr int TILE = (BN == 256 ? 2 : 0) + (BM == 64 ? 1 : 0);
  static constexpr int STAGES = plan::mma_stages(BITS, TILE);
  static constexpr int SMEM = plan::mma_smem_bytes(BITS, TILE);
  static_assert(plan::kMmaTiles[TILE].weight_rows == BN && plan::kMmaTiles[TILE].act_rows == BM, "plan.h tile");
  static_assert(plan::mma_stage_bytes(BITS, TILE) == STAGE_BYTES, "plan.h sizes the stage");
  static_assert(MBW % 2 == 0, "ldmatrix.x4 loads two n8 blocks");
  static_assert(3 * STAGE_BYTES <= 227 * 1024, "stages do not fit in shared memory");
};

// Warp tiles of 8 n8 blocks need more than 128 registers: one CTA per SM (8
// warps, each with 16 independent mma per k-step), else two.
// SPLIT_GROUPS: groups may end inside a packed tile (group_size % tile_k != 0):
// such tiles go through a slower path with per-8-column parameters.
template <int FC, typename T, bool ACC16, int BM, int WNW, bool SPLIT_GROUPS>
__global__ void __launch_bounds__(256, plan::mma_ctas_per_sm(GemmMmaCfg<FC, BM, WNW>::TILE)) gemm_mma_kernel(const KParams p) {
  using Cfg = GemmMmaCfg<FC, BM, WNW>;
  constexpr int TK = Cfg::TK, BK = Cfg::BK, TPB = Cfg::TPB, STAGES = Cfg::STAGES, LDA = Cfg::LDA;
  constexpr int NB = Cfg::NB, BN = Cfg::BN, WM = Cfg::WM, MBW = Cfg::MBW;
  constexpr int NS = TK / 16;  // k-steps per tile

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ typename TT<T>::T2 sTab[nf4_tab_words<FC>()];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const int wn = warp % WNW, wm = warp / WNW;
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

  // Stage copies, with each thread's addresses computed once: weights by
  // BandStageCopy, activations in passes of RPP rows (VPR 16-byte vectors per
  // row); a stage adds its k offset.
  const BandStageCopy<NB, TPB, TK, 256> copy_bands(p.W, smem_addr(smem), bx * NB, KT, tid);
  constexpr int VPR = BK / 8, RPP = 256 / VPR, AIT = (BM + RPP - 1) / RPP;
  static_assert(256 % VPR == 0, "stage copy shape");
  const int ar = tid / VPR, av = tid % VPR;
  const uint16_t* Ag = reinterpret_cast<const uint16_t*>(p.A);
  const uint16_t* asrc = Ag + (m0 + ar) * K + av * 8;
  const uint32_t adst = smem_addr(smem) + Cfg::W_BYTES + 2u * (ar * LDA + av * 8);

  auto load_stage = [&](int st, int kb) {
    const long long k0 = static_cast<long long>(kb) * BK;
    const bool full = k0 + BK <= K;  // else only the first (K - k0) / TK tiles exist
    copy_bands(st * Cfg::STAGE_BYTES, kb, nbands, K - k0);
    // activations: rows past M and columns past K are left as they are (never stored / never read)
    if (p.a_aligned) {
#pragma unroll
      for (int j = 0; j < AIT; ++j) {
        const bool ok = ar + j * RPP < BM && m0 + ar + j * RPP < M && (full || k0 + av * 8 < K);
        if (ok)
          cp_async16_stream(adst + st * Cfg::STAGE_BYTES + 2u * (j * RPP * LDA), asrc + j * RPP * K + k0);
      }
    } else {
      uint16_t* sa = reinterpret_cast<uint16_t*>(smem + st * Cfg::STAGE_BYTES + Cfg::W_BYTES);
      for (int i = tid; i < BM * BK; i += 256) {
        const int r = i / BK, kk = i % BK;
        if (m0 + r < M && k0 + kk < K) sa[r * LDA + kk] = Ag[(m0 + r) * K + k0 + kk];
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
  const long long nrow0 = (static_cast<long long>(bx) * NB + 2 * wn) * 16 + g;  // band 0 row g
  const bool band_ok[2] = {bx * NB + 2 * wn < nbands, bx * NB + 2 * wn + 1 < nbands};

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

  // Scales / zeros of the tiles of the next stage, read while this one computes.
  // Tiles run in k order over the CTA's K range; (gi_run, rem_run) is the next
  // tile's group and offset into it; fit: the tile lies in one group.
  const bool has_groups = p.mode != MODE_NONE;
  int gi_run = 0, rem_run = 0;
  if (has_groups) {
    const int k0 = kb0 * BK;
    gi_run = k0 / gs;
    rem_run = k0 - gi_run * gs;
  }
  // This lane's scale / zero rows: g, g+8 of its two bands (q = 2 * band + (row >= 8)).
  const int G = p.G, mode = p.mode;
  const int zsize = mode == MODE_QUANT ? 1 : 2;
  const bool has_zeros = mode >= MODE_ORIGINAL;
  const uint8_t* sbase = has_groups ? static_cast<const uint8_t*>(p.scale) + nrow0 * G * 2 : nullptr;
  const uint8_t* zbase = has_zeros ? static_cast<const uint8_t*>(p.zeros) + nrow0 * G * zsize : nullptr;
  auto load_group = [&](int gi, uint32_t (&s2)[2], uint32_t (&z2)[2]) {
#pragma unroll
    for (int bi = 0; bi < 2; ++bi) {
      s2[bi] = z2[bi] = 0u;
      if (!band_ok[bi]) continue;
      const int i0 = 16 * bi * G + gi, i1 = i0 + 8 * G;
      s2[bi] = ldg_u16(sbase, i0) | (static_cast<uint32_t>(ldg_u16(sbase, i1)) << 16);
      if (has_zeros)
        z2[bi] = zsize == 1 ? ldg_u8(zbase, i0) | (static_cast<uint32_t>(ldg_u8(zbase, i1)) << 16)
                            : ldg_u16(zbase, i0) | (static_cast<uint32_t>(ldg_u16(zbase, i1)) << 16);
    }
  };
  uint32_t s_nx[TPB][2], z_nx[TPB][2];
  bool fit_nx[TPB];
  auto advance_run = [&](int len) {  // (gi_run, rem_run) += len elements of k
    rem_run += len;
    if (rem_run >= 2 * gs) {
      gi_run += rem_run / gs;
      rem_run %= gs;
    } else if (rem_run >= gs) {
      gi_run += 1;
      rem_run -= gs;
    }
  };
  auto prefetch = [&](int kb) {
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      s_nx[tt][0] = s_nx[tt][1] = z_nx[tt][0] = z_nx[tt][1] = 0u;
      fit_nx[tt] = true;
    }
    if (!has_groups || kb >= kb1) return;
    const long long k0 = static_cast<long long>(kb) * BK;
    if (rem_run + BK <= gs && k0 + BK <= K) {  // the common case: the whole stage in one group
      uint32_t s2[2], z2[2];
      load_group(gi_run, s2, z2);
#pragma unroll
      for (int tt = 0; tt < TPB; ++tt)
#pragma unroll
        for (int bi = 0; bi < 2; ++bi) {
          s_nx[tt][bi] = s2[bi];
          z_nx[tt][bi] = z2[bi];
        }
      advance_run(BK);
      return;
    }
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      if (k0 + tt * TK >= K) continue;
      fit_nx[tt] = rem_run + TK <= gs;
      uint32_t s2[2], z2[2];
      load_group(gi_run, s2, z2);
#pragma unroll
      for (int bi = 0; bi < 2; ++bi) {
        s_nx[tt][bi] = s2[bi];
        z_nx[tt][bi] = z2[bi];
      }
      advance_run(TK);
    }
  };
  prefetch(kb0);

  for (int kb = kb0, it = 0; kb < kb1; ++kb, ++it) {
    uint32_t s_cur[TPB][2], z_cur[TPB][2];
    bool fit_cur[TPB];
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      fit_cur[tt] = fit_nx[tt];
#pragma unroll
      for (int bi = 0; bi < 2; ++bi) {
        s_cur[tt][bi] = s_nx[tt][bi];
        z_cur[tt][bi] = z_nx[tt][bi];
      }
    }
    prefetch(kb + 1);
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
    // one k-step: both bands' A fragments times the warp's MBW activation blocks at column kk
    auto mma_kstep = [&](const uint32_t (&a0)[4], const uint32_t (&a1)[4], int kk) {
#pragma unroll
      for (int j = 0; j < MBW / 2; ++j) {
        uint32_t b[4];
        ldmatrix_x4(sa_addr + 2u * (16 * j * LDA + kk), b[0], b[1], b[2], b[3]);
        acc[0][2 * j].template mma<T>(a0, b[0], b[1]);
        acc[0][2 * j + 1].template mma<T>(a0, b[2], b[3]);
        acc[1][2 * j].template mma<T>(a1, b[0], b[1]);
        acc[1][2 * j + 1].template mma<T>(a1, b[2], b[3]);
      }
    };
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      if (tt >= ntv) continue;
      RowP<T> P[2][2];
#pragma unroll
      for (int bi = 0; bi < 2; ++bi) rowp_make2<FC, T>(p, pbase, s_cur[tt][bi], z_cur[tt][bi], P[bi][0], P[bi][1]);
      const uint4 w0 = lds128(sw_addr + tt * 512);
      const uint4 w1 = lds128(sw_addr + TPB * 512 + tt * 512);
      if (!SPLIT_GROUPS || fit_cur[tt]) {
        static_for<0, NS>([&](auto I) {
          constexpr int S = decltype(I)::value;
          uint32_t a0[4], a1[4];
          dequant_kstep<FC, T, S>(w0, P[0][0], P[0][1], P[0][0], P[0][1], sTab, a0);
          dequant_kstep<FC, T, S>(w1, P[1][0], P[1][1], P[1][0], P[1][1], sTab, a1);
          mma_kstep(a0, a1, tt * TK + S * 16);
        });
      } else if constexpr (SPLIT_GROUPS) {
        // several groups in this tile: 8-wide k blocks, parameters reloaded at each boundary
        const int kbase = static_cast<int>(k0) + tt * TK;
        int gi = kbase / gs;
        int bound = (gi + 1) * gs - kbase;
        auto advance = [&](int blk) {
          if (8 * blk >= bound) {
            gi += 1;
            bound += gs;
            uint32_t s2[2], z2[2];
            load_group(gi, s2, z2);
#pragma unroll
            for (int bi = 0; bi < 2; ++bi) rowp_make2<FC, T>(p, pbase, s2[bi], z2[bi], P[bi][0], P[bi][1]);
          }
        };
#pragma unroll 1
        for (int S = 0; S < NS; ++S) {
          advance(2 * S);
          const RowP<T> Q00 = P[0][0], Q01 = P[0][1], Q10 = P[1][0], Q11 = P[1][1];
          advance(2 * S + 1);
          uint32_t a0[4], a1[4];
          dequant_kstep_rt<FC, T>(w0, S, Q00, Q01, P[0][0], P[0][1], sTab, a0);
          dequant_kstep_rt<FC, T>(w1, S, Q10, Q11, P[1][0], P[1][1], sTab, a1);
          mma_kstep(a0, a1, tt * TK + S * 16);
        }
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue ----
  const long long mw = m0 + wm * WM;
  if (p.split == 1) {
    for_each_output<MBW>(band_ok, nrow0, mw, c, M, [&](int bi, int mb, int e, long long m, long long n) {
      store_out<T>(p, m, n, acc[bi][mb].get(e));
    });
    return;
  }
  float* part = p.partial + static_cast<long long>(bz) * M * N;
  for_each_output<MBW>(band_ok, nrow0, mw, c, M, [&](int bi, int mb, int e, long long m, long long n) {
    part[m * N + n] = acc[bi][mb].get(e);
  });
  if (splitk_arrive(p, by * gridDim.x + bx)) {
    const long long nb0 = static_cast<long long>(bx) * BN;
    splitk_reduce<T, BN>(p, m0, static_cast<int>(min(static_cast<long long>(BM), M - m0)), nb0,
                         static_cast<int>(min(static_cast<long long>(BN), N - nb0)));
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
