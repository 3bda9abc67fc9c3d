// Plan 4: the decode kernel, v2 (M <= 16 per launch, float32 accumulation).
//
// One CTA of 8 warps owns two 16-row bands (32 weight rows) and the whole K:
// no split-K across CTAs, so no workspace, no memset, one launch. The K tiles
// are dealt round-robin to the warps (chunk i = tiles 8Ui .. 8U(i+1)-1, U
// consecutive tiles per warp); each chunk's weight tiles (16 bytes per lane and band) and its
// activation columns (all M rows, via cp.async) stream through an NST-stage
// shared-memory ring, one barrier per chunk. The eight warps' partial sums
// are added in shared memory at the end, in warp order (deterministic).
//
// The weight is decoded to its element values only (one lop3 + one hfma2 per
// pair for int4): the group scale is applied to the float32 mma result of each
// tile (k-step run) instead of to every weight, and zero points through the
// column sums of the activations (an extra mma against an all-ones fragment):
//   sum_k w a = s * sum_k v a - zs * sum_k a,  zs = z*s (original, quantized) or z (rescale).
// So the weight is never rounded to A's dtype (at least as accurate as v1).
// Needs group_size % 16 == 0 (a k-step in one group) unless mode is none; the
// scales (and zeros) of the CTA's 32 rows are staged in shared memory once.
#pragma once

#include "kernels.h"

