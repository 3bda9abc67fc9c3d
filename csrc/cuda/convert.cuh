// In-register dequantization of the packed codes: a 32-bit word's pairs (one element of
// row n, one of row n+8; layout.h) -> element values as a T2 (decode_pair), scale / zeros
// applied with the per-row group constants (RowP, rowp_make2), and the mma A operand of a
// k-step of a lane's 16-byte chunk (dequant_kstep, decode_kstep). Also the NF4 shared table.
#pragma once

#include "params.cuh"
#include "ptx.cuh"

namespace bitblas_jax {
namespace cudak {

// Per-(row, group) constants. For a decoded pair x (two elements of one row and
// one group): integer classes compute v = x * vm + vs (removing the magic
// bias and the value offset, and the quantized zero where that is exact), the
// 8-bit-into-bf16 path v = float(x) - fsub; then every class y = v * mul + add.
template <typename T>
struct RowP {
  typename TT<T>::T2 vm, vs, mul, add;
  typename TT<T>::T2 vs_hi;  // offset of fields read in place at bit 4 (x = base + 16 code, times 1/16):
                             // int4's high nibbles in a half, half of int2's fields
  float fsub;
};

// The integer offset of a field read in place at bit 4 (see vs_hi): x / 16 = base / 16 + code.
template <typename T>
__device__ __forceinline__ float hi_field_sub(float sub) {
  return sub - TT<T>::kBase + TT<T>::kBase / 16.f;
}

// The constants of the "none" mode (the start point for every group).
template <int FC, typename T>
__device__ __forceinline__ RowP<T> rowp_base(const KParams& p) {
  using X = TT<T>;
  RowP<T> r;
  constexpr bool kF32Path = FC == FC_I8 && !std::is_same<T, __half>::value;
  // I1 decodes to x = 1 + code/2 (see decode_pair), the others to x = base + code
  const float base = FC == FC_I1 ? 2.f : kF32Path ? 8388608.f : X::kBase;
  const float xmul = FC == FC_I1 ? 2.f : 1.f;
  const float sub = p.val_mul * base + p.val_off;
  r.vm = X::f2(p.val_mul * xmul);
  r.vs = X::f2(-sub);
  r.vs_hi = X::f2(-hi_field_sub<T>(sub));
  r.fsub = sub;
  r.mul = X::f2(1.f);
  r.add = X::f2(0.f);
  return r;
}

// The quantized zero of one row: folded into the integer offset where that is
// exact (the common case), else applied as add = -(qz * s).
template <int FC, typename T>
__device__ __forceinline__ void quant_zero(const KParams& p, const RowP<T>& base, uint32_t zb,
                                           typename TT<T>::T2 s2, RowP<T>& P) {
  using X = TT<T>;
  const int q = p.zeros_signed ? static_cast<int>(static_cast<int8_t>(zb & 0xffu)) : static_cast<int>(zb & 0xffu);
  constexpr bool kF32Path = FC == FC_I8 && !std::is_same<T, __half>::value;
  if constexpr (kF32Path) {
    P.fsub = base.fsub + static_cast<float>(q);  // exact in fp32
  } else {
    if constexpr (fc_is_int(FC)) {
      const float sub = base.fsub + static_cast<float>(q);
      if (fabsf(sub) <= X::kExact && fabsf(hi_field_sub<T>(sub)) <= X::kExact) {
        P.vs = X::f2(-sub);
        P.vs_hi = X::f2(-hi_field_sub<T>(sub));
        return;
      }
    }
    P.add = __hneg2(__hmul2(X::f2(static_cast<float>(q)), s2));
  }
}

// Constants of one group for rows g (P0) and g+8 (P1), from the raw scale /
// zero bits (s2, z2: row g in the low 16 bits). Cheap bit operations for the
// common modes; warp-uniform branches on the mode.
template <int FC, typename T>
__device__ __forceinline__ void rowp_make2(const KParams& p, const RowP<T>& base, uint32_t s2, uint32_t z2,
                                           RowP<T>& P0, RowP<T>& P1) {
  using T2 = typename TT<T>::T2;
  P0 = base;
  P1 = base;
  const int mode = p.mode;
  if (mode == MODE_NONE) return;
  const T2 s_lo = as_t2<T2>(__byte_perm(s2, 0u, 0x1010u));
  const T2 s_hi = as_t2<T2>(__byte_perm(s2, 0u, 0x3232u));
  P0.mul = s_lo;
  P1.mul = s_hi;
  if (mode == MODE_SCALE) return;
  if (mode == MODE_RESCALE) {
    P0.add = as_t2<T2>(__byte_perm(z2, 0u, 0x1010u) ^ 0x80008000u);
    P1.add = as_t2<T2>(__byte_perm(z2, 0u, 0x3232u) ^ 0x80008000u);
  } else if (mode == MODE_ORIGINAL) {
    // (v - z) * s = v * s + (-(z * s)), z * s rounded once to T
    P0.add = __hneg2(__hmul2(as_t2<T2>(__byte_perm(z2, 0u, 0x1010u)), s_lo));
    P1.add = __hneg2(__hmul2(as_t2<T2>(__byte_perm(z2, 0u, 0x3232u)), s_hi));
  } else {
    quant_zero<FC, T>(p, base, z2, s_lo, P0);
    quant_zero<FC, T>(p, base, z2 >> 16, s_hi, P1);
  }
}

// fp4_e2m1 (sign, 2 exponent bits, 1 mantissa bit, exponent bias 1) of pair J
// as T bits: the sign to bit 15, the other three bits to the bottom of T's
// exponent and the top of its mantissa, which is exactly value * 2^-14 in a
// half (bits 11..9) and value * 2^-126 in a bf16 (bits 8..6), subnormals
// included. Four integer ops per pair, no table.
template <typename T, int J>
__device__ __forceinline__ uint32_t fp4_pair_bits(uint32_t q) {
  constexpr int MAG = std::is_same<T, __half>::value ? 9 : 6;  // lowest magnitude bit
  constexpr int SMAG = MAG - 4 * J;                            // nibble bits 0..2 -> MAG..MAG+2
  const uint32_t mag = (SMAG >= 0 ? q << SMAG : q >> -SMAG) & (0x00070007u << MAG);
  return mag | ((q << (12 - 4 * J)) & 0x80008000u);           // nibble bit 3 -> bit 15
}

// The exact factor fp4_pair_bits leaves out: 2^14 (half), 2^126 (bf16).
template <typename T>
__host__ __device__ constexpr uint32_t fp4_factor_bits() {
  return std::is_same<T, __half>::value ? 0x74007400u : 0x7e807e80u;
}

// The factor a RAW decode leaves out of the element values (only fp4 into a
// half: the decode kernel folds it into the group scale; in a bf16 the unscaled
// values are near 2^-126, and their products would fall below float32's
// normal range).
template <int FC, typename T>
__host__ __device__ constexpr float raw_value_scale() {
  return FC == FC_FP4 && std::is_same<T, __half>::value ? 16384.f : 1.f;
}

// Pair J (0 .. 16/bits-1) of a 32-bit word: low element from the low half, high
// element from the high half (layout.h field_of). Returns the element values
// (before scale / zeros) as a T2, divided by raw_value_scale<FC, T>() when RAW.
template <int FC, typename T, int J, bool RAW = false>
__device__ __forceinline__ typename TT<T>::T2 decode_pair(uint32_t q, const RowP<T>& P,
                                                          const typename TT<T>::T2* tab) {
  using X = TT<T>;
  using T2 = typename X::T2;
  constexpr bool kHalf = std::is_same<T, __half>::value;
  if constexpr (FC == FC_I1) {
    // x = 1 + code/2: the code goes to the top mantissa bit (bit 9 of a half, bit 6 of a bf16)
    constexpr int SH = kHalf ? 9 : 6;
    constexpr uint32_t one = kHalf ? 0x3c003c00u : 0x3f803f80u;
    const uint32_t x = and_or((q >> J) << SH, 0x00010001u << SH, one);
    return __hfma2(as_t2<T2>(x), P.vm, P.vs);
  } else if constexpr (FC == FC_I4 && kHalf) {
    // odd pairs take the high nibble in place: x = 1024 + 16 code, v = x / 16 - (64 + off)
    const uint32_t qs = J >= 2 ? (q >> 8) : q;
    if constexpr (J & 1) {
      return __hfma2(as_t2<T2>(and_or(qs, 0x00f000f0u, X::kMagic)), as_t2<T2>(X::kSixteenth), P.vs_hi);
    } else {
      return __hfma2(as_t2<T2>(and_or(qs, 0x000f000fu, X::kMagic)), P.vm, P.vs);
    }
  } else if constexpr (FC == FC_I2) {
    // Fields at bits 0 and 4 are read in place (bit 4: x = base + 16 code, times 1/16), so
    // one shift serves two pairs: q for pairs 0 / 2, q >> 2 for 1 / 3, q >> 8 for 4 / 6,
    // q >> 10 for 5 / 7 (three shifts a word instead of seven).
    constexpr int SH = (J & 1) * 2 + (J & 4) * 2;
    const uint32_t qs = SH ? q >> SH : q;
    if constexpr (J & 2) {
      return __hfma2(as_t2<T2>(and_or(qs, 0x00300030u, X::kMagic)), as_t2<T2>(X::kSixteenth), P.vs_hi);
    } else {
      return __hfma2(as_t2<T2>(and_or(qs, 0x00030003u, X::kMagic)), P.vm, P.vs);
    }
  } else if constexpr (FC == FC_I4) {  // into a bf16 (a high nibble in place would reach the exponent)
    const uint32_t x = and_or(q >> (J * 4), 0x000f000fu, X::kMagic);
    return __hfma2(as_t2<T2>(x), P.vm, P.vs);
  } else if constexpr (FC == FC_I8) {
    if constexpr (kHalf) {
      const uint32_t x = __byte_perm(q, 0x64646464u, J ? 0x5351u : 0x5250u);
      return __hfma2(as_t2<T2>(x), P.vm, P.vs);
    } else {
      const uint32_t lo = __byte_perm(q, 0x4B000000u, 0x7440u | J);
      const uint32_t hi = __byte_perm(q, 0x4B000000u, 0x7440u | (J + 2));
      return __floats2bfloat162_rn(__uint_as_float(lo) - P.fsub, __uint_as_float(hi) - P.fsub);
    }
  } else if constexpr (FC == FC_NF4) {
    // Two lookups in the 32-word table (init_nf4_tab): one bank per word, so a warp's
    // lookups never conflict. The nibbles' byte offsets (4 n) are spread once per word,
    // bytes of x4: n0 n2 n4 n6, of y4: n1 n3 n5 n7 (shared by the word's four pairs).
    const uint32_t x4 = (q << 2) & 0x3c3c3c3cu, y4 = (q >> 2) & 0x3c3c3c3cu;
    const uint32_t r = (J & 1) ? y4 : x4;
    const uint8_t* base = reinterpret_cast<const uint8_t*>(tab);
    const uint32_t lo = *reinterpret_cast<const uint32_t*>(base + __byte_perm(r, 0u, 0x4440u | (J >> 1)));
    const uint32_t hi = *reinterpret_cast<const uint32_t*>(base + 64 + __byte_perm(r, 0u, 0x4442u | (J >> 1)));
    return as_t2<T2>(lo | hi);
  } else if constexpr (FC == FC_FP4) {
    const T2 x = as_t2<T2>(fp4_pair_bits<T, J>(q));
    if constexpr (RAW && raw_value_scale<FC, T>() != 1.f) return x;
    return __hmul2(x, as_t2<T2>(fp4_factor_bits<T>()));
  } else if constexpr (FC == FC_E4M3) {
    // E.MMM goes to the low exponent and top mantissa bits of T, then a multiply rebiases it
    // (subnormals included). The NaN code S.1111.111 would come out as +-480 that way: its
    // field m is the largest one, so m + one unit carries into the bit above m, and that bit
    // (moved to T's remaining exponent bits) makes the lane a NaN, which the multiply and any
    // scale keep. Three integer ops per pair more, no branch.
    const uint32_t x = J == 0 ? (q << 8) : q;
    if constexpr (kHalf) {
      const uint32_t m = (x >> 1) & 0x3f803f80u;
      const uint32_t nan = (m + 0x00800080u) & 0x40004000u;  // half bit 14 where m = 0x3f80
      const uint32_t h = (x & 0x80008000u) | m | nan;
      return __hmul2(as_t2<T2>(h), as_t2<T2>(0x5c005c00u));  // * 2^8
    } else {
      const uint32_t m = (x >> 4) & 0x07f007f0u;
      const uint32_t nan = (m + 0x00100010u) & 0x08000800u;  // bf16 bit 11 where m = 0x07f0
      const uint32_t h = (x & 0x80008000u) | m | (nan * 15u);  // bits 11..14: exponent all ones
      return __hmul2(as_t2<T2>(h), as_t2<T2>(0x7b807b80u));  // * 2^120
    }
  } else if constexpr (FC == FC_E5M2) {
    const uint32_t x = J == 0 ? (q << 8) : q;
    if constexpr (kHalf) {
      return as_t2<T2>(x & 0xff00ff00u);  // E5M2 is the top byte of a half: inf / NaN included
    } else {
      // As for E4M3; exponent 31 (inf, NaN) carries into bit 12 (the mantissa bits below the
      // exponent cannot), which sets bf16's top exponent bits: inf stays inf, NaN NaN.
      const uint32_t m = (x >> 3) & 0x0fe00fe0u;
      const uint32_t special = (m + 0x00800080u) & 0x10001000u;
      const uint32_t h = (x & 0x80008000u) | m | (special * 7u);  // bits 12..14
      return __hmul2(as_t2<T2>(h), as_t2<T2>(0x77807780u));  // * 2^112
    }
  } else if constexpr (FC == FC_F16) {
    if constexpr (kHalf) {
      return as_t2<T2>(q);
    } else {
      return __float22bfloat162_rn(__half22float2(as_t2<__half2>(q)));
    }
  } else {  // FC_BF16
    if constexpr (kHalf) {
      return __float22half2_rn(__bfloat1622float2(as_t2<__nv_bfloat162>(q)));
    } else {
      return as_t2<T2>(q);
    }
  }
}

// Element values -> dequantized weight pair in T (scale / zeros applied).
template <int FC, typename T, int J>
__device__ __forceinline__ uint32_t dequant_pair(uint32_t q, const RowP<T>& P,
                                                 const typename TT<T>::T2* tab) {
  const auto v = decode_pair<FC, T, J>(q, P, tab);
  return as_u32(__hfma2(v, P.mul, P.add));
}

// Pair index p (0..4*NS-1) of a lane's 16-byte chunk -> its element values.
template <int FC, typename T, int P_IDX, bool RAW = false>
__device__ __forceinline__ typename TT<T>::T2 decode_chunk_pair(const uint4& w, const RowP<T>& P,
                                                                const typename TT<T>::T2* tab) {
  constexpr int PPW = 16 / fc_bits(FC);  // pairs per 32-bit word
  constexpr int WORD = P_IDX / PPW, J = P_IDX % PPW;
  const uint32_t q = WORD == 0 ? w.x : WORD == 1 ? w.y : WORD == 2 ? w.z : w.w;
  return decode_pair<FC, T, J, RAW>(q, P, tab);
}

// The same pair dequantized (scale / zeros applied, in T).
template <int FC, typename T, int P_IDX>
__device__ __forceinline__ uint32_t dequant_chunk_pair(const uint4& w, const RowP<T>& P,
                                                       const typename TT<T>::T2* tab) {
  return as_u32(__hfma2(decode_chunk_pair<FC, T, P_IDX>(w, P, tab), P.mul, P.add));
}

// The A operand of k-step S of a tile: a[0] row g / k-block h=0, a[1] row g+8 /
// h=0, a[2] row g / h=1, a[3] row g+8 / h=1 (layout.h frag_row / frag_col).
template <int FC, typename T, int S>
__device__ __forceinline__ void dequant_kstep(const uint4& w, const RowP<T>& P0h0, const RowP<T>& P1h0,
                                              const RowP<T>& P0h1, const RowP<T>& P1h1,
                                              const typename TT<T>::T2* tab, uint32_t (&a)[4]) {
  a[0] = dequant_chunk_pair<FC, T, 4 * S + 0>(w, P0h0, tab);
  a[1] = dequant_chunk_pair<FC, T, 4 * S + 1>(w, P1h0, tab);
  a[2] = dequant_chunk_pair<FC, T, 4 * S + 2>(w, P0h1, tab);
  a[3] = dequant_chunk_pair<FC, T, 4 * S + 3>(w, P1h1, tab);
}

// The A operand of k-step S as element values only (the decode kernel scales the
// mma result), divided by raw_value_scale<FC, T>() when RAW.
template <int FC, typename T, int S, bool RAW = false>
__device__ __forceinline__ void decode_kstep(const uint4& w, const RowP<T>& P, const typename TT<T>::T2* tab,
                                             uint32_t (&a)[4]) {
  a[0] = as_u32(decode_chunk_pair<FC, T, 4 * S + 0, RAW>(w, P, tab));
  a[1] = as_u32(decode_chunk_pair<FC, T, 4 * S + 1, RAW>(w, P, tab));
  a[2] = as_u32(decode_chunk_pair<FC, T, 4 * S + 2, RAW>(w, P, tab));
  a[3] = as_u32(decode_chunk_pair<FC, T, 4 * S + 3, RAW>(w, P, tab));
}

// The same with a run-time k-step S (slow path: several groups in one tile).
template <int FC, typename T>
__device__ __forceinline__ void dequant_kstep_rt(const uint4& w, int S, const RowP<T>& P0h0,
                                                 const RowP<T>& P1h0, const RowP<T>& P0h1,
                                                 const RowP<T>& P1h1, const typename TT<T>::T2* tab,
                                                 uint32_t (&a)[4]) {
  constexpr int BITS = fc_bits(FC);
  auto word = [&](int i) { return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w; };
  if constexpr (BITS == 16) {
    a[0] = dequant_pair<FC, T, 0>(w.x, P0h0, tab);
    a[1] = dequant_pair<FC, T, 0>(w.y, P1h0, tab);
    a[2] = dequant_pair<FC, T, 0>(w.z, P0h1, tab);
    a[3] = dequant_pair<FC, T, 0>(w.w, P1h1, tab);
  } else if constexpr (BITS == 8) {
    const uint32_t q0 = word(2 * S), q1 = word(2 * S + 1);
    a[0] = dequant_pair<FC, T, 0>(q0, P0h0, tab);
    a[1] = dequant_pair<FC, T, 1>(q0, P1h0, tab);
    a[2] = dequant_pair<FC, T, 0>(q1, P0h1, tab);
    a[3] = dequant_pair<FC, T, 1>(q1, P1h1, tab);
  } else {
    // k-step S holds pairs 4S..4S+3: word S*BITS/4, shifted so they are pairs 0..3
    const uint32_t q = word((S * BITS) >> 2) >> (((S * BITS) & 3) * 4);
    a[0] = dequant_pair<FC, T, 0>(q, P0h0, tab);
    a[1] = dequant_pair<FC, T, 1>(q, P1h0, tab);
    a[2] = dequant_pair<FC, T, 2>(q, P0h1, tab);
    a[3] = dequant_pair<FC, T, 3>(q, P1h1, tab);
  }
}

// The NF4 table: words 0..15 hold value n in the low half (high half 0), words 16..31
// value n in the high half, so a pair is two lookups OR-ed. 32 words, one per bank.
template <int FC>
__host__ __device__ constexpr int nf4_tab_words() { return FC == FC_NF4 ? 32 : 1; }
// The device copy of formats_generated.h's kNF4Values (constant memory: read once per CTA).
__device__ __constant__ static const float kNF4ValuesDevice[16] = {BITBLAS_JAX_NF4_VALUES};

template <typename T>
__device__ __forceinline__ void init_nf4_tab(typename TT<T>::T2* tab) {
  for (int i = threadIdx.x; i < 32; i += blockDim.x)
    tab[i] = i < 16 ? TT<T>::f22(kNF4ValuesDevice[i], 0.f) : TT<T>::f22(0.f, kNF4ValuesDevice[i - 16]);
}

}  // namespace cudak
}  // namespace bitblas_jax
