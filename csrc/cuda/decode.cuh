// The decode kernel: small M (at most 16 rows per launch), float32 accumulation.
//
// One CTA of 8 warps owns two 16-row bands (32 weight rows) and the whole K, or,
// launched in clusters of `split` CTAs (sm_90, plan.h decode_cluster_split), the
// rank's part of K (decode_part_tiles); no workspace, no memset, one launch. The
// part's K tiles are dealt round-robin to the warps (chunk i = tiles 8Ui .. 8U(i+1)-1,
// U consecutive tiles per warp). Each warp streams its tiles (16 bytes per lane
// and band) and the matching activation columns (all M rows) through its own
// NST-stage cp.async ring and syncs only itself, so the main loop has no CTA
// barrier. The eight warps' partial sums are added in shared memory at the
// end, in warp order, and a cluster's CTAs' through distributed shared memory,
// in rank order (deterministic).
//
// The weight is decoded to its element values only (one lop3 + one hfma2 per
// pair for int4): the group scale is applied to the float32 mma result of each
// group's k-steps instead of to every weight, and zero points through the
// column sums of the activations (an extra mma against an all-ones fragment):
//   sum_k w a = s * sum_k v a - zs * sum_k a,  zs = z*s (original, quantized) or z (rescale).
// So the weight is never rounded to A's dtype (at least as accurate as rounding it).
// Needs group_size % TK == 0 (groups of whole tiles) unless mode is none. With 4
// tiles per chunk, no zeros and exactly two groups per chunk (2 gs == WK: int4 group
// 128, int8 group 64), the chunk's scales travel with its weights: one 32-bit word per
// row (both groups) into a scale stage, in the same cp.async group, so no flush waits
// on a global load. Otherwise each lane reads its rows' scales (and zeros) straight
// from global memory, L1-cached, one or two chunks ahead. ZEROS (modes original /
// rescale / quantized) is a template flag so the hot loop has no predicated mma or
// mode branches.
#pragma once

#include <climits>

#include "kernels.h"

