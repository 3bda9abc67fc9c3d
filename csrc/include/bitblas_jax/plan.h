// The kernel plan of the CUDA backend: which kernel runs C[M, N] = A[M, K] x dequant(W)[N, K]^T, with
// which tile, how many ways K is split across CTAs, and every number that follows from that choice
// (k per pipeline stage, shared memory of the decode kernel, workspace bytes).
//
// This header is the one owner of that arithmetic. The kernels' compile-time configurations
// (decode.cuh DecodeCfg, gemm_mma.cuh GemmMmaCfg, gemm_wgmma.cuh WgmmaCfg) derive their sizes from the
// functions here, the host dispatcher (matmul_cuda.cu) launches what a Plan says, and Python
// (bitblas_jax/gpu_plan.py, through the _bitblas_plan module) asks make_plan() and keeps only the
// measured M thresholds and the environment overrides. Pure C++17: the kernel configurations use the
// constexpr functions in constant expressions, the host at run time.
#pragma once

#include <cstdint>

#include "bitblas_jax/formats_generated.h"  // ScaleMode


namespace bitblas_jax {
namespace plan {

// ---- kernels, named by mechanism ---------------------------------------------------------------
enum class Kernel : int {
  // Small M: one CTA per 32 weight rows over all of K, a warp-private cp.async ring, group scales
  // applied to fp32 partial sums; M <= 16 per launch (larger M in 16-row slices), no workspace.
  kDecode = 0,
  // Small M where kDecode cannot run (fp16 accumulation, groups that end inside packed tiles):
  // 256 weight rows per CTA, K split across CTAs, the last CTA of a column reduces.
  kDecodeSplitK = 1,
  // mma.sync tensor-core GEMM with a cp.async pipeline (any sm_80+ GPU).
  kGemmMma = 2,
  // Hopper GEMM (sm_90a): warp-specialized, wgmma with the dequantized weight as register operand.
  kGemmWgmma = 3,
  // Large M under JAX: the dequantize kernel writes the 16-bit weight, XLA's dot multiplies.
  kDequantizeThenDot = 4,
  // Hopper GEMM (sm_90a) from M of a few tiles up: CUTLASS's mixed-input collective (TMA, warp-specialized
  // cooperative consumers, the weight decoded into wgmma's register operand, persistent tiles) on the
  // packed 4- / 8-bit integer or 4-bit table weight; per-group terms w = code * S + Z in the workspace
  // (csrc/cuda/gemm_cutlass.h).
  kGemmCutlass = 5,
};
constexpr int kNumKernels = 6;

inline const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::kDecode: return "decode";
    case Kernel::kDecodeSplitK: return "decode_splitk";
    case Kernel::kGemmMma: return "gemm_mma";
    case Kernel::kGemmWgmma: return "gemm_wgmma";
    case Kernel::kDequantizeThenDot: return "dequantize_then_dot";
    case Kernel::kGemmCutlass: return "gemm_cutlass";
  }
  return "?";
}