namespace bitblas_jax {
namespace cudak {

template <int FC, int MB>
struct Gemv2Cfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = 256 / BITS;                    // k per tile
  static constexpr int U = MB == 1 && BITS >= 4 ? 2 : 1;   // consecutive tiles per warp and chunk
  static constexpr int NST = MB == 1 && U == 1 ? 6 : 4;    // ring stages (chunks)
  static constexpr int CHK = 8 * U * TK;                   // k per chunk
  static constexpr int LDA = CHK + 8;                      // activation row stride in halves (ldmatrix bank spread)
  static constexpr int WSTAGE = U * 1024;                  // weight bytes per warp and stage (U tiles x 2 bands)
  static constexpr int RING_BYTES = NST * 8 * WSTAGE;
  static constexpr int A_ROW_BYTES = NST * LDA * 2;        // activation ring bytes per row of M
};

// Copies `bytes` (a multiple of 16) from global src + offset to shared dst:
// 16-byte cp.async when src is 16-byte aligned, else byte loads.
__device__ __forceinline__ void copy_rows(void* dst, const void* src, long long offset, int bytes, int tid) {
  const uint8_t* s = static_cast<const uint8_t*>(src) + offset;
  uint8_t* d = static_cast<uint8_t*>(dst);
  if (reinterpret_cast<uintptr_t>(src) % 16 == 0) {
    for (int i = tid * 16; i < bytes; i += blockDim.x * 16) cp_async16(d + i, s + i);
  } else {
    for (int i = tid; i < bytes; i += blockDim.x) d[i] = s[i];
  }
}

template <int FC, typename T, int MB>
__global__ void __launch_bounds__(256, 2) gemv2_kernel(const KParams p) {
  using Cfg = Gemv2Cfg<FC, MB>;
  constexpr int TK = Cfg::TK, NS = TK / 16, NST = Cfg::NST, LDA = Cfg::LDA, CHK = Cfg::CHK, U = Cfg::U;
  constexpr int WSTAGE = Cfg::WSTAGE;
  constexpr uint32_t kOnes = std::is_same<T, __half>::value ? 0x3c003c00u : 0x3f803f80u;

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ typename TT<T>::T2 sTab[FC == FC_TAB4 ? 256 : 1];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const int M = static_cast<int>(p.M);
  const long long K = p.K;
  const int KT = p.KT, G = p.G, gs = p.gs, mode = p.mode;
  const bool has_scale = mode != MODE_NONE, has_zeros = mode >= MODE_ORIGINAL;
  const int band0 = blockIdx.x * 2;
  const bool two = band0 + 1 < static_cast<int>(p.N >> 4);
  const int rows = two ? 32 : 16;
  const int nchunks = (KT + 8 * U - 1) / (8 * U);

  uint16_t* sA = reinterpret_cast<uint16_t*>(smem + Cfg::RING_BYTES);                 // [NST][M][LDA]
  uint16_t* sS = reinterpret_cast<uint16_t*>(smem + Cfg::RING_BYTES + M * Cfg::A_ROW_BYTES);  // [32][G]
  uint16_t* sZ = sS + 32 * G;  // [32][G] of zsize-byte zeros
  const int zsize = mode == MODE_QUANT ? 1 : 2;
  const uint32_t ring = smem_addr(smem) + warp * WSTAGE + lane * 16;
  const uint8_t* wsrc = p.W + (static_cast<long long>(band0) * KT + warp * U) * 512 + lane * 16;
  const long long band_stride = static_cast<long long>(KT) * 512;
  const uint16_t* Ag = reinterpret_cast<const uint16_t*>(p.A);

  // Chunk i: this warp's U weight tiles (both bands) and a slice of the
  // chunk's activation columns, into ring slot i % NST.
  auto issue_nocommit = [&](int i) {
    if (i < nchunks) {
      const int slot = i % NST;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if ((i * 8 + warp) * U + u < KT) {
          const uint8_t* src = wsrc + (static_cast<long long>(i) * 8 * U + u) * 512;
          cp_async16_stream(ring + slot * 8 * WSTAGE + u * 1024, src);
          if (two) cp_async16_stream(ring + slot * 8 * WSTAGE + u * 1024 + 512, src + band_stride);
        }
      }
      const int klen = min(8 * U, KT - i * 8 * U) * TK;
      uint16_t* dst = sA + slot * M * LDA;
      const long long k0 = static_cast<long long>(i) * CHK;
      if (p.a_aligned) {
        const int vpr = klen >> 3;
        for (int v = tid; v < M * vpr; v += 256) {
          const int r = v / vpr, j = v - r * vpr;
          cp_async16(dst + r * LDA + 8 * j, Ag + r * K + k0 + 8 * j);
        }
      } else {
        for (int v = tid; v < M * klen; v += 256) {
          const int r = v / klen, j = v - r * klen;
          dst[r * LDA + j] = Ag[r * K + k0 + j];
        }
      }
    }
  };
  auto issue = [&](int i) {
    issue_nocommit(i);
    cp_async_commit();
  };
  if constexpr (FC == FC_TAB4) init_tab4<T>(sTab, p.fmt);
  issue_nocommit(0);
  if (has_scale) {  // this CTA's scales / zeros: contiguous rows, copied with chunk 0's group
    const long long row0 = static_cast<long long>(band0) * 16;
    copy_rows(sS, p.scale, row0 * G * 2, rows * G * 2, tid);
    if (has_zeros) copy_rows(sZ, p.zeros, row0 * G * zsize, rows * G * zsize, tid);
  }
  cp_async_commit();
  static_for<1, NST - 1>([&](auto I) { issue(decltype(I)::value); });

