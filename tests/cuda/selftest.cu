// Standalone self-test and first timing of the CUDA kernels (no Python, no XLA).
//
// Build (from the repository root; sm_90a only is enough for an H100):
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc/cuda \
//        -Xcompiler -fopenmp tests/cuda/selftest.cu csrc/cuda/*.cu -o build/cuda_selftest -lgomp
// Run:
//   build/cuda_selftest [--cases N] [--seed S] [--no-big] [--no-time] [--time-only] [--mid]
//                       [--mid-kernels gemm_wgmma,gemm_wgmma_tall]
//   (--mid: gemm_mma (narrow and wide tiles) at M = 16..256 and gemm_wgmma (and its tall tile) up
//   to 4096 over their split-K choices, kernel-only timings; --mid-kernels: only those)
//   build/cuda_selftest --one M N K kernel split fmt_id [group_size]: time one configuration
//   (kernel: decode, decode_splitk, gemm_mma, gemm_mma_wide, gemm_wgmma, gemm_wgmma_tall)
//
// Correctness: random cases over format x mode x activation dtype x accumulation
// x output dtype x group size x M x bias x kernel and tile x split_k (and misaligned A),
// packed with layout.h's index math, checked against a float64 host reference
// that dequantizes like bitblas_jax/reference.py (value -> scale/zeros in float64
// -> rounded to A's dtype) by ||out - ref|| / ||ref||; the output is poisoned
// with NaN first, so unwritten elements fail. Timing: int4 g128 8192x8192 and
// 4096x4096 at several M, weights rotated over buffers larger than L2, CUDA
// events around plain launches and around CUDA-graph replays.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bitblas_jax/kernel_api.h"
#include "bitblas_jax/layout.h"
#include "matmul_cuda.h"

using namespace bitblas_jax;

#define CK(x)                                                                                    \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      fprintf(stderr, "CUDA error %s at %s:%d: %s\n", #x, __FILE__, __LINE__, cudaGetErrorString(e_)); \
      exit(2);                                                                                   \
    }                                                                                            \
  } while (0)

static uint16_t to_bits(double x, DType t) {
  if (t == DType::kF16) {
    __half h = __float2half_rn(static_cast<float>(x));
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
  }
  __nv_bfloat16 h = __float2bfloat16_rn(static_cast<float>(x));
  uint16_t b;
  memcpy(&b, &h, 2);
  return b;
}
static double from_bits(uint16_t b, DType t) {
  if (t == DType::kF16) {
    __half h;
    memcpy(&h, &b, 2);
    return __half2float(h);
  }
  __nv_bfloat16 h;
  memcpy(&h, &b, 2);
  return __bfloat162float(h);
}
static double round_to(double x, DType t) {
  if (t == DType::kF32) return static_cast<float>(x);
  return from_bits(to_bits(x, t), t);
}

static double decode(WFormat f, uint32_t c) {
  const int bits = format_bits(f);
  switch (f) {
    case WFormat::kInt8: case WFormat::kInt4: case WFormat::kInt2:
      return static_cast<double>(static_cast<int>(c) - (1 << (bits - 1)));
    case WFormat::kInt1: return 2.0 * c - 1.0;
    case WFormat::kUInt8: case WFormat::kUInt4: case WFormat::kUInt2: case WFormat::kUInt1: return c;
    case WFormat::kNF4: return kNF4Values[c];
    case WFormat::kFP4E2M1: return kFP4E2M1Values[c];
    case WFormat::kFP8E4M3: {
      const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
      const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1 + m / 8.0, e - 7);
      return s ? -v : v;
    }
    case WFormat::kFP8E5M2: {
      const int s = c >> 7, e = (c >> 2) & 31, m = c & 3;
      const double v = e == 0 ? std::ldexp(m / 4.0, -14) : std::ldexp(1 + m / 4.0, e - 15);
      return s ? -v : v;
    }
    case WFormat::kF16: return from_bits(static_cast<uint16_t>(c), DType::kF16);
    case WFormat::kBF16: return from_bits(static_cast<uint16_t>(c), DType::kBF16);
  }
  return 0;
}

// Inverse of layout::load_code: OR a code into a zeroed packed buffer.
static void store_code(uint8_t* W, int64_t K, int bits, int64_t n, int64_t k, uint32_t code) {
  const layout::CodeSlot slot = layout::code_slot(K, bits, n, k);
  uint32_t w;
  memcpy(&w, W + slot.byte, 4);
  w |= code << slot.shift;
  memcpy(W + slot.byte, &w, 4);
}

