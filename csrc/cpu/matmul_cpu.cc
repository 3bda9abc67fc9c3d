// The CPU kernel: every format, mode and dtype of kernel_api.h.
//
// Work unit: one row band (16 rows of the packed layout). Its tiles are
// decoded one K block at a time into a k-major float32 scratch w[k][16],
// already dequantized and rounded to A's dtype; then every row of A
// (converted to float32 once per call) accumulates a[m][k] * w[k][0..15]
// into 16 running sums: a broadcast times a contiguous 16-float vector, with
// no horizontal reductions, and the fp16-accumulation chunks become plain
// vector roundings. Decode cost is paid once per band and shared by all M
// rows. Bands are split across std::threads when the problem is large.
//
// Dequantization takes one of two routes:
//  * group tables (<= 4-bit codes, groups spanning whole tiles): for each band
//    and group, the 16 rows x 2^bits possible results round_A(dequant(code))
//    are tabulated, and decoding is a single lookup per element;
//  * otherwise code -> value through a 256-entry table, then a vectorized
//    pass applies scale / zeros and rounds to A's dtype.
// No global mutable state: everything lives in the call.
#include "matmul_cpu.h"

#include <algorithm>
#include <exception>
#include <cstring>
#include <type_traits>
#include <vector>

#include "matmul_cpu_convert.h"
#include "matmul_cpu_qact.h"
#include "matmul_cpu_threads.h"
#include "matmul_cpu_tile.h"

