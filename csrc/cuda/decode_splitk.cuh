// The split-K decode kernel: small M where the decode kernel cannot run (float16 accumulation,
// groups that end inside packed tiles).
//
// Grid (ceil(N/256), split). A CTA of 8 warps owns 16 row bands of 16 weight
// rows (256 rows of N) and one K range [t0, t1) of packed tiles; each warp
// owns two bands and walks them side by side (two independent dequant + mma
// chains sharing the activation fragments). Weight tiles (one coalesced
// 512-byte tile per band and k-tile, 16 bytes per lane) stream through a
// warp-private cp.async ring in shared memory (NST stages of U k-tiles x 2
// bands: (NST-1)*U*1 KB in flight per warp, no registers held); each lane's
// 16-byte chunk is dequantized straight into m16n8k16 A fragments and
// multiplied with the activations (B operand: ldmatrix from a shared-memory
// chunk of up to MB*8 rows x KCH columns). The chunk's scales / zeros are
// staged in shared memory too when the group size allows (else read from
// global memory through L1). Output: C^T tiles of 16 n x 8 m per mma;
// split > 1 writes fp32 partials and the last CTA of the column reduces them.
#pragma once

#include "bitblas_jax/plan.h"
#include "common.cuh"

namespace bitblas_jax {
namespace cudak {

template <int FC, int MB>
struct DecodeSplitKCfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = 256 / BITS;
  static constexpr int ROWS = plan::kDecodeSplitKRows;  // weight rows per CTA
  static constexpr int U = 2;                          // k-tiles per stage
  static constexpr int NST = 3;                        // ring stages
  static constexpr int KCH = MB == 1 ? 2048 : 1024;    // activation chunk (k)
  static constexpr int LDA = KCH + 8;                  // its row stride (halves)
  static constexpr int GPC = 17;                       // groups per chunk staged in smem
  static constexpr int A_BYTES = MB * 8 * LDA * 2;
  static constexpr int SZ_BYTES = 2 * ROWS * GPC * 2;  // scales + zeros, u16 each
  static constexpr int RING_BYTES = 8 * NST * U * 2 * 512;
  static constexpr int SMEM = A_BYTES + SZ_BYTES + RING_BYTES;  // the most a launch needs
  static_assert((KCH / TK) % U == 0, "chunk must hold whole stages");
};

template <int FC, typename T, bool ACC16, int MB>
__global__ void __launch_bounds__(256, MB == 1 ? 3 : 2) decode_splitk_kernel(const KParams p) {
  using X = TT<T>;
  using T2 = typename X::T2;
  using Cfg = DecodeSplitKCfg<FC, MB>;
  constexpr int TK = Cfg::TK;     // tile k
  constexpr int NS = TK / 16;     // k-steps per tile
  constexpr int U = Cfg::U, NST = Cfg::NST, LDA = Cfg::LDA, GPC = Cfg::GPC, ROWS = Cfg::ROWS;
  constexpr int TPC = Cfg::KCH / TK;  // tiles per chunk (max)
  constexpr int STAGE = U * 2 * 512;  // bytes per warp and stage

  // Dynamic shared memory: [ring: 8 warps x NST stages][scales+zeros if grouped][A: rows < M]
  // (the host sizes each launch from the KernelEntry fields the instantiation sets from this config).
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ T2 sTab[nf4_tab_words<FC>()];
  uint16_t* sS = reinterpret_cast<uint16_t*>(smem + Cfg::RING_BYTES);  // [ROWS][GPC]
  uint16_t* sZ = sS + ROWS * GPC;
  uint16_t* sA = reinterpret_cast<uint16_t*>(smem + Cfg::RING_BYTES + (p.mode != MODE_NONE ? Cfg::SZ_BYTES : 0));

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const int M = static_cast<int>(p.M);
  const long long N = p.N;
  const int nbands = static_cast<int>(N >> 4);
  const int band0 = blockIdx.x * 16 + warp * 2;
  const bool act[2] = {band0 < nbands, band0 + 1 < nbands};
  const bool active = act[0];
  const int split = p.split, sp = blockIdx.y;
  const int KT = p.KT;
  const int t0 = static_cast<int>(static_cast<long long>(sp) * KT / split);
  const int t1 = static_cast<int>(static_cast<long long>(sp + 1) * KT / split);
  const int ntiles = t1 - t0;
  const int gs = p.gs;
  const bool has_groups = p.mode != MODE_NONE;
  const bool has_zeros = p.mode >= MODE_ORIGINAL;

  if constexpr (FC == FC_NF4) init_nf4_tab<T>(sTab);  // visible after the first chunk barrier

  const long long n0 = static_cast<long long>(band0) * 16 + g;  // band 0, row g; band 1 is n0 + 16
  const int r0 = warp * 32 + g;                                  // its row within the CTA
  const uint8_t* wp0 = p.W + (static_cast<long long>(active ? band0 : 0) * KT + t0) * 512 + lane * 16;
  const long long band_stride = static_cast<long long>(KT) * 512;
  const uint32_t ring = smem_addr(smem + warp * (NST * STAGE)) + lane * 16;

  // Tiles per activation chunk; scales / zeros go to smem when a chunk's groups fit.
  int tpc = TPC;
  bool sz_smem = false;
  if (has_groups) {
    const int t = ((GPC - 1) * gs / TK) / U * U;
    if (t >= U) {
      tpc = min(TPC, t);
      sz_smem = true;
    }
  }

  Acc<ACC16> acc[2][MB];
#pragma unroll
  for (int bi = 0; bi < 2; ++bi)
#pragma unroll
    for (int mb = 0; mb < MB; ++mb) acc[bi][mb].zero();

  // ldmatrix row addresses (bytes): rows past M read row M-1 (their products
  // land in output columns that are never stored).
  const uint32_t sA_base = smem_addr(sA);
  uint32_t a_off[MB];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    const int r = min(mb * 8 + (lane & 7), M - 1);
    a_off[mb] = sA_base + 2u * static_cast<uint32_t>(r * LDA + 8 * (lane >> 3));
  }

