// Self-test of gemm_wgmma_a8 (csrc/cuda/gemm_wgmma_a8.cuh) on an sm_90 GPU, weights packed in the shared
// layout, activations in kSigma order, outputs poisoned (INT32_MIN / NaN) so unwritten elements show:
//   int8 A x int8 / int4 / uint4: full-range random data, int32 sums against the exact int64 ones; group
//     scales of 128 against the float64 sum within its float32 bound.
//   float8 A (e4m3 / e5m2) x float8_e4m3fn / float8_e5m2 / int4: integer-valued operands (|a| <= 8,
//     |w| <= 8: every product and stage sum exact in the tensor cores' 13 fraction bits) against the
//     exact sums (no scales) or within the float32 bound (groups of 128 / 256); random full-range float8
//     data (|x| <= 64) within the float8 tensor cores' bound, 4 * 33 * 2^-13 of each stage's sum of
//     |products| (tests/cases.py FLOAT8_WGMMA_STAGE_REL), the worst observed error printed.
// Prints one line a case and PASS / FAIL last; exit status 1 on any mismatch.
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Icsrc/include \
//     -Icsrc/cuda tests/cuda/gemm_a8_selftest.cu csrc/cuda/inst_gemm_wgmma_a8.cu \
//     csrc/cuda/inst_gemm_wgmma_a8_f8.cu csrc/cuda/tma_map.cu -o build/gemm_a8_selftest && build/gemm_a8_selftest
//   build/gemm_a8_selftest --time M N K KIND [GROUP [f16]]  # kernel time, TOPS, weight copies rotated beyond the
//                                                           # L2; KIND: int8, int4, e4m3, e4m3-int4, e5m2; GROUP:
//                                                           # group scales of GROUP k (0: none); f16: a float16
//                                                           # output with per-channel and activation scales
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/cpu/matmul_cpu_convert.h"
#include "bitblas_jax/layout.h"
#include "gemm_wgmma_a8.h"
#include "qact_out_check.h"

namespace {

using bitblas_jax::DType;
using bitblas_jax::WFormat;

constexpr int kSigmaHost[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};
constexpr double kFloat8StageRel = 4 * 33 * 0x1p-13;  // tests/cases.py FLOAT8_WGMMA_STAGE_REL

#define CHECK(x)                                                                         \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      std::printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
      std::exit(2);                                                                      \
    }                                                                                    \
  } while (0)

int bits_of(WFormat w) { return w == WFormat::kInt4 || w == WFormat::kUInt4 ? 4 : 8; }

// An 8-bit activation / weight code's value (float8 codes through the CPU kernel's conversions).
double value_of(uint8_t code, DType kind) {
  switch (kind) {
    case DType::kF8E4M3: return bitblas_jax::cpu::fp8_e4m3fn_to_f32(code);
    case DType::kF8E5M2: return bitblas_jax::cpu::fp8_e5m2_to_f32(code);
    default: return static_cast<int8_t>(code);
  }
}

// The float8 code of the integer v in [-8, 8] (exactly representable), from a table made once per kind
// (a search per element made the --time setup of a large problem take a minute).
uint8_t code_of(int v, DType kind) {
  static uint8_t table[2][17];
  static bool made[2] = {false, false};
  const int t = kind == DType::kF8E5M2;
  if (!made[t]) {
    for (int x = -8; x <= 8; ++x) {
      int c = 0;
      while (c < 256 && value_of(static_cast<uint8_t>(c), kind) != x) ++c;
      if (c == 256) {
        std::printf("no code for %d\n", x);
        std::exit(2);
      }
      table[t][x + 8] = static_cast<uint8_t>(c);
    }
    made[t] = true;
  }
  return table[t][v + 8];
}

const char* name(DType a) { return a == DType::kI8 ? "int8" : a == DType::kF8E4M3 ? "e4m3" : "e5m2"; }
const char* name(WFormat w) {
  switch (w) {
    case WFormat::kInt8: return "int8";
    case WFormat::kInt4: return "int4";
    case WFormat::kUInt4: return "uint4";
    case WFormat::kFP8E4M3: return "float8_e4m3fn";
    default: return "float8_e5m2";
  }
}

