// gemm_wgmma_i8: int8 activations x int8 / int4 / uint4 weights on Hopper's int8 tensor cores (wgmma
// m64nNk32 s8, int32 accumulators; sm_90a). C[m, n] = sum_k A[m, k] w[n, k], exact (wrapping mod 2^32).
//
// The fragment order. A lane of the packed layout holds, per 16-k step, the fp16 m16n8k16 A fragment:
// row g at k 2c, 2c+1, 2c+8, 2c+9 (and row g + 8 the same; g = lane / 4, c = lane % 4). An int8
// packed tile (16 rows x 32 k, 512 bytes) is one k32 wgmma step, 16 bytes per lane. The s8 A
// fragment wants register r of lane (g, c) to hold 4 consecutive k positions 4c..4c+3 (r = 0: row g,
// 1: row g + 8; r = 2, 3: the same at 16 + 4c). A dot product ignores the order of k when both
// operands share it, so position 4c + i carries the lane's own k = kSigma[4c + i] of each 16-k chunk:
// register 0 = __byte_perm(w0, w1, 0x6420) (bytes 0 and 2 of words 0 and 1: row g's pairs, layout.h
// field_of), register 1 = __byte_perm(w0, w1, 0x7531) (row g + 8), registers 2, 3 the same on w2, w3;
// then ^ 0x80 per byte turns offset-binary codes into int8 values. 4-bit weights: a lane word holds
// one 16-k step's 8 nibbles (row g at nibbles 0, 4, 2, 6 in k order 2c, 2c+1, 2c+8, 2c+9; row g + 8 at
// 1, 5, 3, 7), so register 0 = __byte_perm(q & 0x0f0f0f0f, 0, 0x3120), register 1 the same of
// (q >> 4) & 0x0f0f0f0f, and int4's code - 8 is (x + 0x78) ^ 0x80 per byte. The activations (the B operand,
// K-major in shared memory) are given with each 16-k chunk in kSigma order: the caller permutes them
// (bitblas_jax quantizes activations straight into that order). No cross-lane shuffles, 8 integer
// ops per lane and k32 step.
//
// Shape. As gemm_wgmma: a CTA of two consumer warpgroups (128 weight rows, a 16-row band per warp) and
// a producer warpgroup that fills a ring of stages (the band's packed tiles by bulk copies, the
// activations by TMA: 128 k x BM rows, 128-byte swizzled), each stage with a full and an empty
// mbarrier. One wgmma per k32 step; WINDOW - 1 stay in flight while the next step is decoded.
//
// Group scales (GROUPED, groups of 128 k = one stage): the exact int32 sum of each group is scaled
// into float32 accumulators before the next group starts; int32 and float32 accumulators take BM
// registers, so GROUPED runs at 64 or 128 activation rows.
#pragma once

#include "gemm_wgmma.cuh"  // mbarriers, TMA, descriptors, setmaxnreg
#include "gemm_wgmma_i8.h"