  const RowP<T> pbase = rowp_base<FC, T>(p);

  const int nbatch = (ntiles + U - 1) / U;
  auto issue = [&](int bb) {
    if (active && bb < nbatch) {
      const uint32_t slot = ring + (bb % NST) * STAGE;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int tl = bb * U + u;
        if (tl < ntiles) {
          const uint8_t* src = wp0 + static_cast<long long>(tl) * 512;
          cp_async16_stream(slot + (2 * u) * 512, src);
          if (act[1]) cp_async16_stream(slot + (2 * u + 1) * 512, src + band_stride);
        }
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int st = 0; st < NST - 1; ++st) issue(st);

  // group of the next tile to compute: index gi_run, offset rem_run of its first k
  int gi_run = 0, rem_run = 0, glo = 0;
  if (has_groups) {
    gi_run = (t0 * TK) / gs;
    rem_run = t0 * TK - gi_run * gs;
  }
  // parameters of group cur_gi, P[band][row g / g+8] (kept across tiles of one group)
  RowP<T> P[2][2] = {{pbase, pbase}, {pbase, pbase}};
  int cur_gi = -1;
  auto load_params = [&](int gi) {
#pragma unroll
    for (int bi = 0; bi < 2; ++bi) {
      uint32_t s2 = 0u, z2 = 0u;
      if (sz_smem) {
        const int i0 = (r0 + 16 * bi) * GPC + gi - glo;
        s2 = sS[i0] | (static_cast<uint32_t>(sS[i0 + 8 * GPC]) << 16);
        if (has_zeros) z2 = sZ[i0] | (static_cast<uint32_t>(sZ[i0 + 8 * GPC]) << 16);
      } else if (act[bi]) {
        load_group_raw(p, n0 + 16 * bi, gi, s2, z2);
      }
      rowp_make2<FC, T>(p, pbase, s2, z2, P[bi][0], P[bi][1]);
    }
  };

  int chunk_left = 0;  // tiles left in the current activation chunk
  int kl_batch = 0;    // column of the batch within the chunk
  for (int b = 0; b < nbatch; ++b) {
    issue(b + NST - 1);
    const int tb = b * U;
    if (chunk_left == 0) {
      // Stage the activation chunk of tiles [t0+tb, t0+tb+tpc) (all rows < M) and its scales.
      chunk_left = min(tpc, ntiles - tb);
      kl_batch = 0;
      __syncthreads();
      const long long k0 = static_cast<long long>(t0 + tb) * TK;
      const int klen = chunk_left * TK;
      const uint16_t* Ag = reinterpret_cast<const uint16_t*>(p.A);
      if (p.a_aligned) {
        const int vpr = klen >> 3;
        for (int i = tid; i < M * vpr; i += 256) {
          const int r = i / vpr, v = i - r * vpr;
          *reinterpret_cast<uint4*>(sA + r * LDA + v * 8) =
              __ldg(reinterpret_cast<const uint4*>(Ag + r * p.K + k0 + v * 8));
        }
      } else {
        for (int i = tid; i < M * klen; i += 256) {
          const int r = i / klen, k = i - r * klen;
          sA[r * LDA + k] = Ag[r * p.K + k0 + k];
        }
      }
      if (sz_smem) {
        glo = static_cast<int>(k0 / gs);
        const int ng = static_cast<int>((k0 + klen - 1) / gs) - glo + 1;
        const long long row = static_cast<long long>(blockIdx.x) * ROWS + tid;  // one row per thread
        static_assert(ROWS == 256, "one scale row per thread");
        if (row < N) {
          const long long idx0 = row * p.G + glo;
          for (int j = 0; j < ng; ++j) sS[tid * GPC + j] = ldg_u16(p.scale, idx0 + j);
          if (has_zeros) {
            if (p.mode == MODE_QUANT) {
              for (int j = 0; j < ng; ++j) sZ[tid * GPC + j] = ldg_u8(p.zeros, idx0 + j);
            } else {
              for (int j = 0; j < ng; ++j) sZ[tid * GPC + j] = ldg_u16(p.zeros, idx0 + j);
            }
          }
        }
        cur_gi = -1;  // reload the parameters from the new chunk
      }
      __syncthreads();
    }
    chunk_left -= min(U, ntiles - tb);
    const int kl0 = kl_batch;
    kl_batch += U * TK;
    cp_async_wait<NST - 1>();
    if (active) {
      const uint32_t slot = ring + (b % NST) * STAGE;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (tb + u < ntiles) {
          const uint4 w0 = lds128(slot + (2 * u) * 512);
          const uint4 w1 = lds128(slot + (2 * u + 1) * 512);
          const uint32_t kaddr = 2u * static_cast<uint32_t>(kl0 + u * TK);
          bool fit = true;
          int gi = 0, bound = 0;
          if (has_groups) {
            fit = rem_run + TK <= gs;
            gi = gi_run;
            bound = gs - rem_run;
            if (gi != cur_gi) load_params(gi);
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
          }
          if (fit) {
            // fast path: the whole tile is in one group
            constexpr int SP = NS >= 2 ? 2 : 1;  // k-steps per ldmatrix
            static_for<0, NS / SP>([&](auto I) {
              constexpr int s0 = decltype(I)::value * SP;
              uint32_t bf[MB][4];
#pragma unroll
              for (int mb = 0; mb < MB; ++mb) {
                if constexpr (SP == 2) {
                  ldmatrix_x4(a_off[mb] + kaddr + 32u * s0, bf[mb][0], bf[mb][1], bf[mb][2], bf[mb][3]);
                } else {
                  ldmatrix_x2(a_off[mb] + kaddr + 32u * s0, bf[mb][0], bf[mb][1]);
                }
              }
              static_for<0, SP>([&](auto J) {
                constexpr int S = s0 + decltype(J)::value;
                constexpr int j = decltype(J)::value;
                uint32_t a0[4], a1[4];
                dequant_kstep<FC, T, S>(w0, P[0][0], P[0][1], P[0][0], P[0][1], sTab, a0);
                dequant_kstep<FC, T, S>(w1, P[1][0], P[1][1], P[1][0], P[1][1], sTab, a1);
#pragma unroll
                for (int mb = 0; mb < MB; ++mb) {
                  acc[0][mb].template mma<T>(a0, bf[mb][2 * j], bf[mb][2 * j + 1]);
                  acc[1][mb].template mma<T>(a1, bf[mb][2 * j], bf[mb][2 * j + 1]);
                }
              });
            });
          } else {
            // slow path: group boundaries inside the tile (8-wide k blocks)
            auto advance = [&](int blk) {
              if (8 * blk >= bound) {
                gi += 1;
                bound += gs;
                load_params(gi);
              }
            };
#pragma unroll 1
            for (int S = 0; S < NS; ++S) {
              uint32_t bf[MB][2];
#pragma unroll
              for (int mb = 0; mb < MB; ++mb) ldmatrix_x2(a_off[mb] + kaddr + 32u * S, bf[mb][0], bf[mb][1]);
              advance(2 * S);
              const RowP<T> Q00 = P[0][0], Q01 = P[0][1], Q10 = P[1][0], Q11 = P[1][1];
              advance(2 * S + 1);
              uint32_t a0[4], a1[4];
              dequant_kstep_rt<FC, T>(w0, S, Q00, Q01, P[0][0], P[0][1], sTab, a0);
              dequant_kstep_rt<FC, T>(w1, S, Q10, Q11, P[1][0], P[1][1], sTab, a1);
#pragma unroll
              for (int mb = 0; mb < MB; ++mb) {
                acc[0][mb].template mma<T>(a0, bf[mb][0], bf[mb][1]);
                acc[1][mb].template mma<T>(a1, bf[mb][0], bf[mb][1]);
              }
            }
          }
          cur_gi = gi;  // P now holds group gi
        }
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue ----
  if (split == 1) {
    for_each_output<MB>(act, n0, 0, c, M, [&](int bi, int mb, int e, long long m, long long n) {
      store_out<T>(p, m, n, acc[bi][mb].get(e));
    });
    return;
  }
  float* part = p.partial + static_cast<long long>(sp) * p.M * N;
  for_each_output<MB>(act, n0, 0, c, M, [&](int bi, int mb, int e, long long m, long long n) {
    part[m * N + n] = acc[bi][mb].get(e);
  });
  if (splitk_arrive(p, blockIdx.x)) {
    const long long nb0 = static_cast<long long>(blockIdx.x) * ROWS;
    splitk_reduce<T, ROWS, 0, 1, 4>(p, 0, M, nb0, static_cast<int>(min(static_cast<long long>(ROWS), N - nb0)));
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
