// gemm_wgmma_a8: 8-bit activations on Hopper's 8-bit tensor cores (wgmma m64nNk32, A from registers;
// sm_90a): int8 activations x int8 / int4 / uint4 weights (int32 accumulators, exact: C[m, n] = sum_k
// A[m, k] w[n, k] wrapping mod 2^32), and float8 activations (e4m3 / e5m2) x float8_e4m3fn /
// float8_e5m2 / int4 weights (float32 accumulators).
//
// The fragment order. A lane of the packed layout holds, per 16-k step, the fp16 m16n8k16 A fragment:
// row g at k 2c, 2c+1, 2c+8, 2c+9 (and row g + 8 the same; g = lane / 4, c = lane % 4). An 8-bit
// packed tile (16 rows x 32 k, 512 bytes) is one k32 wgmma step, 16 bytes per lane. The k32 A
// fragment wants register r of lane (g, c) to hold 4 consecutive k positions 4c..4c+3 (r = 0: row g,
// 1: row g + 8; r = 2, 3: the same at 16 + 4c). A dot product ignores the order of k when both
// operands share it, so position 4c + i carries the lane's own k = kSigma[4c + i] of each 16-k chunk:
// register 0 = __byte_perm(w0, w1, 0x6420) (bytes 0 and 2 of words 0 and 1: row g's pairs, layout.h
// field_of), register 1 = __byte_perm(w0, w1, 0x7531) (row g + 8), registers 2, 3 the same on w2, w3;
// then ^ 0x80 per byte turns int8's offset-binary codes into int8 values (float8 codes are the values'
// own bits). 4-bit weights: a lane word holds one 16-k step's 8 nibbles (row g at nibbles 0, 4, 2, 6 in
// k order 2c, 2c+1, 2c+8, 2c+9; row g + 8 at 1, 5, 3, 7), so register 0 = __byte_perm(q & 0x0f0f0f0f,
// 0, 0x3120), register 1 the same of (q >> 4) & 0x0f0f0f0f; int4's code - 8 is (x + 0x78) ^ 0x80 per
// byte, and under float8 activations a code becomes the e4m3 bits of its value (every int4 value is an
// e4m3 one) by two 8-entry __byte_perm lookups. The activations (the B operand, K-major in shared
// memory) are given with each 16-k chunk in kSigma order: the caller permutes them. No cross-lane
// shuffles: 8 integer ops per lane and k32 step (int8), about 20 (int4 under float8).
//
// Shape. As gemm_wgmma: a CTA of two consumer warpgroups (128 weight rows, a 16-row band per warp) and
// a producer warpgroup that fills a ring of stages (the band's packed tiles by bulk copies, the
// activations by TMA: 128 k x BM rows, 128-byte swizzled), each stage with a full and an empty
// mbarrier. One wgmma per k32 step; WINDOW - 1 stay in flight while the next step is decoded.
//
// Stage sums (PROMOTE: float8 activations, or int8 ones with group scales). Each 128-k stage's first
// wgmma overwrites the accumulators; after its last one the pipeline drains and the stage's sum is
// added, times its group scale, into float32 accumulators. For int8 a stage is one group of 128 and its
// int32 sum is exact. For float8 this is the precision of the sum: Hopper's float8 tensor cores keep
// about 13 fraction bits (truncated) in the running sum of a wgmma, so over a long K the sum would
// lose small products; a stage of 4 wgmmas limits that loss to 128 products, and the stages add in
// float32. (Adding while a wgmma is in flight makes ptxas serialize every wgmma, C7513; the other
// consumer warpgroup's wgmmas keep the tensor cores busy through the drain.) Two accumulator sets take
// BM registers, so PROMOTE runs at 64 or 128 activation rows.
#pragma once

#include <type_traits>

#include "a8_fragment.cuh"  // kSigma, a8_fragment
#include "gemm_wgmma.cuh"  // mbarriers, TMA, descriptors, setmaxnreg
#include "gemm_wgmma_a8.h"

