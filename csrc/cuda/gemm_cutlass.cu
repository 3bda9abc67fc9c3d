// gemm_cutlass (gemm_cutlass.h): the call's checks and the group terms; the CUTLASS kernels where built.
#include "gemm_cutlass.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "bitblas_jax/plan.h"

namespace bitblas_jax {
namespace {

__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> __device__ __forceinline__ float bits_to_f(uint16_t b);
template <> __device__ __forceinline__ float bits_to_f<__half>(uint16_t b) { return __half2float(__ushort_as_half(b)); }
template <> __device__ __forceinline__ float bits_to_f<__nv_bfloat16>(uint16_t b) {
  return __bfloat162float(__ushort_as_bfloat16(b));
}
template <class T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// The group terms, [G][N], that CUTLASS's "scale with zero" conversion takes: w = code * S + Z reproduces the
// mode's dequantization (kernel_api.h) with value = code - val_off (code: the conversion's, val_off:
// plan::gemm_cutlass_value_offset; int4 8, uint4 0, int8 0, uint8 -128):
// S = s and Z = (-val_off - z) s (original), (-val_off - qz) s (quantized), -val_off s - z (rescale),
// -val_off s (scale; s = 1 for none). Inputs are [N][src_groups]; term group g (of K / G columns) reads the
// call's group g / per_src (per_src = G / src_groups: the terms' group divides the call's, plan::gemm_cutlass_group).
//
// A transpose through shared memory in vectors. A block takes kTermsRows rows n of up to kTermsSrcCols src
// groups: each thread loads one run of V consecutive groups of one row per input tensor (V = 8 16-bit values,
// 16 bytes, where src_groups and the pointers allow: write_group_terms picks the widest V that divides both),
// converts them into shared memory, and stores kTermsStoreN consecutive n of one term group (16 bytes of
// 16-bit terms) per tensor. So each thread does a few loads and stores and its index arithmetic (integer
// divisions) once per run, not once per element: the kernel moves few bytes, so its instructions, not memory,
// set its time. Every load is issued before any conversion. Its time: docs/KERNELS.md, gemm_cutlass.
constexpr int kTermsRows = 32;        // n per block
constexpr int kTermsSrcCols = 64;     // src groups per block (fewer where the call has fewer)
constexpr int kTermsThreads = 256;
constexpr int kTermsStoreN = 8;       // n per store: 16 bytes of 16-bit terms (N is a multiple of 16)
static_assert(kTermsRows * kTermsSrcCols / 8 == kTermsThreads, "one 8-wide load per thread and tensor at V = 8");
static_assert(kTermsRows % kTermsStoreN == 0 && kTermsStoreN == 8, "a block's n split into whole 16-byte stores");

// V values of BytesPer bytes each from base[index], loaded as one vector (aligned to V * BytesPer bytes: the
// caller's choice of V, terms_run_width).
template <int Bytes> struct VecOf;
template <> struct VecOf<1> { using type = uint8_t; };
template <> struct VecOf<2> { using type = uint16_t; };
template <> struct VecOf<4> { using type = uint32_t; };
template <> struct VecOf<8> { using type = uint2; };
template <> struct VecOf<16> { using type = uint4; };
template <int V, int BytesPer>
__device__ __forceinline__ void load_run(const void* base, int64_t index, uint16_t (&out)[V]) {
  using Vec = typename VecOf<V * BytesPer>::type;
  const Vec v = *reinterpret_cast<const Vec*>(static_cast<const uint8_t*>(base) + index * BytesPer);
  if constexpr (BytesPer == 2) {
    const uint16_t* e = reinterpret_cast<const uint16_t*>(&v);
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = e[i];
  } else {
    const uint8_t* e = reinterpret_cast<const uint8_t*>(&v);
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = e[i];
  }
}

// x and y rounded to T, x in the low half (the lower address).
template <class T> __device__ __forceinline__ uint32_t pack_pair(float x, float y) {
  const T lo = from_f<T>(x), hi = from_f<T>(y);
  return uint32_t(*reinterpret_cast<const uint16_t*>(&lo)) | uint32_t(*reinterpret_cast<const uint16_t*>(&hi)) << 16;
}

template <class T, int V>
__global__ void __launch_bounds__(kTermsThreads)
group_terms_kernel(const T* __restrict__ scale, const void* __restrict__ zeros, int mode, bool zeros_signed,
                   float val_off, int N, int src_groups, int per_src, T* __restrict__ S, T* __restrict__ Z,
                   uint4* __restrict__ clear, int clear_vecs) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // the GEMM after this kernel is launched as its programmatic dependent (gemm_cutlass.cuh): its CTAs may be
  // placed and set up now; they wait (griddepcontrol.wait) for this grid's writes before they read the terms
  asm volatile("griddepcontrol.launch_dependents;");
#endif
  // the GEMM's stream-K flags, cleared here rather than by a memset of their own (gemm_cutlass.cuh)
  if (blockIdx.x == 0 && blockIdx.y == 0 && static_cast<int>(threadIdx.x) < clear_vecs)
    clear[threadIdx.x] = make_uint4(0, 0, 0, 0);
  constexpr int kRuns = kTermsSrcCols / V;                          // runs of V groups in a block's row
  constexpr int kLoadsPerThread = kTermsRows * kRuns / kTermsThreads;  // 1 at V = 8
  __shared__ float s_sm[kTermsSrcCols][kTermsRows + 1], z_sm[kTermsSrcCols][kTermsRows + 1];
  const int n0 = blockIdx.x * kTermsRows, c0 = blockIdx.y * kTermsSrcCols;
  const int cols = min(kTermsSrcCols, src_groups - c0), rows = min(kTermsRows, N - n0);  // cols: a multiple of V
  const bool scaled = mode != static_cast<int>(ScaleMode::kNone);
  const bool float_zeros = mode == static_cast<int>(ScaleMode::kOriginal) || mode == static_cast<int>(ScaleMode::kRescale);
  const bool code_zeros = mode == static_cast<int>(ScaleMode::kQuantized);
  // the raw inputs first, every load issued before any conversion; a run past the block's inputs loads nothing
  uint16_t s_bits[kLoadsPerThread][V], z_bits[kLoadsPerThread][V];
  bool live[kLoadsPerThread];
#pragma unroll
  for (int l = 0; l < kLoadsPerThread; ++l) {
    const int j = threadIdx.x + l * kTermsThreads, r = j / kRuns, c = (j % kRuns) * V;  // kRuns: a power of 2
    live[l] = r < rows && c < cols;
    const int64_t src = int64_t(n0 + r) * src_groups + c0 + c;
#pragma unroll
    for (int i = 0; i < V; ++i) s_bits[l][i] = 0, z_bits[l][i] = 0;
    if (!live[l]) continue;
    if (scaled) load_run<V, 2>(scale, src, s_bits[l]);
    if (float_zeros) load_run<V, 2>(zeros, src, z_bits[l]);
    else if (code_zeros) load_run<V, 1>(zeros, src, z_bits[l]);
  }
#pragma unroll
  for (int l = 0; l < kLoadsPerThread; ++l) {
    if (!live[l]) continue;
    const int j = threadIdx.x + l * kTermsThreads, r = j / kRuns, c = (j % kRuns) * V;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const float sv = scaled ? bits_to_f<T>(s_bits[l][i]) : 1.f;
      float z = 0.f;
      if (float_zeros) z = bits_to_f<T>(z_bits[l][i]);
      if (code_zeros) z = zeros_signed ? static_cast<float>(static_cast<int8_t>(z_bits[l][i])) : static_cast<float>(z_bits[l][i]);
      // Z: the mode's dequantization of w0 = -val_off, the value whose code the conversion reads as 0: (w0 - z) s
      // (original, quantized), w0 s - z (rescale), w0 s (scale, none); the same float32 operations as
      // group_terms.py's (Matmul.group_terms), so held terms are these bits
      const float w0 = -val_off;
      s_sm[c + i][r] = sv;
      z_sm[c + i][r] = mode == static_cast<int>(ScaleMode::kRescale) ? w0 * sv - z : (w0 - z) * sv;
    }
  }
  __syncthreads();
  // kTermsStoreN consecutive n of one term group per store; the block's term groups are c0 * per_src onwards
  constexpr int kStoresPerRow = kTermsRows / kTermsStoreN;
  for (int j = threadIdx.x; j < cols * per_src * kStoresPerRow; j += kTermsThreads) {
    const int g = j / kStoresPerRow, r = (j % kStoresPerRow) * kTermsStoreN;  // g: the block's term group
    if (r >= rows) continue;  // rows is a multiple of 16 (N is)
    const int c = g / per_src;
    uint32_t s_out[kTermsStoreN / 2], z_out[kTermsStoreN / 2];  // two 16-bit terms a word, lower n first
#pragma unroll
    for (int i = 0; i < kTermsStoreN / 2; ++i) {
      s_out[i] = pack_pair<T>(s_sm[c][r + 2 * i], s_sm[c][r + 2 * i + 1]);
      z_out[i] = pack_pair<T>(z_sm[c][r + 2 * i], z_sm[c][r + 2 * i + 1]);
    }
    const int64_t dst = (int64_t(c0) * per_src + g) * N + n0 + r;
    *reinterpret_cast<uint4*>(S + dst) = make_uint4(s_out[0], s_out[1], s_out[2], s_out[3]);
    *reinterpret_cast<uint4*>(Z + dst) = make_uint4(z_out[0], z_out[1], z_out[2], z_out[3]);
  }
}