namespace bitblas_jax {
namespace {

using cpu::bf16_to_f32;
using cpu::build_lut;
using cpu::decode_tile;
using cpu::f16_to_f32;

// Columns decoded per step: a multiple of every tile_k (<= 256) and 32 KiB
// of scratch, so decode output and dot input stay in L1 for small M.
constexpr int64_t kKBlock = 512;
// Above this many rows of A the whole band is decoded first and A is walked
// in blocks of this many rows, so each K block of A is reused from cache.
constexpr int64_t kMBlock = 64;
// Rows of A per micro-kernel call: 2 x 16 sums are 8 SSE registers, which
// leaves room for the weights (16 registers in all on x86-64).
constexpr int kMR = 2;

enum class Round { kNone, kF16, kBF16 };

struct Problem;
// Decodes columns [k0, k0 + kc) of the band starting at row n0 into dst[kc][16].
using DecodeFn = void (*)(const Problem& p, int64_t n0, int64_t k0, int64_t kc, float* dst);
// Applies scale / zeros and rounding in place to a decoded block.
using ApplyFn = void (*)(const Problem& p, int64_t n0, int64_t k0, int64_t kc, float* w);
// acc[rows][16] += A[rows, kc] (row stride lda) * w[kc][16].
using DotRowsFn = void (*)(const float* a, int64_t lda, int64_t rows, const float* w,
                           int64_t kc, float* acc);

// Everything a worker needs; read-only once built.
struct Problem {
  int64_t M = 0, N = 0, K = 0, group_size = 0, tiles_k = 0;
  const float* A = nullptr;  // [M, K] float32
  const uint8_t* W = nullptr;
  const void* scale = nullptr;
  const void* zeros = nullptr;
  const void* bias = nullptr;
  void* C = nullptr;
  DType a_dtype = DType::kF32, out_dtype = DType::kF32;
  bool signed_zeros = false;  // quantized zeros are int8 (else uint8)
  DecodeFn decode = nullptr;
  ApplyFn apply = nullptr;  // null: decoded values are final
  DotRowsFn dot_rows = nullptr;
  float lut[256] = {};  // code -> value, formats of <= 8 bits
};

// ---------------------------------------------------------------------------
// Element loads / stores in a runtime dtype.

inline float load_act(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF32: break;
  }
  return static_cast<const float*>(p)[i];
}

inline float round_to(DType t, float x) {
  switch (t) {
    case DType::kF16: return cpu::round_to_f16(x);
    case DType::kBF16: return cpu::round_to_bf16(x);
    case DType::kF32: break;
  }
  return x;
}

inline void store_out(void* p, DType t, int64_t i, float x) {
  switch (t) {
    case DType::kF16: static_cast<uint16_t*>(p)[i] = cpu::f32_to_f16_bits(x); return;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = cpu::f32_to_bf16_bits(x); return;
    case DType::kF32: static_cast<float*>(p)[i] = x; return;
  }
}

template <Round R>
inline float round_r(float x) {
  if constexpr (R == Round::kF16) return cpu::round_to_f16(x);
  if constexpr (R == Round::kBF16) return cpu::round_to_bf16(x);
  return x;
}

inline Round round_kind(DType t) {
  return t == DType::kF16 ? Round::kF16 : t == DType::kBF16 ? Round::kBF16 : Round::kNone;
}

// ---------------------------------------------------------------------------
// Scale / zeros (kernel_api.h ScaleMode), in float32.

template <ScaleMode MODE>
inline float dequant(float w, float s, float z) {
  if constexpr (MODE == ScaleMode::kScale) return w * s;
  if constexpr (MODE == ScaleMode::kRescale) return w * s - z;
  if constexpr (MODE == ScaleMode::kOriginal || MODE == ScaleMode::kQuantized) return (w - z) * s;
  return w;
}

inline float load_zero(const Problem& p, ScaleMode mode, int64_t i) {
  if (mode != ScaleMode::kQuantized) return load_act(p.zeros, p.a_dtype, i);
  return p.signed_zeros ? float(static_cast<const int8_t*>(p.zeros)[i])
                        : float(static_cast<const uint8_t*>(p.zeros)[i]);
}

// Scale and zero of row n, group g (zero 0 where the mode has none).
template <ScaleMode MODE>
inline void load_group(const Problem& p, int64_t n, int64_t g, float* s, float* z) {
  const int64_t i = n * (p.K / p.group_size) + g;
  *s = load_act(p.scale, p.a_dtype, i);
  *z = MODE == ScaleMode::kScale ? 0.0f : load_zero(p, MODE, i);
}

// ---------------------------------------------------------------------------
// Tile decode.

inline const uint8_t* tile_ptr(const Problem& p, int64_t n0, int64_t k, int tk) {
  return p.W + ((n0 / kTileN) * p.tiles_k + k / tk) * kTileBytes;
}

// code -> p.lut[code] (final values in mode none, else raw for apply_mode).
template <int BITS>
void decode_lut(const Problem& p, int64_t n0, int64_t k0, int64_t kc, float* dst) {
  constexpr int TK = 256 / BITS;
  const float* lut = p.lut;
  for (int64_t k = k0; k < k0 + kc; k += TK)
    decode_tile<BITS>(tile_ptr(p, n0, k, TK), [lut](uint32_t c, int) { return lut[c]; },
                      dst + (k - k0) * kTileN);
}

// Dense float16 / bfloat16 weights: the raw 16 bits.
template <bool BF16>
void decode_dense(const Problem& p, int64_t n0, int64_t k0, int64_t kc, float* dst) {
  for (int64_t k = k0; k < k0 + kc; k += 16)
    decode_tile<16>(tile_ptr(p, n0, k, 16),
                    [](uint32_t c, int) {
                      return BF16 ? bf16_to_f32(uint16_t(c)) : f16_to_f32(uint16_t(c));
                    },
                    dst + (k - k0) * kTileN);
}

// Group tables: table[row][code] = round_A(dequant(lut[code])) with row's
// scale / zero of group g; rebuilt when a tile starts a new group (groups
// span whole tiles on this route).
template <int BITS, ScaleMode MODE, Round R>
void decode_grouped(const Problem& p, int64_t n0, int64_t k0, int64_t kc, float* dst) {
  constexpr int TK = 256 / BITS, NC = 1 << BITS;
  float table[kTileN * NC];
  int64_t table_group = -1;
  for (int64_t k = k0; k < k0 + kc; k += TK) {
    const int64_t g = k / p.group_size;
    if (g != table_group) {  // loads first, so the table loop vectorizes
      float s[kTileN], z[kTileN];
      for (int r = 0; r < kTileN; ++r) load_group<MODE>(p, n0 + r, g, &s[r], &z[r]);
      for (int r = 0; r < kTileN; ++r)
        for (int c = 0; c < NC; ++c)
          table[r * NC + c] = round_r<R>(dequant<MODE>(p.lut[c], s[r], z[r]));
      table_group = g;
    }
    decode_tile<BITS>(tile_ptr(p, n0, k, TK),
                      [&table](uint32_t c, int row) { return table[row * NC + c]; },
                      dst + (k - k0) * kTileN);
  }
}

// Scale / zeros, then rounding to A's dtype, on a decoded block w[kc][16]:
// one group's 16 scales / zeros at a time, then its columns as 16-wide rows.
template <ScaleMode MODE, Round R>
void apply_mode(const Problem& p, int64_t n0, int64_t k0, int64_t kc, float* w) {
  if constexpr (MODE == ScaleMode::kNone) {
    for (int64_t i = 0; i < kc * kTileN; ++i) w[i] = round_r<R>(w[i]);
  } else {
    for (int64_t k = k0; k < k0 + kc;) {
      const int64_t g = k / p.group_size;
      const int64_t k_end = std::min((g + 1) * p.group_size, k0 + kc);
      float s[kTileN], z[kTileN];
      for (int r = 0; r < kTileN; ++r) load_group<MODE>(p, n0 + r, g, &s[r], &z[r]);
      for (; k < k_end; ++k) {
        float* wk = w + (k - k0) * kTileN;
        for (int r = 0; r < kTileN; ++r) wk[r] = round_r<R>(dequant<MODE>(wk[r], s[r], z[r]));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Micro-kernels.
//
// A 4-float GCC/Clang vector type (SSE on x86-64, NEON on ARM) spells the
// broadcast-multiply-add directly: left to itself gcc vectorizes the k loop
// as an in-order reduction full of shuffles.

typedef float v4f __attribute__((vector_size(16)));
inline v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, v4f v) { std::memcpy(p, &v, sizeof v); }

// sums[i][0..15] (+)= sum_k a[i * lda + k] * w[k][0..15] for MR rows; the sums
// live in registers for the whole loop (a local copy, free of aliasing).
template <int MR, bool ADD>
inline void dot_block(const float* a, int64_t lda, const float* w, int64_t kc, float* sums) {
  v4f p[MR][4];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < 4; ++j) p[i][j] = ADD ? load4(sums + i * kTileN + 4 * j) : v4f{};
  for (int64_t k = 0; k < kc; ++k) {
    const float* wk = w + k * kTileN;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const float av = a[i * lda + k];
      for (int j = 0; j < 4; ++j) p[i][j] += av * load4(wk + 4 * j);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < 4; ++j) store4(sums + i * kTileN + 4 * j, p[i][j]);
}

// fp16 accumulation: each aligned 16-wide K chunk is summed in fp32, added to
// the running sum, and the running sum is rounded to fp16 (tensor-core fp16
// accumulation). Every block starts at a multiple of 16, so chunks align.
template <int MR>
inline void dot_f16(const float* a, int64_t lda, const float* w, int64_t kc, float* acc) {
  float part[MR * kTileN];
  for (int64_t c = 0; c < kc; c += 16) {
    dot_block<MR, false>(a + c, lda, w + c * kTileN, 16, part);
    for (int i = 0; i < MR * kTileN; ++i) acc[i] = cpu::round_to_f16(acc[i] + part[i]);
  }
}

template <int MR, bool F16ACC>
inline void dot_mr(const float* a, int64_t lda, const float* w, int64_t kc, float* acc) {
  if constexpr (F16ACC) dot_f16<MR>(a, lda, w, kc, acc);
  else dot_block<MR, true>(a, lda, w, kc, acc);
}

// All `rows` rows of A: kMR at a time, then one by one.
template <bool F16ACC>
void dot_rows(const float* a, int64_t lda, int64_t rows, const float* w, int64_t kc, float* acc) {
  int64_t m = 0;
  for (; m + kMR <= rows; m += kMR) dot_mr<kMR, F16ACC>(a + m * lda, lda, w, kc, acc + m * kTileN);
  for (; m < rows; ++m) dot_mr<1, F16ACC>(a + m * lda, lda, w, kc, acc + m * kTileN);
}

// ---------------------------------------------------------------------------
// Per band: decode, dot, epilogue.

// C = round_out(acc), then C = round_out(C + bias) (bias after the cast, as BitBLAS).
void write_band(const Problem& p, int64_t n0, const float* acc) {
  for (int64_t m = 0; m < p.M; ++m) {
    for (int r = 0; r < kTileN; ++r) {
      const int64_t n = n0 + r;
      float v = round_to(p.out_dtype, acc[m * kTileN + r]);
      if (p.bias) v = round_to(p.out_dtype, v + load_act(p.bias, p.a_dtype, n));
      store_out(p.C, p.out_dtype, m * p.N + n, v);
    }
  }
}

void run_bands(const Problem& p, int64_t band_begin, int64_t band_end) {
  const bool whole_band = p.M > kMBlock;
  std::vector<float> scratch((whole_band ? p.K : std::min(p.K, kKBlock)) * kTileN);
  std::vector<float> acc(p.M * kTileN);
  for (int64_t b = band_begin; b < band_end; ++b) {
    const int64_t n0 = b * kTileN;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t k0 = 0; k0 < p.K; k0 += kKBlock) {
      const int64_t kc = std::min(kKBlock, p.K - k0);
      float* w = scratch.data() + (whole_band ? k0 * kTileN : 0);
      p.decode(p, n0, k0, kc, w);
      if (p.apply) p.apply(p, n0, k0, kc, w);
      if (!whole_band) p.dot_rows(p.A + k0, p.K, p.M, w, kc, acc.data());
    }
    for (int64_t m0 = 0; whole_band && m0 < p.M; m0 += kMBlock) {
      const int64_t rows = std::min(kMBlock, p.M - m0);
      for (int64_t k0 = 0; k0 < p.K; k0 += kKBlock)
        p.dot_rows(p.A + m0 * p.K + k0, p.K, rows, scratch.data() + k0 * kTileN,
                   std::min(kKBlock, p.K - k0), acc.data() + m0 * kTileN);
    }
    write_band(p, n0, acc.data());
  }
}

// ---------------------------------------------------------------------------
// Setup.

std::string validate(const MatmulArgs& a) {
  for (DType t : {a.a_dtype, a.out_dtype})
    if (t != DType::kF16 && t != DType::kBF16 && t != DType::kF32)
      return "A / output dtype must be float16, bfloat16 or float32";
  if (a.accum_dtype != DType::kF32 && a.accum_dtype != DType::kF16)
    return "accum_dtype must be float32 or float16";
  return check_problem(a);
}

// Compile-time dispatch: f(std::integral_constant<...>) for a runtime value.
template <class T, T V>
using Const = std::integral_constant<T, V>;

template <class F>
auto with_round(Round r, F f) {
  if (r == Round::kF16) return f(Const<Round, Round::kF16>{});
  if (r == Round::kBF16) return f(Const<Round, Round::kBF16>{});
  return f(Const<Round, Round::kNone>{});
}

template <class F>
auto with_scaled_mode(ScaleMode m, F f) {  // every mode but kNone
  if (m == ScaleMode::kOriginal) return f(Const<ScaleMode, ScaleMode::kOriginal>{});
  if (m == ScaleMode::kRescale) return f(Const<ScaleMode, ScaleMode::kRescale>{});
  if (m == ScaleMode::kQuantized) return f(Const<ScaleMode, ScaleMode::kQuantized>{});
  return f(Const<ScaleMode, ScaleMode::kScale>{});
}

template <class F>
auto with_small_bits(int bits, F f) {  // 1, 2, 4
  if (bits == 1) return f(Const<int, 1>{});
  if (bits == 2) return f(Const<int, 2>{});
  return f(Const<int, 4>{});
}

// Group tables pay 16 x 2^bits roundings per band and group instead of
// 16 x group_size: worth it when that is at most half, and usable when
// groups span whole tiles.
bool use_group_tables(const MatmulArgs& a) {
  const int bits = format_bits(a.w_format);
  return bits <= 4 && a.group_size % tile_k(bits) == 0 &&
         2 * (int64_t(1) << bits) <= a.group_size;
}

// Dense float16 / bfloat16 weights decode exactly; they need rounding only
// when A has the other 16-bit dtype.
void plan_dense(const MatmulArgs& a, Problem* p) {
  p->decode = a.w_format == WFormat::kBF16 ? decode_dense<true> : decode_dense<false>;
  const bool same = (a.w_format == WFormat::kF16) == (a.a_dtype == DType::kF16);
  if (a.a_dtype == DType::kF32 || same) return;
  p->apply = with_round(round_kind(a.a_dtype), [](auto R) -> ApplyFn {
    return apply_mode<ScaleMode::kNone, decltype(R)::value>;
  });
}

// Coded weights (<= 8 bits): see the route list at the top of the file.
void plan_coded(const MatmulArgs& a, Problem* p) {
  const Round ra = round_kind(a.a_dtype);
  const int bits = format_bits(a.w_format);
  build_lut(a.w_format, p->lut);
  if (a.mode != ScaleMode::kNone && use_group_tables(a)) {
    p->decode = with_small_bits(bits, [&](auto B) {
      return with_scaled_mode(a.mode, [&](auto M) {
        return with_round(ra, [](auto R) -> DecodeFn {
          return decode_grouped<decltype(B)::value, decltype(M)::value, decltype(R)::value>;
        });
      });
    });
    return;
  }
  if (a.mode == ScaleMode::kNone) {  // values are final: round them once, here
    for (float& v : p->lut) v = round_to(a.a_dtype, v);
  } else {
    p->apply = with_scaled_mode(a.mode, [ra](auto M) {
      return with_round(ra, [](auto R) -> ApplyFn {
        return apply_mode<decltype(M)::value, decltype(R)::value>;
      });
    });
  }
  switch (bits) {
    case 1: p->decode = decode_lut<1>; break;
    case 2: p->decode = decode_lut<2>; break;
    case 4: p->decode = decode_lut<4>; break;
    default: p->decode = decode_lut<8>; break;
  }
}

}  // namespace

std::string check_problem(const MatmulArgs& a) {
  const int f = static_cast<int>(a.w_format), m = static_cast<int>(a.mode);
  if (f < 0 || f >= kNumWFormats) return "bad w_format " + std::to_string(f);
  if (m < 0 || m >= kNumScaleModes) return "bad mode " + std::to_string(m);
  if (!format_allows_mode(a.w_format, a.mode))
    return "this scale / zeros mode is not allowed for the weight format";
  const int bits = format_bits(a.w_format);
  if (a.M < 0 || a.N <= 0 || a.K <= 0) return "need M >= 0 and N, K > 0";
  if (a.N % kTileN) return "N must be a multiple of 16";
  if (a.K % tile_k(bits)) return "K must be a multiple of " + std::to_string(tile_k(bits));
  if (a.mode != ScaleMode::kNone && (a.group_size <= 0 || a.K % a.group_size))
    return "group_size must be positive and divide K";
  if (a.M > 0 && (!a.A || !a.W || !a.C)) return "A, W and C must not be null";
  if (a.mode != ScaleMode::kNone && !a.scale) return "this mode needs scale";
  if (a.mode >= ScaleMode::kOriginal && !a.zeros) return "this mode needs zeros";
  return "";
}

std::string matmul_cpu(const MatmulArgs& args) {
  if (is_quantized_activation(args.a_dtype)) return matmul_cpu_quantized(args);
  std::string err = validate(args);
  if (!err.empty() || args.M == 0) return err;
  try {
    Problem p;
    p.M = args.M; p.N = args.N; p.K = args.K;
    p.group_size = args.group_size;
    p.tiles_k = args.K / tile_k(format_bits(args.w_format));
    p.W = args.W; p.scale = args.scale; p.zeros = args.zeros; p.bias = args.bias; p.C = args.C;
    p.a_dtype = args.a_dtype;
    p.out_dtype = args.out_dtype;
    p.signed_zeros = format_is_signed_int(args.w_format);
    if (format_bits(args.w_format) == 16) plan_dense(args, &p);
    else plan_coded(args, &p);
    p.dot_rows = args.accum_dtype == DType::kF16 ? dot_rows<true> : dot_rows<false>;
    std::vector<float> a32;  // A as float32, converted once
    if (args.a_dtype == DType::kF32) {
      p.A = static_cast<const float*>(args.A);
    } else {
      a32.resize(size_t(args.M * args.K));
      for (int64_t i = 0; i < args.M * args.K; ++i) a32[i] = load_act(args.A, args.a_dtype, i);
      p.A = a32.data();
    }
    return cpu::run_band_threads(p.N / kTileN, double(p.M) * double(p.N) * double(p.K),
                                 [&p](int64_t b0, int64_t b1) { run_bands(p, b0, b1); });
  } catch (const std::exception& e) {
    return std::string("cpu kernel failed: ") + e.what();
  } catch (...) {
    return "cpu kernel failed";
  }
}

}  // namespace bitblas_jax