namespace bitblas_jax {
namespace cudak {

// k position -> the k it carries, within each 16-k chunk.
constexpr int kSigma[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};

// Keeps the compiler from moving accumulator reads / writes across a wgmma wait.
template <int R>
__device__ __forceinline__ void fence_acc_s32(int (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// The A registers of k32 step j of a lane's 16-byte chunk (the header's fragment order).
template <int BITS, bool SIGNED>
__device__ __forceinline__ void s8_fragment(const uint4& w, int j, uint32_t (&a)[4]) {
  if constexpr (BITS == 8) {
    a[0] = __byte_perm(w.x, w.y, 0x6420) ^ 0x80808080u;
    a[1] = __byte_perm(w.x, w.y, 0x7531) ^ 0x80808080u;
    a[2] = __byte_perm(w.z, w.w, 0x6420) ^ 0x80808080u;
    a[3] = __byte_perm(w.z, w.w, 0x7531) ^ 0x80808080u;
  } else {
    const uint32_t q0 = j == 0 ? w.x : w.z, q1 = j == 0 ? w.y : w.w;
    const uint32_t r[4] = {__byte_perm(q0 & 0x0f0f0f0fu, 0u, 0x3120), __byte_perm((q0 >> 4) & 0x0f0f0f0fu, 0u, 0x3120),
                           __byte_perm(q1 & 0x0f0f0f0fu, 0u, 0x3120), __byte_perm((q1 >> 4) & 0x0f0f0f0fu, 0u, 0x3120)};
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = SIGNED ? (r[i] + 0x78787878u) ^ 0x80808080u : r[i];  // no carries: bytes < 0x88
  }
}

template <int BITS, int BM>
struct GemmI8Cfg {
  static constexpr int NB = 8;                       // bands (consumer warps) per CTA: 128 weight rows
  static constexpr int BK = 128;                     // k per stage: one 128-byte swizzled row
  static constexpr int TK = 256 / BITS;              // k per packed tile
  static constexpr int TPB = BK / TK;                // packed tiles per band and stage
  static constexpr int STEPS = TK / 32;              // k32 steps per tile
  static constexpr int THREADS = NB * 32 + 128;
  static constexpr int A_BYTES = BM * BK;            // int8 activations
  static constexpr int W_BYTES = NB * TPB * 512;
  static constexpr int STAGE_BYTES = A_BYTES + W_BYTES;
  static constexpr int STAGES = (220 * 1024) / STAGE_BYTES > 8 ? 8 : (220 * 1024) / STAGE_BYTES;
  static constexpr int SMEM = STAGES * STAGE_BYTES + 1024;
  static constexpr int WINDOW = 2;
  static constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;
  static_assert(A_BYTES % 1024 == 0 && W_BYTES % 1024 == 0, "stages keep the 1024-byte swizzle alignment");
  static_assert(STAGES >= 3, "a ring of at least three stages");
  static_assert(BK == plan::kGemmI8Group, "GROUPED scales one group per stage (plan.h kGemmI8Group)");
};

template <int BITS, bool SIGNED, bool GROUPED, int BM>
__global__ void __launch_bounds__(GemmI8Cfg<BITS, BM>::THREADS, 1)
    gemm_wgmma_i8_kernel(const GemmI8Args p, const __grid_constant__ CUtensorMap a_map) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = GemmI8Cfg<BITS, BM>;
  constexpr int NB = Cfg::NB, TPB = Cfg::TPB, BK = Cfg::BK, STAGES = Cfg::STAGES, ND = BM / 2;
  constexpr int STEPS = Cfg::STEPS;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ __align__(8) uint64_t s_full[STAGES], s_empty[STAGES];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const long long M = p.M, N = p.N, K = p.K;
  const int nbands = static_cast<int>(N >> 4);
  const int bx = blockIdx.x, by = blockIdx.y;
  const long long m0 = static_cast<long long>(by) * BM;
  const int KT = static_cast<int>(K / Cfg::TK);  // packed tiles per band
  const int KB = static_cast<int>(K / BK);  // stages (K a multiple of BK: the host checks)
  const uint32_t ring = (smem_addr(smem) + 1023u) & ~1023u;
  const uint32_t full0 = smem_addr(&s_full[0]), empty0 = smem_addr(&s_empty[0]);

  if (tid == 0) {
    prefetch_tensor_map(&a_map);
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full0 + 8 * s, 1);           // the producer's expect_tx arrival (+ the copies' bytes)
      mbar_init(empty0 + 8 * s, NB * 32);    // every consumer thread
    }
  }
  __syncthreads();

