// The output write: cast to the output dtype, then the bias.
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

}  // namespace cudak
}  // namespace bitblas_jax