namespace bitblas_jax {
namespace cudak {

// MB x UT: a decode shape (plan.h DecodeShape: n8 blocks, tiles per warp and chunk; formats under
// 4 bits use one tile); the plan picks the shape, and every size here comes from plan.h.
template <int FC, int MB, int UT>
struct DecodeCfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = plan::packed_tile_k(BITS);        // k per tile
  static constexpr int U = plan::decode_tiles(BITS, UT);        // consecutive tiles per warp and chunk
  static constexpr int NST = plan::decode_stages(BITS, MB, UT);  // ring stages (chunks)
  static constexpr int WK = U * TK;                             // k per warp and chunk
  static constexpr int LDW = plan::decode_act_stride(BITS, UT); // activation row stride in halves
  static constexpr int WSTAGE = plan::decode_warp_stage_bytes(BITS, UT);  // weight bytes per warp and stage
  static constexpr int RING_BYTES = plan::decode_ring_bytes(BITS, MB, UT);
  static constexpr int A_ROW_BYTES = plan::decode_act_row_bytes(BITS, MB, UT);  // activation ring bytes per row of M
  static constexpr int SSTAGE = U == 4 ? 32 * 4 : 0;            // staged scale bytes per warp and stage (32 rows)
  static constexpr int STAGE_BYTES = plan::decode_scale_stage_bytes(BITS, MB, UT);  // after the activations
  static_assert(STAGE_BYTES == 8 * NST * SSTAGE, "plan.h sizes the scale stage");
  static_assert(WK + 8 == LDW && RING_BYTES == 8 * NST * WSTAGE, "plan.h sizes the ring");
};

template <int FC, typename T, int MB, int UT, bool ZEROS>
__global__ void __launch_bounds__(256, 2) decode_kernel(const KParams p) {
  using Cfg = DecodeCfg<FC, MB, UT>;
  constexpr int TK = Cfg::TK, NS = TK / 16, NST = Cfg::NST, LDW = Cfg::LDW, WK = Cfg::WK, U = Cfg::U;
  constexpr int WSTAGE = Cfg::WSTAGE;
  constexpr int CHK = 8 * WK;   // k per chunk (all warps)
  constexpr int VPW = WK / 8;   // 16-byte activation vectors per row of a warp's chunk
  constexpr uint32_t kOnes = std::is_same<T, __half>::value ? 0x3c003c00u : 0x3f803f80u;

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ typename TT<T>::T2 sTab[nf4_tab_words<FC>()];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const int M = static_cast<int>(p.M);
  const long long K = p.K;
  const int G = p.G, gs = p.gs, mode = p.mode;
  const bool has_scale = mode != MODE_NONE;  // ZEROS implies has_scale
  // A cluster of `split` CTAs shares the 32 rows; this CTA sums packed tiles kt0 .. kt0 + KT - 1 of each row's
  // p.KT (its part, possibly empty), k from k_base.
  // (The cluster's size and rank are read again at the end rather than held in registers.)
  const int band0 = static_cast<int>(blockIdx.x / cluster_ctas()) * 2;
  const int part = static_cast<int>(plan::decode_part_tiles(p.KT, U, cluster_ctas()));
  const int kt0 = min(p.KT, static_cast<int>(cluster_rank()) * part);
  const int KT = min(part, p.KT - kt0);
  const long long k_base = static_cast<long long>(kt0) * TK;
  const bool two = band0 + 1 < static_cast<int>(p.N >> 4);
  const int rows = two ? 32 : 16;
  // this warp's chunks: i with first tile (8 i + warp) U < KT
  const int KU = (KT + U - 1) / U;
  const int nmine = KU > warp ? (KU - warp + 7) / 8 : 0;

  // Each warp streams its own ring (weights and its activation columns) and
  // syncs only itself: no CTA barrier in the main loop, so warps drift freely.
  const uint32_t wring = smem_addr(smem) + warp * NST * WSTAGE + lane * 16;                          // [NST][WSTAGE]
  uint16_t* sAw = reinterpret_cast<uint16_t*>(smem + Cfg::RING_BYTES) + warp * NST * M * LDW;  // [NST][M][LDW]
  const uint32_t sring = smem_addr(smem) + Cfg::RING_BYTES + M * Cfg::A_ROW_BYTES + warp * NST * Cfg::SSTAGE;  // [NST][32]
  const uint8_t* wsrc = p.W + (static_cast<long long>(band0) * p.KT + kt0 + warp * U) * 512 + lane * 16;
  const long long band_stride = static_cast<long long>(p.KT) * 512;
  const uint16_t* Ag = reinterpret_cast<const uint16_t*>(p.A) + k_base;  // this part's first k
  const int zsize = mode == MODE_QUANT ? 1 : 2;
  // Paired groups: when a warp's chunk holds exactly two groups (2 gs = WK, e.g. int4 group 128
  // with 4 tiles), its first group index is even, so one aligned load per row, issued ahead
  // with the rest, brings both groups' bits (the second in the high half) instead of a load in
  // the middle of the chunk that the chunk's last flush would wait for.
  const bool pair = U >= 2 && has_scale && 2 * gs == WK && (G & 1) == 0 &&  // (groups are whole tiles)
                    (reinterpret_cast<uintptr_t>(p.scale) & 3u) == 0 &&
                    (!ZEROS || (reinterpret_cast<uintptr_t>(p.zeros) & (2u * zsize - 1u)) == 0);
  // Staged scales (see the top): with paired groups, the word of a row's two groups is copied
  // with the chunk's weights instead of loaded ahead.
  const bool staged = Cfg::SSTAGE > 0 && !ZEROS && pair;
  const uint8_t* scta = has_scale ? static_cast<const uint8_t*>(p.scale) +
                                        (static_cast<long long>(band0) * 16 * G + k_base / gs) * 2
                                  : nullptr;

  // This lane's activation vectors of a chunk: column a_col (16 bytes) of rows a_row0, a_row0 + RPT,
  // ... below M. They are the same in every chunk, so their addresses are set here once.
  constexpr int RPT = 32 / VPW;  // rows per pass of the warp
  static_assert(32 % VPW == 0, "a chunk's activation row is a whole number of 16-byte vectors per lane");
  const int a_row0 = lane / VPW, a_col = lane % VPW;
  const uint16_t* a_src = Ag + a_row0 * K + warp * WK + 8 * a_col;  // + i * CHK for chunk i
  const long long a_rstride = RPT * K;
  const uint32_t a_dst = smem_addr(sAw) + 2u * static_cast<uint32_t>(a_row0 * LDW + 8 * a_col);

  // Chunk i: this warp's U weight tiles (both bands) and the matching
  // activation columns of all M rows, into ring slot i % NST.
  auto issue = [&](int i) {
    if (i < nmine) {
      const int slot = i % NST;
      const int t0 = (i * 8 + warp) * U;
      const uint8_t* src = wsrc + static_cast<long long>(i) * 8 * U * 512;
      const uint32_t dst_w = wring + slot * WSTAGE;
      if (two && t0 + U <= KT) {  // the common case, without per-tile checks
#pragma unroll
        for (int u = 0; u < U; ++u) {
          cp_async16_stream(dst_w + u * 1024, src + u * 512);
          cp_async16_stream(dst_w + u * 1024 + 512, src + u * 512 + band_stride);
        }
      } else {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (t0 + u < KT) {
            cp_async16_stream(dst_w + u * 1024, src + u * 512);
            if (two) cp_async16_stream(dst_w + u * 1024 + 512, src + u * 512 + band_stride);
          }
        }
      }
      if (staged && lane < rows)  // row `lane`'s word of the chunk's two groups
        cp_async4(sring + slot * Cfg::SSTAGE + lane * 4,
                  scta + (static_cast<long long>(lane) * G + static_cast<long long>(t0) * TK / gs) * 2);
      const int klen = min(U, KT - t0) * TK;
      if (p.a_aligned) {
        if (8 * a_col < klen) {
          const uint16_t* src = a_src + static_cast<long long>(i) * CHK;
          uint32_t d = a_dst + 2u * static_cast<uint32_t>(slot * M * LDW);
          for (int r = a_row0; r < M; r += RPT, src += a_rstride, d += 2 * RPT * LDW) cp_async16(d, src);
        }
      } else {
        uint16_t* dst = sAw + slot * M * LDW;
        const long long k0 = static_cast<long long>(t0) * TK;
        for (int v = lane; v < M * klen; v += 32) {
          const int r = v / klen, j = v - r * klen;
          dst[r * LDW + j] = Ag[r * K + k0 + j];
        }
      }
    }
    cp_async_commit();
  };
  // Launched with PDL, this CTA may start while the previous kernel runs:
  // until griddep_wait it only asks L2 for the weights of its first chunks
  // and its first scales (prefetch_l2 is safe even if that kernel wrote them).
  griddep_launch_dependents();
  if ((lane & 7) == 0) {
    for (int i = 0; i < min(NST - 1, nmine); ++i) {
      const uint8_t* src = wsrc + static_cast<long long>(i) * 8 * U * 512;
      for (int u = 0; u < U && (i * 8 + warp) * U + u < KT; ++u) {
        prefetch_l2(src + u * 512);
        if (two) prefetch_l2(src + u * 512 + band_stride);
      }
    }
  }
  if (has_scale && lane < (two ? 4 : 2))
    prefetch_l2(static_cast<const uint8_t*>(p.scale) +
                ((band0 * 16 + lane * 8) * static_cast<long long>(G) + k_base / gs) * 2);
  griddep_wait();
  static_for<0, NST - 1>([&](auto I) { issue(decltype(I)::value); });
  if constexpr (FC == FC_NF4) {
    init_nf4_tab<T>(sTab);
    __syncthreads();
  }

