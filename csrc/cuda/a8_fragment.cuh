// The 8-bit tensor-core A fragment of the packed weight layout, shared by the 8-bit-activation kernels
// (gemm_wgmma_a8.cuh: wgmma k32, sm_90a; gemm_mma_a8.cuh and decode_i8.cuh: mma.sync m16n8k32, sm_80+). They
// take, per warp, the m16n8k32 A fragment: register r of lane (g = lane / 4, c = lane % 4) holds 4
// consecutive k positions 4c..4c+3 of row g (r = 0) or g + 8 (r = 1), and the same at 16 + 4c (r = 2, 3).
// A lane of the packed layout holds the fp16 m16n8k16 fragment instead (row g at k 2c, 2c+1, 2c+8, 2c+9
// per 16-k step). A dot product ignores the order of k when both operands share it, so position 4c + i
// carries the lane's own k = kSigma[4c + i] of each 16-k chunk, and the activations are handed over in
// that order (bitblas_jax/primitive.py permutes them): the GEMMs, which stage A's tiles in shared memory,
// take each 16-k chunk in kSigma order; decode_i8, which reads each lane's B registers straight from
// global memory, takes each 32-k block in lane order (a8_lane_order_k: a lane's two registers of a k32
// step are 8 consecutive bytes, one load). gemm_wgmma_a8.cuh's header works the registers out.
#pragma once

#include <cstdint>

#include "bitblas_jax/formats_generated.h"

namespace bitblas_jax {
namespace cudak {

// k position -> the k it carries, within each 16-k chunk.
constexpr int kSigma[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};

// Lane order: position p = 8c + 4r + i of a 32-k block carries k = 16r + kSigma[4c + i], the k of byte i of
// B register r of lanes (g, c) in an m16n8k32 step, so lane c's two registers are the block's bytes 8c..8c+7.
constexpr int a8_lane_order_k(int p) { return 16 * ((p >> 2) & 1) + kSigma[4 * (p >> 3) + (p & 3)]; }

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

// The A registers of k32 step j of a lane's 16 bytes for 2- and 1-bit weights. A word holds E = 32 / BITS
// codes, SPW = E / 8 k16 steps; element i of k16 step s (local to the word) sits in bit field
// (i % 2) E / 2 + 4 s + i / 2 (layout.h field_of). x_r = (q >> BITS r) & mask puts field (E / 4) b + r in
// byte b, so row g (elements 0, 1, 4, 5: k 2c, 2c+1, 2c+8, 2c+9, kSigma's order) of step s is bytes b', b'+2
// of x_r and x_{r+2} with r = 4 (s % (E / 16)) and b' = s / (E / 16): one __byte_perm (0x6420 or 0x7531);
// row g + 8 (elements 2, 3, 6, 7) the same from x_{r+1} and x_{r+3}.
template <WFormat WF>
__device__ __forceinline__ void low_bit_fragment(const uint4& w, int j, uint32_t (&a)[4]) {
  constexpr int BITS = format_bits(WF);
  static_assert(BITS == 2 || BITS == 1, "2- and 1-bit weights");
  constexpr int E = 32 / BITS;          // codes per word
  constexpr int SPW = E / 8;            // k16 steps per word
  constexpr int PAIR = E / 16;          // k16 steps per byte pair of an x_r
  constexpr uint32_t kFieldMask = BITS == 2 ? 0x03030303u : 0x01010101u;
  // int1's value is 2 code - 1: its codes are taken one bit up, as 2 code
  constexpr int UP = WF == WFormat::kInt1 ? 1 : 0;
  constexpr bool SIGNED = WF == WFormat::kInt2 || WF == WFormat::kInt1;
  // per byte, value = x - kZero (int2: code - 2; int1: 2 code - 1); x + (0x80 - kZero) stays within
  // 0x7e .. 0x81 (no carry into the next byte) and ^ 0x80 turns it into the value's two's complement
  constexpr uint32_t kZero = BITS == 2 ? 2u : 1u;
  constexpr uint32_t kBias = (0x80u - kZero) * 0x01010101u;
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int h = 0; h < 2; ++h) {              // k16 step 2j + h of the tile: registers 2h, 2h + 1
    const int step = 2 * j + h;
    const uint32_t q = words[step / SPW];
    const int s = step % SPW;
    const int r = 4 * (s % PAIR);
    const uint32_t sel = s / PAIR ? 0x7531u : 0x6420u;
#pragma unroll
    for (int row = 0; row < 2; ++row) {      // row g, then g + 8
      uint32_t x[2];
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        const int sh = BITS * (r + row + 2 * t) - UP;
        x[t] = (sh >= 0 ? q >> sh : q << -sh) & (kFieldMask << UP);
      }
      const uint32_t v = __byte_perm(x[0], x[1], sel);
      a[2 * h + row] = SIGNED ? (v + kBias) ^ 0x80808080u : v;
    }
  }
}

// The A registers of k32 step j of a lane's 16 bytes (every weight format int8 activations take).
template <WFormat WF>
__device__ __forceinline__ void i8_fragment(const uint4& w, int j, uint32_t (&a)[4]) {
  if constexpr (format_bits(WF) >= 4)
    a8_fragment<WF, false>(w, j, a);
  else
    low_bit_fragment<WF>(w, j, a);
}

}  // namespace cudak
}  // namespace bitblas_jax
