// The table formats' 4-bit codes (nf4, fp4_e2m1) into CUTLASS's mixed-input mainloop: a register lookup of eight
// codes (one 32-bit word of the packed layout, nibbles in the order [0 2 4 6 1 3 5 7]: cutlass_packed_layout.h) into
// eight float16 / bfloat16 table values, in element order. The tables are formats_generated.h's, rounded to the
// activations' type as the other kernels round them (convert.cuh init_nf4_tab); the group terms then apply the
// scale (plan.h gemm_cutlass_value_offset is 0 for these formats: the lookup yields the value itself).
//
// CUTLASS picks the mainloop's conversion by source type and register layout (cutlass::LayoutAwareConvertImpl,
// cutlass/detail/collective/mixed_input_utils.hpp), so each table format reads its codes as a 4-bit type of its own
// (Table4Code: a uint4b_t's storage under another name). Included by gemm_cutlass.cuh before any instantiation.
//
// The lookup, per half word (four codes, one nibble each): prmt picks one byte out of eight by a 3-bit index, so a
// 16-entry table of 16-bit values is four byte tables of eight entries (low / high bytes of entries 0-7 and 8-15,
// two registers each). Two prmts give a code's low byte from either half table and a third prmt turns the code's top
// bit into a byte mask (its sign-replicating mode) that picks between them; the same for the high byte. Two rounds
// of prmt then interleave the low and high bytes of the two half words into element pairs. 28 integer instructions
// for eight values (CUTLASS's uint4 conversion: 12), all on the integer pipe beside the tensor cores.
#pragma once

#include <cstdint>

#include "bitblas_jax/formats_generated.h"
#include "cute/tensor.hpp"
#include "cutlass/bfloat16.h"
#include "cutlass/detail/dependent_false.hpp"
#include "cutlass/half.h"
#include "cutlass/integer_subbyte.h"
#include "cutlass/numeric_conversion.h"
#include "cutlass/numeric_size.h"

namespace bitblas_jax {

// A table format's 4-bit code as the mainloop holds it (F: WFormat::kNF4 or kFP4E2M1).
template <WFormat F>
struct Table4Code : cutlass::integer_subbyte<4, false> {
  static_assert(F == WFormat::kNF4 || F == WFormat::kFP4E2M1, "a 4-bit table format");
  using cutlass::integer_subbyte<4, false>::integer_subbyte;
  Table4Code() = default;
};

namespace table4 {

// The format's table in the activations' type, as 16-bit patterns (formats_generated.h).
template <WFormat F, bool BF16>
constexpr uint16_t entry(int code) {
  return F == WFormat::kNF4 ? (BF16 ? kNF4BF16Bits[code] : kNF4F16Bits[code])
                            : (BF16 ? kFP4E2M1BF16Bits[code] : kFP4E2M1F16Bits[code]);
}
// Byte `byte` (0 low, 1 high) of entries first .. first + 3, as the four bytes of a word (a prmt source).
template <WFormat F, bool BF16>
constexpr uint32_t byte_quad(int first, int byte) {
  uint32_t w = 0;
  for (int i = 0; i < 4; ++i) w |= uint32_t((entry<F, BF16>(first + i) >> (8 * byte)) & 0xff) << (8 * i);
  return w;
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
  return d;
}
// m ? b : a, bit by bit
__device__ __forceinline__ uint32_t select_bits(uint32_t a, uint32_t b, uint32_t m) {
  constexpr uint32_t kImmSelect = (0xf0 & ~0xaa) | (0xcc & 0xaa);  // (a & ~c) | (b & c)
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(d) : "r"(a), "r"(b), "r"(m), "n"(kImmSelect));
  return d;
}

// Eight codes (nibble p of `word` holds element [0 2 4 6 1 3 5 7][p]) -> out[j] = elements (2 j, 2 j + 1), the
// lower element in the low half.
template <WFormat F, bool BF16>
__device__ __forceinline__ void lookup8(uint32_t word, uint32_t (&out)[4]) {
  constexpr uint32_t kLo0 = byte_quad<F, BF16>(0, 0), kLo1 = byte_quad<F, BF16>(4, 0);
  constexpr uint32_t kLo2 = byte_quad<F, BF16>(8, 0), kLo3 = byte_quad<F, BF16>(12, 0);
  constexpr uint32_t kHi0 = byte_quad<F, BF16>(0, 1), kHi1 = byte_quad<F, BF16>(4, 1);
  constexpr uint32_t kHi2 = byte_quad<F, BF16>(8, 1), kHi3 = byte_quad<F, BF16>(12, 1);
  // selector nibbles: the code's low 3 bits pick a byte of a half table; for the mask, 9 (byte 1, 0x80, with its
  // sign replicated: 0xff) where the code's top bit is set, else 0 (byte 0: 0x00)
  constexpr uint32_t kMaskSource = 0x00008000u;
  const uint32_t index = word & 0x77777777u;
  const uint32_t top = word & 0x88888888u;
  const uint32_t mask_sel = top | (top >> 3);
  uint32_t lo[2], hi[2];  // [h]: bytes of elements (h, h + 2, h + 4, h + 6)
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t sel = index >> (16 * h);
    const uint32_t upper = prmt(kMaskSource, 0u, mask_sel >> (16 * h));
    lo[h] = select_bits(prmt(kLo0, kLo1, sel), prmt(kLo2, kLo3, sel), upper);
    hi[h] = select_bits(prmt(kHi0, kHi1, sel), prmt(kHi2, kHi3, sel), upper);
  }
  const uint32_t lo_0123 = prmt(lo[0], lo[1], 0x5140u), hi_0123 = prmt(hi[0], hi[1], 0x5140u);
  const uint32_t lo_4567 = prmt(lo[0], lo[1], 0x7362u), hi_4567 = prmt(hi[0], hi[1], 0x7362u);
  out[0] = prmt(lo_0123, hi_0123, 0x5140u);
  out[1] = prmt(lo_0123, hi_0123, 0x7362u);
  out[2] = prmt(lo_4567, hi_4567, 0x5140u);
  out[3] = prmt(lo_4567, hi_4567, 0x7362u);
}

}  // namespace table4
}  // namespace bitblas_jax

