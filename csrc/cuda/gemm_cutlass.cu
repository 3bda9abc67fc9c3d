// gemm_cutlass (gemm_cutlass.h): the CUTLASS types, the group terms' preparation and the launch.
#include "gemm_cutlass.h"

#include <type_traits>

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
namespace {

using namespace cute;

// CUTLASS computes D'[N, M] = W[N, K] * A^T with the weight as the register operand (its A), so both operands
// are K-major and D' column-major is C[M, N] row-major.
using LayoutAct = cutlass::layout::ColumnMajor;  // A^T: A [M, K] K-major
using LayoutOut = cutlass::layout::ColumnMajor;  // D' [N, M] == C [M, N] row-major
constexpr int kWeightAlign = 32;                 // 16 bytes of 4-bit codes
constexpr int kK = 64;                           // k per mainloop stage (the group size must be a multiple)

template <class T, int ROWS>
struct CutlassGemm {
  static constexpr int kAlign = 8;  // 16 bytes of T
  using Tile = Shape<_128, Int<ROWS>, Int<kK>>;
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

template <class T>
__device__ __forceinline__ float to_f(T x) { return static_cast<float>(x); }

// The group terms, [G][N]: w = code * S + Z reproduces the mode's dequantization (kernel_api.h) with
// value = val_mul * code - val_off: S = val_mul s and Z = -(val_off + z) s (original), -(val_off + qz) s
// (quantized), -val_off s - z (rescale), -val_off s (scale; s = 1 for none).
template <class T>
__global__ void group_terms_kernel(const T* scale, const void* zeros, int mode, bool zeros_signed, float val_mul,
                                   float val_off, int64_t N, int64_t G, T* S, T* Z) {
  const int64_t count = N * G;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i / N, n = i % N;  // output [g][n]; inputs [n][g]
    const int64_t src = n * G + g;
    const float s = mode == static_cast<int>(ScaleMode::kNone) ? 1.f : to_f(scale[src]);
    float z = -val_off * s;
    if (mode == static_cast<int>(ScaleMode::kOriginal)) {
      z = -(val_off + to_f(static_cast<const T*>(zeros)[src])) * s;
    } else if (mode == static_cast<int>(ScaleMode::kRescale)) {
      z = -val_off * s - to_f(static_cast<const T*>(zeros)[src]);
    } else if (mode == static_cast<int>(ScaleMode::kQuantized)) {
      const uint8_t q = static_cast<const uint8_t*>(zeros)[src];
      z = -(val_off + (zeros_signed ? static_cast<float>(static_cast<int8_t>(q)) : static_cast<float>(q))) * s;
    }
    S[i] = T(val_mul * s);
    Z[i] = T(z);
  }
}

template <class T, int ROWS>
std::string run(const MatmulArgs& a, T* S, T* Z, float val_mul, float val_off, cudaStream_t stream) {
  using G = typename CutlassGemm<T, ROWS>::Gemm;
  using GK = typename G::GemmKernel;
  const int N = static_cast<int>(a.N), M = static_cast<int>(a.M), K = static_cast<int>(a.K);
  const int64_t groups = a.K / a.group_size;
  const int threads = 256, blocks = static_cast<int>(std::min<int64_t>((N * groups + threads - 1) / threads, 4096));
  group_terms_kernel<T><<<blocks, threads, 0, stream>>>(static_cast<const T*>(a.scale), a.zeros,
                                                        static_cast<int>(a.mode), a.w_format == WFormat::kInt4,
                                                        val_mul, val_off, a.N, groups, S, Z);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return std::string("CUDA error in gemm_cutlass's group terms: ") + cudaGetErrorString(e);

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

template <class T>
std::string run_tile(const MatmulArgs& a, int tile, void* workspace, float val_mul, float val_off,
                     cudaStream_t stream) {
  T* S = static_cast<T*>(workspace);
  T* Z = S + (a.K / a.group_size) * a.N;
  if (tile == 1) return run<T, kGemmCutlassRows[1]>(a, S, Z, val_mul, val_off, stream);
  return run<T, kGemmCutlassRows[0]>(a, S, Z, val_mul, val_off, stream);
}

}  // namespace

std::string launch_gemm_cutlass(const MatmulArgs& a, int tile, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream) {
  if (a.w_format != WFormat::kInt4 && a.w_format != WFormat::kUInt4)
    return "gemm_cutlass: takes int4 and uint4 weights";
  if ((a.a_dtype != DType::kF16 && a.a_dtype != DType::kBF16) || a.out_dtype != a.a_dtype ||
      a.accum_dtype != DType::kF32)
    return "gemm_cutlass: float16 or bfloat16 activations and output of the same type, float32 accumulation";
  if (a.group_size <= 0 || a.K % a.group_size || (a.group_size % kK && a.group_size != a.K) || a.K % kK)
    return "gemm_cutlass: K a multiple of 64, group_size a multiple of 64 dividing K";
  if (a.N % 16 || a.M < 0) return "gemm_cutlass: N a multiple of 16, M >= 0";
  if (tile != 0 && tile != 1) return "gemm_cutlass: tile " + std::to_string(tile) + " (0 or 1)";
  if (a.M == 0) return "";
  if (a.mode != ScaleMode::kNone && !a.scale) return "gemm_cutlass: this mode needs scale";
  if (a.mode >= ScaleMode::kOriginal && !a.zeros) return "gemm_cutlass: this mode needs zeros";
  if (!a.A || !a.W || !a.C || !workspace) return "gemm_cutlass: A, W, C and the workspace must not be null";
  if (workspace_bytes < static_cast<size_t>(gemm_cutlass_workspace_bytes(a.N, a.K, a.group_size)))
    return "gemm_cutlass: workspace too small";
  for (const void* p : {static_cast<const void*>(a.A), static_cast<const void*>(a.W), static_cast<const void*>(a.C)})
    if (reinterpret_cast<uintptr_t>(p) % 16) return "gemm_cutlass: A, W and C must be 16-byte aligned";
  const float val_mul = 1.f, val_off = a.w_format == WFormat::kInt4 ? 8.f : 0.f;  // int4: offset binary
  return a.a_dtype == DType::kF16 ? run_tile<cutlass::half_t>(a, tile, workspace, val_mul, val_off, stream)
                                  : run_tile<cutlass::bfloat16_t>(a, tile, workspace, val_mul, val_off, stream);
}

}  // namespace bitblas_jax
