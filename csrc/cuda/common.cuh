// Device helpers shared by the CUDA kernels: kernel parameters, PTX wrappers
// (mma.sync, ldmatrix, cp.async, streaming loads), the in-register dequant of
// one lane's 16-byte chunk of the packed layout, and the epilogue.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bitblas_jax/kernel_api.h"

namespace bitblas_jax {
namespace cudak {

// Format classes: one kernel instantiation per class (signedness, table
// choice and offsets are runtime constants).
enum FmtClass : int {
  FC_I1 = 0, FC_I2, FC_I4, FC_I8,  // int / uint of that width (magic-number decode)
  FC_NF4,                          // nf4 (32-word table in shared memory, init_nf4_tab)
  FC_FP4,                          // fp4_e2m1 (bit-field decode)
  FC_E4M3, FC_E5M2,                // fp8 (shift decode)
  FC_F16, FC_BF16,                 // dense 16-bit weights
  FC_COUNT
};

__host__ __device__ constexpr int fc_bits(int fc) {
  return fc == FC_I1 ? 1
         : fc == FC_I2 ? 2
         : (fc == FC_I4 || fc == FC_NF4 || fc == FC_FP4) ? 4
         : (fc == FC_I8 || fc == FC_E4M3 || fc == FC_E5M2) ? 8
                                                            : 16;
}
__host__ __device__ constexpr bool fc_is_int(int fc) { return fc <= FC_I8; }

// Data-type combos (activation dtype x accumulation): one instantiation each.
enum TCombo : int { TC_F16 = 0, TC_F16ACC16 = 1, TC_BF16 = 2, TC_COUNT };

struct KParams {
  const void* A;       // [M, K] (this launch's rows)
  const uint8_t* W;    // packed
  const void* scale;   // [N, G] or null
  const void* zeros;   // [N, G] or null
  const void* bias;    // [N] or null
  void* C;             // [M, N]
  float* partial;      // [split][M][N] fp32, split > 1 only
  unsigned int* counters;  // one per output tile, zeroed before the launch
  long long M, N, K;
  int KT;              // K / tile_k
  int gs, G;           // group size, K / group size
  int mode;            // ScaleMode
  int fmt;             // WFormat
  int out_dtype;       // DType
  int split;
  int a_aligned;       // A is 16-byte aligned
  int zeros_signed;    // quantized zeros are int8 (else uint8)
  float val_mul;       // integer formats: value = val_mul * code - val_off
  float val_off;
};

enum : int { MODE_NONE = 0, MODE_SCALE = 1, MODE_ORIGINAL = 2, MODE_RESCALE = 3, MODE_QUANT = 4 };
enum : int { OUT_F16 = 0, OUT_BF16 = 1, OUT_F32 = 2 };

// Compile-time loop: f(std::integral_constant<int, I>) for I in [B, E).
template <int B, int E, typename F>
__device__ __forceinline__ void static_for(F&& f) {
  if constexpr (B < E) {
    f(std::integral_constant<int, B>{});
    static_for<B + 1, E>(f);
  }
}

// ---- type traits --------------------------------------------------------------
template <typename T>
struct TT;
template <>
struct TT<__half> {
  using T2 = __half2;
  static constexpr uint32_t kMagic = 0x64006400u;  // 1024.0 in both halves
  static constexpr float kBase = 1024.f;
  static constexpr float kExact = 2048.f;           // integers up to this are exact
  static constexpr uint32_t kSixteenth = 0x2c002c00u;  // 1/16
  static __device__ __forceinline__ T2 f2(float a) { return __float2half2_rn(a); }
  static __device__ __forceinline__ T2 f22(float a, float b) { return __floats2half2_rn(a, b); }
  static __device__ __forceinline__ float tof(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
  }
};
template <>
struct TT<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static constexpr uint32_t kMagic = 0x43004300u;  // 128.0
  static constexpr float kBase = 128.f;
  static constexpr float kExact = 256.f;
  static constexpr uint32_t kSixteenth = 0x3d803d80u;  // 1/16
  static __device__ __forceinline__ T2 f2(float a) { return __float2bfloat162_rn(a); }
  static __device__ __forceinline__ T2 f22(float a, float b) { return __floats2bfloat162_rn(a, b); }
  static __device__ __forceinline__ float tof(uint16_t bits) {
    return __bfloat162float(__ushort_as_bfloat16(bits));
  }
};

template <typename T2>
__device__ __forceinline__ T2 as_t2(uint32_t u) {
  T2 r;
  memcpy(&r, &u, 4);
  return r;
}
template <typename T2>
__device__ __forceinline__ uint32_t as_u32(T2 x) {
  uint32_t r;
  memcpy(&r, &x, 4);
  return r;
}

// ---- PTX wrappers -------------------------------------------------------------
// Weight stream: read once, keep out of L1, ask L2 for 256-byte lines.
__device__ __forceinline__ uint4 ldg_stream(const void* ptr) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(ptr));
  return r;
}