  // ldmatrix row addresses: rows past M read row M-1 (their columns are never stored).
  uint32_t a_off[MB];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    const int r = min(mb * 8 + (lane & 7), M - 1);
    a_off[mb] = smem_addr(sA) + 2u * static_cast<uint32_t>(r * LDA + warp * U * TK + 8 * (lane >> 3));
  }
  const RowP<T> P = rowp_base<FC, T>(p);
  const uint32_t ones[4] = {kOnes, kOnes, kOnes, kOnes};

  float acc[2][MB][4], tacc[2][MB][4], tsum[MB][4];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[0][mb][e] = acc[1][mb][e] = tacc[0][mb][e] = tacc[1][mb][e] = tsum[mb][e] = 0.f;

  // acc += s * tacc - zs * tsum for group gi (rows g, g+8 of each band); clears tacc / tsum.
  auto flush = [&](int gi) {
#pragma unroll
    for (int bi = 0; bi < 2; ++bi) {
      float s[2], zs[2] = {0.f, 0.f};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int idx = (bi * 16 + g + 8 * h) * G + gi;
        s[h] = TT<T>::tof(sS[idx]);
        if (has_zeros) {
          const uint16_t zb = zsize == 1 ? reinterpret_cast<const uint8_t*>(sZ)[idx] : sZ[idx];
          if (mode == MODE_RESCALE) {
            zs[h] = TT<T>::tof(zb);
          } else if (mode == MODE_ORIGINAL) {
            zs[h] = TT<T>::tof(zb) * s[h];
          } else {
            zs[h] = static_cast<float>(p.zeros_signed ? static_cast<int>(static_cast<int8_t>(zb & 0xffu))
                                                      : static_cast<int>(zb & 0xffu)) * s[h];
          }
        }
      }
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          acc[bi][mb][e] = fmaf(s[e >> 1], tacc[bi][mb][e], fmaf(-zs[e >> 1], tsum[mb][e], acc[bi][mb][e]));
          tacc[bi][mb][e] = 0.f;
        }
    }
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int e = 0; e < 4; ++e) tsum[mb][e] = 0.f;
  };

  for (int i = 0; i < nchunks; ++i) {
    cp_async_wait<NST - 2>();
    __syncthreads();
    issue(i + NST - 1);
    const int t0 = (i * 8 + warp) * U;  // this warp's first tile of the chunk
    if (t0 >= KT) continue;
    const int slot = i % NST;
    const uint32_t aslot = 2u * static_cast<uint32_t>(slot * M * LDA);
    // group of the next k-step, and the k offset (from the first tile) where the next group starts
    int gi = 0, nb = 0;
    if (has_scale) {
      gi = t0 * TK / gs;
      nb = (gi + 1) * gs - t0 * TK;
    }
    static_for<0, U>([&](auto UI) {
      constexpr int u = decltype(UI)::value;
      if (t0 + u >= KT) return;
      const uint4 w0 = lds128(ring + slot * 8 * WSTAGE + u * 1024);
      const uint4 w1 = lds128(ring + slot * 8 * WSTAGE + u * 1024 + 512);  // stale when !two: never stored
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
          if (has_scale && u * TK + 16 * S == nb) {  // a group starts here
            flush(gi);
            ++gi;
            nb += gs;
          }
          uint32_t a0[4], a1[4];
          decode_kstep<FC, T, S>(w0, P, sTab, a0);
          decode_kstep<FC, T, S>(w1, P, sTab, a1);
#pragma unroll
          for (int mb = 0; mb < MB; ++mb) {
            if (has_scale) {
              mma_f32<T>(tacc[0][mb], a0, bf[mb][2 * j], bf[mb][2 * j + 1]);
              mma_f32<T>(tacc[1][mb], a1, bf[mb][2 * j], bf[mb][2 * j + 1]);
              if (has_zeros) mma_f32<T>(tsum[mb], ones, bf[mb][2 * j], bf[mb][2 * j + 1]);
            } else {
              mma_f32<T>(acc[0][mb], a0, bf[mb][2 * j], bf[mb][2 * j + 1]);
              mma_f32<T>(acc[1][mb], a1, bf[mb][2 * j], bf[mb][2 * j + 1]);
            }
          }
        });
      });
    });
    if (has_scale) flush(gi);
  }
  cp_async_wait<0>();
  __syncthreads();

  // ---- epilogue: the eight warps' sums, in warp order ----
  float* red = reinterpret_cast<float*>(smem);  // [warp][band][mb][e][lane], fits in the ring
#pragma unroll
  for (int bi = 0; bi < 2; ++bi)
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int e = 0; e < 4; ++e) red[(((warp * 2 + bi) * MB + mb) * 4 + e) * 32 + lane] = acc[bi][mb][e];
  __syncthreads();
  for (int i = tid; i < 32 * M; i += 256) {
    const int nl = i & 31, m = i >> 5;
    if (nl >= rows) continue;
    const int bi = nl >> 4, r = nl & 15, mb = m >> 3;
    const int e = (r >> 3) * 2 + (m & 1), ln = (r & 7) * 4 + ((m & 7) >> 1);
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < 8; ++w) sum += red[(((w * 2 + bi) * MB + mb) * 4 + e) * 32 + ln];
    store_out<T>(p, m, static_cast<long long>(band0) * 16 + nl, sum);
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
