// Standalone test of the decode_i8 kernel (csrc/cuda/decode_i8.cuh): every weight format int8
// activations take, modes none / scale, odd M, several K and group sizes, full-range random int8 data,
// against an int64 host reference (none: bit for bit) and a float64 one (scale: within the float32
// bound of (groups + 10) * 2^-24 * sum_g |s_g S_g|). Prints a PASS / FAIL table last; exit 1 on failure.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc/cuda \
//     tests/cuda/decode_i8_selftest.cu csrc/cuda/inst_decode_i8.cu -o /tmp/decode_i8_selftest && /tmp/decode_i8_selftest
//   (compute_80 / sm_80 on an A100.) Takes a few seconds.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bitblas_jax/layout.h"
#include "decode_i8.h"

using namespace bitblas_jax;

struct FormatInfo {
  WFormat f;
  const char* name;
  int bits, lo, hi;   // element value range
};

static const FormatInfo kFormats[] = {
    {WFormat::kInt8, "int8", 8, -128, 127}, {WFormat::kInt4, "int4", 4, -8, 7},
    {WFormat::kUInt4, "uint4", 4, 0, 15},   {WFormat::kInt2, "int2", 2, -2, 1},
    {WFormat::kUInt2, "uint2", 2, 0, 3},    {WFormat::kInt1, "int1", 1, -1, 1},
    {WFormat::kUInt1, "uint1", 1, 0, 1},
};

static uint32_t code_of(const FormatInfo& fi, int v) {
  if (fi.lo >= 0) return uint32_t(v);
  if (fi.bits == 1) return uint32_t((v + 1) / 2);
  return uint32_t(v + (1 << (fi.bits - 1)));
}

#define CHECK_CUDA(x)                                                               \
  do {                                                                              \
    cudaError_t e_ = (x);                                                           \
    if (e_ != cudaSuccess) {                                                        \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      return "cuda error";                                                          \
    }                                                                               \
  } while (0)

// "" on success, else what went wrong.
static std::string run_case(const FormatInfo& fi, int64_t M, int64_t N, int64_t K, int64_t group,
                            std::mt19937_64& rng) {
  const bool scaled = group > 0;
  const int64_t G = scaled ? K / group : 1, gs = scaled ? group : K;
  std::uniform_int_distribution<int> a_dist(-128, 127), w_dist(fi.lo, fi.hi);
  std::uniform_real_distribution<float> s_dist(-2.0f, 2.0f);
  std::vector<int8_t> A(M * K);
  for (auto& x : A) x = int8_t(a_dist(rng));
  std::vector<int> w(N * K);
  for (auto& x : w) {
    x = w_dist(rng);
    if (fi.bits == 1 && fi.lo < 0 && x == 0) x = 1;   // int1 is -1 or +1
  }
  std::vector<uint8_t> Wp(N * K * fi.bits / 8, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const layout::CodeSlot slot = layout::code_slot(K, fi.bits, n, k);
      uint32_t word;
      std::memcpy(&word, &Wp[slot.byte], 4);
      word |= code_of(fi, w[n * K + k]) << slot.shift;
      std::memcpy(&Wp[slot.byte], &word, 4);
    }
  std::vector<float> scale(N * G);
  for (auto& x : scale) x = s_dist(rng);

  int8_t* dA; uint8_t* dW; float* dS; void* dOut;
  CHECK_CUDA(cudaMalloc(&dA, A.size()));
  CHECK_CUDA(cudaMalloc(&dW, Wp.size()));
  CHECK_CUDA(cudaMalloc(&dS, scale.size() * 4));
  CHECK_CUDA(cudaMalloc(&dOut, M * N * 4));
  CHECK_CUDA(cudaMemcpy(dA, A.data(), A.size(), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dW, Wp.data(), Wp.size(), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dS, scale.data(), scale.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemset(dOut, 0xff, M * N * 4));   // poison: unwritten outputs show
  DecodeI8Args args;
  args.M = M; args.N = N; args.K = K; args.w_format = fi.f; args.scaled = scaled;
  args.group_size = group; args.A = dA; args.W = dW; args.scale = scaled ? dS : nullptr; args.out = dOut;
  std::string err = launch_decode_i8(args, 0);
  if (!err.empty()) return err;
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<uint32_t> out(M * N);
  CHECK_CUDA(cudaMemcpy(out.data(), dOut, out.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(dA); cudaFree(dW); cudaFree(dS); cudaFree(dOut);

  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double v = 0, mag = 0;
      int64_t total = 0;
      for (int64_t g = 0; g < G; ++g) {
        int64_t S = 0;
        for (int64_t k = g * gs; k < (g + 1) * gs; ++k) S += int64_t(A[m * K + k]) * w[n * K + k];
        total += S;
        v += double(scale[n * G + g]) * double(S);
        mag += std::fabs(double(scale[n * G + g]) * double(S));
      }
      const uint32_t got = out[m * N + n];
      if (!scaled) {
        if (int32_t(got) != int32_t(uint32_t(total)))
          return "int32 mismatch at m=" + std::to_string(m) + " n=" + std::to_string(n) + ": got " +
                 std::to_string(int32_t(got)) + ", want " + std::to_string(total);
      } else {
        float f;
        std::memcpy(&f, &got, 4);
        const double bound = (G + 10) * std::ldexp(mag, -24) + 1e-30;
        if (!(std::fabs(double(f) - v) <= bound))
          return "float32 out of bound at m=" + std::to_string(m) + " n=" + std::to_string(n) + ": got " +
                 std::to_string(f) + ", want " + std::to_string(v) + " (bound " + std::to_string(bound) + ")";
      }
    }
  return "";
}

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("decode_i8 selftest: FAIL  no CUDA device\n");
    return 1;
  }
  std::mt19937_64 rng(12345);
  int fails = 0, cases = 0;
  std::vector<std::string> lines;
  for (const FormatInfo& fi : kFormats) {
    for (int64_t M : {1, 5, 8, 9, 16, 23})
      for (int64_t group : {int64_t(-1), int64_t(32), int64_t(128), int64_t(96)}) {
        const int64_t K = group == 96 ? 3072 : 1024;   // multiples of every tile's k (<= 256)
        const int64_t N = 48;
        ++cases;
        const std::string err = run_case(fi, M, N, K, group, rng);
        if (!err.empty()) {
          ++fails;
          lines.push_back(std::string("FAIL ") + fi.name + " M=" + std::to_string(M) + " K=" + std::to_string(K) +
                          " group=" + std::to_string(group) + ": " + err);
        }
      }
  }
  // K = 2^16 with full-range int8 weights: the documented no-overflow limit (|S| <= 2^30)
  {
    ++cases;
    const std::string err = run_case(kFormats[0], 3, 16, 65536, -1, rng);
    if (!err.empty()) ++fails, lines.push_back("FAIL int8 K=65536: " + err);
  }
  for (const std::string& l : lines)
    if (l.rfind("FAIL", 0) == 0) std::printf("%s\n", l.c_str());
  std::printf("decode_i8 selftest: %s  %d cases, %d failed\n", fails ? "FAIL" : "PASS", cases, fails);
  return fails ? 1 : 0;
}
