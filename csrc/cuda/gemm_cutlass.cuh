// gemm_cutlass (gemm_cutlass.h): the CUTLASS types and their launch (sm_90a; CUTLASS's headers). Included by
// inst_gemm_cutlass_{w4,w8}_{f16,bf16}[_stream_k].cu only, each of which defines CUTLASS_ENABLE_GDC_FOR_SM90 first:
// the GEMM waits on the grid before it (the group terms kernel), so it launches as that grid's programmatic
// dependent; the stream-K tiles through a scheduler that compiles with it (cutlass_stream_k_gdc.h).
#pragma once

#include <algorithm>
#include <string>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/plan.h"

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "cutlass/arch/grid_dependency_control.h"

// A unit that asks for griddepcontrol (its GEMM launched as a programmatic dependent, reading the group terms
// only after it waits) must get it in its device code, or the GEMM would read the terms before they are written.
#if defined(CUTLASS_ENABLE_GDC_FOR_SM90) && defined(__CUDA_ARCH__) && !defined(CUTLASS_GDC_ENABLED)
#error "gemm_cutlass: CUTLASS_ENABLE_GDC_FOR_SM90 compiled no griddepcontrol here (sm_90a and CUDA 12+ needed)"
#endif

#include "cutlass_packed_layout.h"
#include "gemm_cutlass.h"
#include "cutlass_stream_k_gdc.h"
#include "cutlass_table4_convert.h"
#include "cutlass_u8_convert.h"

namespace bitblas_jax {
namespace gemm_cutlass_detail {

using namespace cute;

// A stream-K launch's flags: a 32-bit flag per consumer warpgroup for each tile its CTAs may share
// (plan::kCutlassStreamKMaxSharedTiles), rounded as the plan rounds them, plus CUTLASS's workspace alignment.
constexpr int64_t kStreamKClearBytes =
    plan::ceil_div(plan::kCutlassStreamKMaxSharedTiles * plan::kCutlassStreamKFlagBytes, 128) * 128 + 128;

#ifdef CUTLASS_ENABLE_GDC_FOR_SM90
constexpr bool kWaitsOnPriorGrid = true;   // griddepcontrol.wait before the producers' first loads
#else
constexpr bool kWaitsOnPriorGrid = false;
#endif

// CUTLASS computes D'[N, M] = W[N, K] * A^T with the weight as the register operand (its A), so both operands
// are K-major and D' column-major is C[M, N] row-major.
using LayoutAct = cutlass::layout::ColumnMajor;  // A^T: A [M, K] K-major
using LayoutOut = cutlass::layout::ColumnMajor;  // D' [N, M] == C [M, N] row-major
constexpr int kK = plan::kCutlassStageK;         // k per mainloop stage (the group size is a multiple)

// The weight's code type as CUTLASS reads it (a unit's CODE): cutlass::uint4b_t or uint8_t for the integer formats
// (unsigned: int formats' offset-binary codes too; the group terms carry scale and offset), Table4Code<F> for the
// 4-bit table formats (cutlass_table4_convert.h). Its width picks the packed layout.
template <class CODE>
constexpr int kCodeBits = cute::sizeof_bits_v<CODE>;

// The epilogue's work: D = acc + bias[n] rounded to T (bias per row of D'; a null bias reads as 0), or, K
// split, the float32 partial as it is (the reduction adds the bias).
template <class T, class Out>
using Fusion = cute::conditional_t<cute::is_same_v<Out, float>,
                                   cutlass::epilogue::fusion::LinearCombination<float, float, float, float>,
                                   cutlass::epilogue::fusion::LinCombPerRowBias<T, float, T, T, float>>;

// STREAM_K: CUTLASS's stream-K scheduler (plan.h: the stream_k tiles; cutlass_stream_k_gdc.h), else its persistent one.
template <class T, class CODE, int WROWS, int ROWS, class Out, bool STREAM_K = false>
struct CutlassGemm {
  static constexpr int kAlign = 8;                      // 16 bytes of T
  static constexpr int kAlignOut = 16 / sizeof(Out);    // 16 bytes of the output
  static constexpr int kWeightAlign = 128 / kCodeBits<CODE>;  // 16 bytes of codes
  using Tile = Shape<Int<WROWS>, Int<ROWS>, Int<kK>>;
  using Cluster = Shape<_1, _1, _1>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutOut, kAlignOut, Out, LayoutOut,
      kAlignOut, cutlass::epilogue::TmaWarpSpecializedCooperative, Fusion<T, Out>>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cute::tuple<CODE, T, T>, PackedLayout<kCodeBits<CODE>>,
      kWeightAlign, T, LayoutAct, kAlign, float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;
  using Scheduler = cute::conditional_t<STREAM_K, StreamKSchedulerWithGdc, void>;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue, Scheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

// One launch. Persistent tiles: the K split `split` ways as CUTLASS's batch mode (part l of K is batch l: the
// weight's packed layout, A's columns, the group terms' rows), writing D [split][M][N] of Out (C itself where
// split is 1). STREAM_K: one batch, K shared by CUTLASS's stream-K scheduler (split 1) or split `split` ways by it
// (DecompositionMode::SplitK), writing C; stream_k_ws, stream_k_bytes hold its workspace. S, Z: [K / group][N]
// with group = a.group_size (a whole number of groups per batch). write_terms launches the kernel that writes S and Z and
// clears the stream-K flags; the GEMM follows it directly and, with pdl, launches as its programmatic dependent
// (it waits on that kernel before its first load, so before it reads the terms or touches a flag).
template <class T, class CODE, int WROWS, int ROWS, class Out, bool STREAM_K = false>
std::string run(const MatmulArgs& a, int split, bool pdl, const T* S, const T* Z, const WriteTerms& write_terms,
                Out* D, cudaStream_t stream, void* stream_k_ws = nullptr, int64_t stream_k_bytes = 0) {
  using G = typename CutlassGemm<T, CODE, WROWS, ROWS, Out, STREAM_K>::Gemm;
  using GK = typename G::GemmKernel;
  const int N = static_cast<int>(a.N), M = static_cast<int>(a.M), K = static_cast<int>(a.K);
  const int batches = STREAM_K ? 1 : split;
  const int part = K / batches;
  const int64_t part_groups = part / a.group_size;

  int device = 0, sms = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return cudaGetErrorString(e);
  if (cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); e != cudaSuccess)
    return cudaGetErrorString(e);

