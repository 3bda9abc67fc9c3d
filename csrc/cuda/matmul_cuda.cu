// Host dispatcher of the CUDA backend: checks, the plan's kernel and tile -> a launch, split-K setup.
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
#include <tuple>
#include <utility>

#include "cluster_attr.h"
#include "gemm_cutlass.h"
#include "kernels.h"
#include "matmul_cuda.h"
#include "tma_map.h"

namespace bitblas_jax {
namespace cudak {

KernelEntry decode_splitk_entry(int tc, int fc, int tile) {
  switch (tc) {
    case TC_F16: return decode_splitk_entry_f16(fc, tile);
    case TC_F16ACC16: return decode_splitk_entry_f16acc16(fc, tile);
    case TC_BF16: return decode_splitk_entry_bf16(fc, tile);
    default: return KernelEntry{};
  }
}

KernelEntry decode_entry(int tc, int fc, int tile) {
  switch (tc) {
    case TC_F16: return decode_entry_f16(fc, tile);
    case TC_BF16: return decode_entry_bf16(fc, tile);
    default: return KernelEntry{};
  }
}

KernelEntry gemm_wgmma_entry(int tc, int fc, int tile) {
  switch (tc) {
    case TC_F16: return gemm_wgmma_entry_f16(fc, tile);
    case TC_BF16: return gemm_wgmma_entry_bf16(fc, tile);
    default: return KernelEntry{};
  }
}

KernelEntry gemm_mma_entry(int tc, int fc, int tile) {
  switch (tc) {
    case TC_F16: return gemm_mma_entry_f16(fc, tile);
    case TC_F16ACC16: return gemm_mma_entry_f16acc16(fc, tile);
    case TC_BF16: return gemm_mma_entry_bf16(fc, tile);
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
// kernel's tail and prefetch their weights (csrc/cuda/decode.cuh). Kernels
// that take the activations' TMA map (KernelEntry::act_map) get `act_map` as
// their second argument; `cluster` > 1 launches clusters of that many CTAs
// along x (the grid's x a multiple of it).
std::string launch(const KernelEntry& ke, dim3 grid, const KParams& kp, cudaStream_t stream, int smem = -1,
                   const CUtensorMap* act_map = nullptr, int cluster = 1) {
  if (ke.fn == nullptr) return "no kernel for this format / dtype combination";
  if (ke.act_map != (act_map != nullptr)) return "internal: the kernel's TMA map argument does not match the launch";
  if (cluster < 1 || grid.x % static_cast<unsigned>(cluster) != 0)
    return "internal: grid x " + std::to_string(grid.x) + " is not a multiple of the cluster " + std::to_string(cluster);
  DeviceInfo info;
  std::string err = device_info(&info);
  if (err.empty()) err = ensure_smem(ke.fn, ke.dyn_smem, info);
  if (!err.empty()) return err;
  KParams local = kp;
  CUtensorMap map_local;
  if (act_map != nullptr) map_local = *act_map;
  void* args[] = {&local, &map_local};
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(ke.threads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem < 0 ? ke.dyn_smem : smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned nattr = 0;
  if (ke.pdl && info.pdl) {
    attr[nattr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[nattr].val.programmaticStreamSerializationAllowed = 1;
    ++nattr;
  }
  if (cluster > 1) attr[nattr++] = cluster_attr(cluster);
  cfg.attrs = nattr > 0 ? attr : nullptr;
  cfg.numAttrs = nattr;
  cudaError_t e = cudaLaunchKernelExC(&cfg, ke.fn, args);
  if (e != cudaSuccess) return cuda_error("kernel launch", e);
  e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_error("kernel launch", e);
  return "";
}

// BITBLAS_JAX_WGMMA_CLUSTER: 1, 2 or 4 forces gemm_wgmma's CTAs per cluster (A/B timing); 0: the plan's.
int forced_wgmma_cluster() {
  static const int forced = [] {
    const char* env = std::getenv("BITBLAS_JAX_WGMMA_CLUSTER");
    if (env == nullptr) return 0;
    const std::string v(env);
    return v == "1" ? 1 : v == "2" ? 2 : v == "4" ? 4 : 0;
  }();
  return forced;
}

// CTAs of `ke` the device runs at once in clusters of `cluster` (clusters at once x cluster), per
// device and kernel; 0 where the query fails (the caller keeps single CTAs).
int64_t cluster_wave_ctas(const KernelEntry& ke, int cluster, const DeviceInfo& info) {
  static std::mutex mu;
  static std::map<std::tuple<int, const void*, int>, int64_t> known;
  const auto key = std::make_tuple(info.dev, ke.fn, cluster);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = known.find(key);
    if (it != known.end()) return it->second;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(cluster) * 64);
  cfg.blockDim = dim3(ke.threads);
  cfg.dynamicSmemBytes = static_cast<size_t>(ke.dyn_smem);
  cudaLaunchAttribute attr = cluster_attr(cluster);
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  int clusters = 0;
  int64_t ctas = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, ke.fn, &cfg) == cudaSuccess)
    ctas = static_cast<int64_t>(clusters) * cluster;
  else
    cudaGetLastError();  // clear it: a failed query only means single CTAs
  std::lock_guard<std::mutex> lock(mu);
  known[key] = ctas;
  return ctas;
}

// gemm_wgmma's CTAs per cluster for a grid of nblocks x mblocks x split tiles: the plan's rule
// (plan::wgmma_cluster_ctas, plan::wgmma_cluster_for_grid with this GPU's occupancy), or the forced one.
int wgmma_cluster_for(const KernelEntry& ke, int64_t N, int64_t nblocks, int64_t mblocks, int64_t split) {
  const int forced = forced_wgmma_cluster();
  const int cl = plan::wgmma_cluster_ctas(N, forced);
  if (forced > 0 || cl == 1) return cl;
  DeviceInfo info;
  if (!device_info(&info).empty() || !ensure_smem(ke.fn, ke.dyn_smem, info).empty()) return 1;
  const int64_t grid = plan::ceil_div(nblocks, cl) * cl * mblocks * split;
  const int64_t wave = cluster_wave_ctas(ke, 1, info), cluster_wave = cluster_wave_ctas(ke, cl, info);
  if (wave == 0 || cluster_wave == 0) return 1;
  return plan::wgmma_cluster_for_grid(cl, grid, wave, cluster_wave);
}

size_t dtype_size(DType d) { return d == DType::kF32 ? 4 : 2; }

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
  if (mode < 0 || mode >= kNumScaleModes) return "bad mode";
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

std::string matmul_cuda(const MatmulArgs& a, plan::Kernel kernel, int tile, int64_t split_k, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream) {
  using plan::Kernel;
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
  const int tc = a.a_dtype == DType::kBF16 ? cudak::TC_BF16
                 : a.accum_dtype == DType::kF16 ? cudak::TC_F16ACC16
                                                 : cudak::TC_F16;
  const bool whole_groups = plan::groups_in_whole_tiles(mode != cudak::MODE_NONE, kp.gs, bits);

  const int k = static_cast<int>(kernel);
  if (k < 0 || k >= plan::kNumKernels || kernel == Kernel::kDequantizeThenDot)
    return "kernel " + std::to_string(k) + " is not a matmul kernel";
  const plan::Plan p = plan::finish(kernel, tile, split_k, M, N, K, bits, mode, kp.gs);
  const char* name = plan::kernel_name(kernel);  // for error messages
  if (p.workspace_bytes > 0 && (workspace == nullptr || workspace_bytes < static_cast<size_t>(p.workspace_bytes)))
    return std::string("workspace too small: ") + name + " with split_k " + std::to_string(p.split_k) + " needs " +
           std::to_string(p.workspace_bytes) + " bytes, got " + std::to_string(workspace_bytes);

  const int64_t counter_bytes = plan::counter_bytes(M, N);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  const size_t a_row = static_cast<size_t>(K) * 2, c_row = static_cast<size_t>(N) * dtype_size(a.out_dtype);

  if (kernel == Kernel::kDecode || kernel == Kernel::kDecodeSplitK) {
    if (kernel == Kernel::kDecode) {
      if (tc == cudak::TC_F16ACC16) return "decode needs float32 accumulation (decode_splitk runs float16)";
      if (!whole_groups) return "decode needs groups of whole packed tiles (decode_splitk runs the others)";
      if (p.tile < 0 || (M > plan::kDecodeMaxRows && M % plan::kDecodeMaxRows && p.tail_tile < 0))
        return "decode: no shape fits " + std::to_string(M) + " rows in shared memory";
      if (p.split_k > plan::kDecodeMaxClusterSplit)
        return "decode: split_k " + std::to_string(p.split_k) + " exceeds the cluster of " +
               std::to_string(plan::kDecodeMaxClusterSplit);
      if (p.split_k > 1) {  // a cluster launch
        DeviceInfo info;
        if (std::string err = device_info(&info); !err.empty()) return err;
        if (!info.sm90)
          return "decode: split_k > 1 (K over a cluster) needs an sm_90 GPU (the plan's sm90 flag was wrong)";
      }
    } else if (p.split_k > kp.KT || p.split_k > 65535) {
      return "decode_splitk: split_k " + std::to_string(p.split_k) + " exceeds the " + std::to_string(kp.KT) +
             " packed tiles of K";
    }
    // Launches of 16 activation rows each.
    const int64_t gcols = plan::ceil_div(N, plan::kDecodeSplitKRows);
    for (int64_t m0 = 0; m0 < M; m0 += plan::kDecodeMaxRows) {
      const int64_t ms = std::min<int64_t>(plan::kDecodeMaxRows, M - m0);
      KParams kl = kp;
      kl.M = ms;
      kl.A = static_cast<const uint8_t*>(a.A) + m0 * a_row;
      kl.C = static_cast<uint8_t*>(a.C) + m0 * c_row;
      kl.split = static_cast<int>(p.split_k);
      std::string err;
      if (kernel == Kernel::kDecode) {
        const int shape = ms == plan::kDecodeMaxRows || M <= plan::kDecodeMaxRows ? p.tile : p.tail_tile;
        const int entry = shape + (mode >= cudak::MODE_ORIGINAL ? plan::kNumDecodeShapes : 0);
        const int cluster = static_cast<int>(p.split_k);  // CTAs sharing each 32 rows' K
        err = launch(cudak::decode_entry(tc, fc, entry),
                     dim3(static_cast<unsigned>(plan::ceil_div(N, plan::kDecodeRowsPerCta) * cluster)), kl, stream,
                     plan::decode_smem_bytes(bits, shape, ms), nullptr, cluster);
      } else {
        if (p.split_k > 1) {
          kl.counters = reinterpret_cast<unsigned int*>(ws);
          kl.partial = reinterpret_cast<float*>(ws + counter_bytes);
          cudaError_t e = cudaMemsetAsync(ws, 0, static_cast<size_t>(gcols) * 4, stream);
          if (e != cudaSuccess) return cuda_error("cudaMemsetAsync", e);
        }
        const KernelEntry ke = cudak::decode_splitk_entry(tc, fc, ms <= 8 ? 0 : 1);
        const int smem = ke.fixed_smem + (mode != 0 ? ke.group_smem : 0) + static_cast<int>(ms) * ke.row_smem;
        err = launch(ke, dim3(static_cast<unsigned>(gcols), static_cast<unsigned>(p.split_k)), kl, stream, smem);
      }
      if (!err.empty()) return err;
    }
    return "";
  }

  if (kernel == Kernel::kGemmCutlass) {
    DeviceInfo info;
    if (std::string err = device_info(&info); !err.empty()) return err;
    if (!info.sm90) return "gemm_cutlass needs an sm_90 GPU (the plan's sm90 flag was wrong)";
    return launch_gemm_cutlass(a, tile, p.split_k, info.pdl, workspace, workspace_bytes, stream);
  }

  // The GEMMs: a grid of BN x BM output tiles x split, in launches of at most 65535 tile rows.
  // gemm_wgmma (act_map): its grid's x rounded up to the cluster, each launch's activations as a TMA
  // map with boxes of BM / cluster rows.
  auto run_tiles = [&](const KernelEntry& ke, int BN, int BM, int cluster = 1) -> std::string {
    const int64_t stages = plan::ceil_div(K, p.stage_k);
    if (p.split_k > stages || p.split_k > 65535)
      return std::string(name) + ": split_k " + std::to_string(p.split_k) + " exceeds the " + std::to_string(stages) +
             " stages of K";
    const int64_t nblocks = plan::ceil_div(N, BN);
    const int64_t grid_x = plan::ceil_div(nblocks, cluster) * cluster;
    const int64_t max_rows = int64_t{65535} * BM;
    for (int64_t m0 = 0; m0 < M; m0 += max_rows) {
      const int64_t ms = std::min<int64_t>(max_rows, M - m0);
      KParams kl = kp;
      kl.M = ms;
      kl.A = static_cast<const uint8_t*>(a.A) + m0 * a_row;
      kl.C = static_cast<uint8_t*>(a.C) + m0 * c_row;
      kl.split = static_cast<int>(p.split_k);
      const int64_t mblocks = plan::ceil_div(ms, BM);
      if (p.split_k > 1) {
        kl.counters = reinterpret_cast<unsigned int*>(ws);
        kl.partial = reinterpret_cast<float*>(ws + counter_bytes);
        cudaError_t e = cudaMemsetAsync(ws, 0, static_cast<size_t>(nblocks * mblocks) * 4, stream);
        if (e != cudaSuccess) return cuda_error("cudaMemsetAsync", e);
      }
      CUtensorMap map;
      if (ke.act_map) {
        if (std::string err = encode_act_map(kl.A, ms, K, 2, BM / cluster, &map); !err.empty()) return err;
      }
      std::string err = launch(
          ke, dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(mblocks), static_cast<unsigned>(p.split_k)),
          kl, stream, -1, ke.act_map ? &map : nullptr, cluster);
      if (!err.empty()) return err;
    }
    return "";
  };

  if (kernel == Kernel::kGemmWgmma) {
    if (tile < 0 || tile >= plan::kNumWgmmaTiles) return "gemm_wgmma: bad tile " + std::to_string(tile);
    DeviceInfo info;
    if (std::string err = device_info(&info); !err.empty()) return err;
    if (!info.sm90) return "gemm_wgmma needs an sm_90 GPU (the plan's sm90 flag was wrong)";
    if (tc == cudak::TC_F16ACC16) return "gemm_wgmma needs float32 accumulation";
    if (!whole_groups) return "gemm_wgmma needs groups of whole packed tiles";
    // (the TMA reads the activations from a 16-byte aligned address)
    if (!kp.a_aligned) return "gemm_wgmma needs A 16-byte aligned (plan with a_aligned = false)";
    if (K % p.stage_k != 0) return "gemm_wgmma: K must be a multiple of " + std::to_string(p.stage_k);
    const KernelEntry ke = cudak::gemm_wgmma_entry(tc, fc, tile);
    if (ke.fn == nullptr) return "gemm_wgmma: this format's stages do not fit the tile";
    const int BN = plan::kWgmmaTiles[tile].weight_rows, BM = plan::kWgmmaTiles[tile].act_rows;
    const int64_t first_rows = std::min<int64_t>(M, int64_t{65535} * BM);  // the first launch's
    return run_tiles(ke, BN, BM,
                     wgmma_cluster_for(ke, N, plan::ceil_div(N, BN), plan::ceil_div(first_rows, BM), p.split_k));
  }

  if (tile < 0 || tile >= plan::kNumMmaTiles) return "gemm_mma: bad tile " + std::to_string(tile);
  if (!whole_groups && !plan::kMmaTiles[tile].groups_inside_tiles)
    return "gemm_mma: groups that end inside packed tiles need the groups-in-tiles tile";
  return run_tiles(cudak::gemm_mma_entry(tc, fc, tile), plan::kMmaTiles[tile].weight_rows, plan::kMmaTiles[tile].act_rows);
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
  return launch(cudak::dequantize_entry(tc, fmt_class(a.w_format)), dim3(static_cast<unsigned>(blocks)), kp,
                stream);
}

}  // namespace bitblas_jax
