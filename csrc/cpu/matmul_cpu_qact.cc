// The CPU kernel of int8 and float8 activations.
//
// Arithmetic (the same as bitblas_jax/quantized_dot.py, which runs it through XLA on GPUs):
// for output (m, n) and weight group g (all of K when the mode has no scale),
//   S    = sum_{k in g} A[m, k] * w[n, k]     int32 for int8 A (two's complement, wrapping
//                                             mod 2^32 as every int32 GEMM does; exact while
//                                             |S| < 2^31), float32 for float8 A (exact products)
//   Asum = sum_{k in g} A[m, k]               same type, zeros modes only
//   term = none S | scale s*S | original s*(S - z*Asum) | rescale s*S - z*Asum
//          | quantized s*(S - qz*Asum) with the bracket in S's type
//   v    = float32 sum of the terms in group order; C = cast_out(v + bias)
// where s, z, bias are float32 and qz the integer zero point; cast_out rounds to
// float16 / bfloat16 / float32, or for int8 rounds half to even and saturates to
// [-128, 127] (NaN -> 0); int32 output (mode none, no bias) is S itself.
//
// Work unit as in matmul_cpu.cc: one 16-row band of the packed weight, decoded
// one K block at a time into element values w[k][16] (int32 or float32), which
// every row of A then multiplies into 16 running group sums.
#include "matmul_cpu_qact.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <type_traits>
#include <vector>

#include "matmul_cpu.h"
#include "matmul_cpu_convert.h"
#include "matmul_cpu_threads.h"
#include "matmul_cpu_tile.h"