// How the operands are drawn: integers over the format's whole range (int8 A), small integers
// (float8, exact in the tensor cores), or random finite float8 codes with |x| <= 64.
enum class Draw { kFullRange, kSmallIntegers };

struct Problem {
  std::vector<double> a, w;       // values
  std::vector<uint8_t> a_sigma;   // activation codes in kSigma order
  std::vector<uint8_t> packed;
};

uint8_t draw_code(std::mt19937_64& rng, DType kind, Draw draw, int lo, int hi) {
  if (kind == DType::kI8 || draw == Draw::kSmallIntegers) {
    const int v = std::uniform_int_distribution<int>(lo, hi)(rng);
    return kind == DType::kI8 ? static_cast<uint8_t>(static_cast<int8_t>(v)) : code_of(v, kind);
  }
  for (;;) {  // a random finite float8 code of magnitude <= 64
    const uint8_t c = static_cast<uint8_t>(rng() & 0xff);
    const double v = value_of(c, kind);
    if (std::isfinite(v) && std::fabs(v) <= 64) return c;
  }
}

Problem make(int64_t M, int64_t N, int64_t K, DType act, WFormat wf, Draw draw, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int bits = bits_of(wf);
  Problem p;
  p.a.resize(M * K);
  p.w.resize(N * K);
  std::vector<uint8_t> a_codes(M * K);
  for (int64_t i = 0; i < M * K; ++i) {
    a_codes[i] = draw_code(rng, act, draw, act == DType::kI8 ? -128 : -8, act == DType::kI8 ? 127 : 8);
    p.a[i] = value_of(a_codes[i], act);
  }
  p.packed.assign(N * K * bits / 8, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      uint32_t code;
      double v;
      if (wf == WFormat::kFP8E4M3 || wf == WFormat::kFP8E5M2) {
        const DType kind = wf == WFormat::kFP8E4M3 ? DType::kF8E4M3 : DType::kF8E5M2;
        code = draw_code(rng, kind, draw, -8, 8);
        v = value_of(static_cast<uint8_t>(code), kind);
      } else {
        const bool is_signed = wf != WFormat::kUInt4;
        const int lo = is_signed ? -(1 << (bits - 1)) : 0, hi = is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
        const int x = std::uniform_int_distribution<int>(lo, hi)(rng);
        code = static_cast<uint32_t>(x - lo);  // offset binary when signed (formats.py)
        v = x;
      }
      p.w[n * K + k] = v;
      const auto slot = bitblas_jax::layout::code_slot(K, bits, n, k);
      p.packed[slot.byte + slot.shift / 8] |= static_cast<uint8_t>(code << (slot.shift % 8));
    }
  p.a_sigma.resize(M * K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k0 = 0; k0 < K; k0 += 16)
      for (int i = 0; i < 16; ++i) p.a_sigma[m * K + k0 + i] = a_codes[m * K + k0 + kSigmaHost[i]];
  return p;
}