// A kernel to test and, for the GEMMs, whether its wide (gemm_mma: 256 weight rows) or tall
// (gemm_wgmma: 256 activation rows) tile.
struct Choice {
  plan::Kernel kernel;
  bool big_tile = false;
};
constexpr Choice kDecode{plan::Kernel::kDecode}, kDecodeSplitK{plan::Kernel::kDecodeSplitK},
    kGemmMma{plan::Kernel::kGemmMma}, kGemmMmaWide{plan::Kernel::kGemmMma, true},
    kGemmWgmma{plan::Kernel::kGemmWgmma}, kGemmWgmmaTall{plan::Kernel::kGemmWgmma, true};

static std::string choice_name(const Choice& c) {
  return std::string(plan::kernel_name(c.kernel)) +
         (c.big_tile ? (c.kernel == plan::Kernel::kGemmMma ? "_wide" : "_tall") : "");
}

static bool parse_choice(const std::string& name, Choice* out) {
  for (const Choice& c : {kDecode, kDecodeSplitK, kGemmMma, kGemmMmaWide, kGemmWgmma, kGemmWgmmaTall})
    if (name == choice_name(c)) {
      *out = c;
      return true;
    }
  return false;
}

struct Launch {
  plan::Kernel kernel;
  int tile;
};

// Whether this GPU is an sm_90 one (gemm_wgmma, clusters for decode's K split).
static bool gpu_is_sm90() {
  static const bool sm90 = [] {
    int dev = 0, major = 0, minor = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return major == 9 && minor == 0;
  }();
  return sm90;
}

// The (kernel, tile) that runs a problem when `want` is asked for: the wanted kernel and tile where
// they can run it, else what the plan would run in their place (decode -> decode_splitk,
// gemm_wgmma -> gemm_mma), so random cases always hand the dispatcher a valid plan.
static Launch launch_for(const Choice& want, int64_t M, int64_t N, int64_t K, WFormat fmt, ScaleMode mode,
                         int64_t gs, DType acc, bool a_aligned) {
  const bool sm90 = gpu_is_sm90();
  plan::PlanQuery q;
  q.M = M, q.N = N, q.K = K, q.bits = format_bits(fmt), q.accum_f32 = acc == DType::kF32;
  q.mode = static_cast<int>(mode), q.group_size = gs, q.sm90 = sm90, q.a_aligned = a_aligned;
  const bool whole = plan::groups_in_whole_tiles(mode != ScaleMode::kNone, gs, q.bits);
  switch (want.kernel) {
    case plan::Kernel::kDecode:
      if (plan::decode_fits(q)) return {plan::Kernel::kDecode, 0};
      return {plan::Kernel::kDecodeSplitK, 0};
    case plan::Kernel::kGemmWgmma:
      if (plan::wgmma_fits(q)) {
        const bool tall = want.big_tile && plan::wgmma_supported(q.bits, 256) && K % plan::wgmma_stage_k(q.bits, 256) == 0;
        return {plan::Kernel::kGemmWgmma, tall ? plan::kWgmma128x256 : plan::wgmma_tile_for(q) == plan::kWgmma128x256
                                                                            ? plan::kWgmma128x128
                                                                            : plan::wgmma_tile_for(q)};
      }
      break;
    case plan::Kernel::kGemmMma: break;
    default: return {want.kernel, 0};
  }
  if (!whole) return {plan::Kernel::kGemmMma, plan::kMma128x32GroupsInTiles};
  return {plan::Kernel::kGemmMma, (want.big_tile ? 2 : 0) + (M > 32 ? 1 : 0)};
}

struct Case {
  WFormat fmt;
  ScaleMode mode;
  DType a_dt, acc_dt, out_dt;
  int64_t M, N, K, gs;
  bool bias;
  Choice choice;
  int64_t split;
  int a_misalign;  // elements of offset of A (0: aligned)
};

static std::string describe(const Case& c) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s %s A=%s acc=%s out=%s M=%ld N=%ld K=%ld g=%ld bias=%d kernel=%s split=%ld mis=%d",
           format_name(c.fmt), mode_name(c.mode),
           dtype_name(c.a_dt), dtype_name(c.acc_dt),
           dtype_name(c.out_dt), (long)c.M, (long)c.N, (long)c.K, (long)c.gs, (int)c.bias,
           choice_name(c.choice).c_str(), (long)c.split, c.a_misalign);
  return buf;
}

