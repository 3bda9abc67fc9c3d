// The output writes: 16-bit activations cast to the output dtype, then add the bias (store_out);
// int8 / float8 activations' float32 values get the per-channel and per-row (activation) scales and the
// bias, then the cast (store_qact).
#pragma once

#include <type_traits>

#include "params.cuh"
#include "ptx.cuh"

namespace bitblas_jax {
namespace cudak {

// C[m, n] = cast_out(acc) (+ bias[n], added after the cast, in the output type).
template <typename T>
__device__ __forceinline__ void store_out(const KParams& p, long long m, long long n, float acc) {
  const long long idx = m * p.N + n;
  const bool has_bias = p.bias != nullptr;
  const float b = has_bias ? TT<T>::tof(ldg_u16(p.bias, n)) : 0.f;
  switch (p.out_dtype) {
    case OUT_F16: {
      __half h = __float2half_rn(acc);
      if (has_bias) h = __float2half_rn(__half2float(h) + b);
      reinterpret_cast<__half*>(p.C)[idx] = h;
      break;
    }
    case OUT_BF16: {
      __nv_bfloat16 h = __float2bfloat16_rn(acc);
      if (has_bias) h = __float2bfloat16_rn(__bfloat162float(h) + b);
      reinterpret_cast<__nv_bfloat16*>(p.C)[idx] = h;
      break;
    }
    default:
      reinterpret_cast<float*>(p.C)[idx] = acc + b;
      break;
  }
}

// cast_out(v) for int8 / float8 activations (v: float32, bias and scales applied) into the output's C++
// type: float, __half, __nv_bfloat16, or int8_t rounding half to even and saturating (NaN -> 0), as
// bitblas_jax/quantized_dot.py cast_out.
template <typename T>
__device__ __forceinline__ T qact_cast(float v) {
  if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(v);
  else if constexpr (std::is_same_v<T, int8_t>)
    return static_cast<int8_t>(isnan(v) ? 0.f : rintf(fminf(fmaxf(v, -128.f), 127.f)));
  else return v;
}

// The 8-bit kernels' output dtype as a C++ type (int32_t: the int32 sums themselves): with_qact_out_type
// calls f(QActOut<T>{}) once, so a tile's loop of stores is compiled for one type: a switch on the dtype per
// element compiles to about 45 instructions an element in gemm_wgmma_a8's 256-row epilogue, more than its main
// loop issues on a short K (docs/KERNELS.md, gemm_wgmma_a8: The epilogue).
template <typename T>
struct QActOut {
  using type = T;
};
template <typename F>
__device__ __forceinline__ void with_qact_out_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kI32: f(QActOut<int32_t>{}); break;
    case DType::kF16: f(QActOut<__half>{}); break;
    case DType::kBF16: f(QActOut<__nv_bfloat16>{}); break;
    case DType::kI8: f(QActOut<int8_t>{}); break;
    default: f(QActOut<float>{}); break;
  }
}

// C[o] of an 8-bit-activation kernel from its sum x (qact_value: the value, store_qact: stored): an int32 output is
// the int32 sum itself; else
// qact_cast(cs * x + b) in float32 (one fmaf), cs the output's column scale times its row's activation
// scale and b its column's bias (1 and 0 where the call has none: col_scale_of / row_scale_of / bias_of).
template <typename T, typename Sum>
__device__ __forceinline__ T qact_value(float cs, float b, Sum x) {
  if constexpr (std::is_same_v<T, int32_t>) return static_cast<int32_t>(x);
  else return qact_cast<T>(fmaf(cs, static_cast<float>(x), b));
}
template <typename T, typename Sum>
__device__ __forceinline__ void store_qact(T* out, long long o, float cs, float b, Sum x) {
  out[o] = qact_value<T>(cs, b, x);
}
__device__ __forceinline__ float col_scale_of(const float* col_scale, long long n) {
  return col_scale ? __ldg(col_scale + n) : 1.f;
}
// The activation scale of output row m (Matmul's a_scale: quantize_activations' per-token scales), or 1.
__device__ __forceinline__ float row_scale_of(const float* row_scale, long long m) {
  return row_scale ? __ldg(row_scale + m) : 1.f;
}
__device__ __forceinline__ float bias_of(const float* bias, long long n) { return bias ? __ldg(bias + n) : 0.f; }

// One element, the dtype dispatched here (decode_i8 and gemm_mma_a8: a thread's few outputs; a plain switch, which
// builds in half the time of with_qact_out_type per element): store_qact of output (m, n) with column n's
// per-channel scale and bias and row m's activation scale (col_scale and bias float32 [N], row_scale
// float32 [M], each or null).
template <typename Sum>
__device__ __forceinline__ void store_qact_sum(void* out, long long o, DType dtype, const float* col_scale,
                                               const float* row_scale, const float* bias, long long m,
                                               long long n, Sum x) {
  if (dtype == DType::kI32) return store_qact(static_cast<int32_t*>(out), o, 1.f, 0.f, x);
  const float cs = col_scale_of(col_scale, n) * row_scale_of(row_scale, m), b = bias_of(bias, n);
  switch (dtype) {
    case DType::kF16: store_qact(static_cast<__half*>(out), o, cs, b, x); break;
    case DType::kBF16: store_qact(static_cast<__nv_bfloat16*>(out), o, cs, b, x); break;
    case DType::kI8: store_qact(static_cast<int8_t*>(out), o, cs, b, x); break;
    default: store_qact(static_cast<float*>(out), o, cs, b, x); break;
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
