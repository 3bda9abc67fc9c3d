// Plan 6: the Hopper GEMM (sm_90a), wgmma with the dequantized weight as the
// register A operand.
//
// Grid (ceil(N/128), ceil(M/BM), split). A CTA of two warpgroups computes a
// 128 (weight rows) x BM (activation rows, BM = 32..256 = the wgmma n) tile of
// C^T over a K range. Warpgroup w owns weight rows 64w..64w+63, its warp i the
// 16-row band 4w+i: each lane dequantizes its 16-byte chunk of the band's
// packed tile straight into the m16n8k16 A-fragment layout, which is the
// per-warp slice of wgmma's 64 x 16 register A operand, so decoded weights
// never touch shared memory. The activations are the B operand: a BM x BK
// stage in shared memory, K-major with the 128-byte swizzle (64-k sub-tiles,
// 16-byte chunk j of row r at chunk j ^ (r & 7)), read by wgmma through a
// matrix descriptor. One wgmma per k-step of 16 (one commit group); up to
// WINDOW of them stay in flight while the next k-steps are decoded.
// Stages (packed tiles of the CTA's 8 bands + the activation tile) go through
// a cp.async ring. A stage's slot is refilled two iterations after it was
// read: by then every wgmma that read it has retired (a stage has at least
// WINDOW - 1 k-steps), so the ring needs no per-stage drain.
#pragma once

#include "common.cuh"
#include "matmul_cuda.h"  // wgmma_long_stages: the host's stage k
#include "wgmma_ops.cuh"

