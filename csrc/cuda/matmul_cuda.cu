// Host dispatcher of the CUDA backend: checks, plan -> kernel, split-K setup.
// No allocation, no synchronization, no queries of the stream: it only
// enqueues (a memset of the split-K counters and the kernel), so it can be
// captured into a CUDA graph.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "kernels.h"
#include "matmul_cuda.h"

namespace bitblas_jax {
namespace cudak {

KernelEntry gemv_entry(int tc, int fc, int variant) {
  switch (tc) {
    case TC_F16: return gemv_entry_f16(fc, variant);
    case TC_F16ACC16: return gemv_entry_f16acc16(fc, variant);
    case TC_BF16: return gemv_entry_bf16(fc, variant);
    default: return KernelEntry{};
  }
}

KernelEntry gemv2_entry(int tc, int fc, int variant) {
  switch (tc) {
    case TC_F16: return gemv2_entry_f16(fc, variant);
    case TC_BF16: return gemv2_entry_bf16(fc, variant);
    default: return KernelEntry{};
  }
}

KernelEntry wgmma_entry(int tc, int fc, int variant) {
  switch (tc) {
    case TC_F16: return wgmma_entry_f16(fc, variant);
    case TC_BF16: return wgmma_entry_bf16(fc, variant);
    default: return KernelEntry{};
  }
}

KernelEntry gemm_entry(int tc, int fc, int variant) {
  switch (tc) {
    case TC_F16: return gemm_entry_f16(fc, variant);
    case TC_F16ACC16: return gemm_entry_f16acc16(fc, variant);
    case TC_BF16: return gemm_entry_bf16(fc, variant);
    default: return KernelEntry{};
  }
}

}  // namespace cudak

namespace {

using cudak::KernelEntry;
using cudak::KParams;

int fmt_class(WFormat f) {
  switch (f) {
    case WFormat::kInt1: case WFormat::kUInt1: return cudak::FC_I1;
    case WFormat::kInt2: case WFormat::kUInt2: return cudak::FC_I2;
    case WFormat::kInt4: case WFormat::kUInt4: return cudak::FC_I4;
    case WFormat::kInt8: case WFormat::kUInt8: return cudak::FC_I8;
    case WFormat::kNF4: return cudak::FC_NF4;
    case WFormat::kFP4E2M1: return cudak::FC_FP4;
    case WFormat::kFP8E4M3: return cudak::FC_E4M3;
    case WFormat::kFP8E5M2: return cudak::FC_E5M2;
    case WFormat::kF16: return cudak::FC_F16;
    case WFormat::kBF16: return cudak::FC_BF16;
  }
  return -1;
}

std::string cuda_error(const std::string& what, cudaError_t e) {
  cudaGetLastError();  // clear the non-sticky error this call raised
  return "CUDA error in " + what + ": " + cudaGetErrorString(e);
}

struct DeviceInfo {
  int dev = 0;
  int smem_optin = 0;  // largest dynamic shared memory a block may opt in to
  bool pdl = false;    // programmatic dependent launch (sm_90+) and not turned off
  bool sm90 = false;   // compute capability 9.0: the sm_90a kernels (wgmma) run
};

// Per-device facts, queried once per device.
std::string device_info(DeviceInfo* out) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return cuda_error("cudaGetDevice", e);
  static std::mutex mu;
  static std::map<int, DeviceInfo> known;
  std::lock_guard<std::mutex> lock(mu);
  auto it = known.find(dev);
  if (it == known.end()) {
    DeviceInfo info;
    info.dev = dev;
    int major = 0, minor = 0;
    e = cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e != cudaSuccess) return cuda_error("cudaDeviceGetAttribute", e);
    const char* env = std::getenv("BITBLAS_JAX_PDL");  // "0": launch without PDL (A/B timing)
    info.pdl = major >= 9 && !(env != nullptr && std::string(env) == "0");
    info.sm90 = major == 9 && minor == 0;
    it = known.emplace(dev, info).first;
  }
  *out = it->second;
  return "";
}

// Dynamic shared memory above 48 KB needs a per-function, per-device opt-in.
std::string ensure_smem(const void* fn, int bytes, const DeviceInfo& info) {
  if (bytes <= 48 * 1024) return "";
  const int dev = info.dev;
  static std::mutex mu;
  static std::set<std::pair<int, const void*>> done;
  std::lock_guard<std::mutex> lock(mu);
  if (done.count({dev, fn})) return "";
  if (bytes > info.smem_optin)
    return "kernel needs " + std::to_string(bytes) + " bytes of shared memory per block; device " +
           std::to_string(dev) + " allows " + std::to_string(info.smem_optin);
  const cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) return cuda_error("cudaFuncSetAttribute", e);
  done.insert({dev, fn});
  return "";
}

