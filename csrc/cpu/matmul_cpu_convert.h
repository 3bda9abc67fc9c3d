// Scalar float conversions for the CPU kernel: f16 / bf16 / fp8 <-> f32 by bit
// manipulation, round-to-nearest-even, no F16C or AVX-512 (the binary must run
// on any x86-64 or ARM host). None of them does float32 arithmetic on a
// float32 subnormal, so the results do not change when the calling thread has
// flush-to-zero / denormals-are-zero set (XLA's CPU threads may).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace bitblas_jax {
namespace cpu {

inline uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// ---- decode: narrow bits -> f32 (exact) ----

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  uint32_t mag;
  if (em >= 0x7c00u) {
    mag = 0x7f800000u | ((em & 0x3ffu) << 13);  // inf / nan, payload kept
  } else if (em >= 0x0400u) {
    mag = (em << 13) + 0x38000000u;  // normal: rebias exponent 15 -> 127
  } else {
    mag = f32_bits(static_cast<float>(em) * 0x1p-24f);  // subnormal (or 0): m * 2^-24
  }
  return bits_f32(mag | sign);
}

inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

// float8 E4M3FN: bias 7, subnormals m * 2^-9, S.1111.111 is NaN, no inf.
inline float fp8_e4m3fn_to_f32(uint8_t c) {
  const int e = (c >> 3) & 0xf, m = c & 7;
  float mag;
  if (e == 15 && m == 7) mag = NAN;
  else if (e == 0) mag = std::ldexp(static_cast<float>(m), -9);
  else mag = std::ldexp(static_cast<float>(8 + m), e - 10);
  return (c & 0x80) ? -mag : mag;
}

// float8 E5M2: bias 15, subnormals m * 2^-16, exponent 31 is inf (m = 0) / NaN.
inline float fp8_e5m2_to_f32(uint8_t c) {
  const int e = (c >> 2) & 0x1f, m = c & 3;
  float mag;
  if (e == 31) mag = m ? NAN : INFINITY;
  else if (e == 0) mag = std::ldexp(static_cast<float>(m), -16);
  else mag = std::ldexp(static_cast<float>(4 + m), e - 17);
  return (c & 0x80) ? -mag : mag;
}

// ---- rounding f32 -> nearest f16 / bf16 value, kept in f32 ----

// Adding then subtracting magic = 2^(E+13) rounds |x| (exponent E) to 10
// fraction bits in the FPU's round-to-nearest-even; E is clamped below at -14
// (magic 0.5: the f16 subnormal quantum 2^-24) and above at 15 (beyond, the
// result overflows to inf anyway). Branch-free with integer clamps, which gcc
// if-converts and vectorizes (float-compare selects it leaves as branches).
// Needs no -fassociative-math (the build never sets it), or the add/sub pair
// would be folded away.
inline float round_to_f16(float x) {
  const uint32_t u = f32_bits(x);
  const uint32_t a = u & 0x7fffffffu;
  int32_t e = static_cast<int32_t>(a >> 23);
  e = e < 113 ? 113 : (e > 142 ? 142 : e);
  const float magic = bits_f32(static_cast<uint32_t>(e + 13) << 23);
  float r = (bits_f32(a) + magic) - magic;
  r = r > 65504.0f ? INFINITY : r;  // NaN compares false and stays NaN
  return bits_f32(f32_bits(r) | (u & 0x80000000u));
}

// bf16 keeps f32's exponent, so rounding is the classic bias-and-truncate.
inline uint32_t round_bf16_u32(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u | 0x00400000u) & 0xffff0000u;  // quiet NaN
  return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;  // carry may reach inf: correct
}
inline float round_to_bf16(float x) { return bits_f32(round_bf16_u32(f32_bits(x))); }

// ---- encode: f32 -> narrow bits ----

inline uint16_t f32_to_bf16_bits(float x) {
  return static_cast<uint16_t>(round_bf16_u32(f32_bits(x)) >> 16);
}

inline uint16_t f32_to_f16_bits(float x) {
  const uint32_t u = f32_bits(round_to_f16(x));
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  uint32_t h;
  if (a > 0x7f800000u) h = 0x7e00u;                       // NaN
  else if (a == 0x7f800000u) h = 0x7c00u;                 // inf
  else if (a >= 0x38800000u) h = (a - 0x38000000u) >> 13;  // normal (>= 2^-14)
  else h = static_cast<uint32_t>(bits_f32(a) * 0x1p24f);  // subnormal: exact multiple of 2^-24
  return static_cast<uint16_t>(h | sign);
}

}  // namespace cpu
}  // namespace bitblas_jax
