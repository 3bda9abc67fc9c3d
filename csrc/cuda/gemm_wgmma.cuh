// The Hopper GEMM (sm_90a), wgmma with the dequantized weight as the
// register A operand.
//
// Grid (ceil(N/128) rounded up to the cluster, ceil(M/BM), split), in clusters of
// CL = 1, 2 or 4 CTAs along N. A CTA of two consumer warpgroups and one producer
// warpgroup computes a 128 (weight rows) x BM (activation rows, BM = 32..256 =
// the wgmma n) tile of C^T over a K range. Consumer warpgroup w owns weight rows
// 64w..64w+63, its warp i the 16-row band 4w+i: each lane dequantizes its
// 16-byte chunk of the band's packed tile straight into the m16n8k16 A-fragment
// layout, which is the per-warp slice of wgmma's 64 x 16 register A operand, so
// decoded weights never touch shared memory. The activations are the B operand:
// a BM x BK stage in shared memory, K-major with the 128-byte swizzle (64-k
// sub-tiles, 16-byte chunk j of row r at chunk j ^ (r & 7)), read by wgmma
// through a matrix descriptor. One wgmma per k-step of 16 (one commit group); up
// to WINDOW of them stay in flight while the next k-steps are decoded.
// The producer warpgroup (its registers handed to the consumers by setmaxnreg)
// fills a ring of stages: the packed tiles of the CTA's 8 bands by bulk copies,
// the activation tile by the tensor-memory accelerator (TMA: one thread, the
// swizzle done by the copy engine), the tiles' group scales and zeros as one
// word per row pair by shared stores. The CTAs of a cluster compute the same
// activation rows for different weight rows, so each brings BM / CL of the
// stage's activation rows and multicasts them to all: the activations' L2
// reads, 8 of every 9 bytes a CTA reads at BM = 256, drop by CL. Each stage
// has a "full" mbarrier (the copies' bytes and the producers' arrivals) and an
// "empty" one, on which the CTA's consumers release the slot once the wgmmas
// that read it have retired (a stage has at least WINDOW - 1 k-steps, so that is
// WINDOW - 1 k-steps into the next stage); in a cluster the producers pass that
// on to each other ("cluster empty"), so a producer overwrites a slot, its own
// and its peers', only after all CTAs of the cluster are done with it. So the consumer warps issue no copies and meet no CTA-wide barrier in the
// loop.
#pragma once

#include <cuda.h>  // CUtensorMap

#include "common.cuh"
#include "bitblas_jax/plan.h"  // stage k, ring depth, CTAs per SM
#include "wgmma_ops.cuh"