struct Device {
  uint8_t *a = nullptr, *w = nullptr;
  float* scale = nullptr;
  void* out = nullptr;
  Device(const Problem& p, int64_t M, int64_t N, const std::vector<float>& s) {
    CHECK(cudaMalloc(&a, p.a_sigma.size() + 16));
    CHECK(cudaMalloc(&w, p.packed.size()));
    CHECK(cudaMalloc(&out, M * N * 4 + 4));
    CHECK(cudaMemcpy(a, p.a_sigma.data(), p.a_sigma.size(), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(w, p.packed.data(), p.packed.size(), cudaMemcpyHostToDevice));
    if (!s.empty()) {
      CHECK(cudaMalloc(&scale, s.size() * 4));
      CHECK(cudaMemcpy(scale, s.data(), s.size() * 4, cudaMemcpyHostToDevice));
    }
  }
  ~Device() {
    cudaFree(a);
    cudaFree(w);
    cudaFree(out);
    if (scale) cudaFree(scale);
  }
};

// One case: group = 0 without scales. The output is int32 (int8 A without scales) or float32.
bool check(int64_t M, int64_t N, int64_t K, DType act, WFormat wf, int64_t group, Draw draw, uint64_t seed) {
  const Problem p = make(M, N, K, act, wf, draw, seed);
  const int64_t G = group ? K / group : 0;
  std::vector<float> scale(N * G);
  std::mt19937_64 rng(seed + 99);
  std::uniform_real_distribution<float> ds(-0.02f, 0.02f);
  for (auto& x : scale) x = ds(rng);
  Device d(p, M, N, scale);
  const bool int_out = act == DType::kI8 && !group;
  std::vector<uint32_t> poison(M * N, int_out ? 0x80000000u : 0x7fc00000u), got(M * N);
  CHECK(cudaMemcpy(d.out, poison.data(), M * N * 4, cudaMemcpyHostToDevice));
  bitblas_jax::GemmA8Args args;
  args.M = M, args.N = N, args.K = K, args.A = d.a, args.act = act, args.W = d.w, args.w_format = wf;
  args.scale = d.scale, args.group_size = group, args.out = d.out;
  args.out_dtype = int_out ? DType::kI32 : DType::kF32;    // the sums (or v) themselves
  const std::string err = bitblas_jax::launch_gemm_wgmma_a8(args, 0);
  if (err.empty()) CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemcpy(got.data(), d.out, M * N * 4, cudaMemcpyDeviceToHost));
  char what[160];
  std::snprintf(what, sizeof what, "%s x %s g%ld %s M=%ld N=%ld K=%ld", name(act), name(wf), (long)group,
                draw == Draw::kFullRange ? "full-range" : "small-int", (long)M, (long)N, (long)K);
  if (!err.empty()) {
    std::printf("FAIL %s: %s\n", what, err.c_str());
    return false;
  }
  // exact: int8 sums, and float8 small-integer sums without scales; else the float32 bound (+ the
  // float8 tensor cores' bound on full-range float8 data)
  const bool exact = group == 0 && (act == DType::kI8 || draw == Draw::kSmallIntegers);
  const bool tensor_core_bound = act != DType::kI8 && draw == Draw::kFullRange;
  int64_t bad = 0, unwritten = 0;
  double worst = 0, worst_rel = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = 0, mag = 0;
      int64_t isum = 0;
      const int64_t gs = group ? group : K;
      for (int64_t g0 = 0; g0 < K; g0 += gs) {
        double S = 0, Sabs = 0;
        for (int64_t k = g0; k < g0 + gs; ++k) {
          const double prod = p.a[m * K + k] * p.w[n * K + k];
          S += prod;
          Sabs += std::fabs(prod);
          if (act == DType::kI8) isum += static_cast<int64_t>(prod);
        }
        const double s = group ? scale[n * G + g0 / gs] : 1.0;
        ref += s * S;
        mag += std::fabs(s) * Sabs;
      }
      const uint32_t bits = got[m * N + n];
      if (bits == poison[0]) ++unwritten;
      double g;
      if (int_out) {
        g = static_cast<int32_t>(bits);
        ref = static_cast<int32_t>(static_cast<uint32_t>(isum));  // wraps mod 2^32 as the kernel's sums
      } else {
        float f;
        std::memcpy(&f, &bits, 4);
        g = f;
      }
      const double err_mn = std::fabs(g - ref);
      const double bound = exact ? 0.0
                                 : (K / 128 + 2) * 0x1p-23 * mag + (tensor_core_bound ? kFloat8StageRel * mag : 0.0);
      if (!(err_mn <= bound)) {
        if (bad < 3) std::printf("  %s: C[%ld, %ld] = %.9g, expected %.9g (bound %g)\n", what, (long)m, (long)n, g, ref, bound);
        ++bad;
      }
      if (bound > 0) worst = std::max(worst, err_mn / bound);
      if (mag > 0) worst_rel = std::max(worst_rel, err_mn / mag);
    }
  std::printf("%s %s: %ld wrong, %ld unwritten; worst %.3g of the bound, %.3g of sum|a w s|\n", bad ? "FAIL" : "ok  ",
              what, (long)bad, (long)unwritten, worst, worst_rel);
  return bad == 0;
}