// Kernels that begin with griddep_wait (KernelEntry::pdl) go out with
// programmatic stream serialization: they may start during the previous
// kernel's tail and prefetch their weights (csrc/cuda/gemv2.cuh).
std::string launch(const KernelEntry& ke, dim3 grid, const KParams& kp, cudaStream_t stream, int smem = -1) {
  if (ke.fn == nullptr) return "no kernel for this format / dtype combination";
  DeviceInfo info;
  std::string err = device_info(&info);
  if (err.empty()) err = ensure_smem(ke.fn, ke.dyn_smem, info);
  if (!err.empty()) return err;
  KParams local = kp;
  void* args[] = {&local};
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(ke.threads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem < 0 ? ke.dyn_smem : smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  if (ke.pdl && info.pdl) {
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  cudaError_t e = cudaLaunchKernelExC(&cfg, ke.fn, args);
  if (e != cudaSuccess) return cuda_error("kernel launch", e);
  e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_error("kernel launch", e);
  return "";
}

size_t dtype_size(DType d) { return d == DType::kF32 ? 4 : 2; }

// The v2 decode kernel for ms <= 16 rows: its variant (kernels.h) in *variant
// and its shared memory, or -1 where v2 cannot run (float16 accumulation,
// groups not whole tiles, too little shared memory). Up to 8 rows take the
// one-n8-block kernel with the most tiles per warp and chunk that fits (4, 2),
// else the two-block one with the most (2, 1). Mirrors gpu_plan.py gemv2_launch_smem.
int gemv2_smem_for(int tc, int fc, int64_t ms, int64_t gs, int mode, int* variant) {
  if (tc == cudak::TC_F16ACC16 || ms > 16) return -1;
  if (mode != cudak::MODE_NONE && gs % tile_k(cudak::fc_bits(fc)) != 0) return -1;
  for (int v = ms <= 8 ? 0 : 2; v < cudak::kGemv2Shapes; ++v) {
    const int vz = v + (mode >= cudak::MODE_ORIGINAL ? cudak::kGemv2Shapes : 0);
    const cudak::KernelEntry ke = cudak::gemv2_entry(tc, fc, vz);
    if (ke.fn == nullptr) return -1;
    const int bytes = cudak::gemv2_smem(ke.fixed_smem, ke.row_smem, static_cast<int>(ms));
    if (bytes <= cudak::kGemv2SmemCap) {
      *variant = vz;
      return bytes + ke.stage_smem;
    }
  }
  return -1;
}

// Checks of the weight operands (W, scale, zeros, shapes) and the kernel
// parameters they give; "" when fine.
std::string weight_params(const MatmulArgs& a, KParams* kp) {
  const int64_t N = a.N, K = a.K;
  const int bits = format_bits(a.w_format);
  if (fmt_class(a.w_format) < 0 || bits == 0) return "bad w_format";
  if (N <= 0 || K <= 0) return "bad shape: N, K must be positive";
  if (N % kTileN != 0 || K % tile_k(bits) != 0) return "N, K do not fit the packed tile";
  if (N >= (int64_t{1} << 31) || K >= (int64_t{1} << 30)) return "N or K too large";
  const int64_t gs = a.group_size;
  if (gs <= 0 || K % gs != 0 || gs % 8 != 0)
    return "group_size must divide K and be a multiple of 8 (got " + std::to_string(gs) + ")";
  const int mode = static_cast<int>(a.mode);
  if (mode < 0 || mode > static_cast<int>(ScaleMode::kQuantized)) return "bad mode";
  if (a.W == nullptr || a.C == nullptr) return "null W or output";
  if (mode != 0 && a.scale == nullptr) return "this mode needs scale";
  if (mode >= static_cast<int>(ScaleMode::kOriginal) && a.zeros == nullptr) return "this mode needs zeros";
  if (reinterpret_cast<uintptr_t>(a.W) % 16 != 0) return "W must be 16-byte aligned";
  *kp = KParams{};
  kp->W = a.W;
  kp->scale = a.scale;
  kp->zeros = a.zeros;
  kp->bias = a.bias;
  kp->N = N;
  kp->K = K;
  kp->KT = static_cast<int>(K / tile_k(bits));
  kp->gs = static_cast<int>(gs);
  kp->G = static_cast<int>(K / gs);
  kp->mode = mode;
  kp->fmt = static_cast<int>(a.w_format);
  kp->out_dtype = static_cast<int>(a.out_dtype);
  kp->zeros_signed = format_is_signed_int(a.w_format);
  kp->val_mul = 1.f;
  kp->val_off = 0.f;
  if (format_is_signed_int(a.w_format)) {
    if (bits == 1) {
      kp->val_mul = 2.f;  // value = 2 * code - 1
      kp->val_off = 1.f;
    } else {
      kp->val_off = static_cast<float>(1 << (bits - 1));
    }
  }
  return "";
}

}  // namespace

std::string matmul_cuda(const MatmulArgs& a, int64_t plan, int64_t split_k, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream) {
  const int64_t M = a.M, N = a.N, K = a.K;
  if (M < 0) return "bad shape: M must be >= 0";
  if (M == 0) return "";
  const int fc = fmt_class(a.w_format);
  const int bits = format_bits(a.w_format);
  if (a.a_dtype == DType::kF32)
    return "float32 activations run on CPU only; on GPU use float16 or bfloat16";
  if (a.a_dtype != DType::kF16 && a.a_dtype != DType::kBF16) return "bad activation dtype";
  if (a.accum_dtype == DType::kBF16) return "accum_dtype bfloat16 is not supported";
  if (a.accum_dtype == DType::kF16 && a.a_dtype != DType::kF16)
    return "accum_dtype float16 needs float16 activations";
  if (a.out_dtype != DType::kF16 && a.out_dtype != DType::kBF16 && a.out_dtype != DType::kF32)
    return "bad out dtype";
  if (a.A == nullptr) return "null A";
  KParams kp;
  if (std::string err = weight_params(a, &kp); !err.empty()) return err;
  kp.a_aligned = reinterpret_cast<uintptr_t>(a.A) % 16 == 0;
  const int mode = kp.mode;
  const int64_t gs = kp.gs;

  if (plan == kPlanAuto) {
    plan = M <= 32 ? kPlanGemv2 : (M <= 64 ? kPlanGemm : kPlanGemmWide);
    split_k = 1;
  }
  if (plan != kPlanGemv && plan != kPlanGemm && plan != kPlanGemmWide && plan != kPlanGemv2 &&
      plan != kPlanWgmma && plan != kPlanWgmmaTall)
    return "unknown plan " + std::to_string(plan);
  if (split_k < 1) split_k = 1;
  const size_t need = cuda_workspace_bytes(plan, split_k, M, N);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need))
    return "workspace too small: plan " + std::to_string(plan) + " split_k " + std::to_string(split_k) +
           " needs " + std::to_string(need) + " bytes, got " + std::to_string(workspace_bytes);

  const int tc = a.a_dtype == DType::kBF16 ? cudak::TC_BF16
                 : a.accum_dtype == DType::kF16 ? cudak::TC_F16ACC16
                                                 : cudak::TC_F16;
  const int64_t counter_bytes = static_cast<int64_t>(cuda_counter_bytes(M, N));
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  const size_t a_row = static_cast<size_t>(K) * 2, c_row = static_cast<size_t>(N) * dtype_size(a.out_dtype);

  if (plan == kPlanGemv || plan == kPlanGemv2) {
    // Slices of 16 rows of M. Plan 4 runs v2 where it can, else v1 without
    // split-K (which needs no workspace).
    const int64_t split = plan == kPlanGemv ? std::min<int64_t>({split_k, kp.KT, 65535}) : 1;
    const int64_t gcols = (N + 255) / 256;  // v1: 256 weight rows per CTA
    for (int64_t m0 = 0; m0 < M; m0 += 16) {
      const int64_t ms = std::min<int64_t>(16, M - m0);
      KParams k = kp;
      k.M = ms;
      k.A = static_cast<const uint8_t*>(a.A) + m0 * a_row;
      k.C = static_cast<uint8_t*>(a.C) + m0 * c_row;
      k.split = static_cast<int>(split);
      int v2_variant = 0;
      const int v2_smem = plan == kPlanGemv2 ? gemv2_smem_for(tc, fc, ms, gs, mode, &v2_variant) : -1;
      std::string err;
      if (v2_smem >= 0) {
        err = launch(cudak::gemv2_entry(tc, fc, v2_variant), dim3(static_cast<unsigned>((N + 31) / 32)), k, stream,
                     v2_smem);
      } else {
        if (split > 1) {
          k.counters = reinterpret_cast<unsigned int*>(ws);
          k.partial = reinterpret_cast<float*>(ws + counter_bytes);
          cudaError_t e = cudaMemsetAsync(ws, 0, static_cast<size_t>(gcols) * 4, stream);
          if (e != cudaSuccess) return cuda_error("cudaMemsetAsync", e);
        }
        const KernelEntry ke = cudak::gemv_entry(tc, fc, ms <= 8 ? 0 : 1);
        const int smem = ke.fixed_smem + (mode != 0 ? ke.group_smem : 0) + static_cast<int>(ms) * ke.row_smem;
        err = launch(ke, dim3(static_cast<unsigned>(gcols), static_cast<unsigned>(split)), k, stream, smem);
      }
      if (!err.empty()) return err;
    }
    return "";
  }

  // The GEMMs: a grid of BN x BM output tiles x split, in launches of at most 65535 tile rows.
  auto run_tiles = [&](const KernelEntry& ke, int BN, int BM, int stage_k) -> std::string {
    const int64_t KB = (K + stage_k - 1) / stage_k;
    const int64_t split = std::min<int64_t>({split_k, KB, 65535});
    const int64_t nblocks = (N + BN - 1) / BN;
    const int64_t max_rows = int64_t{65535} * BM;
    for (int64_t m0 = 0; m0 < M; m0 += max_rows) {
      const int64_t ms = std::min<int64_t>(max_rows, M - m0);
      KParams k = kp;
      k.M = ms;
      k.A = static_cast<const uint8_t*>(a.A) + m0 * a_row;
      k.C = static_cast<uint8_t*>(a.C) + m0 * c_row;
      k.split = static_cast<int>(split);
      const int64_t mblocks = (ms + BM - 1) / BM;
      if (split > 1) {
        k.counters = reinterpret_cast<unsigned int*>(ws);
        k.partial = reinterpret_cast<float*>(ws + counter_bytes);
        cudaError_t e = cudaMemsetAsync(ws, 0, static_cast<size_t>(nblocks * mblocks) * 4, stream);
        if (e != cudaSuccess) return cuda_error("cudaMemsetAsync", e);
      }
      std::string err = launch(
          ke, dim3(static_cast<unsigned>(nblocks), static_cast<unsigned>(mblocks), static_cast<unsigned>(split)), k,
          stream);
      if (!err.empty()) return err;
    }
    return "";
  };

  const bool split_groups = mode != cudak::MODE_NONE && gs % tile_k(bits) != 0;
  if (plan == kPlanWgmma || plan == kPlanWgmmaTall) {
    // Plans 6 / 7 where they can run, else plan 2 with the same split (same workspace).
    DeviceInfo info;
    if (std::string err = device_info(&info); !err.empty()) return err;
    // (the producer warp copies the activations 16 bytes at a time: A must be 16-byte aligned)
    if (info.sm90 && tc != cudak::TC_F16ACC16 && !split_groups && kp.a_aligned) {
      WgmmaTile t = wgmma_tile(plan, M);
      KernelEntry ke = cudak::wgmma_entry(tc, fc, t.variant);
      if (ke.fn == nullptr) {  // stages too large for this tile (1-bit): 128 x up to 128
        t = wgmma_tile(kPlanWgmma, M);
        ke = cudak::wgmma_entry(tc, fc, t.variant);
      }
      const int stage_k = wgmma_stage_k(bits, t.bm);
      if (ke.fn != nullptr && K % stage_k == 0) return run_tiles(ke, t.bn, t.bm, stage_k);
    }
    plan = kPlanGemm;
  }

  // Plan 2: 128 weight rows x 32 (M <= 32) or 64 activation rows per CTA; plan 3: 256 x 32 or 64.
  // Groups that end inside packed tiles take the 128 x 32 kernel with the per-8-column path.
  const int BN = plan == kPlanGemm || split_groups ? 128 : 256;
  const int BM = M > 32 && !split_groups ? 64 : 32;
  const int variant = split_groups ? 4 : (BN == 256 ? 2 : 0) + (BM == 64 ? 1 : 0);
  return run_tiles(cudak::gemm_entry(tc, fc, variant), BN, BM, gemm_stage_k(bits));
}

std::string dequantize_cuda(const MatmulArgs& a, cudaStream_t stream) {
  if (a.a_dtype != DType::kF16 && a.a_dtype != DType::kBF16) return "dequantize writes float16 or bfloat16";
  KParams kp;
  if (std::string err = weight_params(a, &kp); !err.empty()) return err;
  kp.C = a.C;
  if (reinterpret_cast<uintptr_t>(a.C) % 16 != 0) return "the output must be 16-byte aligned";
  const int tc = a.a_dtype == DType::kBF16 ? cudak::TC_BF16 : cudak::TC_F16;
  const int64_t blocks = ((a.N / kTileN) * kp.KT + cudak::kDequantWarps - 1) / cudak::kDequantWarps;
  if (blocks >= (int64_t{1} << 31)) return "weight too large to dequantize in one launch";
  return launch(cudak::dequant_entry(tc, fmt_class(a.w_format)), dim3(static_cast<unsigned>(blocks)), kp,
                stream);
}

}  // namespace bitblas_jax