namespace bitblas_jax {
namespace cudak {

template <int FC, int BM>
struct WgmmaCfg {
  static constexpr int BITS = fc_bits(FC);
  static constexpr int TK = plan::packed_tile_k(BITS);      // k per packed tile
  // k per stage: whole packed tiles, at least 128 where enough such stages fit, else at least 64
  // (8-bit weights at 64 rows: a ring of three 128-k stages ran 27% slower than six 64-k ones)
  static constexpr int BK = plan::wgmma_stage_k(BITS, BM);
  static constexpr int TPB = plan::wgmma_tiles_per_stage(BITS, BM);  // tiles per band and stage
  static constexpr int BN = plan::kWgmmaWeightRows;        // weight rows per CTA (two warpgroups)
  // k-steps of wgmmas in flight (at 128 rows 3 ran 2% slower than 2, at 256 rows 1.5% faster)
  static constexpr int WINDOW = plan::wgmma_window(BITS, BM);
  static constexpr int NB = BN / 16;                 // bands per CTA = consumer warps
  static constexpr int THREADS = NB * 32 + 128;      // + the producer warpgroup
  static constexpr int A_BYTES = BM * BK * 2;        // activation stage: BK / 64 sub-tiles of BM x 128 bytes
  static constexpr int W_BYTES = NB * TPB * 512;
  static constexpr int G_BYTES = plan::wgmma_group_bytes(BITS, TPB);  // the stage's scale and zero words
  static constexpr int STAGE_BYTES = plan::wgmma_stage_bytes(BITS, BM);
  // two CTAs per SM where four stages fit and the wgmma fits the launch's 80 registers per
  // thread (ptxas checks a wgmma against the launch's count, not setmaxnreg's: m64n128 needs 94)
  static constexpr int CTAS = plan::wgmma_ctas_per_sm(BITS, BM);
  // registers per thread after setmaxnreg: the producers give theirs to the consumers (the
  // launch's 384 x (CTAS == 2 ? 80 : 168) per CTA: 128 x 32 + 256 x 104, or 128 x 40 + 256 x 232)
  static constexpr int PRODUCER_REGS = CTAS == 2 ? 32 : 40;
  static constexpr int CONSUMER_REGS = CTAS == 2 ? 104 : 232;
  static constexpr int STAGES = plan::wgmma_stages(BITS, BM);
  static constexpr int SMEM = plan::wgmma_smem_bytes(BITS, BM);  // + slack to align the ring to 1024 bytes
  static constexpr bool kSupported = plan::wgmma_supported(BITS, BM);
  static_assert(STAGE_BYTES == A_BYTES + W_BYTES + G_BYTES, "plan.h sizes the stage");
  static_assert(A_BYTES % 1024 == 0 && W_BYTES % 1024 == 0 && G_BYTES % 1024 == 0,
                "stages keep the 1024-byte swizzle alignment");
  static_assert(NB * 8 == 64, "a group word per row pair: 64 words per tile and kind");
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
// mbarriers (shared::cta). The ring's "full" barrier of a stage completes when the producer
// warpgroup's expect_tx arrival and its 128 arrivals after storing the stage's group words are in and
// the copies' bytes (its bulk copies, the cluster's activation multicasts) have landed; the "empty"
// one when every consumer thread of the CTA has released the slot; the "cluster empty" one (clusters
// of 2 or 4) when every producer of the cluster has seen its own CTA's slot empty.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// Arrives on the barrier at the same shared offset in CTA `rank` of this cluster.
__device__ __forceinline__ void mbar_arrive_cluster(uint32_t bar, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(bar), "r"(rank));
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}
// Every thread of the cluster: barrier inits (and earlier shared stores) visible cluster-wide.
__device__ __forceinline__ void cluster_sync_after_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  cluster_sync();
}
// The activation box (64 k x the map's rows) at (k, row) into this CTA's shared memory at dst,
// 128-byte swizzled by the copy engine, counted on `bar`; the multicast form writes the same
// offsets (data and barrier) in every CTA of `mask`.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int k, int row, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void tma_load_2d_multicast(uint32_t dst, const CUtensorMap* map, int k, int row,
                                                      uint32_t bar, uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
      "%3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(bar), "h"(mask)
      : "memory");
}
__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
// Hands registers between warpgroups (every warp of a warpgroup runs it).
template <int R>
__device__ __forceinline__ void regs_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void regs_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// The same for arrivals released at cluster scope (mbar_arrive_cluster).
__device__ __forceinline__ void mbar_wait_cluster(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, "
        "p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
// One bulk copy global -> shared (16-byte aligned, a multiple of 16 bytes), counted on `bar`.
__device__ __forceinline__ void bulk_copy_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// Keeps the compiler from moving accumulator reads / writes across a wgmma wait.
template <int R>
__device__ __forceinline__ void fence_acc(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <int FC, typename T, int BM>
__global__ void __launch_bounds__(WgmmaCfg<FC, BM>::THREADS, WgmmaCfg<FC, BM>::CTAS)
    gemm_wgmma_kernel(const KParams p, const __grid_constant__ CUtensorMap a_map) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = WgmmaCfg<FC, BM>;
  constexpr int TK = Cfg::TK, TPB = Cfg::TPB, BK = Cfg::BK, STAGES = Cfg::STAGES, NB = Cfg::NB;
  constexpr int NS = TK / 16;  // k-steps per tile
  constexpr int ND = BM / 2;   // accumulators per thread

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ typename TT<T>::T2 sTab[nf4_tab_words<FC>()];
  __shared__ __align__(8) uint64_t s_full[STAGES], s_empty[STAGES], s_cluster_empty[STAGES];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const long long M = p.M, N = p.N;
  const int nbands = static_cast<int>(N >> 4);
  const int nblocks = (nbands + NB - 1) / NB;  // CTAs along N with weight rows (the grid may have one more)
  const int bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
  const bool cta_has_rows = bx < nblocks;
  const long long m0 = static_cast<long long>(by) * BM;
  const int KT = p.KT;
  const int KB = KT / TPB;  // K is a multiple of BK (the host checks): whole stages only
  const int kb0 = static_cast<int>(static_cast<long long>(bz) * KB / p.split);
  const int kb1 = static_cast<int>(static_cast<long long>(bz + 1) * KB / p.split);
  // Same offsets in every CTA (one kernel, one layout): a multicast lands where the peer expects it.
  const uint32_t ring = (smem_addr(smem) + 1023u) & ~1023u;
  const uint32_t full0 = smem_addr(&s_full[0]), empty0 = smem_addr(&s_empty[0]);
  const uint32_t cluster_empty0 = smem_addr(&s_cluster_empty[0]);
  const long long band_stride = static_cast<long long>(KT) * 512;
  const uint32_t cl_ctas = cluster_ctas(), cl_rank = cluster_rank();

  if constexpr (FC == FC_NF4) init_nf4_tab<T>(sTab);
  if (tid == 0) {
    prefetch_tensor_map(&a_map);
    for (int s = 0; s < STAGES; ++s) {
      // the producers' expect_tx arrival and their 128 arrivals after storing the stage's group words
      mbar_init(full0 + 8 * s, 129);
      mbar_init(empty0 + 8 * s, NB * 32);                          // every consumer thread of this CTA
      mbar_init(cluster_empty0 + 8 * s, static_cast<int>(cl_ctas));  // every producer of the cluster
    }
  }
  if (cl_ctas > 1)
    cluster_sync_after_init();  // the peers arrive on and multicast to this CTA's barriers
  else
    __syncthreads();  // barriers and the nf4 table ready

  if (warp >= NB) {
    // ---- producer warpgroup: stages kb0..kb1-1 in k order into slots 0, 1, .., STAGES-1, 0, .. ----
    // Weights: thread b < NB bulk-copies band b's TPB tiles (contiguous). Activations: thread 0
    // copies this CTA's share of the stage's rows (rows cl_rank * BM / CL.., the map's box) for each
    // 64-k sub-tile, to every CTA of the cluster; rows past M arrive as zeros (their outputs are not
    // stored).
    regs_dec<Cfg::PRODUCER_REGS>();
    const int pt = tid - NB * 32;
    const int bands_here = cta_has_rows ? min(NB, nbands - bx * NB) : 0;
    const uint32_t w_bytes = static_cast<uint32_t>(bands_here) * TPB * 512;
    const uint8_t* wsrc = p.W + (static_cast<long long>(bx) * NB + pt) * band_stride +
                          static_cast<long long>(kb0) * TPB * 512;
    const int a_rows = BM / static_cast<int>(cl_ctas);  // the map's box rows
    const uint32_t a_dst = cl_rank * a_rows * 128;        // a multiple of 1024: the swizzle's period
    const int a_row = static_cast<int>(m0) + static_cast<int>(cl_rank) * a_rows;
    const uint16_t cl_mask = static_cast<uint16_t>((1u << cl_ctas) - 1u);
    // Group words: producer thread pt stores, for each tile of a stage, one word of kind pt / 64
    // (0: scales, 1: zeros) of row pair pt % 64 = (n, n + 8), n = 16 (pair / 8) + pair % 8 of the CTA:
    // row n's bits low, row n + 8's high (GroupBits::pack's order). Groups are whole tiles here (the
    // plan sends other group sizes to gemm_mma): (gi_run, ti_run) = the next tile's group and its index
    // within the group.
    const bool has_groups = Cfg::G_BYTES > 0 && p.mode != MODE_NONE;
    const int kind = pt >> 6, pair = pt & 63;
    const int tiles_per_group = has_groups ? p.gs / TK : 1;
    int gi_run = has_groups ? kb0 * TPB / tiles_per_group : 0;
    int ti_run = has_groups ? kb0 * TPB - gi_run * tiles_per_group : 0;
    const uint8_t* const zeros = group_zeros(p);
    const bool zbyte = p.mode == MODE_QUANT;
    const bool word_ok = has_groups && (pair >> 3) < bands_here && (kind == 0 || zeros != nullptr);
    const long long n = (static_cast<long long>(bx) * NB + (pair >> 3)) * 16 + (pair & 7);
    const uint8_t* const grow = !word_ok ? nullptr
                                : kind == 0 ? static_cast<const uint8_t*>(p.scale) + n * p.G * 2
                                            : zeros + n * p.G * (zbyte ? 1 : 2);
    const bool gbyte = kind == 1 && zbyte;
    const long long g8 = 8LL * p.G;  // elements from row n to row n + 8
    // Issued after a stage's copies and combined when the next stage is stored, so the producer does
    // not wait for them.
    uint32_t g_lo[TPB], g_hi[TPB];
    auto load_groups = [&](int kb) {
#pragma unroll
      for (int tt = 0; tt < TPB; ++tt) {
        g_lo[tt] = g_hi[tt] = 0u;
        if (!has_groups || kb >= kb1) continue;
        if (word_ok) {
          g_lo[tt] = gbyte ? ldg_u8_u32(grow, gi_run) : ldg_u16_u32(grow, gi_run);
          g_hi[tt] = gbyte ? ldg_u8_u32(grow, gi_run + g8) : ldg_u16_u32(grow, gi_run + g8);
        }
        if (++ti_run == tiles_per_group) {
          ti_run = 0;
          ++gi_run;
        }
      }
    };
    // A slot is free here once this CTA's consumers have released it ("empty"); in a cluster thread 0
    // then tells every producer of the cluster so, and multicasts into it only once all have told it
    // ("cluster empty"): its copies land in every CTA's slot.
    auto wait_slot_free = [&](int slot, uint32_t phase) {
      mbar_wait(empty0 + 8 * slot, phase ^ 1u);
      if (cl_ctas > 1 && pt == 0) {
        for (uint32_t r = 0; r < cl_ctas; ++r) mbar_arrive_cluster(cluster_empty0 + 8 * slot, r);
        mbar_wait_cluster(cluster_empty0 + 8 * slot, phase ^ 1u);
      }
    };
    load_groups(kb0);
    int slot = 0;
    uint32_t phase = 0;
    for (int kb = kb0; kb < kb1; ++kb) {
      if (kb - kb0 >= STAGES) wait_slot_free(slot, phase);
      const uint32_t sbase = ring + slot * Cfg::STAGE_BYTES, full = full0 + 8 * slot;
      if (pt == 0) {
        mbar_arrive_expect_tx(full, w_bytes + Cfg::A_BYTES);  // the whole activation tile lands here
#pragma unroll
        for (int sub = 0; sub < BK / 64; ++sub) {
          const uint32_t dst = sbase + sub * (BM * 128) + a_dst;
          if (cl_ctas > 1)
            tma_load_2d_multicast(dst, &a_map, kb * BK + sub * 64, a_row, full, cl_mask);
          else
            tma_load_2d(dst, &a_map, kb * BK + sub * 64, a_row, full);
        }
      }
      __syncwarp();
      if (pt < bands_here) bulk_copy_g2s(sbase + Cfg::A_BYTES + pt * TPB * 512, wsrc, TPB * 512, full);
      if (has_groups) {
        const uint32_t gbase = sbase + Cfg::A_BYTES + Cfg::W_BYTES + pt * 4;  // kind * 256 + pair * 4
#pragma unroll
        for (int tt = 0; tt < TPB; ++tt) sts32(gbase + tt * 512, g_lo[tt] | (g_hi[tt] << 16));
      }
      mbar_arrive(full);  // releases the group words' stores to the consumers' wait
      load_groups(kb + 1);
      wsrc += TPB * 512;
      if (++slot == STAGES) {
        slot = 0;
        phase ^= 1u;
      }
    }
    // In a cluster the peers' producers arrive on this CTA's cluster-empty barriers until their
    // consumers are done with the last stages: this CTA's shared memory stays until then.
    if (cl_ctas > 1) {
      for (int kb = kb1; kb < kb1 + STAGES; ++kb) {
        if (kb - kb0 >= STAGES) wait_slot_free(slot, phase);
        if (++slot == STAGES) {
          slot = 0;
          phase ^= 1u;
        }
      }
    }
    return;  // (the consumers run the epilogue; the copies are theirs to wait for)
  } else {
    regs_inc<Cfg::CONSUMER_REGS>();
    float acc[ND];
#pragma unroll
    for (int i = 0; i < ND; ++i) acc[i] = 0.f;
    fence_acc(acc);

    // ---- consumers: this warp's band: CTA band `warp`; this lane's rows nrow0, nrow0 + 8 ----
    const RowP<T> pbase = rowp_base<FC, T>(p);
    const int band = bx * NB + warp;
    const bool band_ok = band < nbands;
    const long long nrow0 = static_cast<long long>(band) * 16 + g;
    // Every consumer thread releases a slot on its CTA's barrier (one plain arrive: more work between
    // the wgmmas, even a second arrive, makes ptxas serialize them for the 1- and 2-bit formats).
    auto release = [&](int s) { mbar_arrive(empty0 + 8 * s); };

    const bool has_groups = Cfg::G_BYTES > 0 && p.mode != MODE_NONE, has_zeros = has_groups && p.mode > MODE_SCALE;
    int slot = 0, prev = STAGES - 1;  // this stage's slot and the one before it
    uint32_t phase = 0;
    for (int kb = kb0; kb < kb1; ++kb) {
      mbar_wait(full0 + 8 * slot, phase);  // the TMA's writes are the async proxy's, as are wgmma's reads
      const uint32_t sbase = ring + slot * Cfg::STAGE_BYTES;
      const uint32_t sw_addr = sbase + Cfg::A_BYTES + warp * TPB * 512 + lane * 16;
      const uint32_t sg_addr = sbase + Cfg::A_BYTES + Cfg::W_BYTES + (warp * 8 + g) * 4;
      const bool release_prev = kb > kb0;
      if (!cta_has_rows) {  // the grid's cluster padding: its producer's multicasts serve the peers
        if (release_prev) release(prev);
      } else {
#pragma unroll
        for (int tt = 0; tt < TPB; ++tt) {
          RowP<T> P0, P1;
          uint32_t s2 = 0u, z2 = 0u;
          if (has_groups) s2 = lds32(sg_addr + tt * 512);  // this lane's row pair's words
          if (has_zeros) z2 = lds32(sg_addr + tt * 512 + 256);
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
            // WINDOW - 1 k-steps into this stage every wgmma of the previous one has retired
            if (tt * NS + S == Cfg::WINDOW - 2 && release_prev) release(prev);
          });
        }
      }
      prev = slot;
      if (++slot == STAGES) {
        slot = 0;
        phase ^= 1u;
      }
    }
    wgmma_wait<0>();
    fence_acc(acc);
    if (cl_ctas > 1) release(prev);  // the last stage (the producers of the cluster wait for it before leaving)
    if (!cta_has_rows) return;

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
    if (splitk_arrive<NB * 32>(p, by * nblocks + bx)) {  // the consumer warps only
      const long long nb0 = static_cast<long long>(bx) * Cfg::BN;
      constexpr int R = BM >= 128 ? 4 : 2, SB = BM >= 128 ? 4 : 2;  // 168 registers a thread, or 80
      splitk_reduce<T, Cfg::BN, NB * 32, R, SB>(p, m0, static_cast<int>(min(static_cast<long long>(BM), M - m0)),
                                                nb0, static_cast<int>(min(static_cast<long long>(Cfg::BN), N - nb0)));
    }
  }
#endif
}

}  // namespace cudak
}  // namespace bitblas_jax