  // The scales (and zeros) of this lane's rows g, g+8 of both bands, read from
  // global memory (L1-cached) one chunk ahead: q = 2 * band + (row >= 8).
  const long long row0 = static_cast<long long>(band0) * 16 + g;
  const int q_off[4] = {0, 8 * G, (two ? 16 : 0) * G, (two ? 24 : 8) * G};
  const uint8_t* sbase = has_scale ? static_cast<const uint8_t*>(p.scale) + row0 * G * 2 : nullptr;
  const uint8_t* zbase = ZEROS ? static_cast<const uint8_t*>(p.zeros) + row0 * G * zsize : nullptr;
  const int glast = pair ? G - 2 : G - 1;  // the last group a load may start at
  auto load_group = [&](int gi, uint32_t (&sr)[4], uint32_t (&zr)[4]) {
    if (!has_scale) return;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int i = q_off[q] + gi;
      if (pair) {
        sr[q] = ldg_u32_at(sbase + 2ll * i);
        if constexpr (ZEROS) zr[q] = zsize == 1 ? ldg_u16(zbase + i, 0) : ldg_u32_at(zbase + 2ll * i);
      } else {
        sr[q] = ldg_u16(sbase, i);
        if constexpr (ZEROS) zr[q] = zsize == 1 ? ldg_u8(zbase, i) : ldg_u16(zbase, i);
      }
    }
  };

  // ldmatrix row addresses: rows past M read row M-1 (their columns are never stored).
  uint32_t a_off[MB];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    const int r = min(mb * 8 + (lane & 7), M - 1);
    a_off[mb] = smem_addr(sAw) + 2u * static_cast<uint32_t>(r * LDW + 8 * (lane >> 3));
  }
  const RowP<T> P = rowp_base<FC, T>(p);
  const uint32_t ones[4] = {kOnes, kOnes, kOnes, kOnes};

  float acc[2][MB][4], tacc[2][MB][4], tsum[MB][4];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[0][mb][e] = acc[1][mb][e] = tacc[0][mb][e] = tacc[1][mb][e] = tsum[mb][e] = 0.f;

  // One group's factors per row q (rows g, g+8 of both bands) from its raw bits: sv, the scale
  // times the factor the raw decode left out, and zs, the zero term (z * s, or z when rescaled).
  // Every way to the current group's factors ends here, in one instruction per row that reads
  // the raw bits; so the flushes read only these registers and carry no scoreboard wait on the
  // loads in flight (a flush reading loaded bits would wait for all of them).
  auto group_factors = [&](const uint32_t (&sr)[4], const uint32_t (&zr)[4], float (&sv)[4], float (&zs)[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float s = has_scale ? TT<T>::tof(static_cast<uint16_t>(sr[q])) : 1.f;
      sv[q] = s * raw_value_scale<FC, T>();
      zs[q] = 0.f;
      if constexpr (ZEROS) {
        if (mode == MODE_RESCALE) {
          zs[q] = TT<T>::tof(static_cast<uint16_t>(zr[q]));
        } else if (mode == MODE_ORIGINAL) {
          zs[q] = TT<T>::tof(static_cast<uint16_t>(zr[q])) * s;
        } else {
          zs[q] = static_cast<float>(p.zeros_signed ? static_cast<int>(static_cast<int8_t>(zr[q] & 0xffu))
                                                    : static_cast<int>(zr[q] & 0xffu)) * s;
        }
      }
    }
  };
  // acc += sv * tacc - zs * tsum for one group; clears tacc / tsum.
  auto flush = [&](const float (&sv)[4], const float (&zs)[4]) {
#pragma unroll
    for (int bi = 0; bi < 2; ++bi)
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int q = 2 * bi + (e >> 1);
          const float a = ZEROS ? fmaf(-zs[q], tsum[mb][e], acc[bi][mb][e]) : acc[bi][mb][e];
          acc[bi][mb][e] = fmaf(sv[q], tacc[bi][mb][e], a);
          tacc[bi][mb][e] = 0.f;
        }
    if constexpr (ZEROS) {
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int e = 0; e < 4; ++e) tsum[mb][e] = 0.f;
    }
  };

  // Group bookkeeping: this warp's first k of chunk i is k_base + i * CHK + warp * U * TK,
  // at offset `rem` into group gi; chunks advance it by CHK = dq groups + dr.
  int gi = 0, rem = 0, dq = 0, dr = 0;
  if (has_scale) {
    const long long k_first = k_base + warp * U * TK;
    gi = static_cast<int>(k_first / gs);
    rem = static_cast<int>(k_first - static_cast<long long>(gi) * gs);
    dq = CHK / gs;
    dr = CHK - dq * gs;
  }
  // Chunks ahead that a group's bits are loaded (H100, 28672 x 8192 int4 g128, M = 1: 49.6 us with
  // the flush reading loaded bits, 47.8 us one chunk ahead, 46.9 us two). Kernels with zeros keep
  // one (two spill there), and so do those with one tile per chunk (int2 ran 9% slower with two).
  constexpr int AHEAD = ZEROS || U == 1 ? 1 : 2;
  auto advance = [&](int& g, int& r) {  // (group, offset) of a warp's chunk -> of its next one
    g += dq;
    r += dr;
    if (r >= gs) {
      r -= gs;
      ++g;
    }
  };
  // The raw bits of a chunk's (first) group are loaded AHEAD chunks ahead, one register set per
  // chunk in flight (with two, the loop body is instantiated for each set): in this kernel a
  // global load queues behind the copies in flight, about a chunk's worth. sv / zs: the current
  // group's factors; s_hi / z_hi: with paired groups, the chunk's second group's bits.
  uint32_t sA[4] = {0u, 0u, 0u, 0u}, zA[4] = {0u, 0u, 0u, 0u}, sB[4] = {0u, 0u, 0u, 0u},
           zB[4] = {0u, 0u, 0u, 0u}, s_hi[4], z_hi[4];
  float sv[4], zs[4];
  int gl = gi, rl = rem;  // the chunk whose bits are loaded next
  if (!staged) {
    load_group(min(gl, glast), sA, zA);
    advance(gl, rl);
    if (AHEAD == 2) {
      load_group(min(gl, glast), sB, zB);
      advance(gl, rl);
    }
  }
  auto split_pair = [&](const uint32_t (&sb)[4], const uint32_t (&zb)[4]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      s_hi[q] = sb[q] >> 16;
      z_hi[q] = zb[q] >> (8 * zsize);
    }
  };

  auto chunk = [&](int i, uint32_t (&sb)[4], uint32_t (&zb)[4]) {
    if (!staged) {
      group_factors(sb, zb, sv, zs);  // waits for loads AHEAD chunks old
      if (pair) split_pair(sb, zb);
      // Chunk i + AHEAD's bits before this chunk's copies: queued behind them, the loads would
      // hold their address registers (reused here) longer.
      if (i + AHEAD < nmine) load_group(min(gl, glast), sb, zb);
      advance(gl, rl);
    }
    cp_async_wait<NST - 2>();
    __syncwarp();
    issue(i + NST - 1);
    const int t0 = (i * 8 + warp) * U;  // this warp's first tile of the chunk
    const int slot = i % NST;
    if (staged) {  // rows g, g+8, g+16, g+24 (q_off): both groups' bits, arrived with the weights
#pragma unroll
      for (int q = 0; q < 4; ++q) sb[q] = lds32(sring + slot * Cfg::SSTAGE + (g + 8 * q) * 4);
      group_factors(sb, zb, sv, zs);
      split_pair(sb, zb);
    }
    const uint32_t aslot = 2u * static_cast<uint32_t>(slot * M * LDW);
    // k offset (from the chunk's first k) where the next group starts; groups
    // are whole tiles, so a boundary inside the chunk is at a tile start
    int nb = has_scale ? gs - rem : INT_MAX, gm = gi;
    static_for<0, U>([&](auto UI) {
      constexpr int u = decltype(UI)::value;
      if (t0 + u >= KT) return;
      if (u > 0 && u * TK == nb) {  // a group starts at this tile
        flush(sv, zs);
        if (pair) {
          group_factors(s_hi, z_hi, sv, zs);
        } else {  // not paired: loaded here, waited for at once
          uint32_t sr[4], zr[4];
          load_group(++gm, sr, zr);
          group_factors(sr, zr, sv, zs);
        }
        nb += gs;
      }
      const uint4 w0 = lds128(wring + slot * WSTAGE + u * 1024);
      const uint4 w1 = lds128(wring + slot * WSTAGE + u * 1024 + 512);  // stale when !two: never stored
      constexpr int SP = NS >= 2 ? 2 : 1;  // k-steps per ldmatrix
      static_for<0, NS / SP>([&](auto I) {
        constexpr int s0 = decltype(I)::value * SP;
        uint32_t bf[MB][4];
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) {
          const uint32_t addr = a_off[mb] + aslot + 2u * (u * TK) + 32u * s0;
          if constexpr (SP == 2) {
            ldmatrix_x4(addr, bf[mb][0], bf[mb][1], bf[mb][2], bf[mb][3]);
          } else {
            ldmatrix_x2(addr, bf[mb][0], bf[mb][1]);
          }
        }
        static_for<0, SP>([&](auto J) {
          constexpr int S = s0 + decltype(J)::value, j = decltype(J)::value;
          uint32_t a0[4], a1[4];
          decode_kstep<FC, T, S, true>(w0, P, sTab, a0);
          decode_kstep<FC, T, S, true>(w1, P, sTab, a1);
#pragma unroll
          for (int mb = 0; mb < MB; ++mb) {
            mma_f32<T>(tacc[0][mb], a0, bf[mb][2 * j], bf[mb][2 * j + 1]);
            mma_f32<T>(tacc[1][mb], a1, bf[mb][2 * j], bf[mb][2 * j + 1]);
            if constexpr (ZEROS) mma_f32<T>(tsum[mb], ones, bf[mb][2 * j], bf[mb][2 * j + 1]);
          }
        });
      });
    });
    flush(sv, zs);
    advance(gi, rem);
  };
  if (AHEAD == 2) {
    for (int i = 0; i < nmine; i += 2) {
      chunk(i, sA, zA);
      if (i + 1 < nmine) chunk(i + 1, sB, zB);
    }
  } else {
    for (int i = 0; i < nmine; ++i) chunk(i, sA, zA);
  }
  cp_async_wait<0>();
  __syncthreads();

  // ---- epilogue: the eight warps' sums in warp order, a cluster's CTAs' in rank order ----
  float* red = reinterpret_cast<float*>(smem);  // [warp][band][mb][e][lane], fits in the ring