namespace bitblas_jax {
namespace cudak {

template <int FC, int BM>
struct WgmmaCfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = 256 / BITS;              // k per packed tile
  // k per stage: whole packed tiles, at least 128 for tiles of <= 64 activation rows where four
  // such stages fit two CTAs per SM (fewer barriers), else at least 64 (one swizzled sub-tile;
  // 8-bit weights at 64 rows: a ring of three 128-k stages ran 27% slower than six 64-k ones)
  static constexpr int KMIN = ::bitblas_jax::wgmma_long_stages(BITS, BM) ? 128 : 64;
  static constexpr int TPB = TK >= KMIN ? 1 : KMIN / TK;  // tiles per band and stage
  static constexpr int BK = TPB * TK;
  static constexpr int BN = 128;                     // weight rows per CTA (two warpgroups)
  // k-steps of wgmmas in flight: 3 where registers allow and ptxas keeps them
  // asynchronous (one tile per stage), else 2
  static constexpr int WINDOW = BM >= 128 || TPB > 1 ? 2 : 3;
  static constexpr int NB = BN / 16;                 // bands per CTA
  static constexpr int A_BYTES = BM * BK * 2;        // activation stage: BK / 64 sub-tiles of BM x 128 bytes
  static constexpr int W_BYTES = NB * TPB * 512;
  static constexpr int STAGE_BYTES = A_BYTES + W_BYTES;
  // two CTAs per SM where their accumulators and four stages fit, else one
  static constexpr int CTAS = BM <= 128 && 4 * STAGE_BYTES <= 106 * 1024 ? 2 : 1;
  static constexpr int BUDGET = (CTAS == 2 ? 106 : 220) * 1024;
  static constexpr int STAGES = BUDGET / STAGE_BYTES < 8 ? BUDGET / STAGE_BYTES : 8;
  static constexpr int SMEM = STAGES * STAGE_BYTES + 1024;  // + slack to align the ring to 1024 bytes
  static constexpr bool kSupported = STAGES >= 3 && TPB * (TK / 16) >= WINDOW - 1;
  static_assert(A_BYTES % 1024 == 0 && W_BYTES % 1024 == 0, "stages keep the 1024-byte swizzle alignment");
};

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t saddr) {
  return static_cast<uint64_t>((saddr & 0x3FFFFu) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy writes (cp.async, st.shared) -> visible to wgmma's async-proxy reads.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Keeps the compiler from moving accumulator reads / writes across a wgmma wait.
template <int R>
__device__ __forceinline__ void fence_acc(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <int FC, typename T, int BM>
__global__ void __launch_bounds__(256, WgmmaCfg<FC, BM>::CTAS) gemm_wgmma_kernel(const KParams p) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = WgmmaCfg<FC, BM>;
  constexpr int TK = Cfg::TK, TPB = Cfg::TPB, BK = Cfg::BK, STAGES = Cfg::STAGES, NB = Cfg::NB;
  constexpr int NS = TK / 16;  // k-steps per tile
  constexpr int ND = BM / 2;   // accumulators per thread

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ typename TT<T>::T2 sTab[nf4_tab_words<FC>()];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const long long M = p.M, N = p.N, K = p.K;
  const int nbands = static_cast<int>(N >> 4);
  const int bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
  const long long m0 = static_cast<long long>(by) * BM;
  const int KT = p.KT;
  const int KB = KT / TPB;  // K is a multiple of BK (the host checks): whole stages only
  const int kb0 = static_cast<int>(static_cast<long long>(bz) * KB / p.split);
  const int kb1 = static_cast<int>(static_cast<long long>(bz + 1) * KB / p.split);
  const uint32_t ring = (smem_addr(smem) + 1023u) & ~1023u;

  if constexpr (FC == FC_NF4) init_nf4_tab<T>(sTab);  // visible after the first barrier

  // Stage copies, each thread's addresses computed once. Weights: CPB 16-byte
  // chunks per band, BPI bands per pass. Activations: VPR 16-byte vectors per
  // row, RPP rows per pass, stored swizzled (rows differ by multiples of 8
  // between passes, so a thread's swizzle is fixed).
  constexpr int CPB = TPB * 32, BPI = 256 / CPB, WIT = NB / BPI;
  constexpr int VPR = BK / 8, RPP = 256 / VPR, AIT = (BM + RPP - 1) / RPP;
  static_assert(256 % CPB == 0 && NB % BPI == 0 && 256 % VPR == 0 && RPP % 8 == 0, "stage copy shape");
  const long long band_stride = static_cast<long long>(KT) * 512;
  const int wb = tid / CPB, wrest = tid % CPB;
  const uint8_t* wsrc = p.W + (static_cast<long long>(bx) * NB + wb) * band_stride + wrest * 16;
  const uint32_t woff = Cfg::A_BYTES + wb * TPB * 512 + wrest * 16;  // offsets within a stage
  const int ar = tid / VPR, av = tid % VPR;
  const uint16_t* Ag = reinterpret_cast<const uint16_t*>(p.A);
  const uint16_t* asrc = Ag + (m0 + ar) * K + av * 8;
  const uint32_t aoff = (av >> 3) * (BM * 128) + ar * 128 + (((av & 7) ^ (ar & 7)) << 4);

  // Stages are loaded in k order: running sources, advanced one stage per load.
  const uint8_t* wnext = wsrc + static_cast<long long>(kb0) * TPB * 512;
  const uint16_t* anext = asrc + static_cast<long long>(kb0) * BK;
  long long k_load = static_cast<long long>(kb0) * BK;
  uint32_t w_ok = 0u, a_ok = 0u;  // copy passes in range (rows past M stay unloaded:
#pragma unroll                    // they only meet outputs that are never stored)
  for (int j = 0; j < WIT; ++j) w_ok |= static_cast<uint32_t>(bx * NB + wb + j * BPI < nbands) << j;
#pragma unroll
  for (int j = 0; j < AIT; ++j) a_ok |= static_cast<uint32_t>(ar + j * RPP < BM && m0 + ar + j * RPP < M) << j;

  auto load_stage = [&](int st) {
    const uint32_t sbase = ring + st * Cfg::STAGE_BYTES;
#pragma unroll
    for (int j = 0; j < WIT; ++j)
      if ((w_ok >> j) & 1u) cp_async16_stream(sbase + woff + j * BPI * TPB * 512, wnext + j * BPI * band_stride);
    if (p.a_aligned) {
#pragma unroll
      for (int j = 0; j < AIT; ++j)
        if ((a_ok >> j) & 1u) cp_async16_stream(sbase + aoff + j * RPP * 128, anext + j * RPP * K);
    } else {
      uint16_t* sa = reinterpret_cast<uint16_t*>(smem + (sbase - smem_addr(smem)));
      for (int i = tid; i < BM * BK; i += 256) {
        const int r = i / BK, kk = i % BK;
        if (m0 + r < M)
          sa[(kk >> 6) * (BM * 64) + r * 64 + ((((kk >> 3) & 7) ^ (r & 7)) << 3) + (kk & 7)] =
              Ag[(m0 + r) * K + k_load + kk];
      }
    }
    cp_async_commit();
    wnext += TPB * 512;
    anext += BK;
    k_load += BK;
  };

  float acc[ND];
#pragma unroll
  for (int i = 0; i < ND; ++i) acc[i] = 0.f;
  fence_acc(acc);

  // this warp's band: CTA band `warp` (warpgroup warp / 4, its warp warp % 4); this lane's rows nrow0, nrow0 + 8
  const RowP<T> pbase = rowp_base<FC, T>(p);
  const int band = bx * NB + warp;
  const bool band_ok = band < nbands;
  const long long nrow0 = static_cast<long long>(band) * 16 + g;

  // Scales / zeros of the next stage's tiles, read while this one computes.
  // Groups are whole tiles here (the host sends other group sizes to plan 2);
  // (gi_run, ti_run): the next tile's group and its index within the group.
  const bool has_groups = p.mode != MODE_NONE;
  const int tiles_per_group = has_groups ? p.gs / TK : 1;
  int gi_run = 0, ti_run = 0;
  if (has_groups) {
    gi_run = kb0 * TPB / tiles_per_group;
    ti_run = kb0 * TPB - gi_run * tiles_per_group;
  }
  const GroupRows grows(p, band_ok ? nrow0 : 0);
  GroupBits g_nx[TPB];
  auto prefetch = [&](int kb) {
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      g_nx[tt] = GroupBits{0u, 0u, 0u, 0u};
      if (!has_groups || kb >= kb1) continue;
      if (band_ok) g_nx[tt] = grows.load(p, gi_run);
      if (++ti_run == tiles_per_group) {
        ti_run = 0;
        ++gi_run;
      }
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    if (kb0 + s < kb1)
      load_stage(s);
    else
      cp_async_commit();
  }
  prefetch(kb0);

  for (int kb = kb0, it = 0; kb < kb1; ++kb, ++it) {
    GroupBits g_cur[TPB];
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) g_cur[tt] = g_nx[tt];
    prefetch(kb + 1);
    cp_async_wait<STAGES - 3>();
    fence_proxy_async_smem();
    __syncthreads();
    {
      // refill the slot read two iterations ago (its wgmmas have retired)
      const int nk = kb + STAGES - 2;
      if (nk < kb1)
        load_stage((it + STAGES - 2) % STAGES);
      else
        cp_async_commit();
    }
    const uint32_t sbase = ring + (it % STAGES) * Cfg::STAGE_BYTES;
    const uint32_t sw_addr = sbase + Cfg::A_BYTES + warp * TPB * 512 + lane * 16;
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      RowP<T> P0, P1;
      uint32_t s2, z2;
      g_cur[tt].pack(s2, z2);  // the first use of the loads issued a stage ago
      rowp_make2<FC, T>(p, pbase, s2, z2, P0, P1);
      const uint4 w = lds128(sw_addr + tt * 512);
      static_for<0, NS>([&](auto I) {
        constexpr int S = decltype(I)::value;
        const int kk = tt * TK + S * 16;
        uint32_t a[4];
        dequant_kstep<FC, T, S>(w, P0, P1, P0, P1, sTab, a);
        const uint64_t desc = wgmma_desc_sw128(sbase + (kk >> 6) * (BM * 128) + (kk & 63) * 2);
        wgmma_fence();
        wgmma_rs<BM, T>(acc, a, desc);
        wgmma_commit();
        wgmma_wait<Cfg::WINDOW - 1>();
      });
    }
  }
  wgmma_wait<0>();
  fence_acc(acc);
  cp_async_wait<0>();

  // ---- epilogue: acc[4j + e] is weight row nrow0 + 8 (e >> 1), activation row m0 + 8j + 2c + (e & 1) ----
  float* part = p.partial + static_cast<long long>(bz) * M * N;
  if (band_ok) {
#pragma unroll
    for (int j = 0; j < BM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const long long m = m0 + 8 * j + 2 * c + (e & 1);
        if (m >= M) continue;
        if (p.split == 1)
          store_out<T>(p, m, nrow0 + 8 * (e >> 1), acc[4 * j + e]);
        else
          part[m * N + nrow0 + 8 * (e >> 1)] = acc[4 * j + e];
      }
  }
  if (p.split == 1) return;
  if (splitk_arrive(p, by * gridDim.x + bx)) {
    const long long nb0 = static_cast<long long>(bx) * Cfg::BN;
    splitk_reduce<T, Cfg::BN>(p, m0, static_cast<int>(min(static_cast<long long>(BM), M - m0)), nb0,
                              static_cast<int>(min(static_cast<long long>(Cfg::BN), N - nb0)));
  }
#endif
}

}  // namespace cudak
}  // namespace bitblas_jax