namespace bitblas_jax {
namespace cudak {

// fence_acc (gemm_wgmma.cuh) for int32 accumulators.
template <int R>
__device__ __forceinline__ void fence_acc(int (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// The weight's wgmma type under float8 activations: its own float8 kind, e4m3 for int4.
constexpr bool weight_is_e5m2(WFormat w) { return w == WFormat::kFP8E5M2; }

template <int BITS, int BM>
struct GemmA8Cfg {
  static constexpr int NB = 8;                       // bands (consumer warps) per CTA: 128 weight rows
  static constexpr int BK = 128;                     // k per stage: one 128-byte swizzled row
  static constexpr int TK = 256 / BITS;              // k per packed tile
  static constexpr int TPB = BK / TK;                // packed tiles per band and stage
  static constexpr int STEPS = TK / 32;              // k32 steps per tile
  static constexpr int THREADS = NB * 32 + 128;
  static constexpr int A_BYTES = BM * BK;            // 8-bit activations
  static constexpr int W_BYTES = NB * TPB * 512;
  static constexpr int STAGE_BYTES = A_BYTES + W_BYTES;
  static constexpr int STAGES = (220 * 1024) / STAGE_BYTES > 8 ? 8 : (220 * 1024) / STAGE_BYTES;
  static constexpr int SMEM = STAGES * STAGE_BYTES + 1024;
  static constexpr int WINDOW = 2;
  static constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;
  static_assert(A_BYTES % 1024 == 0 && W_BYTES % 1024 == 0, "stages keep the 1024-byte swizzle alignment");
  static_assert(STAGES >= 3, "a ring of at least three stages");
  static_assert(BK == plan::kGemmA8Stage, "a stage is plan.h's kGemmA8Stage (int8 groups are one stage)");
};

// The k32 wgmma of (activation, weight) types: int8 x int8 into int32, float8 into float32.
template <DType ACT, WFormat WF, int BM, typename Acc>
__device__ __forceinline__ void wgmma_a8(Acc (&acc)[BM / 2], const uint32_t (&a)[4], uint64_t desc, int accumulate) {
  if constexpr (ACT == DType::kI8)
    wgmma_rs_s8<BM>(acc, a, desc, accumulate);
  else
    wgmma_rs_f8<BM, weight_is_e5m2(WF), ACT == DType::kF8E5M2>(acc, a, desc, accumulate);
}

// ACT: the activations' type (kI8, kF8E4M3, kF8E5M2); WF: the weight format; SCALED: group scales
// applied per stage (int8: groups of one stage; float8: p.group_size, whole stages).
template <DType ACT, WFormat WF, bool SCALED, int BM>
__global__ void __launch_bounds__(GemmA8Cfg<format_bits(WF), BM>::THREADS, 1)
    gemm_wgmma_a8_kernel(const GemmA8Args p, const __grid_constant__ CUtensorMap a_map) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = GemmA8Cfg<format_bits(WF), BM>;
  constexpr bool FLOAT8 = ACT != DType::kI8;
  constexpr bool PROMOTE = FLOAT8 || SCALED;  // stage sums into float32 accumulators (header)
  using Acc = std::conditional_t<FLOAT8, float, int>;
  constexpr int NB = Cfg::NB, TPB = Cfg::TPB, BK = Cfg::BK, STAGES = Cfg::STAGES, ND = BM / 2;
  constexpr int STEPS = Cfg::STEPS;
  static_assert(!PROMOTE || BM <= 128, "two accumulator sets: 128 activation rows at most");
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
    // PROMOTE: each stage's first wgmma overwrites acc, and after its last one the pipeline drains and
    // acc is added into facc in float32, times the stage's group scale (header).
    Acc acc[ND];
    float facc[PROMOTE ? ND : 1];
#pragma unroll
    for (int i = 0; i < ND; ++i) acc[i] = 0;
#pragma unroll
    for (int i = 0; i < (PROMOTE ? ND : 1); ++i) facc[i] = 0.f;
    fence_acc(acc);
    const bool band_ok = band < nbands;
    const int stages_per_group = SCALED ? static_cast<int>(p.group_size / BK) : 1;
    const long long groups = SCALED ? K / p.group_size : 1;
    for (int kb = 0; kb < KB; ++kb) {
      float s_lo = 1.f, s_hi = 1.f;  // this lane's rows' scales of the stage's group
      if (SCALED && band_ok) {
        const long long gi = kb / stages_per_group;
        s_lo = __ldg(p.scale + nrow0 * groups + gi);
        s_hi = __ldg(p.scale + (nrow0 + 8) * groups + gi);
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
          a8_fragment<WF, FLOAT8>(w, j, a);
          const int step = tt * STEPS + j;
          const uint64_t desc = wgmma_desc_sw128(sbase + step * 32);  // k32 = 32 bytes into the 128-byte rows
          wgmma_fence();
          wgmma_a8<ACT, WF, BM>(acc, a, desc, PROMOTE && step == 0 ? 0 : 1);
          wgmma_commit();
          wgmma_wait<Cfg::WINDOW - 1>();
          if (step == Cfg::WINDOW - 2 && kb > 0) mbar_arrive(empty0 + 8 * prev);
        }
      }
      if constexpr (PROMOTE) {
        wgmma_wait<0>();
        fence_acc(acc);
#pragma unroll
        for (int i = 0; i < ND; ++i) {
          const float s = (i & 2) ? s_hi : s_lo;
          facc[i] = SCALED ? fmaf(s, static_cast<float>(acc[i]), facc[i]) : facc[i] + static_cast<float>(acc[i]);
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
    // acc[4j + e]: weight row nrow0 + 8 (e >> 1), activation row m0 + 8j + 2c + (e & 1)
    if (band_ok) {
#pragma unroll
      for (int j = 0; j < BM / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const long long m = m0 + 8 * j + 2 * c + (e & 1);
          if (m >= M) continue;
          const long long n = nrow0 + 8 * (e >> 1);
          if constexpr (PROMOTE)
            store_qact_sum(p.out, m * N + n, p.out_dtype, p.col_scale, p.bias, n, facc[4 * j + e]);
          else
            store_qact_sum(p.out, m * N + n, p.out_dtype, p.col_scale, p.bias, n, acc[4 * j + e]);
        }
    }
  }
#endif
}

}  // namespace cudak
}  // namespace bitblas_jax