  typename G::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = make_shape(N, M, part, batches);
  args.mainloop.ptr_A = reinterpret_cast<const CODE*>(a.W);
  args.mainloop.dA = make_packed_layout<kCodeBits<CODE>>(N, K, batches);
  args.mainloop.ptr_B = static_cast<const T*>(a.A);
  args.mainloop.dB = cutlass::make_cute_packed_stride(typename GK::StrideB{}, make_shape(M, K, 1));
  get<2>(args.mainloop.dB) = part;  // A's row stride stays K; part l starts l * part columns in
  args.mainloop.ptr_S = S;
  args.mainloop.dS = cutlass::make_cute_packed_stride(typename GK::CollectiveMainloop::StrideScale{},
                                                      make_shape(N, static_cast<int>(part_groups * batches), 1));
  get<2>(args.mainloop.dS) = part_groups * N;
  args.mainloop.ptr_Z = Z;
  args.mainloop.group_size = static_cast<int>(a.group_size);
  args.epilogue.thread.alpha = 1.f;
  args.epilogue.thread.beta = 0.f;
  if constexpr (!cute::is_same_v<Out, float>) args.epilogue.thread.bias_ptr = static_cast<const T*>(a.bias);
  args.epilogue.ptr_C = nullptr;
  args.epilogue.dC = cutlass::make_cute_packed_stride(typename GK::StrideC{}, make_shape(N, M, batches));
  args.epilogue.ptr_D = D;
  args.epilogue.dD = cutlass::make_cute_packed_stride(typename GK::StrideD{}, make_shape(N, M, batches));
  args.hw_info.device_id = device;
  args.hw_info.sm_count = sms;
  void* ws = nullptr;
  if constexpr (STREAM_K) {
    // split 1: the partly filled last waves' stages dealt evenly to the SMs; split: every tile's k range in
    // `split` parts, one CTA each. Either way the shared tiles are added in k order (the same sum every run).
    using Decomposition = typename GK::TileScheduler::DecompositionMode;
    using Reduction = typename GK::TileScheduler::ReductionMode;
    args.scheduler.decomposition_mode = split > 1 ? Decomposition::SplitK : Decomposition::StreamK;
    args.scheduler.splits = split;
    args.scheduler.reduction_mode = Reduction::Deterministic;
    args.hw_info.sm_count = static_cast<int>(plan::gemm_cutlass_stream_k_grid(sms));  // what the plan sized
    ws = stream_k_ws;
  }