// Returns relative L2 error (or +inf when something is not finite / an error occurred).
static double run_case(const Case& cs, std::mt19937_64& rng, std::string* err_out, bool random_packed = false) {
  const int bits = format_bits(cs.fmt);
  const int64_t M = cs.M, N = cs.N, K = cs.K, G = K / cs.gs;
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  // codes (random_packed: raw random bytes, decode via load_code; big cases)
  const size_t wbytes = static_cast<size_t>(N) * K * bits / 8;
  std::vector<uint8_t> Wp(wbytes, 0);
  if (random_packed) {
    for (size_t i = 0; i < wbytes; i += 8) {
      uint64_t r = rng();
      memcpy(&Wp[i], &r, std::min<size_t>(8, wbytes - i));
    }
  } else {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        uint32_t code;
        if (cs.fmt == WFormat::kFP8E4M3) {
          const uint32_t s = rng() & 1, e = rng() % 11, m = rng() & 7;  // |v| < 16, no NaN
          code = (s << 7) | (e << 3) | m;
        } else if (cs.fmt == WFormat::kFP8E5M2) {
          const uint32_t s = rng() & 1, e = rng() % 19, m = rng() & 3;  // |v| < 16
          code = (s << 7) | (e << 2) | m;
        } else if (cs.fmt == WFormat::kF16 || cs.fmt == WFormat::kBF16) {
          code = to_bits(2.0 * U(rng), cs.fmt == WFormat::kF16 ? DType::kF16 : DType::kBF16);
        } else {
          code = static_cast<uint32_t>(rng() & ((1u << bits) - 1u));
        }
        store_code(Wp.data(), K, bits, n, k, code);
      }
  }
  const bool has_scale = cs.mode != ScaleMode::kNone;
  const bool has_zeros = cs.mode >= ScaleMode::kOriginal;
  const bool qz = cs.mode == ScaleMode::kQuantized;
  std::vector<uint16_t> S(has_scale ? N * G : 0), Z16(has_zeros && !qz ? N * G : 0), Bias(cs.bias ? N : 0);
  std::vector<uint8_t> Z8(qz ? N * G : 0);
  for (auto& s : S) s = to_bits((0.25 + 0.75 * std::fabs(U(rng))) * (U(rng) < 0 ? -1 : 1), cs.a_dt);
  for (auto& z : Z16) z = to_bits(2.0 * U(rng), cs.a_dt);
  if (qz) {
    int lo = 0, hi = (1 << bits) - 1;
    if (format_is_signed_int(cs.fmt)) { lo = -(1 << (bits - 1)); hi = (1 << (bits - 1)) - 1; }
    for (auto& z : Z8) z = static_cast<uint8_t>(static_cast<int8_t>(lo + static_cast<int>(rng() % (hi - lo + 1))));
  }
  for (auto& b : Bias) b = to_bits(U(rng), cs.a_dt);
  const int64_t a_elems = M * K + cs.a_misalign;
  std::vector<uint16_t> A(a_elems);
  for (auto& a : A) a = to_bits(U(rng), cs.a_dt);
  const uint16_t* Ah = A.data() + cs.a_misalign;

  // reference: dequantized weight (rounded to A's dtype), then a float64 dot;
  // big cases check a sample of rows (the last ones: the largest offsets)
  std::vector<int64_t> rows;
  if (random_packed) {
    for (int64_t j = 0; j < 48 && j < N; ++j) rows.push_back(N - 1 - j * 677 % N);
  } else {
    for (int64_t n = 0; n < N; ++n) rows.push_back(n);
  }
  const int64_t R = static_cast<int64_t>(rows.size());
  std::vector<double> Wd(static_cast<size_t>(R) * K);
