// 8-bit codes into CUTLASS's mixed-input mainloop: a conversion of four unsigned 8-bit codes b, held in the packed
// layout's byte order [0 2 1 3] (cutlass_packed_layout.h), to float16 / bfloat16 b - 128, exactly. CUTLASS ships
// this order's conversion only for two's-complement int8; the packed weight keeps int8 as offset binary (docs/
// LAYOUT.md) and uint8 as is, so gemm_cutlass reads both as uint8 and this centered code: int8's value itself,
// uint8's value - 128 (the group terms add the rest: plan.h gemm_cutlass_value_offset). Centered, int8 in mode
// scale dequantizes as value * s rounded once, as the other kernels do.
// A specialization of cutlass::LayoutAwareConvertImpl (cutlass/detail/collective/mixed_input_utils.hpp), which the
// mainloop picks by source type and register layout; included by gemm_cutlass.cuh before any instantiation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cute/tensor.hpp"
#include "cutlass/bfloat16.h"
#include "cutlass/half.h"

namespace cutlass {

namespace bitblas_jax_u8 {
using ByteOrder0213 = cute::Layout<cute::Shape<cute::_2, cute::_2>, cute::Stride<cute::_2, cute::_1>>;

// Two codes (bytes 0 and 2 of `word`, or 1 and 3 after a shift by 8) as a float16 pair: 1024 + b by the
// exponent of 1024 (the byte as mantissa bits, exact up to 2047), then - (1024 + 128).
__device__ __forceinline__ uint32_t f16x2_centered(uint32_t word) {
  constexpr uint32_t kByteMask = 0x00FF00FF, kMagic = 0x64006400, kImmAndOr = (0xf0 & 0xcc) | 0xaa;
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(r) : "r"(word), "n"(kByteMask), "n"(kMagic), "n"(kImmAndOr));
  const uint32_t bias = 0x64806480;  // 1152, 1152
  __half2 h = __hsub2(reinterpret_cast<const __half2&>(r), reinterpret_cast<const __half2&>(bias));
  return reinterpret_cast<uint32_t&>(h);
}

// The same in bfloat16, whose 8-bit significand holds 128 + b exactly only below 256: the low 7 bits lo under
// the exponent of 128 (128 + lo), minus 256 where b's top bit is clear and 128 where it is set:
// 128 + lo - (256 - 128 top) = b - 128, each step exact.
__device__ __forceinline__ uint32_t bf16x2_centered(uint32_t word) {
  constexpr uint32_t kLowMask = 0x007F007F, kTopMask = 0x00800080, kMagic = 0x43004300;  // bf16 128
  constexpr uint32_t kImmAndOr = (0xf0 & 0xcc) | 0xaa, kImmNotAndOr = (0x0f & 0xcc) | 0xaa;  // (~a & b) | c
  uint32_t lo, top;
  asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(lo) : "r"(word), "n"(kLowMask), "n"(kMagic), "n"(kImmAndOr));
  // bf16 256 (top bit clear: 0x4380) or 128 (set: 0x4300)
  asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(top) : "r"(word), "n"(kTopMask), "n"(kMagic), "n"(kImmNotAndOr));
  __nv_bfloat162 h = __hsub2(reinterpret_cast<const __nv_bfloat162&>(lo), reinterpret_cast<const __nv_bfloat162&>(top));
  return reinterpret_cast<uint32_t&>(h);
}
}  // namespace bitblas_jax_u8

template <class Dst>
struct LayoutAwareConvertImpl<uint8_t, Dst, bitblas_jax_u8::ByteOrder0213, cute::Layout<cute::_4>> {
  static_assert(cute::is_same_v<Dst, cutlass::half_t> || cute::is_same_v<Dst, cutlass::bfloat16_t>,
                "gemm_cutlass converts 8-bit codes to float16 or bfloat16");
  template <class EngineIn, class EngineOut>
  CUTLASS_DEVICE static void convert(cute::Tensor<EngineIn, bitblas_jax_u8::ByteOrder0213> const& src,
                                     cute::Tensor<EngineOut, cute::Layout<cute::_4>>& dst) {
    const uint32_t word = cute::recast<uint32_t>(src)(0);
    auto&& out = cute::recast<uint32_t>(dst);
    CUTLASS_PRAGMA_UNROLL
    for (int half = 0; half < 2; ++half) {  // elements (0, 1) from bytes 0 and 2, (2, 3) from bytes 1 and 3
      const uint32_t w = word >> (8 * half);
      out(half) = cute::is_same_v<Dst, cutlass::half_t> ? bitblas_jax_u8::f16x2_centered(w)
                                                         : bitblas_jax_u8::bf16x2_centered(w);
    }
  }
};

}  // namespace cutlass
