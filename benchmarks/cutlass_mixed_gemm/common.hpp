// common.hpp -- shared types and the per-variant benchmark driver for cutlass_mixed_gemm.
//
// Problem (model view):   C[M,N] = X[M,K] (fp16) * dequant(W)[N,K]^T,  W int4 (signed), group size 128 along K.
// CUTLASS view (transposed so the narrow type is operand A and goes through the register file):
//     D'[N,M] = A[N,K] * B[K,M]   with   A = W  (RowMajor  N x K, i.e. K-major)
//                                        B = X^T (ColumnMajor K x M, i.e. X row-major M x K, K-major)
//                                        D' ColumnMajor N x M  ==  C[M,N] row-major (ld = N).
//     CUTLASS problem shape (M', N', K, L) = (N, M, K, 1).
// Scales/zeros: shape (N, K/128, 1), "MN-major" -> element (n, g) at S[g*N + n].
// Mixed mode dequant (CUTLASS ConvertAndScale / ConvertAndScaleWithZero): w = fp16(q) * s  [+ z].
#pragma once

#include <cstdio>
#include <cstdint>
#include <vector>
#include <string>
#include <algorithm>
#include <chrono>
#include <thread>
#include <memory>

#include <cuda_runtime.h>

#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/numeric_types.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "cutlass/util/mixed_dtype_utils.hpp"   // compute_memory_reordering_atom, reorder_tensor
#include "cutlass_packed_layout.h"                // bitblas_jax::make_packed_layout