#pragma omp parallel for schedule(static)
  for (int64_t ri = 0; ri < R; ++ri)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t n = rows[ri];
      double v = decode(cs.fmt, layout::load_code(Wp.data(), K, bits, n, k));
      const int64_t gi = n * G + k / cs.gs;
      switch (cs.mode) {
        case ScaleMode::kNone: break;
        case ScaleMode::kScale: v = v * from_bits(S[gi], cs.a_dt); break;
        case ScaleMode::kOriginal: v = (v - from_bits(Z16[gi], cs.a_dt)) * from_bits(S[gi], cs.a_dt); break;
        case ScaleMode::kRescale: v = v * from_bits(S[gi], cs.a_dt) - from_bits(Z16[gi], cs.a_dt); break;
        case ScaleMode::kQuantized: {
          const double z = format_is_signed_int(cs.fmt) ? static_cast<double>(static_cast<int8_t>(Z8[gi])) : Z8[gi];
          v = (v - z) * from_bits(S[gi], cs.a_dt);
          break;
        }
      }
      Wd[ri * K + k] = round_to(v, cs.a_dt);
    }
  std::vector<double> Ad(static_cast<size_t>(M) * K);
  for (int64_t i = 0; i < M * K; ++i) Ad[i] = from_bits(Ah[i], cs.a_dt);
  std::vector<double> ref(static_cast<size_t>(M) * R);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t ri = 0; ri < R; ++ri) {
      double acc = 0;
      const double* a = &Ad[m * K];
      const double* w = &Wd[ri * K];
      for (int64_t k = 0; k < K; ++k) acc += a[k] * w[k];
      if (cs.bias) acc += from_bits(Bias[rows[ri]], cs.a_dt);
      ref[m * R + ri] = acc;
    }

  // device
  const size_t osz = cs.out_dt == DType::kF32 ? 4 : 2;
  uint8_t *dW, *dA, *dC, *dWs = nullptr;
  void *dS = nullptr, *dZ = nullptr, *dB = nullptr;
  CK(cudaMalloc(&dW, wbytes));
  CK(cudaMalloc(&dA, a_elems * 2));
  CK(cudaMalloc(&dC, M * N * osz));
  CK(cudaMemcpy(dW, Wp.data(), wbytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dA, A.data(), a_elems * 2, cudaMemcpyHostToDevice));
  CK(cudaMemset(dC, 0xff, M * N * osz));  // NaN poison
  if (has_scale) {
    CK(cudaMalloc(&dS, S.size() * 2));
    CK(cudaMemcpy(dS, S.data(), S.size() * 2, cudaMemcpyHostToDevice));
  }
  if (has_zeros) {
    const size_t zb = qz ? Z8.size() : Z16.size() * 2;
    CK(cudaMalloc(&dZ, zb));
    CK(cudaMemcpy(dZ, qz ? static_cast<const void*>(Z8.data()) : static_cast<const void*>(Z16.data()), zb,
                  cudaMemcpyHostToDevice));
  }
  if (cs.bias) {
    CK(cudaMalloc(&dB, N * 2));
    CK(cudaMemcpy(dB, Bias.data(), N * 2, cudaMemcpyHostToDevice));
  }
  const Launch run = launch_for(cs.choice, M, N, K, cs.fmt, cs.mode, cs.gs, cs.acc_dt, cs.a_misalign == 0);
  const plan::Plan p = plan::finish(run.kernel, run.tile, cs.split, M, N, K, format_bits(cs.fmt));
  const size_t wsb = static_cast<size_t>(p.workspace_bytes);
  if (wsb) {
    CK(cudaMalloc(&dWs, wsb));
    CK(cudaMemset(dWs, 0xab, wsb));  // garbage: the kernel must not rely on it
  }
  MatmulArgs args;
  args.M = M; args.N = N; args.K = K;
  args.w_format = cs.fmt; args.a_dtype = cs.a_dt; args.accum_dtype = cs.acc_dt; args.out_dtype = cs.out_dt;
  args.mode = cs.mode; args.group_size = cs.gs;
  args.A = dA + 2 * cs.a_misalign; args.W = dW; args.scale = dS; args.zeros = dZ; args.bias = dB; args.C = dC;
  std::string err = matmul_cuda(args, run.kernel, run.tile, cs.split, dWs, wsb, nullptr);
  cudaError_t e = cudaDeviceSynchronize();
  if (err.empty() && e != cudaSuccess) err = std::string("sync: ") + cudaGetErrorString(e);
  double rel = INFINITY;
  if (err.empty()) {
    std::vector<uint8_t> Cb(M * N * osz);
    CK(cudaMemcpy(Cb.data(), dC, Cb.size(), cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    bool finite = true;
    for (int64_t i = 0; i < M * N; ++i) {
      double v;
      if (cs.out_dt == DType::kF32) {
        float f;
        memcpy(&f, &Cb[i * 4], 4);
        v = f;
      } else {
        uint16_t b;
        memcpy(&b, &Cb[i * 2], 2);
        v = from_bits(b, cs.out_dt);
      }
      if (!std::isfinite(v)) finite = false;
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t ri = 0; ri < R; ++ri) {
        double v;
        const int64_t i = m * N + rows[ri];
        if (cs.out_dt == DType::kF32) {
          float f;
          memcpy(&f, &Cb[i * 4], 4);
          v = f;
        } else {
          uint16_t b;
          memcpy(&b, &Cb[i * 2], 2);
          v = from_bits(b, cs.out_dt);
        }
        const double r = ref[m * R + ri];
        num += (v - r) * (v - r);
        den += r * r;
      }
    rel = finite ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
    if (!finite) err = "non-finite / unwritten output";
  }
  *err_out = err;
  cudaFree(dW); cudaFree(dA); cudaFree(dC);
  if (dS) cudaFree(dS);
  if (dZ) cudaFree(dZ);
  if (dB) cudaFree(dB);
  if (dWs) cudaFree(dWs);
  return rel;
}

static double tolerance(const Case& c) {
  double t = c.a_dt == DType::kF16 ? 2e-3 : 1.2e-2;
  if (c.acc_dt == DType::kF16) t = 2e-2;
  if (c.out_dt == DType::kBF16) t += 8e-3;
  return t;
}

// The modes a format allows (formats_generated.h, from bitblas_jax/formats.py).
static std::vector<ScaleMode> modes_for(WFormat f) {
  std::vector<ScaleMode> modes;
  for (int m = 0; m < kNumScaleModes; ++m)
    if (format_allows_mode(f, static_cast<ScaleMode>(m))) modes.push_back(static_cast<ScaleMode>(m));
  return modes;
}

static int correctness(int rounds, uint64_t seed, bool big) {
  std::mt19937_64 rng(seed);
  int fails = 0, total = 0;
  double worst[3] = {0, 0, 0};
  auto check = [&](const Case& c, int dt) {
    std::string err;
    const double rel = run_case(c, rng, &err);
    const double tol = tolerance(c);
    ++total;
    worst[dt] = std::max(worst[dt], rel);
    if (!err.empty() || !(rel <= tol)) {
      ++fails;
      printf("FAIL %s: rel=%.3e tol=%.1e %s\n", describe(c).c_str(), rel, tol, err.c_str());
    }
  };
  const int64_t Ms[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 100, 130, 257};
  const int64_t Ns[] = {16, 48, 128, 144, 272};
  for (int round = 0; round < rounds; ++round) {
    for (int f = 0; f < 14; ++f) {
      const WFormat fmt = static_cast<WFormat>(f);
      const int bits = format_bits(fmt);
      const int tk = 256 / bits;
      for (ScaleMode mode : modes_for(fmt)) {
        for (int dt = 0; dt < 3; ++dt) {  // f16/f32acc, f16/f16acc, bf16
          Case c;
          c.fmt = fmt;
          c.mode = mode;
          c.a_dt = dt == 2 ? DType::kBF16 : DType::kF16;
          c.acc_dt = dt == 1 ? DType::kF16 : DType::kF32;
          c.out_dt = static_cast<DType>(rng() % 3);
          c.M = Ms[rng() % (sizeof Ms / sizeof Ms[0])];
          c.N = Ns[rng() % (sizeof Ns / sizeof Ns[0])];
          const int64_t kmult = std::max<int64_t>(1, (256 + rng() % 1792) / tk);
          c.K = kmult * tk;
          std::vector<int64_t> gss;
          for (int64_t g : {8, 16, 24, 32, 64, 96, 128, 256})
            if (g <= c.K && c.K % g == 0) gss.push_back(g);
          gss.push_back(c.K);
          c.gs = gss[rng() % gss.size()];
          c.bias = rng() & 1;
          // kernels: decode, decode_splitk, gemm_mma (narrow / wide), gemm_wgmma (gemm_mma off sm_90)
          const int64_t pick = rng() % 6;
          const Choice wgmma = (rng() % 2) ? kGemmWgmmaTall : kGemmWgmma;
          if (c.M <= 16)
            c.choice = pick == 0 ? kGemmMma : pick == 1 ? kGemmMmaWide : pick == 2 || pick == 4 ? kDecode
                       : pick == 3 ? wgmma : kDecodeSplitK;
          else
            c.choice = pick == 0 ? ((rng() % 2) ? kDecode : kDecodeSplitK) : pick == 1 ? kGemmMma
                       : pick == 2 ? kGemmMmaWide : wgmma;
          const int64_t splits[] = {1, 1, 2, 3, 5};
          c.split = splits[rng() % 5];
          c.a_misalign = (rng() % 10 == 0) ? 1 : 0;
          // the dispatcher launches only splits the problem has stages for (decode: the CTAs of a cluster, sm_90)
          const Launch l = launch_for(c.choice, c.M, c.N, c.K, c.fmt, c.mode, c.gs, c.acc_dt, c.a_misalign == 0);
          const int64_t stages = l.kernel == plan::Kernel::kDecodeSplitK ? c.K / tk
                                 : l.kernel == plan::Kernel::kDecode ? (gpu_is_sm90() ? plan::kDecodeMaxClusterSplit : 1)
                                 : plan::ceil_div(c.K, plan::finish(l.kernel, l.tile, 1, c.M, c.N, c.K, bits).stage_k);
          c.split = std::min(c.split, stages);
          check(c, dt);
        }
      }
    }
  }
  // The decode kernel's paired group loads (two groups per warp chunk: 2 gs = the k of 4 or 2
  // tiles), next to a group count that rules them out (K = 1664: 13 groups of 128), whole or in two parts.
  for (WFormat fmt : {WFormat::kInt4, WFormat::kUInt4, WFormat::kNF4, WFormat::kFP4E2M1, WFormat::kInt8,
                      WFormat::kUInt8, WFormat::kFP8E4M3}) {
    for (ScaleMode mode : modes_for(fmt)) {
      if (mode == ScaleMode::kNone) continue;
      for (int64_t gs : {32, 64, 128})
        for (int64_t M : {1, 6}) {
          const int dt = static_cast<int>(rng() % 3);
          Case c{fmt, mode, dt == 2 ? DType::kBF16 : DType::kF16, dt == 1 ? DType::kF16 : DType::kF32,
                 static_cast<DType>(rng() % 3), M, 272, (rng() & 1) ? 2048 : 1664, gs, (rng() & 1) != 0, kDecode,
                 gpu_is_sm90() ? 1 + static_cast<int64_t>(rng() % 2) : 1, 0};  // split: K over a cluster
          check(c, dt);
        }
    }
  }
  if (big) {
    // > 2^31 packed bytes: 64-bit tile offsets
    Case c{WFormat::kInt8, ScaleMode::kScale, DType::kF16, DType::kF32, DType::kF32, 2, 32768, 69632, 128,
           true, kDecodeSplitK, 2, 0};
    for (const Choice& k : {kDecodeSplitK, kGemmMma, kDecode, kGemmWgmma}) {
      c.choice = k;
      c.M = k.kernel == plan::Kernel::kGemmMma || k.kernel == plan::Kernel::kGemmWgmma ? 65 : 2;
      c.split = k.kernel == plan::Kernel::kDecode ? 1 : 2;
      std::string err;
      const double rel = run_case(c, rng, &err, true);
      ++total;
      if (!err.empty() || !(rel <= 2e-3)) {
        ++fails;
        printf("FAIL big %s: rel=%.3e %s\n", describe(c).c_str(), rel, err.c_str());
      } else {
        printf("big ok %s: rel=%.3e\n", describe(c).c_str(), rel);
      }
    }
  }
  printf("correctness: %d / %d passed (worst rel: f16 %.2e, f16acc16 %.2e, bf16 %.2e)\n", total - fails, total,
         worst[0], worst[1], worst[2]);
  return fails;
}

// ---- timing ---------------------------------------------------------------------
struct TimeRes {
  double us_launch, us_graph;
};

static TimeRes time_cfg(int64_t M, int64_t N, int64_t K, const Choice& choice, int64_t split, WFormat fmt,
                        int64_t gs, int reps_buf) {
  const int bits = format_bits(fmt);
  const Launch run = launch_for(choice, M, N, K, fmt, ScaleMode::kScale, gs, DType::kF32, true);
  const size_t wbytes = static_cast<size_t>(N) * K * bits / 8;
  const int64_t G = K / gs;
  std::vector<uint8_t*> Ws(reps_buf);
  std::vector<void*> Ss(reps_buf);
  std::mt19937_64 rng(123);
  std::vector<uint8_t> hw(wbytes);
  for (auto& b : hw) b = static_cast<uint8_t>(rng());
  std::vector<uint16_t> hs(N * G);
  for (auto& s : hs) s = to_bits(0.01 + 0.01 * (rng() % 100) / 100.0, DType::kF16);
  for (int i = 0; i < reps_buf; ++i) {
    CK(cudaMalloc(&Ws[i], wbytes));
    CK(cudaMemcpy(Ws[i], hw.data(), wbytes, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&Ss[i], N * G * 2));
    CK(cudaMemcpy(Ss[i], hs.data(), N * G * 2, cudaMemcpyHostToDevice));
  }
  uint16_t *dA, *dC;
  std::vector<uint16_t> ha(M * K);
  for (auto& a : ha) a = to_bits(((rng() % 2000) - 1000) / 1000.0, DType::kF16);
  CK(cudaMalloc(&dA, M * K * 2));
  CK(cudaMemcpy(dA, ha.data(), M * K * 2, cudaMemcpyHostToDevice));
  CK(cudaMalloc(&dC, M * N * 2));
  const size_t wsb = static_cast<size_t>(plan::finish(run.kernel, run.tile, split, M, N, K, bits).workspace_bytes);
  void* dWs = nullptr;
  if (wsb) CK(cudaMalloc(&dWs, wsb));
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  auto call = [&](int i) {
    MatmulArgs a;
    a.M = M; a.N = N; a.K = K; a.w_format = fmt; a.a_dtype = DType::kF16; a.accum_dtype = DType::kF32;
    a.out_dtype = DType::kF16; a.mode = ScaleMode::kScale; a.group_size = gs;
    a.A = dA; a.W = Ws[i % reps_buf]; a.scale = Ss[i % reps_buf]; a.C = dC;
    std::string err = matmul_cuda(a, run.kernel, run.tile, split, dWs, wsb, st);
    if (!err.empty()) {
      fprintf(stderr, "timing call failed: %s\n", err.c_str());
      exit(3);
    }
  };
  for (int i = 0; i < 10; ++i) call(i);
  CK(cudaStreamSynchronize(st));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const int iters = 100;
  CK(cudaEventRecord(e0, st));
  for (int i = 0; i < iters; ++i) call(i);
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  TimeRes r;
  r.us_launch = 1000.0 * ms / iters;
  // graph of `iters` calls
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) call(i);
  CK(cudaStreamEndCapture(st, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphLaunch(exec, st));
  CK(cudaStreamSynchronize(st));
  std::vector<double> ts;
  for (int rep = 0; rep < 5; ++rep) {
    CK(cudaEventRecord(e0, st));
    CK(cudaGraphLaunch(exec, st));
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&ms, e0, e1));
    ts.push_back(1000.0 * ms / iters);
  }
  std::sort(ts.begin(), ts.end());
  r.us_graph = ts[ts.size() / 2];
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaStreamDestroy(st));
  for (int i = 0; i < reps_buf; ++i) {
    cudaFree(Ws[i]);
    cudaFree(Ss[i]);
  }
  cudaFree(dA);
  cudaFree(dC);
  if (dWs) cudaFree(dWs);
  return r;
}