// The widest run (8, 4, 2 or 1 groups) that divides src_groups and keeps every input's loads aligned.
int terms_run_width(int64_t src_groups, const void* scale, const void* zeros, int zeros_bytes) {
  for (int v : {8, 4, 2}) {
    const bool fits = src_groups % v == 0 && reinterpret_cast<uintptr_t>(scale) % (2 * v) == 0 &&
                      reinterpret_cast<uintptr_t>(zeros) % (zeros_bytes * v) == 0;  // null pointers: aligned
    if (fits) return v;
  }
  return 1;
}

// terms_group: the group the terms come in (a.group_size is the call's).
// clear, clear_bytes: a 16-byte aligned range the kernel also zeroes (at most kTermsThreads 16-byte vectors).
template <class T>
std::string write_group_terms(const MatmulArgs& a, int64_t terms_group, T* S, T* Z, void* clear, size_t clear_bytes,
                              cudaStream_t stream) {
  const int64_t groups = a.K / terms_group;
  const int64_t src_groups = a.mode == ScaleMode::kNone ? 1 : a.K / a.group_size;
  if (groups % src_groups != 0)
    return "gemm_cutlass: the group terms' group (" + std::to_string(terms_group) + ") must divide group_size";
  if (a.N % 16 != 0 || reinterpret_cast<uintptr_t>(S) % 16 != 0 || reinterpret_cast<uintptr_t>(Z) % 16 != 0)
    return "gemm_cutlass: the group terms need N a multiple of 16 and a 16-byte aligned workspace";
  if (reinterpret_cast<uintptr_t>(clear) % 16 != 0 || clear_bytes % 16 != 0 || clear_bytes > 16 * kTermsThreads)
    return "gemm_cutlass: the range the group terms kernel clears must be whole 16-byte vectors, at most " +
           std::to_string(16 * kTermsThreads) + " bytes (" + std::to_string(clear_bytes) + " asked)";
  const dim3 grid(static_cast<unsigned>((a.N + kTermsRows - 1) / kTermsRows),
                  static_cast<unsigned>((src_groups + kTermsSrcCols - 1) / kTermsSrcCols));
  const float val_off = static_cast<float>(plan::gemm_cutlass_value_offset(a.w_format));
  const void* zeros = a.mode >= ScaleMode::kOriginal ? a.zeros : nullptr;
  const int v = terms_run_width(src_groups, a.mode == ScaleMode::kNone ? nullptr : a.scale, zeros,
                                a.mode == ScaleMode::kQuantized ? 1 : 2);
  const auto kernel = v == 8 ? group_terms_kernel<T, 8>
                    : v == 4 ? group_terms_kernel<T, 4>
                    : v == 2 ? group_terms_kernel<T, 2> : group_terms_kernel<T, 1>;
  kernel<<<grid, kTermsThreads, 0, stream>>>(
      static_cast<const T*>(a.scale), a.zeros, static_cast<int>(a.mode), format_is_signed_int(a.w_format), val_off,
      static_cast<int>(a.N), static_cast<int>(src_groups), static_cast<int>(groups / src_groups), S, Z,
      static_cast<uint4*>(clear), static_cast<int>(clear_bytes / 16));
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return std::string("CUDA error in gemm_cutlass's group terms: ") + cudaGetErrorString(e);
  return "";
}