namespace bench {

using namespace cute;

using ElemX   = cutlass::half_t;     // activations (operand B in CUTLASS terms)
using ElemW   = cutlass::int4b_t;    // quantized weights (operand A), signed two's complement nibbles
using ElemS   = cutlass::half_t;     // scales
using ElemZ   = cutlass::half_t;     // zeros
using ElemD   = cutlass::half_t;     // output
using ElemAcc = float;

using LayoutA = cutlass::layout::RowMajor;      // W [N,K] K-major
using LayoutB = cutlass::layout::ColumnMajor;   // X^T: X [M,K] K-major
using LayoutD = cutlass::layout::ColumnMajor;   // D'[N,M] col-major == C[M,N] row-major

constexpr int AlignW = 128 / cutlass::sizeof_bits<ElemW>::value;   // 32 elements
constexpr int AlignH = 128 / cutlass::sizeof_bits<ElemX>::value;   // 8 elements
constexpr int AlignD = 128 / cutlass::sizeof_bits<ElemD>::value;   // 8 elements

constexpr int kGroup = 128;

using StrideW = cutlass::detail::TagToStrideA_t<LayoutA>;   // Stride<int64_t, _1, int64_t>

// Offline "shuffled" weight layout of example 55 (int4 x 16-bit):
//  * compute_memory_reordering_atom places the values one thread reads for one GMMA A-fragment contiguously
//  * ValueShuffle [0,2,4,6,1,3,5,7] inside each 8-nibble word enables the fast LOP3 int4->fp16 converter
//    (LayoutAwareConvertImpl<int4b_t, half_t, Layout<Shape<_2,_4>,Stride<_4,_1>>, Layout<_8>>).
using ValueShuffle   = Layout<Shape<_2,_4>, Stride<_4,_1>>;
using MmaAtomShape   = Layout<Shape<_1,_1>>;                    // 1 shuffle atom (as in example 55)
using LayoutAtomQuant = decltype(cutlass::compute_memory_reordering_atom<ElemX, MmaAtomShape, ValueShuffle>());
using LayoutWR = decltype(cute::tile_to_shape(LayoutAtomQuant{}, Layout<Shape<int,int,int>, StrideW>{}));

// bitblas_jax's packed 4-bit layout as a cute layout: the library's own (csrc/cuda/cutlass_packed_layout.h, which
// gemm_cutlass hands the collective). Its words are the shuffled layout's (tests/layout_vs_packed.cu).
using bitblas_jax::make_packed_layout;
using LayoutWP = bitblas_jax::PackedLayout<4>;

// Which weight buffer a mixed variant reads. W_PACKED_U4: the packed buffer with bitblas_jax's own int4 codes,
// offset binary (value + 8), read as uint4b_t with zeros z - 8 s (the library's int4 through CUTLASS).
enum WeightOrder { W_PLAIN = 0, W_SHUFFLED = 1, W_PACKED = 2, W_PACKED_U4 = 3 };

enum Kind { KIND_F16 = 0, KIND_MIXED_S = 1, KIND_MIXED_SZ = 2 };

struct Result {
  bool ok = false;            // ran (can_implement/initialize/run all fine)
  std::string err;
  double us = 0.0;            // median per-launch time
  double min_us = 0.0;
  double max_rel_err = -1.0;  // max |out-ref| / max |ref| over the sample
  bool pass = false;
  std::string info;           // smem / stages / grid (printed with --verbose)
};

struct Problem;
typedef void (*CheckFn)(const Problem&, int kind, bool bf16, Result&);

struct Problem {
  int N = 0, K = 0, M = 0;
  int nc = 1;      // rotation count for GEMM objects / X / D copies
  int nc_q = 1;    // int4 weight copies (plain and reordered), scales, zeros
  int nc_h = 1;    // fp16 weight copies (baseline)
  std::vector<void*> Wq, Wr, Wp, Wu, Wh, S, Z, Zu, X, D;  // int4 plain / shuffled / packed / packed offset-binary,
                                                          // fp16, scales, zeros (Zu: z - 8 s), X, D
  std::vector<void*> Whb, Sb, Zb, Zub, Xb;                // the bfloat16 variants' weights, scales, zeros, X
  LayoutWR layout_r;
  LayoutWP layout_p;
  int sm_count = 132;
  int iters = 20, warmup = 5;
  double timeout_s = 20.0;
  cudaStream_t stream = nullptr;
  cudaEvent_t* ev = nullptr;   // 2*iters events (start,stop pairs)
  CheckFn check = nullptr;
};

struct Variant {
  const char* name;
  const char* desc;
  int kind;
  void (*run)(const Problem&, Result&);
  bool deferred;   // run in a second pass after the whole sweep (stream-K: known hang reports, CUTLASS #1917)
  bool bf16;       // bfloat16 activations, scales and output (compared with the bf16 baselines)
};

// Wait for all work on `stream` with a watchdog: a hung kernel cannot be recovered, so we exit.
inline cudaError_t wait_stream(cudaStream_t stream, double timeout_s, const char* what) {
  cudaEvent_t e;
  cudaError_t st = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  if (st != cudaSuccess) return st;
  st = cudaEventRecord(e, stream);
  if (st != cudaSuccess) { cudaEventDestroy(e); return st; }
  auto t0 = std::chrono::steady_clock::now();
  while (true) {
    st = cudaEventQuery(e);
    if (st != cudaErrorNotReady) break;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (el > timeout_s) {
      printf("FATAL: timeout (%.1f s) waiting for %s -- kernel hang? Rerun with --variants excluding it.\n", timeout_s, what);
      fflush(stdout);
      std::_Exit(3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  cudaEventDestroy(e);
  return st;
}

// A kernel-side fault leaves the context unusable: report and exit (so the log says which variant).
inline void fatal_if_device_error(cudaError_t st, const char* what) {
  if (st != cudaSuccess) {
    printf("FATAL: device error after %s: %s (%s). Context is unusable; rerun with --variants excluding it.\n",
           what, cudaGetErrorName(st), cudaGetErrorString(st));
    fflush(stdout);
    std::_Exit(4);
  }
}

// ------------------------------------------------------------------------------------------------
// GEMM type builders
// ------------------------------------------------------------------------------------------------
// T: the activations', scales', zeros' and output's type (half_t, or bfloat16_t for the bf16 variants).
// The TMA epilogue; EpiSched: TmaWarpSpecializedCooperative for the cooperative mainloop, TmaWarpSpecialized for
// ping-pong (EpiSchedFor below).
template <class Tile, class Cluster, class T, class EpiSched>
using EpilogueTma = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
    Tile, Cluster, cutlass::epilogue::collective::EpilogueTileAuto,
    ElemAcc, ElemAcc,
    void, LayoutD, AlignD,          // no C operand (beta = 0): no smem / no loads for C
    T, LayoutD, AlignD,
    EpiSched>::CollectiveOp;

// The epilogue schedule that goes with a mainloop schedule.
template <class MainSched>
using EpiSchedFor = cute::conditional_t<cute::is_same_v<MainSched, cutlass::gemm::KernelTmaWarpSpecializedPingpong>,
                                        cutlass::epilogue::TmaWarpSpecialized,
                                        cutlass::epilogue::TmaWarpSpecializedCooperative>;

// Mixed input: ElemATuple = cute::tuple<int4b_t, half_t> (scale only) or tuple<int4b_t, half_t, half_t> (scale+zero)
// LayoutWArg = RowMajor tag (plain K-major), LayoutWR (offline reordered) or LayoutWP (bitblas_jax's packed).
// MainSched: the cooperative kernel (two consumer warpgroups on one tile) or ping-pong (each on its own tile,
// one's mainloop overlapping the other's epilogue).
template <class Tile, class Cluster, class ElemATuple, class LayoutWArg, class TileScheduler = void, class T = ElemX,
          class MainSched = cutlass::gemm::KernelTmaWarpSpecializedCooperative>
struct MixedGemm {
  using Epi = EpilogueTma<Tile, Cluster, T, EpiSchedFor<MainSched>>;
  using Main = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      ElemATuple, LayoutWArg, AlignW,
      T, LayoutB, AlignH,
      ElemAcc, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epi::SharedStorage))>,
      MainSched>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int,int,int,int>, Main, Epi, TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

// fp16 x fp16 baseline, same transposed formulation (A = dequantized W [N,K] K-major, B = X K-major).
template <class Tile, class Cluster, class Sched = cutlass::gemm::collective::KernelScheduleAuto, class T = ElemX>
struct F16Gemm {
  using Epi = EpilogueTma<Tile, Cluster, T, EpiSchedFor<Sched>>;
  using Main = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      T, LayoutA, AlignH,
      T, LayoutB, AlignH,
      ElemAcc, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epi::SharedStorage))>,
      Sched>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int,int,int,int>, Main, Epi>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

inline const char* status_str(cutlass::Status s) { return cutlass::cutlassGetStatusString(s); }

// ------------------------------------------------------------------------------------------------
// Benchmark driver for one GEMM type on one (shape, M)
// ------------------------------------------------------------------------------------------------
template <class Gemm, int KindV, int Order, bool StreamK, bool BF16 = false>
void bench(const Problem& p, Result& r) {
  using GK = typename Gemm::GemmKernel;
  using StrideA = typename GK::StrideA;
  using StrideB = typename GK::StrideB;
  using StrideC = typename GK::StrideC;
  using StrideD = typename GK::StrideD;
  using Args = typename Gemm::Arguments;
  using Params = typename Gemm::Params;

  const int N = p.N, M = p.M, K = p.K;
  char buf[512];

  std::vector<Args> args(p.nc);
  for (int c = 0; c < p.nc; ++c) {
    Args a{};
    a.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    a.problem_shape = make_shape(N, M, K, 1);        // (M', N', K, L) = (N, M, K, 1)

    const int wc = c % (KindV == KIND_F16 ? p.nc_h : p.nc_q);
    if constexpr (KindV == KIND_F16) {
      a.mainloop.ptr_A = reinterpret_cast<decltype(a.mainloop.ptr_A)>(BF16 ? p.Whb[wc] : p.Wh[wc]);
      a.mainloop.dA = cutlass::make_cute_packed_stride(StrideA{}, make_shape(N, K, 1));
    } else {
      using CM = typename GK::CollectiveMainloop;
      if constexpr (Order == W_SHUFFLED) {
        static_assert(std::is_same_v<StrideA, LayoutWR>, "shuffled variant must use the reordered layout");
        a.mainloop.ptr_A = reinterpret_cast<ElemW const*>(p.Wr[wc]);
        a.mainloop.dA = p.layout_r;
      } else if constexpr (Order == W_PACKED || Order == W_PACKED_U4) {
        static_assert(std::is_same_v<StrideA, LayoutWP>, "packed variant must use the packed layout");
        a.mainloop.ptr_A = reinterpret_cast<decltype(a.mainloop.ptr_A)>(Order == W_PACKED ? p.Wp[wc] : p.Wu[wc]);
        a.mainloop.dA = p.layout_p;
      } else {
        a.mainloop.ptr_A = reinterpret_cast<ElemW const*>(p.Wq[wc]);
        a.mainloop.dA = cutlass::make_cute_packed_stride(StrideA{}, make_shape(N, K, 1));
      }
      const int scale_k = (K + kGroup - 1) / kGroup;
      a.mainloop.ptr_S = reinterpret_cast<decltype(a.mainloop.ptr_S)>(BF16 ? p.Sb[wc] : p.S[wc]);
      a.mainloop.dS = cutlass::make_cute_packed_stride(typename CM::StrideScale{}, make_shape(N, scale_k, 1));
      a.mainloop.group_size = kGroup;
      if constexpr (KindV == KIND_MIXED_SZ) {
        const auto& z = Order == W_PACKED_U4 ? (BF16 ? p.Zub : p.Zu) : (BF16 ? p.Zb : p.Z);
        a.mainloop.ptr_Z = reinterpret_cast<decltype(a.mainloop.ptr_Z)>(z[wc]);
      } else {
        a.mainloop.ptr_Z = nullptr;
      }
    }
    a.mainloop.ptr_B = reinterpret_cast<decltype(a.mainloop.ptr_B)>(BF16 ? p.Xb[c] : p.X[c]);
    a.mainloop.dB = cutlass::make_cute_packed_stride(StrideB{}, make_shape(M, K, 1));

    a.epilogue.thread.alpha = 1.0f;
    a.epilogue.thread.beta = 0.0f;
    a.epilogue.ptr_C = nullptr;
    a.epilogue.dC = cutlass::make_cute_packed_stride(StrideC{}, make_shape(N, M, 1));
    a.epilogue.ptr_D = reinterpret_cast<decltype(a.epilogue.ptr_D)>(p.D[c]);   // 2 bytes an element either way
    a.epilogue.dD = cutlass::make_cute_packed_stride(StrideD{}, make_shape(N, M, 1));

    a.hw_info.device_id = 0;
    a.hw_info.sm_count = p.sm_count;
    args[c] = a;
  }

  Gemm gemm;
  cutlass::Status st = gemm.can_implement(args[0]);
  if (st != cutlass::Status::kSuccess) {
    snprintf(buf, sizeof(buf), "can_implement failed: %s", status_str(st));
    r.err = buf; return;
  }
  size_t ws_size = 0;
  for (int c = 0; c < p.nc; ++c) ws_size = std::max(ws_size, Gemm::get_workspace_size(args[c]));
  void* ws = nullptr;
  if (ws_size > 0) {
    cudaError_t ce = cudaMalloc(&ws, ws_size);
    if (ce != cudaSuccess) {
      snprintf(buf, sizeof(buf), "cudaMalloc(workspace %zu B) failed: %s", ws_size, cudaGetErrorString(ce));
      r.err = buf; return;
    }
  }
  struct WsGuard { void* p; ~WsGuard() { if (p) cudaFree(p); } } ws_guard{ws};

  std::vector<Params> params(p.nc);
  for (int c = 0; c < p.nc; ++c) {
    st = gemm.initialize(args[c], ws, p.stream);
    if (st != cutlass::Status::kSuccess) {
      cudaGetLastError();
      snprintf(buf, sizeof(buf), "initialize failed (copy %d): %s", c, status_str(st));
      r.err = buf; return;
    }
    params[c] = gemm.params();
  }

  {
    dim3 grid = Gemm::get_grid_shape(params[0]);
    snprintf(buf, sizeof(buf), "smem=%dB stages=%d grid=%ux%ux%u threads=%u ws=%zuB copies=%d",
             int(GK::SharedStorageSize), int(GK::CollectiveMainloop::DispatchPolicy::Stages),
             grid.x, grid.y, grid.z, unsigned(GK::MaxThreadsPerBlock), ws_size, p.nc);
    r.info = buf;
  }

  auto launch = [&](int c) -> bool {
    if constexpr (StreamK) {
      // stream-K barrier flags live in the workspace and must be zeroed before every launch
      cutlass::Status s2 = gemm.initialize(args[c], ws, p.stream);
      if (s2 != cutlass::Status::kSuccess) {
        snprintf(buf, sizeof(buf), "re-initialize failed: %s", status_str(s2));
        r.err = buf; return false;
      }
    }
    return true;
  };
  auto run = [&](int c) -> bool {
    cutlass::Status s2 = Gemm::run(params[c], p.stream);
    if (s2 != cutlass::Status::kSuccess) {
      cudaError_t ce = cudaGetLastError();
      snprintf(buf, sizeof(buf), "run failed: %s (%s)", status_str(s2), cudaGetErrorString(ce));
      r.err = buf; return false;
    }
    return true;
  };

  // ---- correctness run on copy 0 (output pre-filled with NaN so a silent no-op cannot pass) ----
  cudaError_t ce = cudaMemsetAsync(p.D[0], 0xFF, size_t(N) * M * sizeof(ElemD), p.stream);
  if (ce != cudaSuccess) { r.err = std::string("memset D: ") + cudaGetErrorString(ce); return; }
  if (!launch(0) || !run(0)) return;
  fatal_if_device_error(wait_stream(p.stream, p.timeout_s, "correctness run"), "correctness run");
  p.check(p, KindV, BF16, r);

  // ---- warm-up (rotating copies) ----
  int it = 0;
  for (int i = 0; i < p.warmup; ++i, ++it) {
    if (!launch(it % p.nc) || !run(it % p.nc)) return;
  }
  fatal_if_device_error(wait_stream(p.stream, p.timeout_s, "warm-up"), "warm-up");

  // ---- timed launches: one event pair per launch, rotating through all copies ----
  for (int i = 0; i < p.iters; ++i, ++it) {
    const int c = it % p.nc;
    if (!launch(c)) return;
    cudaEventRecord(p.ev[2 * i], p.stream);
    if (!run(c)) return;
    cudaEventRecord(p.ev[2 * i + 1], p.stream);
  }
  fatal_if_device_error(wait_stream(p.stream, p.timeout_s * 4, "timed launches"), "timed launches");
  std::vector<float> t(p.iters);
  for (int i = 0; i < p.iters; ++i) {
    ce = cudaEventElapsedTime(&t[i], p.ev[2 * i], p.ev[2 * i + 1]);
    if (ce != cudaSuccess) { r.err = std::string("cudaEventElapsedTime: ") + cudaGetErrorString(ce); return; }
  }
  std::sort(t.begin(), t.end());
  const int n = p.iters;
  double med = (n % 2) ? t[n / 2] : 0.5 * (double(t[n / 2 - 1]) + double(t[n / 2]));
  r.us = med * 1e3;
  r.min_us = t[0] * 1e3;
  r.ok = true;
}

}  // namespace bench

// Each variant translation unit defines one function returning its descriptor.
#define DECLARE_VARIANT(fn) bench::Variant fn();
