// The kernels' parameters and the compile-time vocabulary every layer uses: format classes
// (one instantiation each), activation type combos, KParams, the mode / output ids as ints,
// and per-type traits (pair type, magic-number constants, bit casts).
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

// KParams::mode and KParams::out_dtype as plain ints (switch / compare in device code).
enum : int {
  MODE_NONE = static_cast<int>(ScaleMode::kNone),
  MODE_SCALE = static_cast<int>(ScaleMode::kScale),
  MODE_ORIGINAL = static_cast<int>(ScaleMode::kOriginal),
  MODE_RESCALE = static_cast<int>(ScaleMode::kRescale),
  MODE_QUANT = static_cast<int>(ScaleMode::kQuantized),
};
enum : int {
  OUT_F16 = static_cast<int>(DType::kF16),
  OUT_BF16 = static_cast<int>(DType::kBF16),
  OUT_F32 = static_cast<int>(DType::kF32),
};

// Compile-time loop: f(std::integral_constant<int, I>) for I in [B, E).
template <int B, int E, typename F>
__device__ __forceinline__ void static_for(F&& f) {
  if constexpr (B < E) {
    f(std::integral_constant<int, B>{});
    static_for<B + 1, E>(f);
  }
}

// Per activation type T: its pair type and the constants of the magic-number decode.
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

}  // namespace cudak
}  // namespace bitblas_jax