namespace cutlass {

template <bitblas_jax::WFormat F>
struct sizeof_bits<bitblas_jax::Table4Code<F>> {
  static constexpr int value = 4;
};

// Any other conversion of a table code (CUTLASS's generic one, were the mainloop's register layout ever another
// than the packed word's) would read the code as an integer: a compile error instead.
template <class Dst, bitblas_jax::WFormat F, int N, FloatRoundStyle Round, class Transform>
struct NumericArrayConverter<Dst, bitblas_jax::Table4Code<F>, N, Round, Transform> {
  static_assert(cutlass::detail::dependent_false<Dst>,
                "a table code converts only through the packed word's lookup (LayoutAwareConvertImpl below)");
};

// The mainloop's conversion of eight table codes in the packed word order into eight 16-bit values.
template <bitblas_jax::WFormat F, class Dst>
struct LayoutAwareConvertImpl<bitblas_jax::Table4Code<F>, Dst,
                              cute::Layout<cute::Shape<cute::_2, cute::_4>, cute::Stride<cute::_4, cute::_1>>,
                              cute::Layout<cute::_8>> {
  static_assert(cute::is_same_v<Dst, cutlass::half_t> || cute::is_same_v<Dst, cutlass::bfloat16_t>,
                "gemm_cutlass converts table codes to float16 or bfloat16");
  template <class EngineIn, class EngineOut>
  CUTLASS_DEVICE static void convert(
      cute::Tensor<EngineIn, cute::Layout<cute::Shape<cute::_2, cute::_4>, cute::Stride<cute::_4, cute::_1>>> const& src,
      cute::Tensor<EngineOut, cute::Layout<cute::_8>>& dst) {
    const uint32_t word = cute::recast<uint32_t>(src)(0);
    uint32_t pairs[4];
    bitblas_jax::table4::lookup8<F, cute::is_same_v<Dst, cutlass::bfloat16_t>>(word, pairs);
    auto&& out = cute::recast<uint32_t>(dst);
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < 4; ++j) out(j) = pairs[j];
  }
};

}  // namespace cutlass
