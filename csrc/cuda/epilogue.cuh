// The output writes: 16-bit activations cast to the output dtype, then add the bias (store_out);
// int8 / float8 activations' float32 values are cast last (store_qact_out).
#pragma once

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

// out[o] = cast_out(v) for int8 / float8 activations (v: float32, bias and scales applied): kF32, kF16,
// kBF16, or kI8 rounding half to even and saturating (NaN -> 0), as bitblas_jax/quantized_dot.py
// cast_out.
__device__ __forceinline__ void store_qact_out(void* out, long long o, DType dtype, float v) {
  switch (dtype) {
    case DType::kF16: static_cast<__half*>(out)[o] = __float2half_rn(v); break;
    case DType::kBF16: static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16_rn(v); break;
    case DType::kI8:
      static_cast<int8_t*>(out)[o] = static_cast<int8_t>(isnan(v) ? 0.f : rintf(fminf(fmaxf(v, -128.f), 127.f)));
      break;
    default: static_cast<float*>(out)[o] = v; break;
  }
}

// C[o] of an 8-bit-activation kernel from its sum x for output column n: an int32 output is the int32
// sum itself; else store_qact_out(col_scale[n] * x + bias[n]) in float32 (one fmaf; col_scale and bias
// float32 [N] or null).
template <typename Sum>
__device__ __forceinline__ void store_qact_sum(void* out, long long o, DType dtype, const float* col_scale,
                                               const float* bias, long long n, Sum x) {
  if (dtype == DType::kI32) {
    static_cast<int32_t*>(out)[o] = static_cast<int32_t>(x);
    return;
  }
  const float cs = col_scale ? __ldg(col_scale + n) : 1.f;
  const float b = bias ? __ldg(bias + n) : 0.f;
  store_qact_out(out, o, dtype, fmaf(cs, static_cast<float>(x), b));
}

}  // namespace cudak
}  // namespace bitblas_jax