// A call on held group terms (MatmulArgs::group_terms) has none to write; a stream-K tile's flags are cleared by
// this instead, launched where the terms kernel would be (the GEMM its programmatic dependent as there).
__global__ void __launch_bounds__(kTermsThreads) clear_flags_kernel(uint4* __restrict__ clear, int clear_vecs) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
  if (static_cast<int>(threadIdx.x) < clear_vecs) clear[threadIdx.x] = make_uint4(0, 0, 0, 0);
}

std::string clear_flags(void* clear, size_t clear_bytes, cudaStream_t stream) {
  if (clear_bytes == 0) return "";
  if (reinterpret_cast<uintptr_t>(clear) % 16 != 0 || clear_bytes % 16 != 0 || clear_bytes > 16 * kTermsThreads)
    return "gemm_cutlass: the stream-K flags to clear must be whole 16-byte vectors, at most " +
           std::to_string(16 * kTermsThreads) + " bytes (" + std::to_string(clear_bytes) + " asked)";
  clear_flags_kernel<<<1, kTermsThreads, 0, stream>>>(static_cast<uint4*>(clear), static_cast<int>(clear_bytes / 16));
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return std::string("CUDA error in gemm_cutlass's stream-K flags: ") + cudaGetErrorString(e);
  return "";
}

