// gemm_cutlass (gemm_cutlass.h): the call's checks and the group terms; the CUTLASS kernels where built.
#include "gemm_cutlass.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "bitblas_jax/plan.h"

namespace bitblas_jax {
namespace {

__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// The group terms, [G][N], that CUTLASS's "scale with zero" conversion takes: w = code * S + Z reproduces the
// mode's dequantization (kernel_api.h) with value = code - val_off (int4's offset-binary codes: val_off 8):
// S = s and Z = -(val_off + z) s (original), -(val_off + qz) s (quantized), -val_off s - z (rescale),
// -val_off s (scale; s = 1 for none). Inputs are [N][G].
template <class T>
__global__ void group_terms_kernel(const T* scale, const void* zeros, int mode, bool zeros_signed, float val_off,
                                   int64_t N, int64_t G, T* S, T* Z) {
  const int64_t count = N * G;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i / N, n = i % N;
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
    S[i] = from_f<T>(s);
    Z[i] = from_f<T>(z);
  }
}

template <class T>
std::string write_group_terms(const MatmulArgs& a, T* S, T* Z, cudaStream_t stream) {
  const int64_t groups = a.K / a.group_size;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((a.N * groups + threads - 1) / threads, 4096));
  const float val_off = a.w_format == WFormat::kInt4 ? 8.f : 0.f;
  group_terms_kernel<T><<<blocks, threads, 0, stream>>>(static_cast<const T*>(a.scale), a.zeros,
                                                        static_cast<int>(a.mode), a.w_format == WFormat::kInt4,
                                                        val_off, a.N, groups, S, Z);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    return std::string("CUDA error in gemm_cutlass's group terms: ") + cudaGetErrorString(e);
  return "";
}

}  // namespace

#ifdef BITBLAS_JAX_CUTLASS
bool gemm_cutlass_built() { return true; }
#else
bool gemm_cutlass_built() { return false; }
#endif

std::string launch_gemm_cutlass(const MatmulArgs& call, int tile, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream) {
  if (!gemm_cutlass_built())
    return "gemm_cutlass: this install was built without CUTLASS (the nvidia-cutlass headers were not found)";
  // the call with the group its terms come in (one per row where the mode has no scales): what the plan sized
  MatmulArgs a = call;
  a.group_size = plan::gemm_cutlass_group(static_cast<int>(call.mode), call.group_size, call.K);
  const bool out_is_act = a.out_dtype == a.a_dtype;
  if (a.a_dtype != DType::kF16 && a.a_dtype != DType::kBF16) return "gemm_cutlass: float16 or bfloat16 activations";
  if (!plan::gemm_cutlass_takes(a.w_format, out_is_act, a.accum_dtype == DType::kF32, a.group_size, a.N, a.K))
    return "gemm_cutlass: takes int4 / uint4 weights, output in the activations' dtype, float32 accumulation, "
           "K and group_size multiples of 64 (or group_size K), N a multiple of 16";
  if (tile < 0 || tile >= plan::kNumCutlassTiles) return "gemm_cutlass: bad tile " + std::to_string(tile);
  if (a.M < 0) return "gemm_cutlass: M must be >= 0";
  if (a.M == 0) return "";
  if (a.mode != ScaleMode::kNone && !a.scale) return "gemm_cutlass: this mode needs scale";
  if (a.mode >= ScaleMode::kOriginal && !a.zeros) return "gemm_cutlass: this mode needs zeros";
  if (!a.A || !a.W || !a.C || !workspace) return "gemm_cutlass: A, W, C and the workspace must not be null";
  if (workspace_bytes < static_cast<size_t>(plan::gemm_cutlass_workspace_bytes(a.N, a.K, a.group_size)))
    return "gemm_cutlass: workspace too small";
  for (const void* p : {a.A, static_cast<const void*>(a.W), static_cast<const void*>(a.C), a.bias})
    if (reinterpret_cast<uintptr_t>(p) % 16) return "gemm_cutlass: A, W, C and bias must be 16-byte aligned";
  const int64_t terms = (a.K / a.group_size) * a.N;
  if (a.a_dtype == DType::kF16) {
    __half* S = static_cast<__half*>(workspace);
    if (std::string err = write_group_terms(a, S, S + terms, stream); !err.empty()) return err;
    return run_gemm_cutlass_f16(a, tile, S, S + terms, stream);
  }
  __nv_bfloat16* S = static_cast<__nv_bfloat16*>(workspace);
  if (std::string err = write_group_terms(a, S, S + terms, stream); !err.empty()) return err;
  return run_gemm_cutlass_bf16(a, tile, S, S + terms, stream);
}

#ifndef BITBLAS_JAX_CUTLASS
std::string run_gemm_cutlass_f16(const MatmulArgs&, int, const void*, const void*, cudaStream_t) {
  return "gemm_cutlass: built without CUTLASS";
}
std::string run_gemm_cutlass_bf16(const MatmulArgs&, int, const void*, const void*, cudaStream_t) {
  return "gemm_cutlass: built without CUTLASS";
}
#endif

}  // namespace bitblas_jax