// 16- / 8-bit loads straight into a 32-bit register (zero-extended by the load
// itself, so no masking instruction waits on the load right after it).
__device__ __forceinline__ uint32_t ldg_u16_u32(const void* base, long long idx) {
  uint32_t v;
  asm("ld.global.nc.u16 %0, [%1];" : "=r"(v) : "l"(reinterpret_cast<const uint16_t*>(base) + idx));
  return v;
}
__device__ __forceinline__ uint32_t ldg_u8_u32(const void* base, long long idx) {
  uint32_t v;
  asm("ld.global.nc.u8 %0, [%1];" : "=r"(v) : "l"(reinterpret_cast<const uint8_t*>(base) + idx));
  return v;
}
// 32 bits at a 4-byte aligned address (read-only path)
__device__ __forceinline__ uint32_t ldg_u32_at(const void* addr) {
  return __ldg(reinterpret_cast<const unsigned int*>(addr));
}
__device__ __forceinline__ uint16_t ldg_u16(const void* base, long long idx) {
  return __ldg(reinterpret_cast<const unsigned short*>(base) + idx);
}
__device__ __forceinline__ uint16_t ldg_u8(const void* base, long long idx) {
  return __ldg(reinterpret_cast<const unsigned char*>(base) + idx);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;\n" ::"r"(smem), "l"(gmem));
}
// 4 bytes (a 4-byte aligned source), through L1.
__device__ __forceinline__ void cp_async4(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem), "l"(gmem));
}
// Weight stream into a shared-memory ring (bypasses L1, 256-byte L2 lines).
__device__ __forceinline__ void cp_async16_stream(uint32_t smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(smem), "l"(gmem));
}
// Programmatic dependent launch (sm_90+; no-ops before Hopper and when the
// launch did not ask for it). wait: block until the previous kernel in the
// stream has finished and its writes are visible; nothing this kernel reads
// or writes as data may come before it. launch_dependents: let the next
// kernel (if launched with PDL) start its own pre-wait prologue.
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Pull a line into L2 only. Safe before griddep_wait: L2 is the point of
// coherence, so a line the previous kernel writes later is still read right.
__device__ __forceinline__ void prefetch_l2(const void* gmem) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t addr, uint32_t& r0, uint32_t& r1) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(addr));
}
__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}
__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 r;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "r"(addr));
  return r;
}

