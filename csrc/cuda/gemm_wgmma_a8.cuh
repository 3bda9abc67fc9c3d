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
// mbarrier. One wgmma per k32 step; WINDOW - 1 stay in flight while the next step is decoded. One CTA
// runs per SM; the grid takes a weight tile's activation tiles first where the weight tiles outnumber half the
// SMs (plan.h gemm_a8_act_tiles_along_x), so the CTAs that read one weight tile run together.
//
// The epilogue. The tensor cores idle through it (one CTA per SM), so it keeps its instructions and loads few:
// each consumer warp scales and casts its 16 x BM outputs in registers, the rows' activation scales read from
// shared memory (staged there from one load per thread issued before the main loop), writes them in C's layout
// into the ring (free once every consumer warp is past its last wgmma: a named barrier) and stores whole
// 16-byte vectors of C's rows.
//
// Stage sums (PROMOTE: float8 activations, or int8 ones with group scales). Each 128-k stage's first
// wgmma overwrites one of two stage-sum sets, and the stage's sum is added, times its group scale, into
// float32 accumulators. For int8 a stage is one group of 128 and its int32 sum is exact. For float8 this
// is the precision of the sum: Hopper's float8 tensor cores keep about 13 fraction bits (truncated) in
// the running sum of a wgmma, so over a long K the sum would lose small products; a stage of 4 wgmmas
// limits that loss to 128 products, and the stages add in float32. When to add: within a run of
// kStagesPerFullDrain stages, the window's wait after the next stage's first wgmma has retired the
// previous stage, whose set is then added a quarter per k32 step while this stage's wgmmas run; the
// run's last stage drains the pipeline and is added after it. ptxas lets a retired set be read while the
// other set's wgmmas are in flight only when both lie in one loop iteration (a sum read in the next
// iteration makes it serialize every wgmma, C7514), so a run is one iteration: one full drain per 512 k
// instead of one per 128 (the other consumer warpgroup's wgmmas keep the tensor cores busy through it).
// Two sets and the float32 sums take 3/2 BM registers per thread, so PROMOTE runs at 64 or 128
// activation rows (at 128 the int8 group-scaled kernels spill 16-24 bytes, reloaded once per stage).
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

// k32 wgmma steps per stage (plan.h kGemmA8Stage = 128 k).
constexpr int kStageSteps = 4;
// Stage sums (header): stages per run, of which all but the last are added into float32 while the next
// stage's wgmmas run. A sum read in the loop iteration after the one that issued its wgmmas makes ptxas
// serialize every wgmma (C7514), so each run is one iteration and ends in a full drain; four stages
// drain a quarter as often as one.
constexpr int kStagesPerFullDrain = 4;

// The epilogue's named barrier (the consumer warps only: the producer warpgroup has left) and its staged tile's row
// pitch: a band's 16 outputs of a row, plus 16 bytes where that is 32 bytes or more, so that the 8 lanes of a row
// and the 4 rows of a store (activation rows 2c apart) fall in distinct banks; a multiple of 16 bytes either way
// (whole vectors).
constexpr int kEpilogueBarrier = 1;
constexpr int epilogue_row_pitch(int row_bytes) { return row_bytes + (row_bytes >= 32 ? 16 : 0); }