static double copy_bandwidth() {
  const size_t bytes = size_t{1} << 30;
  void *a, *b;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  CK(cudaEventRecord(e0));
  for (int i = 0; i < 5; ++i) CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes * 5 / (ms * 1e-3) / 1e12;
}

// The GEMMs over M and their split-K choices (kernel-only, CUDA graph): gemm_mma up to M = 256,
// gemm_wgmma up to 4096.
static void timing_mid(const std::vector<Choice>& kernels) {
  printf("%13s %6s %6s %6s %16s %5s | %9s %9s | %8s\n", "fmt", "M", "N", "K", "kernel", "split", "us/call",
         "us/graph", "TFLOP/s");
  const int64_t shapes[][2] = {{8192, 8192}, {28672, 8192}, {4096, 4096}};
  for (const auto& nk : shapes)
    for (int64_t M : {16, 32, 64, 128, 256, 512, 1024, 4096})
      for (const Choice& kernel : kernels)
        for (int64_t split : {1, 2, 4, 8}) {
          const bool wg = kernel.kernel == plan::Kernel::kGemmWgmma;
          if (!wg && M > 256) continue;
          if (wg && split > (M <= 256 ? 4 : M <= 512 ? 2 : 1)) continue;
          if (nk[0] == 4096 && M > 1024) continue;
          const double wbytes = nk[0] * nk[1] / 2.0;
          const int bufs = std::max<int>(2, static_cast<int>(std::ceil(160e6 / wbytes)));
          const TimeRes r = time_cfg(M, nk[0], nk[1], kernel, split, WFormat::kInt4, 128, bufs);
          printf("%13s %6ld %6ld %6ld %16s %5ld | %9.2f %9.2f | %8.1f\n", "int4", (long)M, (long)nk[0], (long)nk[1],
                 choice_name(kernel).c_str(), (long)split, r.us_launch, r.us_graph, 2.0 * M * nk[0] * nk[1] / (r.us_graph * 1e-6) / 1e12);
          fflush(stdout);
        }
}