// D = A(16x16, weight rows n x k) * B(16x8, k x activation rows m) + D.
template <typename T>
__device__ __forceinline__ void mma_f32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_f32<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_f32<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                       uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_f16(uint32_t (&d)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%0,%1};\n"
      : "+r"(d[0]), "+r"(d[1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Accumulators of one 16(n) x 8(m) mma tile: fp32 (4 regs) or fp16 (2 half2 regs).
// Element e (0..3): row g + 8*(e>>1) (n), column 2c + (e&1) (m).
template <bool ACC16>
struct Acc;
template <>
struct Acc<false> {
  float v[4];
  __device__ __forceinline__ void zero() { v[0] = v[1] = v[2] = v[3] = 0.f; }
  template <typename T>
  __device__ __forceinline__ void mma(const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_f32<T>(v, a, b0, b1);
  }
  __device__ __forceinline__ float get(int e) const { return v[e]; }
};
template <>
struct Acc<true> {
  uint32_t v[2];
  __device__ __forceinline__ void zero() { v[0] = v[1] = 0u; }
  template <typename T>
  __device__ __forceinline__ void mma(const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_f16(v, a, b0, b1);
  }
  __device__ __forceinline__ float get(int e) const {
    const __half2 h = as_t2<__half2>(v[e >> 1]);
    return (e & 1) ? __high2float(h) : __low2float(h);
  }
};

// ---- dequant ----------------------------------------------------------------------
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

// (a & mask) | magic in one LOP3 (SASS LOP3 takes one immediate, so keep both constants in registers).
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(r) : "r"(a), "r"(mask), "r"(magic));
  return r;
}

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
// half: the v2 kernel folds it into the group scale; in a bf16 the unscaled
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
    const uint32_t x = J == 0 ? (q << 8) : q;
    if constexpr (kHalf) {
      const uint32_t h = (x & 0x80008000u) | ((x >> 1) & 0x3f803f80u);
      return __hmul2(as_t2<T2>(h), as_t2<T2>(0x5c005c00u));  // * 2^8
    } else {
      const uint32_t h = (x & 0x80008000u) | ((x >> 4) & 0x07f007f0u);
      return __hmul2(as_t2<T2>(h), as_t2<T2>(0x7b807b80u));  // * 2^120
    }
  } else if constexpr (FC == FC_E5M2) {
    const uint32_t x = J == 0 ? (q << 8) : q;
    if constexpr (kHalf) {
      return as_t2<T2>(x & 0xff00ff00u);
    } else {
      const uint32_t h = (x & 0x80008000u) | ((x >> 3) & 0x0fe00fe0u);
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

// The A operand of k-step S as element values only (the v2 kernel scales the
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
__device__ __constant__ static const float kNF4Values[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

template <typename T>
__device__ __forceinline__ void init_nf4_tab(typename TT<T>::T2* tab) {
  for (int i = threadIdx.x; i < 32; i += blockDim.x)
    tab[i] = i < 16 ? TT<T>::f22(kNF4Values[i], 0.f) : TT<T>::f22(0.f, kNF4Values[i - 16]);
}

// Scale / zero bits of rows n and n+8 at one group, as loaded: kept apart until
// used (GroupBits::pack), so a load issued a stage ahead is not waited for at once.
struct GroupBits {
  uint32_t s0, s1, z0, z1;
  // (s, z): row n in the low 16 bits, row n+8 in the high 16 bits
  __device__ __forceinline__ void pack(uint32_t& s, uint32_t& z) const {
    s = s0 | (s1 << 16);
    z = z0 | (z1 << 16);
  }
};
// The loads behind GroupRows and load_group_raw: element i of the scale / zero
// rows at s / z (z null: no zeros) and element i of the rows 8 below them.
__device__ __forceinline__ GroupBits load_group_at(const KParams& p, const uint8_t* s, const uint8_t* z,
                                                   long long i) {
  GroupBits b{0u, 0u, 0u, 0u};
  const long long g8 = 8LL * p.G;  // elements from row n to row n+8
  b.s0 = ldg_u16_u32(s, i);
  b.s1 = ldg_u16_u32(s, i + g8);
  if (z != nullptr) {
    const bool zbyte = p.mode == MODE_QUANT;
    b.z0 = zbyte ? ldg_u8_u32(z, i) : ldg_u16_u32(z, i);
    b.z1 = zbyte ? ldg_u8_u32(z, i + g8) : ldg_u16_u32(z, i + g8);
  }
  return b;
}
// The zeros of a mode, or null (MODE_QUANT is >= MODE_ORIGINAL: 8-bit zeros).
__device__ __forceinline__ const uint8_t* group_zeros(const KParams& p) {
  return p.mode >= MODE_ORIGINAL ? static_cast<const uint8_t*>(p.zeros) : nullptr;
}
// The scale / zero rows n and n+8 of one lane, addressed once: load(p, gi) is
// a few instructions per group (row n+8 and the zero size come from the
// kernel parameters, which live in the constant bank, not in registers).
struct GroupRows {
  const uint8_t* s = nullptr;  // &scale[n, 0] (null: no groups)
  const uint8_t* z = nullptr;  // &zeros[n, 0] (null: no zeros)
  __device__ __forceinline__ GroupRows(const KParams& p, long long n) {
    if (p.mode == MODE_NONE) return;
    s = static_cast<const uint8_t*>(p.scale) + n * p.G * 2;
    if (const uint8_t* z0 = group_zeros(p)) z = z0 + n * p.G * (p.mode == MODE_QUANT ? 1 : 2);
  }
  __device__ __forceinline__ GroupBits load(const KParams& p, int gi) const {
    return s == nullptr ? GroupBits{0u, 0u, 0u, 0u} : load_group_at(p, s, z, gi);
  }
};
// The same, packed at once (for loads used right away).
__device__ __forceinline__ void load_group_raw(const KParams& p, long long n, int gi, uint32_t& s,
                                               uint32_t& z) {
  if (p.mode == MODE_NONE) {
    s = z = 0u;
    return;
  }
  load_group_at(p, static_cast<const uint8_t*>(p.scale), group_zeros(p), n * p.G + gi).pack(s, z);
}

// ---- epilogue ---------------------------------------------------------------------
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

// Split-K: every CTA of an output tile writes its fp32 partial, then the last
// one to arrive sums all partials in split order and runs the epilogue.
// Returns true in the CTA that must reduce (after a block-wide barrier). NT > 0: only threads
// 0..NT-1 take part (named barrier 1), the rest of the block having left.
template <int NT = 0>
__device__ __forceinline__ bool splitk_arrive(const KParams& p, int tile) {
  __shared__ int s_last;
  auto sync = [] {
    if constexpr (NT > 0)
      asm volatile("bar.sync 1, %0;\n" ::"n"(NT) : "memory");
    else
      __syncthreads();
  };
  __threadfence();
  sync();
  if (threadIdx.x == 0) {
    const unsigned prev = atomicAdd(p.counters + tile, 1u);
    s_last = prev == static_cast<unsigned>(p.split - 1);
  }
  sync();
  if (s_last) __threadfence();
  return s_last != 0;
}

// NT > 0: threads 0..NT-1 reduce (as in splitk_arrive). A thread sums R float4 column vectors at
// a time, the loads of all of them and of SB splits in flight together (one scalar L2 load after
// another left the reducing CTA waiting: 27 us of a 76 us kernel at 128 x 128 tiles on 8192^2),
// adding in split order. R x SB x 4 registers hold the loads: the caller sizes them to its
// kernel's register budget (larger batches spill). N is a multiple of 16 (the host checks) and
// ncols too, so the vectors are whole and 16-byte aligned.
template <typename T, int W = 128, int NT = 0, int R = 2, int SB = 2>
__device__ __forceinline__ void splitk_reduce(const KParams& p, long long m0, int mrows, long long n0,
                                              int ncols) {
  constexpr int VPR = W / 4;  // vectors per tile row
  const int nthreads = NT > 0 ? NT : static_cast<int>(blockDim.x);
  const int total = mrows * VPR;
  const long long split_stride = p.M * p.N / 4;  // float4s per partial
  const float4* part = reinterpret_cast<const float4*>(p.partial);
  for (int i0 = threadIdx.x; i0 < total; i0 += R * nthreads) {
    long long off[R];
    bool ok[R];
    float4 sum[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = i0 + r * nthreads, j = (i % VPR) * 4;
      ok[r] = i < total && j < ncols;
      off[r] = ((m0 + i / VPR) * p.N + n0 + j) / 4;
      sum[r] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    for (int s0 = 0; s0 < p.split; s0 += SB) {
      float4 v[SB][R];
#pragma unroll
      for (int s = 0; s < SB; ++s)
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (ok[r] && s0 + s < p.split) v[s][r] = __ldcg(part + (s0 + s) * split_stride + off[r]);
#pragma unroll
      for (int s = 0; s < SB; ++s)
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (ok[r] && s0 + s < p.split) {
            sum[r].x += v[s][r].x;
            sum[r].y += v[s][r].y;
            sum[r].z += v[s][r].z;
            sum[r].w += v[s][r].w;
          }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (!ok[r]) continue;
      const int i = i0 + r * nthreads;
      const long long m = m0 + i / VPR, n = n0 + (i % VPR) * 4;
      store_out<T>(p, m, n, sum[r].x);
      store_out<T>(p, m, n + 1, sum[r].y);
      store_out<T>(p, m, n + 2, sum[r].z);
      store_out<T>(p, m, n + 3, sum[r].w);
    }
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