// ---- the packed layout (docs/LAYOUT.md) --------------------------------------------------------
constexpr int kTileRows = 16;                                 // weight rows of a packed tile
constexpr int packed_tile_k(int bits) { return 256 / bits; }  // k of a 512-byte packed tile
constexpr bool groups_in_whole_tiles(bool grouped, int64_t group_size, int bits) {
  return !grouped || group_size % packed_tile_k(bits) == 0;
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
constexpr int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// ---- decode: kernel shapes and shared memory ----------------------------------------------------
// A shape is (n8 blocks of 8 activation rows, packed tiles per warp and chunk). More tiles per chunk
// put more weight bytes in flight per warp; a second n8 block serves 9..16 rows from one weight read.
struct DecodeShape {
  int n8_blocks;
  int tiles;
};
// In the order the plan tries them: up to 8 rows the one-block shapes, else the two-block ones,
// each time the most tiles per chunk whose ring and activations fit kDecodeSmemCap.
constexpr int kNumDecodeShapes = 4;
constexpr DecodeShape kDecodeShapes[kNumDecodeShapes] = {{1, 4}, {1, 2}, {2, 2}, {2, 1}};
constexpr int kDecodeWarps = 8;
constexpr int kDecodeRowsPerCta = 32;   // two 16-row bands of weights per CTA
constexpr int kDecodeMaxRows = 16;      // activation rows per launch (two n8 blocks)
// Ring + activations of one CTA: two CTAs per H100 / H200 SM (228 KB, 1 KB reserved per CTA).
// The staged scales (3 KB, 4-tile shapes) and nf4's 128-byte table come on top and still fit twice.
constexpr int kDecodeSmemCap = 110 * 1024;

// Formats under 4 bits take one tile per chunk (their tiles already hold 128..256 k).
constexpr int decode_tiles(int bits, int tiles) { return bits >= 4 ? tiles : 1; }
// Ring stages (chunks in flight): three for 4-tile chunks; two for 16 rows with 2 tiles, whose
// activations fill the cap (at 16 rows a chunk takes longer to compute than to load); six for
// one-tile one-block chunks (short chunks need more of them in flight); else four.
constexpr int decode_stages(int bits, int n8_blocks, int tiles) {
  return decode_tiles(bits, tiles) == 4                            ? 3
         : n8_blocks == 2 && decode_tiles(bits, tiles) == 2       ? 2
         : n8_blocks == 1 && decode_tiles(bits, tiles) == 1       ? 6
                                                                   : 4;
}
// Weight bytes per warp and stage: `tiles` tiles x two 16-row bands x 512 bytes.
constexpr int decode_warp_stage_bytes(int bits, int tiles) { return decode_tiles(bits, tiles) * 1024; }
constexpr int decode_ring_bytes(int bits, int n8_blocks, int tiles) {
  return kDecodeWarps * decode_stages(bits, n8_blocks, tiles) * decode_warp_stage_bytes(bits, tiles);
}
// Activation row stride in halves: the warp's k per chunk + 8 (spreads ldmatrix rows over banks).
constexpr int decode_act_stride(int bits, int tiles) { return decode_tiles(bits, tiles) * packed_tile_k(bits) + 8; }
// Activation ring bytes per row of M.
constexpr int decode_act_row_bytes(int bits, int n8_blocks, int tiles) {
  return kDecodeWarps * decode_stages(bits, n8_blocks, tiles) * decode_act_stride(bits, tiles) * 2;
}
// Staged group scales (4-tile shapes: one 4-byte scale pair per row, 32 rows per warp and stage),
// placed after the activations, outside kDecodeSmemCap.
constexpr int decode_scale_stage_bytes(int bits, int n8_blocks, int tiles) {
  return decode_tiles(bits, tiles) == 4 ? kDecodeWarps * decode_stages(bits, n8_blocks, tiles) * 32 * 4 : 0;
}
constexpr int decode_capped_bytes(int bits, int shape, int64_t rows) {
  return decode_ring_bytes(bits, kDecodeShapes[shape].n8_blocks, kDecodeShapes[shape].tiles) +
         static_cast<int>(rows) * decode_act_row_bytes(bits, kDecodeShapes[shape].n8_blocks, kDecodeShapes[shape].tiles);
}
constexpr int decode_smem_bytes(int bits, int shape, int64_t rows) {
  return decode_capped_bytes(bits, shape, rows) +
         decode_scale_stage_bytes(bits, kDecodeShapes[shape].n8_blocks, kDecodeShapes[shape].tiles);
}
// The shape for one launch of `rows` (1..16) activation rows, or -1 where none fits.
constexpr int decode_shape_for(int bits, int64_t rows) {
  for (int s = rows <= 8 ? 0 : 2; s < kNumDecodeShapes; ++s)
    if (decode_capped_bytes(bits, s, rows) <= kDecodeSmemCap) return s;
  return -1;
}

// K split over a thread-block cluster (sm_90): where the grid of 32-row CTAs leaves resident slots empty
// (N under kDecodeCtasPerSm x SMs x 32 rows: the hidden-size outputs of most models, one CTA per SM on an
// H100 / H200 at N = 4096), `split` CTAs of a cluster share each 32 rows' K, each summing its part with all
// eight warps, and add their sums through distributed shared memory in rank order: no workspace, no memset,
// deterministic. Twice the warps per SM stream the weight and share the decode. Weighed only where asked
// (PlanQuery decode_cluster_split): through JAX the un-split grid, overlapping the previous kernel's tail, ran
// faster (docs/KERNELS.md).
constexpr int kDecodeCtasPerSm = 2;          // decode_kernel's __launch_bounds__ (kDecodeSmemCap fits two)
constexpr int kDecodeMaxClusterSplit = 4;    // CTAs per cluster (8 is the portable limit)
constexpr int kDecodeMinChunksPerPart = 8;   // warp chunks per part: every warp of each CTA has one
// K's warp chunks (decode_tiles packed tiles each) for one launch shape.
constexpr int64_t decode_warp_chunks(int bits, int shape, int64_t K) {
  return ceil_div(ceil_div(K, packed_tile_k(bits)), decode_tiles(bits, kDecodeShapes[shape].tiles));
}
// The packed tiles of each of the `split` parts of a row's KT tiles: whole warp chunks of U tiles, so a
// part starts on a chunk (and, with paired groups, on an even group); the last part may be shorter or empty.
constexpr int64_t decode_part_tiles(int64_t KT, int U, int64_t split) { return ceil_div(ceil_div(KT, U), split) * U; }
// The cluster split for N weight rows, K and a launch shape: the CTAs that fill the resident slots, at most
// kDecodeMaxClusterSplit, each part at least kDecodeMinChunksPerPart warp chunks.
constexpr int64_t decode_cluster_split(int64_t N, int64_t K, int bits, int shape, int num_sms) {
  return max64(1, min64(min64(kDecodeMaxClusterSplit,
                              int64_t{kDecodeCtasPerSm} * num_sms / max64(1, ceil_div(N, kDecodeRowsPerCta))),
                        decode_warp_chunks(bits, shape, K) / kDecodeMinChunksPerPart));
}

// ---- decode_splitk --------------------------------------------------------------------------------
constexpr int kDecodeSplitKRows = 256;     // weight rows per CTA
constexpr int kDecodeSplitKCtasPerSm = 2;  // resident 256-thread CTAs per SM (shared memory)
constexpr int kDecodeSplitKMinTiles = 4;   // packed k-tiles per warp and split, at least

// ---- gemm_mma: tiles --------------------------------------------------------------------------------
// weight rows x activation rows per CTA; groups_inside_tiles: the per-8-column scale path for groups
// that end inside packed tiles (group_size % tile_k != 0).
struct MmaTile {
  int weight_rows;
  int act_rows;
  bool groups_inside_tiles;
};
constexpr int kNumMmaTiles = 5;
constexpr MmaTile kMmaTiles[kNumMmaTiles] = {
    {128, 32, false}, {128, 64, false}, {256, 32, false}, {256, 64, false}, {128, 32, true}};
enum MmaTileId : int { kMma128x32 = 0, kMma128x64 = 1, kMma256x32 = 2, kMma256x64 = 3, kMma128x32GroupsInTiles = 4 };
// Warps along the weight rows (each warp holds two 16-row bands).
constexpr int mma_weight_warps(int tile) { return kMmaTiles[tile].weight_rows / 32; }
// n8 blocks of activation rows per warp (8 warps per CTA).
constexpr int mma_n8_per_warp(int tile) { return kMmaTiles[tile].act_rows * mma_weight_warps(tile) / 8 / 8; }
// Warp tiles of 8 n8 blocks need more than 128 registers: one CTA per SM, else two.
constexpr int mma_ctas_per_sm(int tile) { return mma_n8_per_warp(tile) >= 8 ? 1 : 2; }
// Tiles per 16-row band and stage: two for >= 4 bits (128+ k per stage), one below.
constexpr int mma_tiles_per_stage(int bits) { return bits >= 4 ? 2 : 1; }
constexpr int mma_stage_k(int bits) { return mma_tiles_per_stage(bits) * packed_tile_k(bits); }
constexpr int mma_act_stride(int bits) { return mma_stage_k(bits) + 8; }  // halves; bank spread
constexpr int mma_stage_bytes(int bits, int tile) {
  return kMmaTiles[tile].weight_rows / kTileRows * mma_tiles_per_stage(bits) * 512 +
         kMmaTiles[tile].act_rows * mma_act_stride(bits) * 2;
}
// Four stages where they fit the SM's budget (220 KB for one CTA, 110 KB each for two), else three.
constexpr int mma_stages(int bits, int tile) {
  return 4 * mma_stage_bytes(bits, tile) <= (mma_ctas_per_sm(tile) == 1 ? 220 : 110) * 1024 ? 4 : 3;
}
constexpr int mma_smem_bytes(int bits, int tile) { return mma_stages(bits, tile) * mma_stage_bytes(bits, tile); }
// The wide tiles (256 weight rows) read the activations half as often; they pay once their tiles
// alone about fill the GPU (this many of them).
constexpr int kMmaWideMinTiles = 100;
constexpr int kMmaMaxSplit = 8;
constexpr int64_t kMmaPartialCap = 16 << 20;  // split-K fp32 partials stay in L2: at most this many bytes

// ---- gemm_wgmma: tiles ------------------------------------------------------------------------------
struct WgmmaTile {
  int weight_rows;
  int act_rows;
};
constexpr int kNumWgmmaTiles = 4;
constexpr WgmmaTile kWgmmaTiles[kNumWgmmaTiles] = {{128, 32}, {128, 64}, {128, 128}, {128, 256}};
enum WgmmaTileId : int { kWgmma128x32 = 0, kWgmma128x64 = 1, kWgmma128x128 = 2, kWgmma128x256 = 3 };
constexpr int kWgmmaWeightRows = 128;  // two consumer warpgroups, one 16-row band per warp

// Shared-memory budgets: two CTAs per SM for tiles of <= 64 activation rows, one above.
constexpr int kWgmmaTwoCtaBudget = 106 * 1024;
constexpr int kWgmmaOneCtaBudget = 220 * 1024;
// The group constants of a stage (scales and zeros of each packed tile, one 32-bit word per row pair
// n, n + 8 of the CTA's 128 rows: 2 x 64 words a tile), staged by the producer so the consumers read
// them with one shared load; padded so every stage keeps the 1024-byte swizzle alignment. 16-bit weights
// take no scales.
constexpr int wgmma_group_bytes(int bits, int tiles_per_stage) {
  return bits >= 16 ? 0 : (tiles_per_stage * 512 + 1023) / 1024 * 1024;
}
// A stage of stage_k: the activations (BM x stage_k), 8 bands of packed tiles, their group constants.
constexpr int wgmma_stage_bytes_at(int bits, int act_rows, int stage_k) {
  return act_rows * stage_k * 2 + kWgmmaWeightRows / kTileRows * (stage_k / packed_tile_k(bits)) * 512 +
         wgmma_group_bytes(bits, stage_k / packed_tile_k(bits));
}
// A stage of at least 128 k (whole packed tiles).
constexpr int wgmma_long_stage_bytes(int bits, int act_rows) {
  return wgmma_stage_bytes_at(bits, act_rows, packed_tile_k(bits) > 128 ? packed_tile_k(bits) : 128);
}
// Stages of at least 128 k pay the stage's waits and scale loads half as often: taken where enough of
// them fit (four in the two-CTA budget, three in the one-CTA budget).
constexpr bool wgmma_long_stages(int bits, int act_rows) {
  return act_rows <= 64 ? 4 * wgmma_long_stage_bytes(bits, act_rows) <= kWgmmaTwoCtaBudget
                        : 3 * wgmma_long_stage_bytes(bits, act_rows) <= kWgmmaOneCtaBudget;
}
// k per stage: whole packed tiles, at least 128 where wgmma_long_stages(), else at least 64 (one
// 128-byte swizzled sub-tile of 16-bit activations).
constexpr int wgmma_stage_k(int bits, int act_rows) {
  const int k_min = wgmma_long_stages(bits, act_rows) ? 128 : 64;
  return k_min > packed_tile_k(bits) ? k_min : packed_tile_k(bits);
}
constexpr int wgmma_tiles_per_stage(int bits, int act_rows) { return wgmma_stage_k(bits, act_rows) / packed_tile_k(bits); }
constexpr int wgmma_stage_bytes(int bits, int act_rows) {
  return wgmma_stage_bytes_at(bits, act_rows, wgmma_stage_k(bits, act_rows));
}
constexpr int wgmma_ctas_per_sm(int bits, int act_rows) {
  return act_rows <= 64 && 4 * wgmma_stage_bytes(bits, act_rows) <= kWgmmaTwoCtaBudget ? 2 : 1;
}
// As many stages as the CTA's budget holds, at most 8.
constexpr int wgmma_stages(int bits, int act_rows) {
  const int fit = (wgmma_ctas_per_sm(bits, act_rows) == 2 ? kWgmmaTwoCtaBudget : kWgmmaOneCtaBudget) /
                  wgmma_stage_bytes(bits, act_rows);
  return fit < 8 ? fit : 8;
}
// k-steps of wgmmas in flight: 3 where registers allow and ptxas keeps them asynchronous (one tile per
// stage, tiles other than 128 activation rows), else 2.
constexpr int wgmma_window(int bits, int act_rows) {
  return wgmma_tiles_per_stage(bits, act_rows) > 1 || act_rows == 128 ? 2 : 3;
}
// A ring of at least three stages, and enough k-steps per stage for the window.
constexpr bool wgmma_supported(int bits, int act_rows) {
  return wgmma_stages(bits, act_rows) >= 3 &&
         wgmma_tiles_per_stage(bits, act_rows) * (packed_tile_k(bits) / 16) >= wgmma_window(bits, act_rows) - 1;
}
// + 1 KB to align the ring to the 1024-byte swizzle.
constexpr int wgmma_smem_bytes(int bits, int act_rows) {
  return wgmma_stages(bits, act_rows) * wgmma_stage_bytes(bits, act_rows) + 1024;
}
// The tall tile (256 activation rows) from this many of its output tiles (about one wave).
constexpr int kWgmmaTallMinTiles = 128;
constexpr int kWgmmaMaxSplit = 4;
constexpr int64_t kWgmmaPartialCap = 8 << 20;
// CTAs per cluster along N. The CTAs of a cluster compute the same activation rows for neighbouring
// weight rows: each brings 1 / CL of a stage's activation rows and multicasts them to all (TMA), so
// the activations' L2 reads drop by CL. They are most of what a CTA reads (8 bytes for every byte of
// weight at 256 rows: at the tensor cores' peak about 6.8 TB/s of L2 reads over the GPU, more than
// L2 delivers). The default is single CTAs: on the H200 pairs were slower on every layer of
// tools/gpu_wgmma_sweep.sh (docs/KERNELS.md, gemm_wgmma), so clusters stay for A/B timing. `forced`
// (BITBLAS_JAX_WGMMA_CLUSTER: 1, 2 or 4) overrides it; never more CTAs than there are along N.
constexpr int kWgmmaClusterCtas = 1;
constexpr int wgmma_cluster_ctas(int64_t N, int forced = 0) {
  int cl = forced > 0 ? forced : kWgmmaClusterCtas;
  while (cl > 1 && ceil_div(N, kWgmmaWeightRows) < cl) cl /= 2;
  return cl;
}
// The cluster size a launch keeps: `cl`, unless the grid fits one wave of single CTAs (wave_ctas:
// the GPU's CTAs at once) but not one wave of clusters (cluster_wave_ctas: clusters at once x cl). A
// cluster's CTAs share a GPC, so a GPC with an odd number of SMs holds one CTA fewer at cl = 2 (one
// CTA per SM at 128 and 256 activation rows): a second wave would cost more than the multicast saves.
constexpr int wgmma_cluster_for_grid(int cl, int64_t grid_ctas, int64_t wave_ctas, int64_t cluster_wave_ctas) {
  return cl > 1 && grid_ctas <= wave_ctas && grid_ctas > cluster_wave_ctas ? 1 : cl;
}

// ---- gemm_cutlass: tiles, split-K and stream-K -------------------------------------------------------
// CUTLASS computes D'[N, M] = W[N, K] x A^T: the weight rows and activation rows of a tile by tile id. A
// persistent grid of one CTA per SM runs the output tiles. The 256-row tiles give each consumer warpgroup two
// 64-row wgmma blocks against the same activations (two chains where the 128-row tiles have one): per
// multiply-add they run faster than the 128-row tile of as many activation rows (speed_pct below), so where they
// fill a wave that the 128-row tiles fill and a bit (N of about 17,000-34,000 on 132 SMs: 70B-class MLP layers)
// they take one wave where those take two. Where the tiles do not fill whole waves, two ways share K among the SMs:
// - split (the persistent tiles gemm_cutlass_splits_k admits): K in `split` equal parts run as
//   CUTLASS's batch mode, each part's float32 partial [split][M][N] written to the workspace, and a reduction
//   kernel adding them in split order with the bias (the same sum every run). It suits layers whose tiles fill
//   a fraction of one wave (4096^2 at M = 128: 32 tiles of 128 x 128 for 132 SMs).
// - stream-K (the stream_k tiles: CUTLASS's stream-K scheduler, DecompositionMode::StreamK): all but the last
//   two waves of tiles run whole; the stages of the rest are dealt evenly to the SMs, the CTAs that share a
//   tile adding their float32 partials in a workspace tile in k order (deterministic), the last one running the
//   epilogue. It suits layers of a wave and a bit (18944 x 3584 at M = 128: 148 tiles for 132 SMs, 1.12 waves of
//   work run as two), where split K would double the tiles and the partials' round trip.
// - in-kernel split (a stream_k tile with split > 1: the same scheduler, DecompositionMode::SplitK): every
//   output tile's k range in `split` parts of whole stages, one CTA each, adding their float32 partials in a
//   workspace tile in k order and the last running the epilogue, as stream-K's shared tiles do. The same work as
//   the persistent tiles' split, without their float32 output pass over [split][M][N] and the reduction kernel:
//   the partials stay per tile, mostly in L2, and C is written once by the TMA epilogue.
// The (tile, split) pair is chosen by a model of the time (gemm_cutlass_choice). Tile throughputs are the
// H100's, in percent of the 128 x 128 tile's multiply-adds per ns (benchmarks/cutlass_mixed_gemm, int4 g128, M =
// 4096 on five layers: 128 x 256 tiles 1.20-1.26x, 128 x 64 0.57-0.68x; the 256-row tiles from one wave of them
// on 29568 x 8192 at M = 64 / 128: 256 x 64 0.71x, 256 x 128 1.11x; 256 x 32 0.41x, from its time against 256 x
// 64's at M = 8-32 there, 0.83-0.88: below 64 rows a stage takes about as long whatever its activation rows).
// With a table format's codes (nf4, fp4_e2m1: the register lookup, csrc/cuda/cutlass_table4_convert.h) a tile
// runs at table_pct of that: the lookup costs the consumer warps the same per stage whatever the tile's
// activation rows, so it weighs most where a stage's multiply-adds are few. One value per row count, the
// scheduler aside: the median nf4 / int4 time ratio per tile of the nf4 lines in
// benchmarks/results/h100-gemm-cutlass-sweep.log (docs/KERNELS.md, gemm_cutlass: Choice). The 256-row tiles are
// built for integer codes only (for the build's time: three kernels more in each table format's persistent unit)
// and never split K (no float32-output build).
struct CutlassTile {
  int weight_rows;
  int act_rows;
  int speed_pct;
  bool stream_k;     // run by CUTLASS's stream-K scheduler (else the persistent one)
  int table_pct;     // throughput with table codes, in percent of speed_pct; 0: not built for table codes
};
constexpr int kNumCutlassTiles = 8;
constexpr CutlassTile kCutlassTiles[kNumCutlassTiles] = {
    {128, 64, 57, false, 71},  {128, 128, 100, false, 72}, {128, 256, 121, false, 90}, {128, 128, 100, true, 72},
    {128, 256, 121, true, 90}, {256, 64, 71, false, 0},    {256, 128, 111, false, 0},  {256, 32, 41, false, 0}};
constexpr int kCutlassStageK = 64;  // k per mainloop stage: K / split and the group size are multiples of it
constexpr int kCutlassMaxSplit = 8;
constexpr int kCutlassMaxSplitRows = 128;  // K splits with persistent 128-row tiles of at most this many activation
                                           // rows (only these are built with float32 output)
// CUTLASS's stream-K schedule: a CTA sharing a tile runs at least this many stages (its min_iters_per_sk_unit_);
// it shares the tiles of the last two waves at most, so at most twice as many tiles as CTAs, and its workspace
// holds a float32 tile and a 32-bit flag per consumer warpgroup (two) for each shared tile, each part rounded
// to 128 bytes. The launcher runs at most kCutlassStreamKMaxCtas CTAs (the SMs of the largest Hopper GPUs:
// H100 SXM, H200, GH200), so the workspace the plan sizes holds whatever the GPU.
constexpr int64_t kCutlassStreamKMinStages = 8;
constexpr int64_t kCutlassStreamKFlagBytes = 2 * 4;
constexpr int kCutlassStreamKMaxCtas = 132;
// The model's constants: a 128 x 128 tile's multiply-adds per ns on one SM (H200: 4096^2 at M = 128, 32 such
// tiles in one wave, took 24.8 us); the split partials' round trip (written in float32 by the GEMM's epilogue,
// read by the reduction, the output written once) in bytes per ns, and what a split adds whatever its size
// (the reduction's launch): H100, kernel alone (gemm_cutlass_selftest --time), 18944 x 3584 at M = 128 split
// two ways took 2.7 us more than unsplit, its 24 MB round trip about 12 us. Stream-K: the shared tiles' partials
// (one written and one read per CTA, mostly in L2) in bytes per ns, and its fixed cost (CTAs waiting on their
// turn to add): fit to an H100 sweep of every tile and split (benchmarks/results/h100-gemm-cutlass-sweep.log;
// tools/gemm_cutlass_sweep.py checks the choice against it). That sweep's stream-K launches cleared their flags
// with a memset of their own (about 1 us of the fixed cost), which a call does in the group terms kernel.
constexpr int64_t kCutlassTileFlopsPerNs = 5500;
constexpr int64_t kCutlassPartialBytesPerNs = 2000;
constexpr int64_t kCutlassSplitFixedNs = 2000;
constexpr int64_t kCutlassStreamKPartialBytesPerNs = 3000;
constexpr int64_t kCutlassStreamKFixedNs = 6000;
// In-kernel split: the parts of a tile add their partials one after another (k order), each a float32 tile
// stored or read-added by one CTA, at this many bytes per ns, plus a fixed cost (the flags' waits). First
// estimates, to be fit to a sweep (tools/gemm_cutlass_sweep.py).
constexpr int64_t kCutlassInKernelSplitBytesPerNs = 100;
constexpr int64_t kCutlassInKernelSplitFixedNs = 1000;

// What gemm_cutlass computes: 4- and 8-bit integer weights and the 4-bit table formats (nf4, fp4_e2m1), 16-bit
// activations with output of the same type and float32 accumulation, any mode the format has, groups of whole
// stages (or one per row), N a multiple of a packed tile's 16 rows. Its conversion turns a stored integer code b
// into b (4-bit) or b - 128 (8-bit: centered, csrc/cuda/cutlass_u8_convert.h) and a table code into its table
// value (csrc/cuda/cutlass_table4_convert.h), and the group terms (gemm_cutlass.cu) add what makes the mode's
// value: value = that code - gemm_cutlass_value_offset.
constexpr bool gemm_cutlass_format(WFormat w_format) {
  return w_format == WFormat::kInt4 || w_format == WFormat::kUInt4 || w_format == WFormat::kInt8 ||
         w_format == WFormat::kUInt8 || w_format == WFormat::kNF4 || w_format == WFormat::kFP4E2M1;
}
// Whether gemm_cutlass converts the format's codes by a table lookup (its non-integer formats; kCutlassTiles'
// table_pct).
constexpr bool gemm_cutlass_table_codes(WFormat w_format) {
  return gemm_cutlass_format(w_format) && !format_is_integer(w_format);
}
constexpr bool gemm_cutlass_takes(WFormat w_format, bool out_is_act, bool accum_f32, int64_t group_size, int64_t N,
                                  int64_t K) {
  return gemm_cutlass_format(w_format) && out_is_act && accum_f32 && K > 0 && K % kCutlassStageK == 0 &&
         N % kTileRows == 0 && group_size > 0 && K % group_size == 0 &&
         (group_size % kCutlassStageK == 0 || group_size == K);
}
// The code gemm_cutlass's conversion yields from a stored integer code b (b for 4-bit, b - 128 for 8-bit; a table
// format's conversion yields the value itself: offset 0).
constexpr int gemm_cutlass_code_offset(WFormat w_format) { return format_bits(w_format) == 8 ? 128 : 0; }
// value = conversion's code - this: the stored code's offset (2^(bits-1) for the signed int formats, stored
// offset binary; 0 for uint and the table formats) less the conversion's (int4 8, uint4 0, int8 0, uint8 -128,
// nf4 / fp4_e2m1 0).
constexpr int gemm_cutlass_value_offset(WFormat w_format) {
  return (format_is_signed_int(w_format) ? 1 << (format_bits(w_format) - 1) : 0) - gemm_cutlass_code_offset(w_format);
}

// The group gemm_cutlass's terms come in, K in `batches` CUTLASS batches: the mode's group, or one per row of
// each batch (K / batches) where the mode has no scales (whatever group the call names) or one group spans K.
constexpr int64_t gemm_cutlass_group(int mode, int64_t group_size, int64_t K, int64_t batches = 1) {
  return mode == static_cast<int>(ScaleMode::kNone) || group_size == K ? K / (batches > 0 ? batches : 1) : group_size;
}
// The CUTLASS batches tile t runs K split `split` ways in: the persistent tiles' parts are batches (each with its
// own rows of terms and its own float32 partial plane); a stream-K tile splits inside its scheduler, one batch.
constexpr int64_t gemm_cutlass_batches(int t, int64_t split) {
  return t >= 0 && t < kNumCutlassTiles && kCutlassTiles[t].stream_k ? 1 : split;
}
// The group of the terms a call of tile t, K split `split` ways, reads (and the terms kernel writes).
constexpr int64_t gemm_cutlass_terms_group(int mode, int64_t group_size, int64_t K, int t, int64_t split) {
  return gemm_cutlass_group(mode, group_size, K, gemm_cutlass_batches(t, split));
}

// The rows of the group terms a caller holds with its weight (Matmul.group_terms: [2][rows][N], S then Z, in the
// activations' type), which a call reads instead of writing its own: the mode's groups (K / group_size) where the
// terms come in them; where they come one per row of each part (gemm_cutlass_group), kCutlassMaxSplit copies of
// that one row, so a call split any way reads its parts' rows from the same array.
constexpr int64_t gemm_cutlass_held_terms_rows(int mode, int64_t group_size, int64_t K) {
  return group_size <= 0 ? 0 : gemm_cutlass_group(mode, group_size, K) == K ? kCutlassMaxSplit : K / group_size;
}

// Whether persistent tile t is built with float32 output, for K split: the 128-row tiles of at most
// kCutlassMaxSplitRows activation rows.
constexpr int kCutlassSplitWeightRows = 128;
constexpr bool gemm_cutlass_splits_k(int t) {
  return !kCutlassTiles[t].stream_k && kCutlassTiles[t].weight_rows == kCutlassSplitWeightRows &&
         kCutlassTiles[t].act_rows <= kCutlassMaxSplitRows;
}
// Whether tile t is built for the table formats' codes (nf4, fp4_e2m1).
constexpr bool gemm_cutlass_tile_takes_tables(int t) { return kCutlassTiles[t].table_pct > 0; }
// Whether tile t runs K split into `split` parts. A persistent tile: parts of whole stages, each holding whole
// groups of the terms, and, split, a tile built with float32 output (gemm_cutlass_splits_k). A stream-K tile
// (in-kernel split): at least kCutlassStreamKMinStages stages a part (CUTLASS's scheduler
// takes parts of any whole number of stages and reads the terms of the stages it runs).
constexpr bool gemm_cutlass_split_ok(int mode, int64_t group_size, int64_t K, int t, int64_t split) {
  if (t < 0 || t >= kNumCutlassTiles || split < 1 || split > kCutlassMaxSplit || K % kCutlassStageK != 0) return false;
  if (kCutlassTiles[t].stream_k) return split == 1 || K / kCutlassStageK >= split * kCutlassStreamKMinStages;
  if (K % split != 0) return false;
  if (split > 1 && !gemm_cutlass_splits_k(t)) return false;
  const int64_t part = K / split, group = gemm_cutlass_group(mode, group_size, K, split);
  return part % kCutlassStageK == 0 && group > 0 && part % group == 0;
}

// The group terms S and Z ([K / group][N] each, in the activations' 16-bit type; group: gemm_cutlass_group's),
// then, split K, the float32 partials [split][M][N] (256-byte aligned), or, a stream-K tile, CUTLASS's workspace
// for as many tiles as it may share (the launcher checks CUTLASS's own count against this).
constexpr int64_t gemm_cutlass_terms_bytes(int64_t N, int64_t K, int64_t group) {
  return group > 0 ? (2 * (K / group) * N * 2 + 255) / 256 * 256 : 0;
}
constexpr int64_t gemm_cutlass_output_tiles(int64_t M, int64_t N, int t) {
  return ceil_div(N, kCutlassTiles[t].weight_rows) * ceil_div(M, kCutlassTiles[t].act_rows);
}
// A stream-K launch's tiles with a partial tile and flags in its workspace: those of its last two waves at most,
// or, split in the kernel, every output tile (then at most kCutlassStreamKMaxSharedTiles: the flags a launch
// clears, gemm_cutlass_in_kernel_split_fits).
constexpr int64_t kCutlassStreamKMaxSharedTiles = 2 * kCutlassStreamKMaxCtas;
constexpr int64_t gemm_cutlass_stream_k_bytes(int64_t M, int64_t N, int t, int64_t split = 1) {
  const int64_t all = gemm_cutlass_output_tiles(M, N, t);
  const int64_t tiles = split > 1 ? all : min64(all, kCutlassStreamKMaxSharedTiles);
  return ceil_div(tiles * kCutlassTiles[t].weight_rows * kCutlassTiles[t].act_rows * 4, 128) * 128 +
         ceil_div(tiles * kCutlassStreamKFlagBytes, 128) * 128;
}
// Whether a stream-K tile may split K in the kernel for M x N: its flags, one pair per output tile, within what a
// launch clears.
constexpr bool gemm_cutlass_in_kernel_split_fits(int64_t M, int64_t N, int t, int64_t split) {
  return split == 1 || !kCutlassTiles[t].stream_k || gemm_cutlass_output_tiles(M, N, t) <= kCutlassStreamKMaxSharedTiles;
}
constexpr int64_t gemm_cutlass_workspace_bytes(int64_t M, int64_t N, int64_t K, int64_t group, int t, int64_t split) {
  const bool stream_k = t >= 0 && t < kNumCutlassTiles && kCutlassTiles[t].stream_k;
  return gemm_cutlass_terms_bytes(N, K, group) +
         (stream_k ? gemm_cutlass_stream_k_bytes(M, N, t, split) : split > 1 ? split * M * N * 4 : 0);
}

// A stream-K launch's CTAs on a GPU of num_sms SMs (the launcher's: at most kCutlassStreamKMaxCtas).
constexpr int64_t gemm_cutlass_stream_k_grid(int num_sms) {
  return min64(num_sms > 0 ? num_sms : 1, kCutlassStreamKMaxCtas);
}
// The model's time in ns of one tile t's multiply-adds over K / split (one wave of such tiles), at the tile's
// throughput (table_codes: at its table_pct of it).
constexpr int64_t gemm_cutlass_wave_ns(int t, int64_t K, int64_t split, bool table_codes) {
  const int64_t speed = kCutlassTiles[t].speed_pct * (table_codes ? kCutlassTiles[t].table_pct : 100);
  return 2 * kCutlassTiles[t].weight_rows * kCutlassTiles[t].act_rows * (K / split) * 100 * 100 /
         (kCutlassTileFlopsPerNs * speed);
}
// In-kernel split (a stream-K tile, split > 1), the model's two terms: the waves of its parts (each the longest
// part's stages), and the bytes of the float32 partial tiles a tile's parts store or read-add one after another
// (at kCutlassInKernelSplitBytesPerNs).
constexpr int64_t gemm_cutlass_in_kernel_split_parts_ns(int64_t M, int64_t N, int64_t K, int t, int64_t split,
                                                        int num_sms, bool table_codes = false) {
  const int64_t stages = K / kCutlassStageK;
  return ceil_div(gemm_cutlass_output_tiles(M, N, t) * split, gemm_cutlass_stream_k_grid(num_sms)) *
         (gemm_cutlass_wave_ns(t, K, split, table_codes) * split * ceil_div(stages, split) / stages);
}
constexpr int64_t gemm_cutlass_in_kernel_split_turn_bytes(int t, int64_t split) {
  return split * kCutlassTiles[t].weight_rows * kCutlassTiles[t].act_rows * 4;
}

// The model's time in ns of tile t with K split `split` ways: the waves of tiles, each a tile's multiply-adds
// over K / split, plus the partials' round trip where split. A stream-K tile (split 1) follows CUTLASS's
// schedule: tiles in whole waves stay whole but for the last two waves, whose stages are dealt evenly to
// min(SMs, stages / kCutlassStreamKMinStages) CTAs (all whole where the tiles fill whole waves or a tile has
// at most kCutlassStreamKMinStages stages), plus a partial tile written and read by each of those CTAs; split in
// the kernel (split > 1), the waves of its parts (the longest part's stages), then each part's turn to add its
// partial tile, one after another.
// table_codes: the weight's codes convert by a table lookup (the tile's table_pct).
constexpr int64_t gemm_cutlass_time_ns(int64_t M, int64_t N, int64_t K, int t, int64_t split, int num_sms,
                                       bool table_codes = false) {
  const int64_t sms = num_sms > 0 ? num_sms : 1;
  const int64_t tiles = gemm_cutlass_output_tiles(M, N, t) * split;
  const int64_t wave_ns = gemm_cutlass_wave_ns(t, K, split, table_codes);
  const int64_t stages = K / kCutlassStageK;
  const int64_t grid = gemm_cutlass_stream_k_grid(num_sms);
  if (kCutlassTiles[t].stream_k && split > 1)  // in-kernel split: the parts' waves, then the tile's turns to add
    return gemm_cutlass_in_kernel_split_parts_ns(M, N, K, t, split, num_sms, table_codes) + kCutlassInKernelSplitFixedNs +
           gemm_cutlass_in_kernel_split_turn_bytes(t, split) / kCutlassInKernelSplitBytesPerNs;
  if (kCutlassTiles[t].stream_k && tiles % grid != 0 && stages > kCutlassStreamKMinStages) {
    const int64_t whole_waves = tiles / grid > 1 ? tiles / grid - 1 : 0;
    const int64_t shared_stages = (tiles - whole_waves * grid) * stages;
    const int64_t ctas = min64(grid, max64(1, shared_stages / kCutlassStreamKMinStages));
    const int64_t partial_bytes = 2 * kCutlassTiles[t].weight_rows * kCutlassTiles[t].act_rows * 4 * ctas;
    return whole_waves * wave_ns + ceil_div(shared_stages, ctas) * wave_ns / stages + kCutlassStreamKFixedNs +
           partial_bytes / kCutlassStreamKPartialBytesPerNs;
  }
  const int64_t reduce_ns = split > 1 ? kCutlassSplitFixedNs + (4 * split + 2) * M * N / kCutlassPartialBytesPerNs : 0;
  return ceil_div(tiles, sms) * wave_ns + reduce_ns;
}

struct CutlassChoice {
  int tile;
  int64_t split;
};

// Which of gemm_cutlass's tiles the choice weighs: the persistent ones (K split or not) and the stream-K ones,
// only the persistent ones, or only the stream-K ones (tests and the fuzz reach them so).
enum class CutlassStreamK { kOff = 0, kByModel = 1, kOnly = 2 };

// The (tile, split) the model finds fastest for M rows on num_sms SMs: among whole splits up to max_split
// (gemm_cutlass_split_ok) and the tiles `stream_k` admits, the least time; ties go to the larger persistent
// tile, then to fewer splits (a stream-K tile only where it is faster). A tile of twice M rows or more is left
// out (but for kOnly), the tile of half its rows holding M: its half-empty tiles cost a whole tile's mainloop.
// The model, fit from M = 128 up, misses that for the 128-row stream-K tile at M = 64, where the 64-row tile,
// split or not, ran faster than every 128-row one on all six layers timed (H100, kernel alone).
// table_codes: gemm_cutlass_table_codes of the weight's format. in_kernel_split: whether the stream-K tiles may
// split K in the kernel (weighed only where asked: through JAX it ran slower than the persistent split,
// docs/KERNELS.md), where all the parts fit one wave of CTAs.
constexpr CutlassChoice gemm_cutlass_choice(int64_t M, int64_t N, int64_t K, int mode, int64_t group_size,
                                            int num_sms, int64_t max_split = kCutlassMaxSplit,
                                            CutlassStreamK stream_k = CutlassStreamK::kByModel,
                                            bool table_codes = false, bool in_kernel_split = false) {
  CutlassChoice best{0, 1};
  int64_t best_ns = -1;
  for (int64_t split = 1; split <= max_split; ++split) {
    for (int t = 0; t < kNumCutlassTiles; ++t) {
      if (!gemm_cutlass_split_ok(mode, group_size, K, t, split) || !gemm_cutlass_in_kernel_split_fits(M, N, t, split))
        continue;
      // in-kernel split: only where every part of every tile runs at once (one wave); past that the stream-K
      // schedule shares the last waves' stages
      if (kCutlassTiles[t].stream_k && split > 1 &&
          (!in_kernel_split || gemm_cutlass_output_tiles(M, N, t) * split > gemm_cutlass_stream_k_grid(num_sms)))
        continue;
      if (kCutlassTiles[t].stream_k ? stream_k == CutlassStreamK::kOff : stream_k == CutlassStreamK::kOnly)
        continue;
      if (table_codes && !gemm_cutlass_tile_takes_tables(t)) continue;
      if (stream_k != CutlassStreamK::kOnly && kCutlassTiles[t].act_rows >= 2 * M &&
          kCutlassTiles[t].act_rows > kCutlassTiles[0].act_rows)
        continue;
      const int64_t ns = gemm_cutlass_time_ns(M, N, K, t, split, num_sms, table_codes);
      if (best_ns < 0 || ns < best_ns || (ns == best_ns && split == best.split && !kCutlassTiles[t].stream_k))
        best = {t, split}, best_ns = ns;
    }
  }
  return best;
}

// ---- split-K workspace ----------------------------------------------------------------------------
// One counter per output tile of the smallest tile (128 x 32), padded to 256 bytes, then the fp32
// partial sums of every split.
constexpr int64_t counter_bytes(int64_t M, int64_t N) { return (ceil_div(N, 128) * ceil_div(M, 32) * 4 + 255) / 256 * 256; }
// gemm_cutlass's are its group terms and partials instead (K and group, gemm_cutlass_terms_group's, matter only
// there).
constexpr int64_t workspace_bytes(Kernel k, int tile, int64_t split_k, int64_t M, int64_t N, int64_t K = 0,
                                  int64_t group_size = 0) {
  return k == Kernel::kGemmCutlass ? gemm_cutlass_workspace_bytes(M, N, K, group_size, tile, split_k)
         : split_k <= 1 || k == Kernel::kDecode || k == Kernel::kDequantizeThenDot
             ? 0
             : counter_bytes(M, N) + split_k * M * N * 4;
}

// ---- the plan ----------------------------------------------------------------------------------------
struct PlanQuery {
  int64_t M = 0, N = 0, K = 0;
  int bits = 4;                 // weight bits (format_bits)
  WFormat w_format = WFormat::kInt4;
  bool out_is_act = true;       // the output dtype is the activations' (else float32)
  bool accum_f32 = true;        // float32 accumulation (else float16)
  int mode = 0;                 // a ScaleMode id
  int64_t group_size = 0;
  bool sm90 = false;            // an sm_90 GPU: gemm_wgmma can run
  bool a_aligned = true;        // A (and C, bias) 16-byte aligned: gemm_wgmma's TMA map of A, gemm_cutlass's TMA
  int num_sms = 132;
  // Measured thresholds (bitblas_jax/gpu_plan.py): the largest M for each kernel; a GEMM larger than
  // its max runs kDequantizeThenDot.
  int64_t decode_max_m = 16;
  int64_t decode_splitk_max_m = 8;
  bool decode_cluster_split = false;  // whether decode may split K over a cluster (sm_90)
  int64_t mma_max_m = 64;
  int64_t wgmma_max_m = 1024;
  // gemm_cutlass: whether it may run (built with CUTLASS, not turned off) and its M range.
  bool gemm_cutlass = false;
  int64_t cutlass_min_m = 64;
  int64_t cutlass_max_m = 4096;
  int64_t cutlass_max_split = kCutlassMaxSplit;  // 1: K never split in parts (A/B timing)
  CutlassStreamK cutlass_stream_k = CutlassStreamK::kByModel;  // which tiles the choice weighs
  bool cutlass_in_kernel_split = false;  // whether the stream-K tiles may split K in the kernel

  bool has_scales() const { return mode != static_cast<int>(ScaleMode::kNone); }
};

struct Plan {
  Kernel kernel = Kernel::kDecode;
  int tile = 0;                 // MmaTileId / WgmmaTileId; decode: the shape of a full 16-row launch
  int tail_tile = -1;           // decode: the shape of the last launch of M % 16 rows (-1: none)
  int64_t split_k = 1;
  int stage_k = 0;              // k per pipeline stage (GEMMs), packed tile k (decode kernels)
  int64_t workspace_bytes = 0;
};

// The split count nearest to resident CTAs / tiles, halves to even (the rounding the measured rule
// was tuned with).
inline int64_t round_half_even(double x) {
  int64_t r = static_cast<int64_t>(x + 0.5);
  if (x + 0.5 == static_cast<double>(r) && r % 2 == 1) r -= 1;
  return r;
}

inline int64_t one_wave_split(int num_sms, int64_t tiles, int per_sm, int64_t stages, int64_t max_split,
                              int64_t partial_cap, int64_t M, int64_t N) {
  // about one wave of resident CTAs; at least 4 stages per split; fp32 partials within partial_cap
  int64_t split = round_half_even(static_cast<double>(per_sm) * num_sms / static_cast<double>(tiles));
  split = min64(min64(split, max_split), min64(stages / 4, partial_cap / (4 * M * N)));
  return max64(1, split);
}

// The numbers that follow from (kernel, tile, split_k) for one problem: what the dispatcher needs.
// mode and group_size (resolved: K for one per row): the call's, for gemm_cutlass's workspace.
inline Plan finish(Kernel kernel, int tile, int64_t split_k, int64_t M, int64_t N, int64_t K, int bits, int mode = 0,
                   int64_t group_size = 0) {
  Plan p;
  p.kernel = kernel;
  p.tile = tile;
  p.split_k = split_k < 1 ? 1 : split_k;
  switch (kernel) {
    case Kernel::kDecode:  // split_k: the CTAs of a cluster sharing K (decode_cluster_split)
      p.tile = decode_shape_for(bits, min64(M, kDecodeMaxRows));
      p.tail_tile = M > kDecodeMaxRows && M % kDecodeMaxRows ? decode_shape_for(bits, M % kDecodeMaxRows) : -1;
      p.stage_k = packed_tile_k(bits);
      break;
    case Kernel::kDecodeSplitK:
      p.tile = 0;
      p.stage_k = packed_tile_k(bits);
      break;
    case Kernel::kGemmMma: p.stage_k = mma_stage_k(bits); break;
    case Kernel::kGemmWgmma:  // (a tile out of range keeps stage_k 0: the dispatcher names the bad tile)
      p.stage_k = tile >= 0 && tile < kNumWgmmaTiles ? wgmma_stage_k(bits, kWgmmaTiles[tile].act_rows) : 0;
      break;
    case Kernel::kDequantizeThenDot:
      p.tile = 0;
      p.split_k = 1;
      break;
    case Kernel::kGemmCutlass:  // K split in whole parts or in the kernel (else the dispatcher names the split)
      p.stage_k = kCutlassStageK;
      break;
  }
  p.workspace_bytes = workspace_bytes(p.kernel, p.tile, p.split_k, M, N, K,
                                      gemm_cutlass_terms_group(mode, group_size, K, p.tile, p.split_k));
  return p;
}

// Whether every launch of M rows can run kDecode (16-row slices and the remainder).
inline bool decode_fits(const PlanQuery& q) {
  if (!q.accum_f32 || !groups_in_whole_tiles(q.has_scales(), q.group_size, q.bits)) return false;
  if (decode_shape_for(q.bits, min64(q.M, kDecodeMaxRows)) < 0) return false;
  return q.M % kDecodeMaxRows == 0 || decode_shape_for(q.bits, q.M % kDecodeMaxRows) >= 0;
}

// The gemm_wgmma tile for M rows: the tall tile past 128 rows once its tiles about fill the GPU
// (where its stages fit), else the smallest tile that holds M (at most 128 rows).
inline int wgmma_tile_for(const PlanQuery& q) {
  const bool tall = q.M > 128 && ceil_div(q.N, 128) * ceil_div(q.M, 256) >= kWgmmaTallMinTiles;
  if (tall && wgmma_supported(q.bits, 256)) return kWgmma128x256;
  return q.M <= 32 ? kWgmma128x32 : q.M <= 64 ? kWgmma128x64 : kWgmma128x128;
}

// Whether gemm_wgmma runs this problem: an sm_90 GPU, fp32 accumulation, groups of whole packed
// tiles, A 16-byte aligned, a supported stage ring and K a multiple of its stage's k.
inline bool wgmma_fits(const PlanQuery& q) {
  if (!q.sm90 || !q.accum_f32 || !q.a_aligned) return false;
  if (!groups_in_whole_tiles(q.has_scales(), q.group_size, q.bits)) return false;
  const int rows = kWgmmaTiles[wgmma_tile_for(q)].act_rows;
  return wgmma_supported(q.bits, rows) && q.K % wgmma_stage_k(q.bits, rows) == 0;
}

// Whether gemm_cutlass runs this problem: allowed, an sm_90 GPU, the operands 16-byte aligned (TMA) and what it
// computes.
inline bool gemm_cutlass_fits(const PlanQuery& q) {
  return q.gemm_cutlass && q.sm90 && q.a_aligned &&
         gemm_cutlass_takes(q.w_format, q.out_is_act, q.accum_f32, gemm_cutlass_group(q.mode, q.group_size, q.K), q.N,
                            q.K);
}

inline int mma_tile_for(const PlanQuery& q) {
  if (!groups_in_whole_tiles(q.has_scales(), q.group_size, q.bits)) return kMma128x32GroupsInTiles;
  const bool wide = ceil_div(q.N, 256) * ceil_div(q.M, q.M > 32 ? 64 : 32) >= kMmaWideMinTiles;
  return (wide ? 2 : 0) + (q.M > 32 ? 1 : 0);
}

inline Plan make_plan(const PlanQuery& q) {
  const int64_t M = q.M, N = q.N, K = q.K;
  if (M <= 0) return finish(Kernel::kDecodeSplitK, 0, 1, M, N, K, q.bits);
  // gemm_cutlass from cutlass_min_m, decode sizes included where it asks (on the largest layers its tiles stream the
  // weight faster than decode's launches of two n8 blocks: gpu_plan.py gemm_cutlass_min_m)
  const bool cutlass = gemm_cutlass_fits(q) && M >= q.cutlass_min_m && M <= q.cutlass_max_m;
  if (M <= q.decode_max_m && decode_fits(q) && !cutlass) {
    const int64_t split = q.decode_cluster_split && q.sm90
                              ? decode_cluster_split(N, K, q.bits, decode_shape_for(q.bits, min64(M, kDecodeMaxRows)),
                                                     q.num_sms)
                              : 1;
    return finish(Kernel::kDecode, 0, split, M, N, K, q.bits);
  }
  if (cutlass) {
    const CutlassChoice c =
        gemm_cutlass_choice(M, N, K, q.mode, q.group_size, q.num_sms, q.cutlass_max_split, q.cutlass_stream_k,
                            gemm_cutlass_table_codes(q.w_format), q.cutlass_in_kernel_split);
    return finish(Kernel::kGemmCutlass, c.tile, c.split, M, N, K, q.bits, q.mode, q.group_size);
  }
  const bool wgmma = wgmma_fits(q);
  if (M > max64(q.decode_max_m, wgmma ? q.wgmma_max_m : q.mma_max_m))
    return finish(Kernel::kDequantizeThenDot, 0, 1, M, N, K, q.bits);
  if (M <= q.decode_splitk_max_m) {
    const int64_t kt = K / packed_tile_k(q.bits);
    const int64_t columns = ceil_div(N, kDecodeSplitKRows);
    const int64_t target = static_cast<int64_t>(kDecodeSplitKCtasPerSm) * q.num_sms;  // about one wave
    int64_t split = round_half_even(static_cast<double>(target) / static_cast<double>(columns));
    split = max64(1, min64(max64(1, split), min64(max64(1, kt / kDecodeSplitKMinTiles),
                                                  max64(1, kMmaPartialCap / (4 * M * N)))));
    return finish(Kernel::kDecodeSplitK, 0, split, M, N, K, q.bits);
  }
  if (wgmma) {
    const int tile = wgmma_tile_for(q);
    const int rows = kWgmmaTiles[tile].act_rows;
    const int64_t tiles = ceil_div(N, kWgmmaWeightRows) * ceil_div(M, rows);
    const int64_t split = one_wave_split(q.num_sms, tiles, rows > 64 ? 1 : 2, K / wgmma_stage_k(q.bits, rows),
                                         kWgmmaMaxSplit, kWgmmaPartialCap, M, N);
    return finish(Kernel::kGemmWgmma, tile, split, M, N, K, q.bits);
  }
  const int tile = mma_tile_for(q);
  const int64_t tiles = ceil_div(N, kMmaTiles[tile].weight_rows) * ceil_div(M, kMmaTiles[tile].act_rows);
  const int64_t split = one_wave_split(q.num_sms, tiles, mma_ctas_per_sm(tile), ceil_div(K, mma_stage_k(q.bits)),
                                       kMmaMaxSplit, kMmaPartialCap, M, N);
  return finish(Kernel::kGemmMma, tile, split, M, N, K, q.bits);
}

// ---- int8 / float8 activations -------------------------------------------------------------------
// Their GPU path, chosen apart from make_plan (whose kernels take 16-bit activations):
//   kXlaDot    bitblas_jax/quantized_dot.py: XLA's exact int8 x int8 -> int32 dots (float8: exactly
//              widened bfloat16 operands, float32 accumulation) per group, the float32 epilogue fused
//   kDecodeI8  csrc/cuda/decode_i8.cuh: int8 activations on int8 tensor cores (mma.m16n8k32.s8, sm_80+)
//   kGemmWgmmaA8  csrc/cuda/gemm_wgmma_a8.cuh: int8 / float8 activations above decode sizes on Hopper's
//              8-bit tensor cores (wgmma k32, sm_90a)
//   kGemmMmaA8 csrc/cuda/gemm_mma_a8.cuh: int8 activations above decode sizes on int8 tensor cores
//              (mma.m16n8k32.s8, sm_80+), where kGemmWgmmaA8 does not take the call
//   kWidenedF16  float8 activations widened to float16 (exact) on make_plan's 16-bit kernels, float32
//              accumulation and output, the float32 epilogue in XLA (widened_f16_takes)
enum class QActKernel : int { kXlaDot = 0, kDecodeI8 = 1, kGemmWgmmaA8 = 2, kGemmMmaA8 = 3, kWidenedF16 = 4 };
constexpr int kNumQActKernels = 5;

inline const char* qact_kernel_name(QActKernel k) {
  switch (k) {
    case QActKernel::kXlaDot: return "xla_dot";
    case QActKernel::kDecodeI8: return "decode_i8";
    case QActKernel::kGemmWgmmaA8: return "gemm_wgmma_a8";
    case QActKernel::kGemmMmaA8: return "gemm_mma_a8";
    case QActKernel::kWidenedF16: return "widened_f16";
  }
  return "?";
}

// What decode_i8 computes: int8 activations with weights whose element values are int8 (int8, int4 ..
// int1, uint4 .. uint1: the int8 row of formats.py QUANTIZED_A), mode none (the int32 sums) or scale
// with groups of whole 32-k mma steps (each group's exact int32 sum is scaled in float32). The zeros
// modes stay on kXlaDot.
constexpr bool decode_i8_takes(WFormat w_format, int mode, int64_t group_size, int64_t K) {
  const bool int8_values = w_format == WFormat::kInt8 || w_format == WFormat::kInt4 ||
                           w_format == WFormat::kInt2 || w_format == WFormat::kInt1 ||
                           w_format == WFormat::kUInt4 || w_format == WFormat::kUInt2 ||
                           w_format == WFormat::kUInt1;
  if (!int8_values || K <= 0 || K % packed_tile_k(format_bits(w_format)) != 0) return false;
  if (mode == static_cast<int>(ScaleMode::kNone)) return true;
  return mode == static_cast<int>(ScaleMode::kScale) && group_size > 0 && group_size % 32 == 0 &&
         K % group_size == 0;
}

// What gemm_mma_a8 computes: what decode_i8 computes (the same operands, modes and outputs), at any M.
constexpr bool gemm_mma_a8_takes(WFormat w_format, int mode, int64_t group_size, int64_t K) {
  return decode_i8_takes(w_format, mode, group_size, K);
}

// What gemm_wgmma_a8 computes (sm_90a), K a multiple of its 128-k stage:
//   int8 A with int8 / int4 / uint4 weights: mode none (the exact int32 sums), scale per channel
//     (applied to the int32 sums in float32 after the kernel) or in groups of one stage (each group's
//     exact int32 sum scaled in the kernel);
//   float8 A with float8_e4m3fn / float8_e5m2 / int4 weights: mode none, scale per channel (after the
//     kernel) or in groups of whole stages (in the kernel).
// Other group sizes and the zeros modes stay on kXlaDot.
constexpr int64_t kGemmA8Stage = 128;
constexpr bool is_float8(DType d) { return d == DType::kF8E4M3 || d == DType::kF8E5M2; }
constexpr bool gemm_wgmma_a8_takes(DType act, WFormat w_format, int mode, int64_t group_size, int64_t K) {
  if (K <= 0 || K % kGemmA8Stage != 0) return false;
  const bool none = mode == static_cast<int>(ScaleMode::kNone), scale = mode == static_cast<int>(ScaleMode::kScale);
  if (act == DType::kI8) {
    const bool formats = w_format == WFormat::kInt8 || w_format == WFormat::kInt4 || w_format == WFormat::kUInt4;
    return formats && (none || (scale && (group_size == K || group_size == kGemmA8Stage)));
  }
  if (is_float8(act)) {
    const bool formats = w_format == WFormat::kFP8E4M3 || w_format == WFormat::kFP8E5M2 || w_format == WFormat::kInt4;
    return formats && (none || (scale && group_size > 0 && group_size % kGemmA8Stage == 0 && K % group_size == 0));
  }
  return false;
}
// gemm_wgmma_a8's activation rows per CTA (its launcher asks this): 64 where M fits them; above that 128, or 256
// where the kernel keeps one accumulator set (`rows256`: int8 sums without group scales) and its launch takes
// less time. One CTA per SM, so a launch runs in rounds of num_sms CTAs, and a 256-row tile takes
// kGemmA8Rows256TimePct percent of a 128-row one's time: H100, kernel alone, int8 x int8, 23.7 against 18.1 us
// on 4096^2 (32 CTAs each, M = 256 against 128) and 53.6 against 40.8 us on 18944x3584 (148 CTAs, two rounds
// each). So 4096^2 at M = 256 runs 64 CTAs of 128 rows (one round, about 18 us) instead of 32 of 256 (23.7).
constexpr int kGemmA8Rows256TimePct = 131;
constexpr int kGemmA8WeightRows = 128;  // weight rows per CTA (8 bands, one per consumer warp)
constexpr int gemm_wgmma_a8_rows(int64_t M, int64_t N, bool rows256, int num_sms) {
  if (M <= 64) return 64;
  if (!rows256 || M <= 128 || num_sms <= 0) return 128;
  const int64_t cols = ceil_div(N, kGemmA8WeightRows);
  const int64_t rounds128 = (cols * ((M + 127) / 128) + num_sms - 1) / num_sms;
  const int64_t rounds256 = (cols * ((M + 255) / 256) + num_sms - 1) / num_sms;
  return rounds256 * kGemmA8Rows256TimePct < rounds128 * 100 ? 256 : 128;
}
// gemm_wgmma_a8's grid order: whether consecutive CTAs take the activation tiles of one weight tile (grid.x) rather
// than the weight tiles of one activation tile. One CTA runs per SM, and the CTAs that read the same weight tile
// share it through the L2 only while they run together. Weight tiles first, CTA j and CTA j + weight_tiles read
// the same weight: together in one round of num_sms CTAs only where weight_tiles <= num_sms / 2; past that each
// activation tile reads the weight again from memory. Activation tiles first, the CTAs of a weight tile run
// together; the activations (M x K bytes) are read once per weight tile, from the L2. Where the weight tiles fit in
// half a round the plain order measured faster (docs/KERNELS.md, gemm_wgmma_a8: Grid order).
constexpr bool gemm_a8_act_tiles_along_x(int64_t N, int num_sms) {
  return num_sms > 0 && ceil_div(N, kGemmA8WeightRows) > num_sms / 2;
}
// Whether the 8-bit kernels (decode_i8, gemm_mma_a8, gemm_wgmma_a8) apply the group scales in their main
// loop (groups smaller than K), rather than a per-channel scale in their epilogue (epilogue.cuh
// store_qact_sum): one float32 rounding of the exact int32 sums, and the main loop sums as in mode none
// (decode_i8 splits a CTA's K over its warps by whole groups, so one group per row would leave all of K
// to one warp).
constexpr bool a8_kernel_scales(int mode, int64_t group_size, int64_t K) {
  return mode == static_cast<int>(ScaleMode::kScale) && group_size != K;
}

// What the 16-bit kernels compute for float8 activations widened to float16: every e4m3fn / e5m2
// value (NaN and inf included) and every int4 value is a float16 and every product of two is exact in
// float32, so make_plan's kernels with float32 accumulation, mode none and float32 output return the
// quantized-activation semantics' S over all of K (float32 sums of exact products). That serves mode
// none and one group per row (per channel: scale, and int4's zeros modes), whose term (s * S,
// s * (S - z * Asum), ...) XLA applies to S in float32 after the kernel. Smaller groups stay on
// kXlaDot: the 16-bit kernels take scales in A's dtype (float16), and rounding the float32 scales to
// float16, or folding them into float16 weights (e5m2 weights reach 57344), would leave the float32
// bound.
constexpr bool widened_f16_takes(DType a_dtype, WFormat w_format, int mode, int64_t group_size, int64_t K) {
  const bool formats = w_format == WFormat::kFP8E4M3 || w_format == WFormat::kFP8E5M2 || w_format == WFormat::kInt4;
  return is_float8(a_dtype) && formats && K > 0 && (mode == static_cast<int>(ScaleMode::kNone) || group_size == K);
}

struct QActQuery {
  int64_t M = 0, K = 0;
  DType a_dtype = DType::kI8;
  WFormat w_format = WFormat::kInt8;
  int mode = 0;                  // a ScaleMode id
  int64_t group_size = 0;
  bool decode_i8 = false;        // the GPU can run decode_i8 (sm_80+, built with the CUDA kernels)
  // Measured threshold (bitblas_jax/gpu_plan.py): the largest M decode_i8 runs; XLA's dots above.
  int64_t decode_i8_max_m = 16;
  bool sm90 = false;             // the GPU can run gemm_wgmma_a8 (sm_90, built with the CUDA kernels)
  bool gemm_mma_a8 = false;      // the GPU can run gemm_mma_a8 (sm_80+, built with the CUDA kernels)
  bool widened_f16 = false;      // the GPU can run the 16-bit kernels (sm_80+, built with the CUDA kernels)
};

inline QActKernel quantized_activation_kernel(const QActQuery& q) {
  if (q.a_dtype == DType::kI8 && q.decode_i8 && q.M >= 1 && q.M <= q.decode_i8_max_m &&
      decode_i8_takes(q.w_format, q.mode, q.group_size, q.K))
    return QActKernel::kDecodeI8;
  if (q.sm90 && q.M > q.decode_i8_max_m && gemm_wgmma_a8_takes(q.a_dtype, q.w_format, q.mode, q.group_size, q.K))
    return QActKernel::kGemmWgmmaA8;
  if (q.a_dtype == DType::kI8 && q.gemm_mma_a8 && q.M > q.decode_i8_max_m &&
      gemm_mma_a8_takes(q.w_format, q.mode, q.group_size, q.K))
    return QActKernel::kGemmMmaA8;
  if (q.widened_f16 && q.M >= 1 && widened_f16_takes(q.a_dtype, q.w_format, q.mode, q.group_size, q.K))
    return QActKernel::kWidenedF16;
  return QActKernel::kXlaDot;
}

}  // namespace plan
}  // namespace bitblas_jax