// K split: C[m, n] = sum over l, in order, of partials[l][m][n], + bias[n], rounded once to T (the same sum
// every run). Four columns a thread (N is a multiple of 16, the partials 256-byte and C 16-byte aligned).
template <class T>
__global__ void split_reduce_kernel(const float* partials, int split, const T* bias, int64_t M, int64_t N, T* C) {
  const int64_t quads = M * N / 4, plane = M * N;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads; q += int64_t(gridDim.x) * blockDim.x) {
    float4 acc = reinterpret_cast<const float4*>(partials)[q];
    for (int l = 1; l < split; ++l) {
      const float4 p = reinterpret_cast<const float4*>(partials + l * plane)[q];
      acc.x += p.x, acc.y += p.y, acc.z += p.z, acc.w += p.w;
    }
    if (bias) {
      const int64_t n = (4 * q) % N;
      acc.x += to_f(bias[n]), acc.y += to_f(bias[n + 1]), acc.z += to_f(bias[n + 2]), acc.w += to_f(bias[n + 3]);
    }
    T out[4] = {from_f<T>(acc.x), from_f<T>(acc.y), from_f<T>(acc.z), from_f<T>(acc.w)};
    *reinterpret_cast<uint2*>(C + 4 * q) = *reinterpret_cast<const uint2*>(out);
  }
}

template <class T>
std::string reduce_split(const MatmulArgs& a, int split, const float* partials, cudaStream_t stream) {
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((a.M * a.N / 4 + threads - 1) / threads, 8192));
  split_reduce_kernel<T><<<blocks, threads, 0, stream>>>(partials, split, static_cast<const T*>(a.bias), a.M, a.N,
                                                          static_cast<T*>(a.C));
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return std::string("CUDA error in gemm_cutlass's split-K reduction: ") + cudaGetErrorString(e);
  return "";
}