#pragma unroll
  for (int bi = 0; bi < 2; ++bi)
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int e = 0; e < 4; ++e) red[(((warp * 2 + bi) * MB + mb) * 4 + e) * 32 + lane] = acc[bi][mb][e];
  // In a cluster, the outputs are dealt round-robin to the ranks; each reads every rank's sums (the same
  // order wherever an output is summed), and a CTA's shared memory stays until every rank has read it.
  const int split = static_cast<int>(cluster_ctas()), rank = static_cast<int>(cluster_rank());
  if (split > 1) {
    cluster_sync();
  } else {
    __syncthreads();
  }
  const uint32_t red_addr = smem_addr(red);
  for (int i = rank * 256 + tid; i < 32 * M; i += 256 * split) {
    const int nl = i & 31, m = i >> 5;
    if (nl >= rows) continue;
    const int bi = nl >> 4, r = nl & 15, mb = m >> 3;
    const int e = (r >> 3) * 2 + (m & 1), ln = (r & 7) * 4 + ((m & 7) >> 1);
    float sum = 0.f;
    for (int q = 0; q < split; ++q)
#pragma unroll
      for (int w = 0; w < 8; ++w) {
        const int at = (((w * 2 + bi) * MB + mb) * 4 + e) * 32 + ln;
        sum += split > 1 ? ld_shared_cluster_f32(red_addr + 4u * at, q) : red[at];
      }
    store_out<T>(p, m, static_cast<long long>(band0) * 16 + nl, sum);
  }
  if (split > 1) cluster_sync();
}

}  // namespace cudak
}  // namespace bitblas_jax