// The epilogue: C = out_dtype(row_scale[m] * col_scale[n] * S + bias[n]) with per-channel scales, a bias
// and (with_row_scale) activation scales per row, every output dtype, against the float64 value: within the float32 bound plus the output's rounding (int8:
// half a unit, saturated at -128 / 127), and run again over a second poison: the two outputs must be
// identical, so an element left unwritten shows (0x7f alone reads as 127, a saturated int8 value).
bool check_epilogue(int64_t M, int64_t N, int64_t K, DType act, WFormat wf, DType out_dtype, bool with_row_scale,
                    uint64_t seed) {
  const Problem p = make(M, N, K, act, wf, act == DType::kI8 ? Draw::kFullRange : Draw::kSmallIntegers, seed);
  std::mt19937_64 rng(seed + 7);
  std::uniform_real_distribution<float> ds(-1.0f, 1.0f);
  // scales that put |C| near 100 (int8 outputs then round and saturate); bias of the same size
  const double unit = 100.0 / (std::sqrt(static_cast<double>(K)) * (act == DType::kI8 ? 64.0 * 64.0 : 8.0 * 8.0));
  std::vector<float> col_scale(N), bias(N);
  for (auto& x : col_scale) x = static_cast<float>(unit * ds(rng));
  for (auto& x : bias) x = 50.0f * ds(rng);
  // activation scales in [0.5, 1.5] (1 without them)
  std::vector<float> row_scale(M, 1.0f);
  if (with_row_scale)
    for (auto& x : row_scale) x = 1.0f + 0.5f * ds(rng);
  Device d(p, M, N, col_scale);
  float *d_bias = nullptr, *d_row_scale = nullptr;
  CHECK(cudaMalloc(&d_bias, N * 4));
  CHECK(cudaMemcpy(d_bias, bias.data(), N * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMalloc(&d_row_scale, M * 4));
  CHECK(cudaMemcpy(d_row_scale, row_scale.data(), M * 4, cudaMemcpyHostToDevice));
  const int esize = qact_out_check::element_bytes(out_dtype);
  std::vector<uint8_t> poison(M * N * esize, 0x7f), got(M * N * esize);
  CHECK(cudaMemcpy(d.out, poison.data(), poison.size(), cudaMemcpyHostToDevice));
  bitblas_jax::GemmA8Args args;
  args.M = M, args.N = N, args.K = K, args.A = d.a, args.act = act, args.W = d.w, args.w_format = wf;
  args.col_scale = d.scale, args.bias = d_bias, args.out_dtype = out_dtype, args.out = d.out;
  args.row_scale = with_row_scale ? d_row_scale : nullptr;
  std::string err = bitblas_jax::launch_gemm_wgmma_a8(args, 0);
  if (err.empty()) CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemcpy(got.data(), d.out, got.size(), cudaMemcpyDeviceToHost));
  std::vector<uint8_t> again(got.size(), 0x80);
  CHECK(cudaMemcpy(d.out, again.data(), again.size(), cudaMemcpyHostToDevice));
  if (err.empty()) err = bitblas_jax::launch_gemm_wgmma_a8(args, 0);
  if (err.empty()) CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemcpy(again.data(), d.out, again.size(), cudaMemcpyDeviceToHost));
  CHECK(cudaFree(d_bias));
  CHECK(cudaFree(d_row_scale));
  const char* out_name = out_dtype == DType::kF32 ? "float32" : out_dtype == DType::kF16 ? "float16"
                         : out_dtype == DType::kBF16 ? "bfloat16" : "int8";
  char what[160];
  std::snprintf(what, sizeof what, "epilogue %s x %s -> %s%s M=%ld N=%ld K=%ld", name(act), name(wf), out_name,
                with_row_scale ? " (row scales)" : "", (long)M, (long)N, (long)K);
  if (!err.empty()) {
    std::printf("FAIL %s: %s\n", what, err.c_str());
    return false;
  }
  int64_t bad = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double S = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double prod = p.a[m * K + k] * p.w[n * K + k];
        S += prod;
        mag += std::fabs(prod);
      }
      const double cs = static_cast<double>(row_scale[m]) * col_scale[n];
      const double v = cs * S + bias[n];
      const double bound = (K / 128 + 5) * 0x1p-23 * (std::fabs(cs) * mag + std::fabs(bias[n]));
      const double g = qact_out_check::element(&got[(m * N + n) * esize], out_dtype);
      const bool ok = qact_out_check::within(g, out_dtype, v, bound);
      if (!ok) {
        if (bad < 3) std::printf("  %s: C[%ld, %ld] = %.9g, expected %.9g\n", what, (long)m, (long)n, g, v);
        ++bad;
      }
    }
  const bool same = again == got;
  std::printf("%s %s: %ld wrong%s\n", bad || !same ? "FAIL" : "ok  ", what, (long)bad,
              same ? "" : "; unwritten elements (the outputs over two poisons differ)");
  return bad == 0 && same;
}