namespace bitblas_jax {
namespace {

constexpr int64_t kKBlock = 512;  // a multiple of every tile_k (<= 256)

// T: uint32_t for int8 activations (int32 arithmetic mod 2^32 without signed-overflow UB),
// float for float8 activations.
template <class T>
struct QProblem {
  int64_t M = 0, N = 0, K = 0, group = 0, groups = 0, tiles_k = 0;
  int bits = 8;
  ScaleMode mode = ScaleMode::kNone;
  DType out_dtype = DType::kF32;
  bool signed_zeros = false;
  const T* A = nullptr;       // [M, K]
  const T* asum = nullptr;    // [M, groups] (zeros modes) or null
  const uint8_t* W = nullptr;
  const float* scale = nullptr;  // [N, groups]
  const void* zeros = nullptr;   // [N, groups] float32, or int8 / uint8 (quantized)
  const float* bias = nullptr;   // [N]
  void* C = nullptr;
  T lut[256] = {};
};

template <class T>
inline float to_f32(T x) {
  if constexpr (std::is_same_v<T, uint32_t>) return float(static_cast<int32_t>(x));
  else return x;
}

// Round half to even and saturate to int8 (NaN -> 0).
inline int8_t saturate_int8(float v) {
  if (std::isnan(v)) return 0;
  const float r = std::nearbyint(std::min(std::max(v, -128.0f), 127.0f));
  return static_cast<int8_t>(r);
}

template <int BITS, class T>
void decode_block(const QProblem<T>& p, int64_t n0, int64_t k0, int64_t kc, T* dst) {
  constexpr int TK = 256 / BITS;
  const T* lut = p.lut;
  for (int64_t k = k0; k < k0 + kc; k += TK)
    cpu::decode_tile<BITS>(p.W + ((n0 / kTileN) * p.tiles_k + k / TK) * kTileBytes,
                           [lut](uint32_t c, int) { return lut[c]; }, dst + (k - k0) * kTileN);
}

// sums[0..15] += sum_{k < n} a[k] * w[k][0..15]
template <class T>
inline void dot16(const T* a, const T* w, int64_t n, T* sums) {
  T s[kTileN];
  std::memcpy(s, sums, sizeof s);
  for (int64_t k = 0; k < n; ++k) {
    const T av = a[k];
    const T* wk = w + k * kTileN;
    for (int j = 0; j < kTileN; ++j) s[j] += av * wk[j];
  }
  std::memcpy(sums, s, sizeof s);
}

// acc[0..15] += the term of group g of row m (mode none: acc = S).
template <class T>
void add_group_term(const QProblem<T>& p, int64_t m, int64_t n0, int64_t g, const T* S, float* acc) {
  if (p.mode == ScaleMode::kNone) {
    for (int r = 0; r < kTileN; ++r) acc[r] = to_f32(S[r]);
    return;
  }
  const T asum = p.asum ? p.asum[m * p.groups + g] : T(0);
  for (int r = 0; r < kTileN; ++r) {
    const int64_t i = (n0 + r) * p.groups + g;
    const float s = p.scale[i];
    switch (p.mode) {
      case ScaleMode::kScale: acc[r] += s * to_f32(S[r]); break;
      case ScaleMode::kQuantized: {
        const int32_t qz = p.signed_zeros ? int32_t(static_cast<const int8_t*>(p.zeros)[i])
                                          : int32_t(static_cast<const uint8_t*>(p.zeros)[i]);
        acc[r] += s * to_f32(T(S[r] - T(qz) * asum));
        break;
      }
      case ScaleMode::kOriginal: {
        const float z = static_cast<const float*>(p.zeros)[i];
        acc[r] += s * (to_f32(S[r]) - z * to_f32(asum));
        break;
      }
      case ScaleMode::kRescale: {
        const float z = static_cast<const float*>(p.zeros)[i];
        acc[r] += s * to_f32(S[r]) - z * to_f32(asum);
        break;
      }
      default: break;
    }
  }
}

template <class T>
void write_band(const QProblem<T>& p, int64_t n0, const float* acc, const T* exact) {
  for (int64_t m = 0; m < p.M; ++m) {
    for (int r = 0; r < kTileN; ++r) {
      const int64_t n = n0 + r, o = m * p.N + n;
      if (p.out_dtype == DType::kI32) {
        static_cast<int32_t*>(p.C)[o] = static_cast<int32_t>(exact[m * kTileN + r]);
        continue;
      }
      float v = acc[m * kTileN + r];
      if (p.bias) v += p.bias[n];
      switch (p.out_dtype) {
        case DType::kI8: static_cast<int8_t*>(p.C)[o] = saturate_int8(v); break;
        case DType::kF16: static_cast<uint16_t*>(p.C)[o] = cpu::f32_to_f16_bits(v); break;
        case DType::kBF16: static_cast<uint16_t*>(p.C)[o] = cpu::f32_to_bf16_bits(v); break;
        default: static_cast<float*>(p.C)[o] = v; break;
      }
    }
  }
}

template <int BITS, class T>
void run_bands(const QProblem<T>& p, int64_t band_begin, int64_t band_end) {
  std::vector<T> w(std::min(p.K, kKBlock) * kTileN);
  std::vector<T> sums(p.M * kTileN);
  std::vector<float> acc(p.M * kTileN);
  for (int64_t b = band_begin; b < band_end; ++b) {
    const int64_t n0 = b * kTileN;
    std::fill(sums.begin(), sums.end(), T(0));
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t k0 = 0; k0 < p.K; k0 += kKBlock) {
      const int64_t kc = std::min(kKBlock, p.K - k0);
      decode_block<BITS>(p, n0, k0, kc, w.data());
      for (int64_t m = 0; m < p.M; ++m) {
        T* S = sums.data() + m * kTileN;
        for (int64_t k = k0; k < k0 + kc;) {  // the block's pieces of groups
          const int64_t g = k / p.group, g_end = (g + 1) * p.group;
          const int64_t k_end = std::min(g_end, k0 + kc);
          dot16(p.A + m * p.K + k, w.data() + (k - k0) * kTileN, k_end - k, S);
          if (k_end == g_end) {
            add_group_term(p, m, n0, g, S, acc.data() + m * kTileN);
            if (p.out_dtype != DType::kI32) std::fill(S, S + kTileN, T(0));
          }
          k = k_end;
        }
      }
    }
    write_band(p, n0, acc.data(), sums.data());
  }
}

std::string validate(const MatmulArgs& a) {
  if (static_cast<int>(a.w_format) < 0 || static_cast<int>(a.w_format) >= kNumWFormats)
    return "bad w_format";
  // The combinations are formats.py's QUANTIZED_A, read from formats_generated.h.
  const std::string act = std::string(dtype_name(a.a_dtype)) + " activations";
  if (!((qact_weight_mask(a.a_dtype) >> static_cast<uint32_t>(a.w_format)) & 1u))
    return act + " do not take " + format_name(a.w_format) + " weights";
  if (a.accum_dtype != qact_accum(a.a_dtype))
    return act + " accumulate in " + dtype_name(qact_accum(a.a_dtype));
  if (static_cast<uint32_t>(a.out_dtype) >= static_cast<uint32_t>(kNumDTypes) ||
      !((qact_out_mask(a.a_dtype) >> static_cast<uint32_t>(a.out_dtype)) & 1u))
    return act + " do not output " + dtype_name(a.out_dtype);
  if (a.out_dtype == DType::kI32 && (a.mode != ScaleMode::kNone || a.bias))
    return "int32 output takes no scale, zeros or bias";
  return check_problem(a);
}

template <class T>
std::string run(const MatmulArgs& a) {
  QProblem<T> p;
  p.M = a.M; p.N = a.N; p.K = a.K;
  p.bits = format_bits(a.w_format);
  p.mode = a.mode;
  p.group = a.mode == ScaleMode::kNone ? a.K : a.group_size;
  p.groups = a.K / p.group;
  p.tiles_k = a.K / tile_k(p.bits);
  p.out_dtype = a.out_dtype;
  p.signed_zeros = format_is_signed_int(a.w_format);
  p.W = a.W;
  p.scale = static_cast<const float*>(a.scale);
  p.zeros = a.zeros;
  p.bias = static_cast<const float*>(a.bias);
  p.C = a.C;
  float lut[256];
  cpu::build_lut(a.w_format, lut);
  for (int c = 0; c < (1 << p.bits); ++c)
    p.lut[c] = std::is_same_v<T, uint32_t> ? T(uint32_t(int32_t(lut[c]))) : T(lut[c]);
  std::vector<T> A(size_t(a.M * a.K));
  for (int64_t i = 0; i < a.M * a.K; ++i) {
    if constexpr (std::is_same_v<T, uint32_t>) {
      A[i] = uint32_t(int32_t(static_cast<const int8_t*>(a.A)[i]));
    } else {
      const uint8_t c = static_cast<const uint8_t*>(a.A)[i];
      A[i] = a.a_dtype == DType::kF8E4M3 ? cpu::fp8_e4m3fn_to_f32(c) : cpu::fp8_e5m2_to_f32(c);
    }
  }
  p.A = A.data();
  std::vector<T> asum;
  if (a.mode >= ScaleMode::kOriginal) {
    asum.assign(size_t(a.M * p.groups), T(0));
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t k = 0; k < a.K; ++k) asum[m * p.groups + k / p.group] += A[m * a.K + k];
    p.asum = asum.data();
  }
  const double work = double(a.M) * double(a.N) * double(a.K);
  const int64_t bands = a.N / kTileN;
  switch (p.bits) {
    case 1: return cpu::run_band_threads(bands, work, [&p](int64_t b0, int64_t b1) { run_bands<1>(p, b0, b1); });
    case 2: return cpu::run_band_threads(bands, work, [&p](int64_t b0, int64_t b1) { run_bands<2>(p, b0, b1); });
    case 4: return cpu::run_band_threads(bands, work, [&p](int64_t b0, int64_t b1) { run_bands<4>(p, b0, b1); });
    default: return cpu::run_band_threads(bands, work, [&p](int64_t b0, int64_t b1) { run_bands<8>(p, b0, b1); });
  }
}

}  // namespace

std::string matmul_cpu_quantized(const MatmulArgs& args) {
  std::string err = validate(args);
  if (!err.empty() || args.M == 0) return err;
  try {
    return args.a_dtype == DType::kI8 ? run<uint32_t>(args) : run<float>(args);
  } catch (const std::exception& e) {
    return std::string("cpu kernel failed: ") + e.what();
  } catch (...) {
    return "cpu kernel failed";
  }
}

}  // namespace bitblas_jax