static void timing() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  printf("d2d copy: %.2f TB/s (read + write)\n", copy_bandwidth());
  struct Cfg {
    int64_t M, N, K;
    Choice kernel;
    int64_t split;
    WFormat fmt;
  };
  std::vector<Cfg> cfgs;
  const WFormat i4 = WFormat::kInt4;
  for (int64_t nk : {8192, 4096}) {
    for (int64_t M : {1, 4, 16}) {
      cfgs.push_back({M, nk, nk, kDecode, 1, i4});
      cfgs.push_back({M, nk, nk, kDecodeSplitK, 8, i4});
    }
    for (int64_t M : {32, 64}) cfgs.push_back({M, nk, nk, kDecode, 1, i4});
  }
  for (int64_t M : {1, 16}) cfgs.push_back({M, 28672, 8192, kDecode, 1, i4});
  cfgs.push_back({1, 8192, 28672, kDecode, 1, i4});
  for (WFormat f : {WFormat::kUInt8, WFormat::kInt2, WFormat::kUInt1, WFormat::kNF4, WFormat::kFP4E2M1, WFormat::kFP8E4M3, WFormat::kF16}) {
    cfgs.push_back({1, 8192, 8192, kDecodeSplitK, 8, f});
    cfgs.push_back({1, 8192, 8192, kDecode, 1, f});
  }
  printf("%13s %6s %6s %6s %16s %5s | %9s %9s | %8s %8s %8s\n", "fmt", "M", "N", "K", "kernel", "split", "us/call",
         "us/graph", "floor_us", "TB/s", "TFLOP/s");
  for (const Cfg& c : cfgs) {
    const double wbytes = c.N * c.K * format_bits(c.fmt) / 8.0 + c.N * (c.K / 128) * 2.0;
    const int bufs = std::max<int>(2, static_cast<int>(std::ceil(160e6 / wbytes)));
    const TimeRes r = time_cfg(c.M, c.N, c.K, c.kernel, c.split, c.fmt, 128, bufs);
    const double floor_us = wbytes / 3.0e12 * 1e6;
    printf("%13s %6ld %6ld %6ld %16s %5ld | %9.2f %9.2f | %8.2f %8.2f %8.1f\n", format_name(c.fmt),
           (long)c.M, (long)c.N, (long)c.K, choice_name(c.kernel).c_str(), (long)c.split, r.us_launch, r.us_graph, floor_us,
           wbytes / (r.us_graph * 1e-6) / 1e12, 2.0 * c.M * c.N * c.K / (r.us_graph * 1e-6) / 1e12);
    fflush(stdout);
  }
}

