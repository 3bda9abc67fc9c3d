// gemm_cutlass (gemm_cutlass.h): the CUTLASS types and their launch (sm_90a; CUTLASS's headers). Included by
// inst_gemm_cutlass_{f16,bf16}.cu only.
#pragma once

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

#include "cutlass_packed_layout.h"

namespace bitblas_jax {
namespace gemm_cutlass_detail {

using namespace cute;

// CUTLASS computes D'[N, M] = W[N, K] * A^T with the weight as the register operand (its A), so both operands
// are K-major and D' column-major is C[M, N] row-major.
using LayoutAct = cutlass::layout::ColumnMajor;  // A^T: A [M, K] K-major
using LayoutOut = cutlass::layout::ColumnMajor;  // D' [N, M] == C [M, N] row-major
constexpr int kWeightAlign = 32;                 // 16 bytes of 4-bit codes
constexpr int kK = plan::kCutlassStageK;         // k per mainloop stage (the group size is a multiple)

template <class T, int ROWS>
struct CutlassGemm {
  static constexpr int kAlign = 8;  // 16 bytes of T
  using Tile = Shape<Int<plan::kCutlassWeightRows>, Int<ROWS>, Int<kK>>;
  using Cluster = Shape<_1, _1, _1>;
  // D = acc + bias[n] (bias per row of D'; a null bias reads as 0), rounded to T
  using Fusion = cutlass::epilogue::fusion::LinCombPerRowBias<T, float, T, T, float>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutOut, kAlign, T, LayoutOut, kAlign,
      cutlass::epilogue::TmaWarpSpecializedCooperative, Fusion>::CollectiveOp;
  // The codes as unsigned 4-bit (int4's are offset binary); the group terms carry scale and offset.
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cute::tuple<cutlass::uint4b_t, T, T>, PackedLayout4,
      kWeightAlign, T, LayoutAct, kAlign, float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

template <class T, int ROWS>
std::string run(const MatmulArgs& a, const T* S, const T* Z, cudaStream_t stream) {
  using G = typename CutlassGemm<T, ROWS>::Gemm;
  using GK = typename G::GemmKernel;
  const int N = static_cast<int>(a.N), M = static_cast<int>(a.M), K = static_cast<int>(a.K);
  const int64_t groups = a.K / a.group_size;

  int device = 0, sms = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return cudaGetErrorString(e);
  if (cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); e != cudaSuccess)
    return cudaGetErrorString(e);

  typename G::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = make_shape(N, M, K, 1);
  args.mainloop.ptr_A = reinterpret_cast<const cutlass::uint4b_t*>(a.W);
  args.mainloop.dA = make_packed_layout(N, K);
  args.mainloop.ptr_B = static_cast<const T*>(a.A);
  args.mainloop.dB = cutlass::make_cute_packed_stride(typename GK::StrideB{}, make_shape(M, K, 1));
  args.mainloop.ptr_S = S;
  args.mainloop.dS = cutlass::make_cute_packed_stride(typename GK::CollectiveMainloop::StrideScale{},
                                                      make_shape(N, static_cast<int>(groups), 1));
  args.mainloop.ptr_Z = Z;
  args.mainloop.group_size = static_cast<int>(a.group_size);
  args.epilogue.thread.alpha = 1.f;
  args.epilogue.thread.beta = 0.f;
  args.epilogue.thread.bias_ptr = static_cast<const T*>(a.bias);
  args.epilogue.ptr_C = nullptr;
  args.epilogue.dC = cutlass::make_cute_packed_stride(typename GK::StrideC{}, make_shape(N, M, 1));
  args.epilogue.ptr_D = static_cast<T*>(a.C);
  args.epilogue.dD = cutlass::make_cute_packed_stride(typename GK::StrideD{}, make_shape(N, M, 1));
  args.hw_info.device_id = device;
  args.hw_info.sm_count = sms;

  G gemm;
  if (cutlass::Status st = gemm.can_implement(args); st != cutlass::Status::kSuccess)
    return std::string("gemm_cutlass: CUTLASS cannot run this problem: ") + cutlass::cutlassGetStatusString(st);
  if (G::get_workspace_size(args) != 0) return "gemm_cutlass: CUTLASS asked for a workspace (persistent tiles take none)";
  if (cutlass::Status st = gemm.initialize(args, nullptr, stream); st != cutlass::Status::kSuccess)
    return std::string("gemm_cutlass: initialize: ") + cutlass::cutlassGetStatusString(st);
  if (cutlass::Status st = gemm.run(stream); st != cutlass::Status::kSuccess) {
    const cudaError_t e = cudaGetLastError();
    return std::string("gemm_cutlass: launch: ") + cutlass::cutlassGetStatusString(st) + " (" + cudaGetErrorString(e) + ")";
  }
  return "";
}

}  // namespace gemm_cutlass_detail

// The CUTLASS GEMM at tile id `tile` (plan::kCutlassTiles) on group terms already written.
template <class T>
std::string run_gemm_cutlass(const MatmulArgs& a, int tile, const void* S, const void* Z, cudaStream_t stream) {
  using gemm_cutlass_detail::run;
  const T* s = static_cast<const T*>(S);
  const T* z = static_cast<const T*>(Z);
  switch (tile) {
    case 0: return run<T, plan::kCutlassTiles[0].act_rows>(a, s, z, stream);
    case 1: return run<T, plan::kCutlassTiles[1].act_rows>(a, s, z, stream);
    case 2: return run<T, plan::kCutlassTiles[2].act_rows>(a, s, z, stream);
  }
  return "gemm_cutlass: bad tile " + std::to_string(tile);
}

}  // namespace bitblas_jax