void time_case(int64_t M, int64_t N, int64_t K, const std::string& kind, int64_t group, bool out_f16) {
  DType act = DType::kI8;
  WFormat wf = WFormat::kInt8;
  if (kind == "int4") wf = WFormat::kInt4;
  else if (kind == "e4m3") act = DType::kF8E4M3, wf = WFormat::kFP8E4M3;
  else if (kind == "e4m3-int4") act = DType::kF8E4M3, wf = WFormat::kInt4;
  else if (kind == "e5m2") act = DType::kF8E5M2, wf = WFormat::kFP8E5M2;
  else if (kind != "int8") {
    std::printf("--time: KIND must be int8, int4, e4m3, e4m3-int4 or e5m2, not %s\n", kind.c_str());
    std::exit(2);
  }
  const Problem p = make(M, N, K, act, wf, act == DType::kI8 ? Draw::kFullRange : Draw::kSmallIntegers, 7);
  // group scales applied in the main loop (the cost of W4A8 g128 against mode none)
  Device d(p, M, N, std::vector<float>(group > 0 ? N * (K / group) : 0, 0.01f));
  // weight copies, each launch reading the next, at least 256 MB together (beyond the L2, as a model's layers)
  const int copies = static_cast<int>(std::min<int64_t>(16, std::max<int64_t>(1, (256 << 20) / p.packed.size() + 1)));
  std::vector<uint8_t*> wcopy(copies, d.w);
  for (int i = 1; i < copies; ++i) {
    CHECK(cudaMalloc(&wcopy[i], p.packed.size()));
    CHECK(cudaMemcpy(wcopy[i], d.w, p.packed.size(), cudaMemcpyDeviceToDevice));
  }
  bitblas_jax::GemmA8Args args;
  args.M = M, args.N = N, args.K = K, args.A = d.a, args.act = act, args.W = d.w, args.w_format = wf, args.out = d.out;
  args.scale = d.scale, args.group_size = group > 0 ? group : 0;
  args.out_dtype = act == DType::kI8 && group <= 0 ? DType::kI32 : DType::kF32;
  // out_dtype f16: a float16 output with per-channel and activation scales (SmoothQuant's W8A8 as Matmul runs it)
  float* vec = nullptr;
  if (out_f16) {
    CHECK(cudaMalloc(&vec, (N + M) * 4));
    const std::vector<float> scales(N + M, 0.01f);
    CHECK(cudaMemcpy(vec, scales.data(), (N + M) * 4, cudaMemcpyHostToDevice));
    args.out_dtype = DType::kF16, args.col_scale = group > 0 ? nullptr : vec, args.row_scale = vec + N;
  }
  for (int i = 0; i < 3; ++i) {
    const std::string err = bitblas_jax::launch_gemm_wgmma_a8(args, 0);
    if (!err.empty()) {
      std::printf("--time: the launch was refused: %s\n", err.c_str());
      std::exit(2);
    }
  }
  cudaEvent_t t0, t1;
  CHECK(cudaEventCreate(&t0));
  CHECK(cudaEventCreate(&t1));
  constexpr int kReps = 32;
  CHECK(cudaEventRecord(t0));
  for (int i = 0; i < kReps; ++i) {
    args.W = wcopy[i % copies];
    bitblas_jax::launch_gemm_wgmma_a8(args, 0);
  }
  CHECK(cudaEventRecord(t1));
  CHECK(cudaEventSynchronize(t1));
  CHECK(cudaGetLastError());
  float ms = 0.f;
  CHECK(cudaEventElapsedTime(&ms, t0, t1));
  const double us = 1e3 * ms / kReps;
  std::printf("time %s g%ld%s M=%ld N=%ld K=%ld: %.2f us, %.0f TOPS (back-to-back launches, %d weight copies)\n",
              kind.c_str(), (long)group, out_f16 ? " f16-out" : "", (long)M, (long)N, (long)K, us,
              2.0 * M * N * K / us / 1e6, copies);
  for (int i = 1; i < copies; ++i) CHECK(cudaFree(wcopy[i]));
  if (vec) CHECK(cudaFree(vec));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::string(argv[1]) == "--time") {
    time_case(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]), argc > 5 ? argv[5] : "int8",
              argc > 6 ? std::atoll(argv[6]) : 0, argc > 7 && std::string(argv[7]) == "f16");
    return 0;
  }
  bool ok = true;
  uint64_t seed = 1;
  for (WFormat wf : {WFormat::kInt8, WFormat::kInt4, WFormat::kUInt4}) {
    for (int64_t M : {1, 17, 64, 65, 128, 200, 256, 300})
      for (int64_t N : {16, 128, 144, 272})
        for (int64_t K : {128, 384, 1024}) ok &= check(M, N, K, DType::kI8, wf, 0, Draw::kFullRange, seed++);
    ok &= check(1024, 512, 4096, DType::kI8, wf, 0, Draw::kFullRange, seed++);
    // stage sums: K = 128 (one stage), 640 and 1024 (runs of four stages and one left over, two runs)
    for (int64_t M : {1, 64, 100, 300})
      for (int64_t K : {128, 640, 1024}) ok &= check(M, 272, K, DType::kI8, wf, 128, Draw::kFullRange, seed++);
  }
  for (DType act : {DType::kF8E4M3, DType::kF8E5M2})
    for (WFormat wf : {WFormat::kFP8E4M3, WFormat::kFP8E5M2, WFormat::kInt4}) {
      for (int64_t M : {1, 17, 64, 100, 128, 300})
        for (int64_t N : {16, 144, 272})
          for (int64_t K : {128, 384, 896, 1024}) ok &= check(M, N, K, act, wf, 0, Draw::kSmallIntegers, seed++);
      for (int64_t group : {128, 256}) ok &= check(100, 272, 1024, act, wf, group, Draw::kSmallIntegers, seed++);
      ok &= check(100, 272, 640, act, wf, 128, Draw::kSmallIntegers, seed++);
      for (int64_t group : {0, 128}) ok &= check(200, 272, 4096, act, wf, group, Draw::kFullRange, seed++);
    }
  // the epilogue: per-channel scales, bias, activation scales or none, every output dtype; both activation
  // kinds, a partial tile
  for (DType out : {DType::kF32, DType::kF16, DType::kBF16, DType::kI8})
    for (bool rows : {false, true}) {
      ok &= check_epilogue(100, 272, 1024, DType::kI8, WFormat::kInt4, out, rows, seed++);
      ok &= check_epilogue(300, 144, 512, DType::kI8, WFormat::kInt8, out, rows, seed++);
      ok &= check_epilogue(65, 272, 1024, DType::kF8E4M3, WFormat::kFP8E4M3, out, rows, seed++);
    }
  std::printf("%s gemm_wgmma_a8 self-test\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