  if (warp >= NB) {
    regs_dec<Cfg::PRODUCER_REGS>();
    const int pt = tid - NB * 32;
    const int bands_here = min(NB, nbands - bx * NB);
    const uint32_t w_bytes = static_cast<uint32_t>(bands_here) * TPB * 512;
    const uint8_t* wsrc = p.W + (static_cast<long long>(bx) * NB + pt) * KT * 512LL;
    int slot = 0;
    uint32_t phase = 0;
    for (int kb = 0; kb < KB; ++kb) {
      if (kb >= STAGES) mbar_wait(empty0 + 8 * slot, phase ^ 1u);
      const uint32_t sbase = ring + slot * Cfg::STAGE_BYTES, full = full0 + 8 * slot;
      if (pt == 0) {
        mbar_arrive_expect_tx(full, w_bytes + Cfg::A_BYTES);
        tma_load_2d(sbase, &a_map, kb * BK, static_cast<int>(m0), full);
      }
      __syncwarp();
      if (pt < bands_here) bulk_copy_g2s(sbase + Cfg::A_BYTES + pt * TPB * 512, wsrc, TPB * 512, full);
      wsrc += TPB * 512;
      if (++slot == STAGES) {
        slot = 0;
        phase ^= 1u;
      }
    }
    return;
  } else {
    regs_inc<Cfg::CONSUMER_REGS>();
    const int band = bx * NB + warp;
    const long long nrow0 = static_cast<long long>(band) * 16 + g;
    int slot = 0, prev = STAGES - 1;
    uint32_t phase = 0;
    // One stage into acc. GROUPED (each stage is one group): the stage's first wgmma overwrites acc,
    // and after its last one the pipeline drains and acc's exact int32 sums are scaled into facc in
    // float32 (scaling while a wgmma is in flight makes ptxas serialize every wgmma, C7513; the other
    // consumer warpgroup's wgmmas keep the tensor cores busy through the drain).
    int acc[ND];
    float facc[GROUPED ? ND : 1];
#pragma unroll
    for (int i = 0; i < ND; ++i) acc[i] = 0;
#pragma unroll
    for (int i = 0; i < (GROUPED ? ND : 1); ++i) facc[i] = 0.f;
    fence_acc_s32(acc);
    const bool band_ok = band < nbands;
    for (int kb = 0; kb < KB; ++kb) {
      float s_lo = 0.f, s_hi = 0.f;  // this lane's rows' scales of group kb
      if (GROUPED && band_ok) {
        s_lo = __ldg(p.scale + nrow0 * KB + kb);
        s_hi = __ldg(p.scale + (nrow0 + 8) * KB + kb);
      }
      mbar_wait(full0 + 8 * slot, phase);
      const uint32_t sbase = ring + slot * Cfg::STAGE_BYTES;
      const uint32_t sw_addr = sbase + Cfg::A_BYTES + warp * TPB * 512 + lane * 16;
#pragma unroll
      for (int tt = 0; tt < TPB; ++tt) {
        const uint4 w = lds128(sw_addr + tt * 512);
#pragma unroll
        for (int j = 0; j < STEPS; ++j) {
          uint32_t a[4];
          s8_fragment<BITS, SIGNED>(w, j, a);
          const int step = tt * STEPS + j;
          const uint64_t desc = wgmma_desc_sw128(sbase + step * 32);  // k32 = 32 bytes into the 128-byte rows
          wgmma_fence();
          wgmma_rs_s8<BM>(acc, a, desc, GROUPED && step == 0 ? 0 : 1);
          wgmma_commit();
          wgmma_wait<Cfg::WINDOW - 1>();
          if (step == Cfg::WINDOW - 2 && kb > 0) mbar_arrive(empty0 + 8 * prev);
        }
      }
      if constexpr (GROUPED) {
        wgmma_wait<0>();
        fence_acc_s32(acc);
#pragma unroll
        for (int i = 0; i < ND; ++i) facc[i] += ((i & 2) ? s_hi : s_lo) * static_cast<float>(acc[i]);
      }
      prev = slot;
      if (++slot == STAGES) {
        slot = 0;
        phase ^= 1u;
      }
    }
    wgmma_wait<0>();
    fence_acc_s32(acc);
    // acc[4j + e]: weight row nrow0 + 8 (e >> 1), activation row m0 + 8j + 2c + (e & 1)
    if (band_ok) {
#pragma unroll
      for (int j = 0; j < BM / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const long long m = m0 + 8 * j + 2 * c + (e & 1);
          if (m >= M) continue;
          const long long o = m * N + nrow0 + 8 * (e >> 1);
          if constexpr (GROUPED)
            static_cast<float*>(p.out)[o] = facc[4 * j + e];
          else
            static_cast<int32_t*>(p.out)[o] = acc[4 * j + e];
        }
    }
  }
#endif
}

}  // namespace cudak
}  // namespace bitblas_jax