int main(int argc, char** argv) {
  int rounds = 2;
  uint64_t seed = 0x5eed;
  bool big = true, do_time = true, do_check = true, mid = false;
  std::vector<Choice> mid_kernels = {kGemmMma, kGemmMmaWide, kGemmWgmma, kGemmWgmmaTall};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--one" && i + 6 < argc) {
      // --one M N K kernel split fmt_id [group_size]: time one config (for profilers); group
      // size 128 unless given (K: per channel)
      const int64_t M = atoll(argv[i + 1]), N = atoll(argv[i + 2]), K = atoll(argv[i + 3]);
      Choice kernel;
      if (!parse_choice(argv[i + 4], &kernel)) {
        fprintf(stderr, "--one: unknown kernel %s\n", argv[i + 4]);
        return 2;
      }
      const int64_t split = atoll(argv[i + 5]);
      const WFormat f = static_cast<WFormat>(atoi(argv[i + 6]));
      const int64_t gs = i + 7 < argc ? atoll(argv[i + 7]) : 128;
      const double wbytes = static_cast<double>(N) * K * format_bits(f) / 8.0;
      const TimeRes r = time_cfg(M, N, K, kernel, split, f, gs, std::max<int>(2, static_cast<int>(std::ceil(160e6 / wbytes))));
      printf("one: %s M=%ld N=%ld K=%ld gs=%ld kernel=%s split=%ld: %.2f us/call, %.2f us/graph\n",
             format_name(f), (long)M, (long)N, (long)K, (long)gs, choice_name(kernel).c_str(), (long)split,
             r.us_launch, r.us_graph);
      return 0;
    }
    if (a == "--rounds" && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = strtoull(argv[++i], nullptr, 0);
    else if (a == "--no-big") big = false;
    else if (a == "--no-time") do_time = false;
    else if (a == "--time-only") do_check = false;
    else if (a == "--mid") mid = true;
    else if (a == "--mid-kernels" && i + 1 < argc) {  // e.g. --mid-kernels gemm_wgmma,gemm_wgmma_tall
      mid = true;
      mid_kernels.clear();
      std::string list = argv[++i];
      for (size_t pos = 0; pos <= list.size();) {
        const size_t end = std::min(list.find(',', pos), list.size());
        Choice c;
        if (!parse_choice(list.substr(pos, end - pos), &c)) {
          fprintf(stderr, "--mid-kernels: unknown kernel %s\n", list.substr(pos, end - pos).c_str());
          return 2;
        }
        mid_kernels.push_back(c);
        pos = end + 1;
      }
    }
  }
  int fails = 0;
  if (do_check) fails = correctness(rounds, seed, big);
  if (do_time) timing();
  if (mid) timing_mid(mid_kernels);
  return fails ? 1 : 0;
}