  if (cutlass::Status st = G::can_implement(args); st != cutlass::Status::kSuccess)
    return std::string("gemm_cutlass: CUTLASS cannot run this problem: ") + cutlass::cutlassGetStatusString(st);
  const size_t ws_need = G::get_workspace_size(args);
  if (ws_need > static_cast<size_t>(stream_k_bytes) || (ws_need > 0 && ws == nullptr))
    return "gemm_cutlass: CUTLASS asked for a workspace of " + std::to_string(ws_need) + " bytes, the plan gave " +
           std::to_string(stream_k_bytes) + " (plan.h gemm_cutlass_stream_k_bytes)";
  // The kernel's parameters without CUTLASS's workspace initialization (GemmUniversalAdapter::initialize): that
  // clears a stream-K tile's flags with a memset of its own, a node and an idle gap between the terms kernel and
  // the GEMM (docs/KERNELS.md, Launch). The group terms kernel clears them instead: CUTLASS keeps them at the end
  // of its workspace, after the partial tiles (cutlass/gemm/kernel/tile_scheduler_params.h), one per tile that
  // has a partial tile, so the workspace's last kStreamKClearBytes bytes (or all of it, if smaller) hold them
  // (the check above keeps CUTLASS's tiles within the plan's count); clearing some partial tiles too is harmless
  // (each is written before it is read). The persistent tiles' workspace is empty.
  typename G::Params params = GK::to_underlying_arguments(args, ws);
  if (cudaError_t e = cudaFuncSetAttribute(cutlass::device_kernel<GK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(GK::SharedStorageSize));
      e != cudaSuccess)
    return std::string("gemm_cutlass: shared memory attribute: ") + cudaGetErrorString(e);
  if (ws_need % 16 != 0) return "gemm_cutlass: CUTLASS's workspace is not whole 16-byte vectors";
  const size_t clear_bytes = std::min(ws_need, static_cast<size_t>(kStreamKClearBytes));
  if (std::string err = write_terms(clear_bytes ? static_cast<uint8_t*>(ws) + ws_need - clear_bytes : nullptr,
                                    clear_bytes);
      !err.empty())
    return err;
  // the GEMM's CTAs placed and set up (barriers, TMA descriptors) while the group terms kernel before it
  // finishes; its producer warps wait for that kernel's writes before their first load
  const bool launch_with_pdl = pdl && kWaitsOnPriorGrid;
  if (cutlass::Status st = G::run(params, stream, nullptr, launch_with_pdl); st != cutlass::Status::kSuccess) {
    const cudaError_t e = cudaGetLastError();
    return std::string("gemm_cutlass: launch: ") + cutlass::cutlassGetStatusString(st) + " (" + cudaGetErrorString(e) + ")";
  }
  return "";
}

// Whether CODE is a table format's code type (Table4Code<F>: nf4, fp4_e2m1), whose units hold only the tiles
// plan::gemm_cutlass_tile_takes_tables admits.
template <class CODE>
constexpr bool kTableCode = false;
template <WFormat F>
constexpr bool kTableCode<Table4Code<F>> = true;

// Tile id TILE (plan::kCutlassTiles): split 1 into C; split > 1 (plan::gemm_cutlass_splits_k) float32 partials
// into `scratch`; a stream-K tile (K shared or split in the kernel) into C, with CUTLASS's workspace in
// `scratch`.
// scratch: the workspace past the group terms.
// STREAM_K_TILES: which tiles this unit holds (the others return an error).
template <class T, class CODE, int TILE, bool STREAM_K_TILES>
std::string run_tile(const MatmulArgs& a, int split, bool pdl, const T* S, const T* Z, const WriteTerms& write_terms,
                     void* scratch, cudaStream_t stream) {
  constexpr int kWRows = plan::kCutlassTiles[TILE].weight_rows;
  constexpr int kRows = plan::kCutlassTiles[TILE].act_rows;
  if constexpr (plan::kCutlassTiles[TILE].stream_k != STREAM_K_TILES ||
                (kTableCode<CODE> && !plan::gemm_cutlass_tile_takes_tables(TILE))) {
    return "gemm_cutlass: tile " + std::to_string(TILE) + " is not in this unit";
  } else if constexpr (plan::kCutlassTiles[TILE].stream_k) {
    if (!plan::gemm_cutlass_in_kernel_split_fits(a.M, a.N, TILE, split))
      return "gemm_cutlass: a stream-K tile splits K only where its output tiles' flags are those a launch clears";
    return run<T, CODE, kWRows, kRows, T, true>(a, split, pdl, S, Z, write_terms, static_cast<T*>(a.C), stream,
                                                scratch, plan::gemm_cutlass_stream_k_bytes(a.M, a.N, TILE, split));
  } else {
    if (split == 1) return run<T, CODE, kWRows, kRows, T>(a, 1, pdl, S, Z, write_terms, static_cast<T*>(a.C), stream);
    if constexpr (plan::gemm_cutlass_splits_k(TILE))
      return run<T, CODE, kWRows, kRows, float>(a, split, pdl, S, Z, write_terms, static_cast<float*>(scratch), stream);
    return "gemm_cutlass: the " + std::to_string(kWRows) + " x " + std::to_string(kRows) + " tile does not split K";
  }
}

}  // namespace gemm_cutlass_detail

// The CUTLASS GEMM of CODE codes at tile id `tile` (plan::kCutlassTiles) on group terms already written; K
// split `split` ways: a persistent tile's float32 partials [split][M][N] into `scratch` (the caller reduces them),
// else C (a stream-K tile, K shared or split in the kernel: CUTLASS's workspace in `scratch`). A unit holds the
// persistent tiles or the stream-K ones.
template <class T, class CODE, bool STREAM_K_TILES>
std::string run_gemm_cutlass(const MatmulArgs& a, int tile, int split, bool pdl, const void* S, const void* Z,
                             const WriteTerms& write_terms, void* scratch, cudaStream_t stream) {
  using gemm_cutlass_detail::run_tile;
  const T* s = static_cast<const T*>(S);
  const T* z = static_cast<const T*>(Z);
  static_assert(plan::kNumCutlassTiles == 8, "a case per tile");
  switch (tile) {
    case 0: return run_tile<T, CODE, 0, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 1: return run_tile<T, CODE, 1, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 2: return run_tile<T, CODE, 2, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 3: return run_tile<T, CODE, 3, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 4: return run_tile<T, CODE, 4, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 5: return run_tile<T, CODE, 5, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 6: return run_tile<T, CODE, 6, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
    case 7: return run_tile<T, CODE, 7, STREAM_K_TILES>(a, split, pdl, s, z, write_terms, scratch, stream);
  }
  return "gemm_cutlass: bad tile " + std::to_string(tile);
}

// The body of an instantiation unit: gemm_cutlass.h's `name` for codes of type CODE, activations of T and the
// tiles of one scheduler.
#define BBJ_GEMM_CUTLASS_UNIT(name, T, CODE, STREAM_K_TILES)                                                    \
  std::string name(const MatmulArgs& a, int tile, int split, bool pdl, const void* S, const void* Z,           \
                   const WriteTerms& write_terms, void* scratch, cudaStream_t stream) {                         \
    return run_gemm_cutlass<T, CODE, STREAM_K_TILES>(a, tile, split, pdl, S, Z, write_terms, scratch, stream);  \
  }

}  // namespace bitblas_jax