template <int BITS, int BM>
struct GemmA8Cfg {
  static constexpr int NB = plan::kGemmA8WeightRows / 16;  // bands (consumer warps) per CTA
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
    gemm_wgmma_a8_kernel(const GemmA8Args p, const __grid_constant__ CUtensorMap a_map, bool act_tiles_along_x) {
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = GemmA8Cfg<format_bits(WF), BM>;
  constexpr bool FLOAT8 = ACT != DType::kI8;
  constexpr bool PROMOTE = FLOAT8 || SCALED;  // stage sums into float32 accumulators (header)
  using Acc = std::conditional_t<FLOAT8, float, int>;
  constexpr int NB = Cfg::NB, TPB = Cfg::TPB, BK = Cfg::BK, STAGES = Cfg::STAGES, ND = BM / 2;
  constexpr int STEPS = Cfg::STEPS;
  constexpr int SETS = PROMOTE ? 2 : 1;  // stage-sum sets (header)
  static_assert(!PROMOTE || BM <= 128, "three accumulator sets: 128 activation rows at most");
  static_assert(TPB * STEPS == kStageSteps, "a stage is kStageSteps k32 steps");
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ __align__(8) uint64_t s_full[STAGES], s_empty[STAGES];
  __shared__ __align__(8) float s_row_scale[BM];  // the tile's activation scales (1 without them), for the epilogue
  static_assert(BM <= NB * 32, "one activation row's scale per consumer thread");

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const long long M = p.M, N = p.N, K = p.K;
  const int nbands = static_cast<int>(N >> 4);
  // bx: the CTA's 128 weight rows, by: its activation rows (grid order: plan.h gemm_a8_act_tiles_along_x)
  const int bx = act_tiles_along_x ? blockIdx.y : blockIdx.x, by = act_tiles_along_x ? blockIdx.x : blockIdx.y;
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
    // this thread's activation row's scale, loaded now (its latency hidden by the main loop) and staged in shared
    // memory for the epilogue
    const float row_scale = p.row_scale && tid < BM && m0 + tid < M ? __ldg(p.row_scale + m0 + tid) : 1.f;
    const int band = bx * NB + warp;
    const long long nrow0 = static_cast<long long>(band) * 16 + g;
    int slot = 0, prev = STAGES - 1;
    uint32_t phase = 0;
    // PROMOTE: a stage sums into one of two sets (its first wgmma overwrites it); within a run of
    // kStagesPerFullDrain stages each stage's sum is added into facc (float32, times its group scale) a
    // quarter per k32 step while the next stage's wgmmas run, and the run's last one after a full drain
    // (header).
    Acc acc[SETS][ND];
    float facc[PROMOTE ? ND : 1];
    float s_lo[SETS], s_hi[SETS];  // this lane's rows' scales of the group of the stage summed in each set
#pragma unroll
    for (int b = 0; b < SETS; ++b) {
      s_lo[b] = s_hi[b] = 1.f;
#pragma unroll
      for (int i = 0; i < ND; ++i) acc[b][i] = 0;
      fence_acc(acc[b]);
    }
#pragma unroll
    for (int i = 0; i < (PROMOTE ? ND : 1); ++i) facc[i] = 0.f;
    const bool band_ok = band < nbands;
    const int stages_per_group = SCALED ? static_cast<int>(p.group_size / BK) : 1;
    const long long groups = SCALED ? K / p.group_size : 1;
    // facc += set B's stage sum (times its scale), elements [lo, hi) (constants once unrolled)
    auto add_stage_sum = [&](auto b_c, int lo, int hi) {
      constexpr int B = decltype(b_c)::value;
#pragma unroll
      for (int i = 0; i < ND; ++i) {
        if (i < lo || i >= hi) continue;
        const float s = (i & 2) ? s_hi[B] : s_lo[B];
        facc[i] = SCALED ? fmaf(s, static_cast<float>(acc[B][i]), facc[i]) : facc[i] + static_cast<float>(acc[B][i]);
      }
    };
    // Stage kb into set P; ADD_OTHER: the other set holds the previous stage's sum, added here.
    auto run_stage = [&](auto p_c, auto add_other_c, int kb) {
      constexpr int P = decltype(p_c)::value, Q = SETS - 1 - P;
      constexpr bool ADD_OTHER = decltype(add_other_c)::value;
      if (SCALED && band_ok) {
        const long long gi = kb / stages_per_group;
        s_lo[P] = __ldg(p.scale + nrow0 * groups + gi);
        s_hi[P] = __ldg(p.scale + (nrow0 + 8) * groups + gi);
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
          wgmma_a8<ACT, WF, BM>(acc[P], a, desc, PROMOTE && step == 0 ? 0 : 1);
          wgmma_commit();
          wgmma_wait<Cfg::WINDOW - 1>();
          // WINDOW - 1 k-steps into this stage every wgmma of the previous one has retired: its slot is
          // free and its sum (the other set) final
          if (step == Cfg::WINDOW - 2 && kb > 0) mbar_arrive(empty0 + 8 * prev);
          if constexpr (ADD_OTHER) {
            static_assert(Cfg::WINDOW == 2, "the previous stage has retired from the first step on");
            if (step == 0) fence_acc(acc[Q]);
            constexpr int kPart = ND / kStageSteps;  // a quarter of the previous stage's sum per step
            add_stage_sum(std::integral_constant<int, Q>{}, step * kPart, (step + 1) * kPart);
          }
        }
      }
      prev = slot;
      if (++slot == STAGES) {
        slot = 0;
        phase ^= 1u;
      }
    };
    // after a full drain: set B's sum into facc
    auto drain_and_add = [&](auto b_c) {
      wgmma_wait<0>();
      fence_acc(acc[decltype(b_c)::value]);
      add_stage_sum(b_c, 0, ND);
    };
    using Set0 = std::integral_constant<int, 0>;
    using Set1 = std::integral_constant<int, SETS - 1>;
    using Add = std::true_type;
    using First = std::false_type;
    int kb = 0;
    if constexpr (PROMOTE) {
      static_assert(kStagesPerFullDrain == 4, "the run below is written out for four stages");
      for (; kb + kStagesPerFullDrain <= KB; kb += kStagesPerFullDrain) {
        run_stage(Set0{}, First{}, kb);
        run_stage(Set1{}, Add{}, kb + 1);
        run_stage(Set0{}, Add{}, kb + 2);
        run_stage(Set1{}, Add{}, kb + 3);
        drain_and_add(Set1{});
      }
      for (; kb < KB; ++kb) {  // the stages past the last whole run: one drain each
        run_stage(Set0{}, First{}, kb);
        drain_and_add(Set0{});
      }
    } else {
      for (; kb < KB; ++kb) run_stage(Set0{}, First{}, kb);
    }
    wgmma_wait<0>();
    fence_acc(acc[0]);
    // The epilogue (header): the tile goes out through the ring, which no one reads once every consumer warp is
    // past its last wgmma (every copy into it landed before its stage's full wait).
    if (tid < BM) s_row_scale[tid] = row_scale;
    bar_sync_named(kEpilogueBarrier, NB * 32);
    with_qact_out_type(p.out_dtype, [&](auto t) {
      using T = typename decltype(t)::type;
      constexpr int kRowBytes = 16 * static_cast<int>(sizeof(T));  // a band's 16 outputs of one activation row
      constexpr int kPitch = epilogue_row_pitch(kRowBytes);
      static_assert(NB * BM * kPitch <= STAGES * Cfg::STAGE_BYTES, "the staged tile fits in the ring");
      uint8_t* const tile = smem + (ring - smem_addr(smem)) + warp * BM * kPitch;  // this warp's [BM][16] of T
      if (!band_ok) return;
      // acc[4j + e]: weight row nrow0 + 8 (e >> 1), activation row m0 + 2c + 8j + (e & 1); the lane's two weight
      // rows' per-channel scales and biases read once, each pair of activation rows' scales from s_row_scale
      const float cs[2] = {col_scale_of(p.col_scale, nrow0), col_scale_of(p.col_scale, nrow0 + 8)};
      const float b[2] = {bias_of(p.bias, nrow0), bias_of(p.bias, nrow0 + 8)};
#pragma unroll
      for (int j = 0; j < BM / 8; ++j) {
        const float2 rs2 = *reinterpret_cast<const float2*>(&s_row_scale[2 * c + 8 * j]);
        const float rs[2] = {rs2.x, rs2.y};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = 4 * j + e;
          const float scale = cs[e >> 1] * rs[e & 1];
          T* dst = reinterpret_cast<T*>(tile + (2 * c + 8 * j + (e & 1)) * kPitch) + g + 8 * (e >> 1);
          if constexpr (PROMOTE) *dst = qact_value<T>(scale, b[e >> 1], facc[i]);
          else *dst = qact_value<T>(scale, b[e >> 1], acc[0][i]);
        }
      }
      __syncwarp();
      // whole 16-byte vectors of C's rows: lane l takes vectors l, l + 32, ... of the warp's rows in order
      constexpr int kVectors = kRowBytes / 16;  // a row's
      uint8_t* const out = static_cast<uint8_t*>(p.out) + (m0 * N + static_cast<long long>(band) * 16) * sizeof(T);
      const long long rows = M - m0 < BM ? M - m0 : BM;
      for (int q = lane; q < rows * kVectors; q += 32) {
        const int r = q / kVectors, v = q % kVectors;
        *reinterpret_cast<uint4*>(out + r * N * static_cast<long long>(sizeof(T)) + 16 * v) =
            *reinterpret_cast<const uint4*>(tile + r * kPitch + 16 * v);
      }
    });
  }
#endif
}

}  // namespace cudak
}  // namespace bitblas_jax
