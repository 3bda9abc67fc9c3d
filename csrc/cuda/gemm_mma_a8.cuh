// gemm_mma_a8: int8 activations x int8 .. int1 / uint4 .. uint1 weights on int8 tensor cores
// (mma.sync.m16n8k32.row.col.s32.s8.s8.s32), any sm_80+ GPU, for M past the decode regime.
//
// What it computes: decode_i8's contract (decode_i8.cuh; README "int8 and float8 activations";
// bitblas_jax/quantized_dot.py). Mode none: the exact int32 sums S[m, n] = sum_k A[m, k] w[n, k]
// (wrapping mod 2^32 as any int32 GEMM). Mode scale, groups a multiple of 32 (per-channel included):
// v[m, n] = sum over groups g of s[n, g] * S_g[m, n] in float32, each S_g an exact int32 sum (groups
// smaller than K; per-channel scales are the epilogue's). It writes the output itself through
// decode_i8's epilogue (epilogue.cuh store_qact_sum: per-channel scale, bias, the cast).
//
// Shape. gemm_mma's (gemm_mma.cuh) with 8-bit operands. Grid (ceil(N / 128), ceil(M / BM)): a CTA of 8
// warps computes 128 weight rows x BM activation rows (64 up to M = 64, else 128) over all of K. The
// warps stand 4 along n and 2 along m; each owns two 16-row bands and BM / 2 activation rows, so each
// decoded weight fragment feeds BM / 16 mma. Stages of at least 128 k (whole packed tiles) run through
// a cp.async ring with one barrier per stage: the bands' packed tiles as they are (band_copy.cuh), the
// activations as BM rows of stage-k bytes whose 16-byte chunks are XOR-swizzled by row (chunk j of row r
// at j ^ (r % 8)), so the 8 rows of an ldmatrix matrix fall in distinct banks with no padding. One
// ldmatrix.x4 gives the B fragments of two n8 blocks for one k32 step: an 8x8 b16 matrix is 8 rows x 16
// bytes and thread t gets the 4 bytes of row t / 4 at byte 4 (t % 4), which is the k32 B fragment's
// register.
//
// The fragments. A lane's 16 bytes of a packed tile are its fp16 m16n8k16 A fragments (docs/LAYOUT.md);
// with each 16-k chunk in kSigma order they are the s8 m16n8k32 A fragments (a8_fragment.cuh
// i8_fragment). The activations arrive in the same k order: the caller permutes them
// (bitblas_jax/primitive.py), so no lane shuffles anything.
//
// Group scales. The k32 step that closes a group adds s * float(S_g) into float32 accumulators and
// restarts the int32 sums (mma.sync accumulators are plain registers, so this costs one FMA per
// accumulator); a lane's four row scales of the next group are loaded when the previous group closes, so
// their latency hides under the group's mma.
//
// Wiring: plan.h quantized_activation_kernel picks it (int8 A above decode sizes, gemm_mma_a8_takes,
// where gemm_wgmma_a8 does not take the call); ffi_cuda.cc's handler bitblas_jax_gemm_mma_a8 checks the
// operands and calls launch_gemm_mma_a8 (inst_gemm_mma_a8.cu); primitive._gemm_mma_a8_call binds it.
#pragma once

#include <cstdint>

#include "a8_fragment.cuh"  // i8_fragment: the weight's A registers in kSigma order
#include "band_copy.cuh"
#include "epilogue.cuh"
#include "bitblas_jax/plan.h"
#include "gemm_mma_a8.h"
#include "ptx.cuh"