// The unit of a weight format's codes (gemm_cutlass.h), activation type and scheduler; null for a format
// gemm_cutlass does not read (plan.h gemm_cutlass_format).
using CutlassUnit = std::string (*)(const MatmulArgs&, int, int, bool, const void*, const void*, const WriteTerms&,
                                    void*, cudaStream_t);
CutlassUnit unit_for(WFormat w_format, bool bf16, bool stream_k) {
  // [code kind][bf16][stream_k]
  static constexpr CutlassUnit kUnits[4][2][2] = {
      {{run_gemm_cutlass_w4_f16, run_gemm_cutlass_w4_f16_stream_k},
       {run_gemm_cutlass_w4_bf16, run_gemm_cutlass_w4_bf16_stream_k}},
      {{run_gemm_cutlass_w8_f16, run_gemm_cutlass_w8_f16_stream_k},
       {run_gemm_cutlass_w8_bf16, run_gemm_cutlass_w8_bf16_stream_k}},
      {{run_gemm_cutlass_nf4_f16, run_gemm_cutlass_nf4_f16_stream_k},
       {run_gemm_cutlass_nf4_bf16, run_gemm_cutlass_nf4_bf16_stream_k}},
      {{run_gemm_cutlass_fp4_f16, run_gemm_cutlass_fp4_f16_stream_k},
       {run_gemm_cutlass_fp4_bf16, run_gemm_cutlass_fp4_bf16_stream_k}},
  };
  int kind = -1;
  switch (w_format) {
    case WFormat::kInt4: case WFormat::kUInt4: kind = 0; break;
    case WFormat::kInt8: case WFormat::kUInt8: kind = 1; break;
    case WFormat::kNF4: kind = 2; break;
    case WFormat::kFP4E2M1: kind = 3; break;
    default: return nullptr;
  }
  return kUnits[kind][bf16][stream_k];
}

// The GEMM on the call's group terms: held ones (call.group_terms: [2][rows][N], rows
// plan::gemm_cutlass_held_terms_rows, the layout `a`'s terms have, with its rows or more) or ones the terms kernel
// writes at the start of the workspace ([2][K / a.group_size][N]).
template <class T>
std::string run_with_terms(const MatmulArgs& call, const MatmulArgs& a, int tile, int split, bool pdl, uint8_t* ws,
                           cudaStream_t stream) {
  const bool held = call.group_terms != nullptr;
  T* written = reinterpret_cast<T*>(ws);
  const T* S = held ? static_cast<const T*>(call.group_terms) : written;
  const int64_t rows =
      held ? plan::gemm_cutlass_held_terms_rows(static_cast<int>(call.mode), call.group_size, call.K) : a.K / a.group_size;
  if (held && rows < a.K / a.group_size) return "gemm_cutlass: the held group terms have too few rows for this split";
  const T* Z = S + rows * a.N;
  uint8_t* scratch = ws + plan::gemm_cutlass_terms_bytes(a.N, a.K, a.group_size);  // partials / stream-K's
  const auto run = unit_for(a.w_format, std::is_same_v<T, __nv_bfloat16>, plan::kCutlassTiles[tile].stream_k);
  if (!run) return "gemm_cutlass: no kernel for this weight format";
  const WriteTerms write_terms = [&](void* clear, size_t clear_bytes) {
    return held ? clear_flags(clear, clear_bytes, stream)
                : write_group_terms(call, a.group_size, written, written + rows * a.N, clear, clear_bytes, stream);
  };
  std::string err = run(a, tile, split, pdl, S, Z, write_terms, scratch, stream);
  if (!err.empty() || split == 1 || plan::kCutlassTiles[tile].stream_k) return err;  // (stream-K: C written)
  return reduce_split<T>(a, split, reinterpret_cast<const float*>(scratch), stream);
}

}  // namespace

#ifdef BITBLAS_JAX_CUTLASS
bool gemm_cutlass_built() { return true; }
#else
bool gemm_cutlass_built() { return false; }
#endif

