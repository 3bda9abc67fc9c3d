// The 8-bit tensor-core A fragment of the packed weight layout, shared by the 8-bit-activation GEMMs
// (gemm_wgmma_a8.cuh: wgmma k32, sm_90a; gemm_mma_a8.cuh: mma.sync m16n8k32, sm_80+). Both instructions
// take, per warp, the m16n8k32 A fragment: register r of lane (g = lane / 4, c = lane % 4) holds 4
// consecutive k positions 4c..4c+3 of row g (r = 0) or g + 8 (r = 1), and the same at 16 + 4c (r = 2, 3).
// A lane of the packed layout holds the fp16 m16n8k16 fragment instead (row g at k 2c, 2c+1, 2c+8, 2c+9
// per 16-k step). A dot product ignores the order of k when both operands share it, so position 4c + i
// carries the lane's own k = kSigma[4c + i] of each 16-k chunk, and the activations are handed over in
// that order (bitblas_jax/primitive.py permutes them); gemm_wgmma_a8.cuh's header works the registers out.
#pragma once

#include <cstdint>

#include "bitblas_jax/formats_generated.h"

namespace bitblas_jax {
namespace cudak {

// k position -> the k it carries, within each 16-k chunk.
constexpr int kSigma[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};

// The e4m3 bits of int4 values, code c (value c - 8) at byte c of this table's 16 bytes.
constexpr uint32_t kInt4E4m3[4] = {0xCACCCED0u, 0xB8C0C4C8u, 0x44403800u, 0x4E4C4A48u};

// Four int4 codes (one per byte, 0..15) -> the e4m3 bits of their values, per byte.
__device__ __forceinline__ uint32_t int4_codes_to_e4m3(uint32_t r) {
  uint32_t t = r & 0x07070707u;                                   // the code's index in its half table
  t |= t >> 4;
  const uint32_t sel = (t & 0xffu) | ((t >> 8) & 0xff00u);       // one selector nibble per byte
  const uint32_t neg = __byte_perm(kInt4E4m3[0], kInt4E4m3[1], sel);   // codes 0..7: values -8..-1
  const uint32_t pos = __byte_perm(kInt4E4m3[2], kInt4E4m3[3], sel);   // codes 8..15: values 0..7
  const uint32_t upper = ((r >> 3) & 0x01010101u) * 0xffu;       // 0xff in the bytes of codes 8..15
  return (pos & upper) | (neg & ~upper);
}

// The A registers of k32 step j of a lane's 16-byte chunk (the fragment order above; int8 weights are
// offset binary, float8 ones their own bits, int4 under float8 activations becomes e4m3).
template <WFormat WF, bool FLOAT8_ACT>
__device__ __forceinline__ void a8_fragment(const uint4& w, int j, uint32_t (&a)[4]) {
  static_assert(!FLOAT8_ACT || WF != WFormat::kUInt4, "uint4 has no e4m3 lookup (plan.h: float8 takes int4)");
  if constexpr (format_bits(WF) == 8) {
    constexpr uint32_t flip = WF == WFormat::kInt8 ? 0x80808080u : 0u;   // offset binary -> int8
    a[0] = __byte_perm(w.x, w.y, 0x6420) ^ flip;
    a[1] = __byte_perm(w.x, w.y, 0x7531) ^ flip;
    a[2] = __byte_perm(w.z, w.w, 0x6420) ^ flip;
    a[3] = __byte_perm(w.z, w.w, 0x7531) ^ flip;
  } else {
    const uint32_t q0 = j == 0 ? w.x : w.z, q1 = j == 0 ? w.y : w.w;
    const uint32_t r[4] = {__byte_perm(q0 & 0x0f0f0f0fu, 0u, 0x3120), __byte_perm((q0 >> 4) & 0x0f0f0f0fu, 0u, 0x3120),
                           __byte_perm(q1 & 0x0f0f0f0fu, 0u, 0x3120), __byte_perm((q1 >> 4) & 0x0f0f0f0fu, 0u, 0x3120)};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (FLOAT8_ACT)
        a[i] = int4_codes_to_e4m3(r[i]);
      else if constexpr (WF == WFormat::kInt4)
        a[i] = (r[i] + 0x78787878u) ^ 0x80808080u;  // no carries: bytes < 0x88
      else
        a[i] = r[i];
    }
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