namespace bitblas_jax {
namespace cudak {

// 8 warps, two per SM sub-partition at one CTA per SM: each warp issues 8 or 16 independent mma per k32
// step (two bands x its n8 blocks), which with the other warp of its sub-partition hides the mma latency.
constexpr int kGemmMmaA8Warps = 8;
constexpr int kGemmMmaA8Threads = 32 * kGemmMmaA8Warps;
// The unit of the activation copies (cp.async) and of an ldmatrix row: 16 bytes, 16 k.
constexpr int kGemmMmaA8Chunk = 16;
// Weight rows per CTA: 8 bands of 16, two per warp, so each warp's decode feeds two A operands.
constexpr int kGemmMmaA8WeightRows = 128;
constexpr int kGemmMmaA8WarpsN = 4;  // warps along the weight rows (the rest stand along M)
// k per stage, at least: 128-byte activation rows (eight 16-byte chunks: the XOR swizzle's period) and
// four k32 steps per barrier.
constexpr int kGemmMmaA8MinStageK = 128;
// Loads of three stages ahead cover the memory latency (gemm_mma's depth); deeper rings only take space.
constexpr int kGemmMmaA8MaxStages = 4;
// The ring of one CTA fits every sm_80+ GPU: sm_86 / sm_89 give a block at most 99 KB of shared memory.
constexpr int kGemmMmaA8SmemBudget = 96 * 1024;
// Activation rows per CTA: the small tile up to this many rows of M (fewer padded rows, twice the CTAs
// along M), the large one above (each decoded fragment feeds twice the mma).
constexpr int kGemmMmaA8SmallRows = 64;
constexpr int kGemmMmaA8LargeRows = 128;

template <WFormat WF, int BM>
struct GemmMmaA8Cfg {
  static constexpr int BITS = format_bits(WF);
  static constexpr int TK = plan::packed_tile_k(BITS);   // k per packed tile (32 .. 256)
  static constexpr int STEPS = TK / 32;                   // k32 mma steps per tile
  static constexpr int BK = TK > kGemmMmaA8MinStageK ? TK : kGemmMmaA8MinStageK;  // k per stage
  static constexpr int TPB = BK / TK;                     // packed tiles per band and stage
  static constexpr int NB = kGemmMmaA8WeightRows / plan::kTileRows;  // bands per CTA
  static constexpr int WM = BM / (kGemmMmaA8Warps / kGemmMmaA8WarpsN);  // activation rows per warp
  static constexpr int MBW = WM / 8;                      // n8 blocks per warp
  static constexpr int W_BYTES = NB * TPB * kTileBytes;
  static constexpr int A_BYTES = BM * BK;                 // one byte per activation
  static constexpr int STAGE_BYTES = W_BYTES + A_BYTES;
  static constexpr int FIT = kGemmMmaA8SmemBudget / STAGE_BYTES;
  static constexpr int STAGES = FIT < kGemmMmaA8MaxStages ? FIT : kGemmMmaA8MaxStages;
  static constexpr int SMEM = STAGES * STAGE_BYTES;
  static_assert(NB == 2 * kGemmMmaA8WarpsN, "two bands per warp along n");
  static_assert(MBW % 2 == 0, "ldmatrix.x4 loads two n8 blocks");
  static_assert(BK % kGemmMmaA8MinStageK == 0, "activation rows of whole swizzle periods");
  static_assert(STAGES >= 2, "a ring of at least two stages");
};

template <WFormat WF, bool SCALED, int BM>
__global__ void __launch_bounds__(kGemmMmaA8Threads, 1) gemm_mma_a8_kernel(const GemmMmaA8Args p) {
  using Cfg = GemmMmaA8Cfg<WF, BM>;
  constexpr int TK = Cfg::TK, BK = Cfg::BK, TPB = Cfg::TPB, STEPS = Cfg::STEPS, NB = Cfg::NB;
  constexpr int WM = Cfg::WM, MBW = Cfg::MBW, STAGES = Cfg::STAGES;
  constexpr int T = kGemmMmaA8Threads;
  extern __shared__ __align__(16) uint8_t smem[];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c = lane & 3;
  const int wn = warp % kGemmMmaA8WarpsN, wm = warp / kGemmMmaA8WarpsN;
  const long long M = p.M, N = p.N;
  const int K = static_cast<int>(p.K);  // the host checks K < 2^31
  const int nbands = static_cast<int>(N / plan::kTileRows);
  const int KT = K / TK, KB = (K + BK - 1) / BK;
  const int bx = blockIdx.x;
  const long long m0 = static_cast<long long>(blockIdx.y) * BM;

  // Stage copies with each thread's addresses computed once: weights by BandStageCopy, activations in
  // passes of RPP rows (VPR 16-byte chunks per row). A thread's rows keep r % 8 from pass to pass (RPP
  // is a multiple of 8), so its swizzled chunk is fixed.
  const BandStageCopy<NB, TPB, TK, T> copy_bands(p.W, smem_addr(smem), bx * NB, KT, tid);
  constexpr int CH = kGemmMmaA8Chunk, VPR = BK / CH, RPP = T / VPR, AIT = BM / RPP;
  static_assert(T % VPR == 0 && BM % RPP == 0 && RPP % 8 == 0, "stage copy shape");
  const int ar = tid / VPR, av = tid % VPR;
  const uint8_t* asrc = reinterpret_cast<const uint8_t*>(p.A) + (m0 + ar) * K + av * CH;
  const uint32_t adst = smem_addr(smem) + Cfg::W_BYTES + ar * BK + (av ^ (ar & 7)) * CH;

  auto load_stage = [&](int st, int kb) {
    const int k0 = kb * BK;
    const bool full = k0 + BK <= K;  // else K ends inside this stage
    copy_bands(st * Cfg::STAGE_BYTES, kb, nbands, K - k0);
    // rows past M and chunks past K are left as they are: their sums are never stored
#pragma unroll
    for (int j = 0; j < AIT; ++j) {
      const bool ok = m0 + ar + j * RPP < M && (full || k0 + av * CH < K);
      if (ok) cp_async16(adst + st * Cfg::STAGE_BYTES + j * RPP * BK, asrc + static_cast<long long>(j) * RPP * K + k0);
    }
    cp_async_commit();
  };

  int acc[2][MBW][4] = {};
  float facc[SCALED ? 2 : 1][SCALED ? MBW : 1][4] = {};

  // this lane's weight rows: g and g + 8 of the warp's two bands
  const long long nrow0 = (static_cast<long long>(bx) * NB + 2 * wn) * plan::kTileRows + g;
  const bool band_ok[2] = {bx * NB + 2 * wn < nbands, bx * NB + 2 * wn + 1 < nbands};
  const int gs = SCALED ? static_cast<int>(p.group_size) : K;
  const int groups = K / gs;
  float s_grp[2][2] = {{0.f, 0.f}, {0.f, 0.f}};  // [band][row g, g + 8]: the open group's scales
  auto load_scales = [&](int gi) {
#pragma unroll
    for (int bi = 0; bi < 2; ++bi)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        s_grp[bi][h] = band_ok[bi] ? __ldg(p.scale + (nrow0 + 16 * bi + 8 * h) * groups + gi) : 0.f;
  };
  int gi = 0;
  long long group_end = gs;  // after the last group it is one group past K, which may not fit an int
  if constexpr (SCALED) load_scales(0);

  // ldmatrix.x4 lane address: matrix lane / 8 is n8 block (lane >> 4) at k half (lane >> 3) & 1 of the
  // k32 step; row r = lane % 8 of the block, whose chunk j sits at j ^ (r % 8).
  const uint32_t a_lane_row = static_cast<uint32_t>((wm * WM + ((lane >> 4) << 3) + (lane & 7)) * BK);
  const uint32_t swz_hi = lane & 6, swz_lo = ((lane >> 3) & 1) ^ (lane & 1);

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KB)
      load_stage(s, s);
    else
      cp_async_commit();
  }