std::string launch_gemm_cutlass(const MatmulArgs& call, int tile, int64_t split_k, bool pdl, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream) {
  if (!gemm_cutlass_built())
    return "gemm_cutlass: this install was built without CUTLASS (the nvidia-cutlass headers were not found)";
  if (tile < 0 || tile >= plan::kNumCutlassTiles) return "gemm_cutlass: bad tile " + std::to_string(tile);
  if (!format_is_integer(call.w_format) && !plan::gemm_cutlass_tile_takes_tables(tile))
    return "gemm_cutlass: tile " + std::to_string(tile) + " is built for integer codes only";
  if (!plan::gemm_cutlass_split_ok(static_cast<int>(call.mode), call.group_size, call.K, tile, split_k))
    return "gemm_cutlass: tile " + std::to_string(tile) + " with split_k " + std::to_string(split_k) +
           ": K = " + std::to_string(call.K) + " must cut into at most " + std::to_string(plan::kCutlassMaxSplit) +
           " parts: of whole 64-k stages and whole groups on the persistent tiles (only the " +
           std::to_string(plan::kCutlassSplitWeightRows) + "-row ones of at most " +
           std::to_string(plan::kCutlassMaxSplitRows) + " activation rows split), of at least " +
           std::to_string(plan::kCutlassStreamKMinStages) + " stages on the stream-K tiles";
  const int split = static_cast<int>(split_k);  // at most kCutlassMaxSplit
  // the call with the group its terms come in (one per row of each batch where the mode has no scales): what
  // the plan sized
  MatmulArgs a = call;
  a.group_size = plan::gemm_cutlass_terms_group(static_cast<int>(call.mode), call.group_size, call.K, tile, split);
  const bool out_is_act = a.out_dtype == a.a_dtype;
  if (a.a_dtype != DType::kF16 && a.a_dtype != DType::kBF16) return "gemm_cutlass: float16 or bfloat16 activations";
  if (!plan::gemm_cutlass_takes(a.w_format, out_is_act, a.accum_dtype == DType::kF32, a.group_size, a.N, a.K))
    return "gemm_cutlass: takes int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights, output in the activations' "
           "dtype, float32 accumulation, K and group_size multiples of 64 (or group_size K), N a multiple of 16";
  if (a.M < 0) return "gemm_cutlass: M must be >= 0";
  if (a.M == 0) return "";
  if (a.mode != ScaleMode::kNone && !a.scale) return "gemm_cutlass: this mode needs scale";
  if (a.mode >= ScaleMode::kOriginal && !a.zeros) return "gemm_cutlass: this mode needs zeros";
  if (!a.A || !a.W || !a.C || !workspace) return "gemm_cutlass: A, W, C and the workspace must not be null";
  if (workspace_bytes < static_cast<size_t>(plan::gemm_cutlass_workspace_bytes(a.M, a.N, a.K, a.group_size, tile, split)))
    return "gemm_cutlass: workspace too small";
  for (const void* p : {a.A, static_cast<const void*>(a.W), static_cast<const void*>(a.C), a.bias,
                        static_cast<const void*>(workspace), a.group_terms})
    if (reinterpret_cast<uintptr_t>(p) % 16)
      return "gemm_cutlass: A, W, C, bias, group_terms and the workspace must be 16-byte aligned";
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  return a.a_dtype == DType::kF16 ? run_with_terms<__half>(call, a, tile, split, pdl, ws, stream)
                                  : run_with_terms<__nv_bfloat16>(call, a, tile, split, pdl, ws, stream);
}

#ifndef BITBLAS_JAX_CUTLASS
#define BBJ_NO_CUTLASS(unit)                                                                            \
  std::string run_gemm_cutlass_##unit(const MatmulArgs&, int, int, bool, const void*, const void*,        \
                                      const WriteTerms&, void*, cudaStream_t) {                           \
    return "gemm_cutlass: built without CUTLASS";                                                      \
  }
BBJ_GEMM_CUTLASS_UNITS(BBJ_NO_CUTLASS)
#undef BBJ_NO_CUTLASS
#endif

}  // namespace bitblas_jax