  for (int kb = 0; kb < KB; ++kb) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // stage kb is in; every warp is done with the slot the next load refills
    {
      const int nk = kb + STAGES - 1;
      if (nk < KB)
        load_stage(nk % STAGES, nk);
      else
        cp_async_commit();
    }
    const int st = kb % STAGES;
    const uint32_t sw = smem_addr(smem) + st * Cfg::STAGE_BYTES + (2 * wn) * TPB * kTileBytes + lane * 16;
    const uint32_t sa = smem_addr(smem) + st * Cfg::STAGE_BYTES + Cfg::W_BYTES + a_lane_row;
    const int k0 = kb * BK;
    const int ntv = min(TPB, (K - k0) / TK);
#pragma unroll
    for (int tt = 0; tt < TPB; ++tt) {
      if (tt >= ntv) break;
      const uint4 w0 = lds128(sw + tt * kTileBytes), w1 = lds128(sw + (TPB + tt) * kTileBytes);
#pragma unroll
      for (int j = 0; j < STEPS; ++j) {
        uint32_t a0[4], a1[4];
        i8_fragment<WF>(w0, j, a0);
        i8_fragment<WF>(w1, j, a1);
        const int q = tt * STEPS + j;  // k32 step within the stage: chunks 2q, 2q + 1 of each row
        const uint32_t col = ((static_cast<uint32_t>(2 * q) ^ swz_hi) | swz_lo) * CH;
#pragma unroll
        for (int pb = 0; pb < MBW / 2; ++pb) {
          uint32_t b[4];
          ldmatrix_x4(sa + pb * 16 * BK + col, b[0], b[1], b[2], b[3]);  // n8 blocks 2 pb, 2 pb + 1
          mma_m16n8k32_s8(acc[0][2 * pb], a0, b[0], b[1]);
          mma_m16n8k32_s8(acc[0][2 * pb + 1], a0, b[2], b[3]);
          mma_m16n8k32_s8(acc[1][2 * pb], a1, b[0], b[1]);
          mma_m16n8k32_s8(acc[1][2 * pb + 1], a1, b[2], b[3]);
        }
        if constexpr (SCALED) {
          if (k0 + 32 * (q + 1) == group_end) {  // this step closes a group: scale its exact sums
#pragma unroll
            for (int bi = 0; bi < 2; ++bi)
#pragma unroll
              for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                  facc[bi][mb][e] = fmaf(s_grp[bi][e >> 1], static_cast<float>(acc[bi][mb][e]), facc[bi][mb][e]);
                  acc[bi][mb][e] = 0;
                }
            ++gi;
            group_end += gs;
            if (gi < groups) load_scales(gi);
          }
        }
      }
    }
  }
  cp_async_wait<0>();

  // the dtype dispatched per element (store_qact_sum): this kernel's tiles give a thread few outputs, and a loop
  // compiled per output type would double the unit's build time
  for_each_output<MBW>(band_ok, nrow0, m0 + wm * WM, c, M, [&](int bi, int mb, int e, long long m, long long n) {
    if constexpr (SCALED)
      store_qact_sum(p.out, m * N + n, p.out_dtype, p.col_scale, p.row_scale, p.bias, m, n, facc[bi][mb][e]);
    else
      store_qact_sum(p.out, m * N + n, p.out_dtype, p.col_scale, p.row_scale, p.bias, m, n, acc[bi][mb][e]);
  });
}

}  // namespace cudak
}  // namespace bitblas_jax
