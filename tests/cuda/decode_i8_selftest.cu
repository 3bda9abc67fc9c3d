// Standalone test of the decode_i8 kernel (csrc/cuda/decode_i8.cuh): every weight format int8
// activations take, modes none / scale, odd M, several K and group sizes, full-range random int8 data,
// against an int64 host reference (none: bit for bit) and a float64 one (scale: within the float32
// bound of (groups + 10) * 2^-24 * sum_g |s_g S_g|), outputs poisoned (int8_sums_case.h). Prints a
// PASS / FAIL table last; exit 1 on failure.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc/cuda \
//     tests/cuda/decode_i8_selftest.cu csrc/cuda/inst_decode_i8.cu -o /tmp/decode_i8_selftest && /tmp/decode_i8_selftest
//   (compute_80 / sm_80 on an A100.) Takes a few seconds.
//
// `--time M N K FORMAT GROUP` (FORMAT int8 / int4 / uint4 / int2 / uint2 / int1 / uint1; GROUP 0: mode
// none, else mode scale with that group) times the kernel alone instead: back-to-back launches over
// enough weight copies that each launch reads its weight from DRAM, the median of 15 batches, and the
// weight bytes per second.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "decode_i8.h"
#include "int8_sums_case.h"

using namespace int8_sums_case;

namespace {

#define TIME_CHECK(x)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::printf("--time: CUDA error %s at line %d\n", cudaGetErrorString(e_), __LINE__);  \
      std::exit(2);                                                                        \
    }                                                                                      \
  } while (0)

int time_case(int64_t M, int64_t N, int64_t K, const std::string& format, int64_t group) {
  const FormatInfo* fi = nullptr;
  for (const FormatInfo& f : kFormats)
    if (format == f.name) fi = &f;
  if (!fi) {
    std::printf("--time: FORMAT must be one of int8 int4 uint4 int2 uint2 int1 uint1, not %s\n", format.c_str());
    return 2;
  }
  const int64_t w_bytes = N * K * fi->bits / 8;
  // copies of the weight past 256 MB of reads per rotation (the L2 holds 50-60 MB)
  const int copies = static_cast<int>(std::max<int64_t>(2, (256ll << 20) / w_bytes + 1));
  std::vector<uint8_t> host_w(w_bytes);
  std::mt19937_64 rng(7);
  for (auto& b : host_w) b = static_cast<uint8_t>(rng());
  std::vector<int8_t> host_a(M * K);
  for (auto& v : host_a) v = static_cast<int8_t>(rng());
  std::vector<uint8_t*> w(copies);
  for (auto& p : w) {
    TIME_CHECK(cudaMalloc(&p, w_bytes));
    TIME_CHECK(cudaMemcpy(p, host_w.data(), w_bytes, cudaMemcpyHostToDevice));
  }
  int8_t* a = nullptr;
  float* scale = nullptr;
  void* out = nullptr;
  TIME_CHECK(cudaMalloc(&a, M * K));
  TIME_CHECK(cudaMemcpy(a, host_a.data(), M * K, cudaMemcpyHostToDevice));
  const int64_t groups = group > 0 ? K / group : 0;
  std::vector<float> host_s(std::max<int64_t>(1, N * groups), 0.01f);
  TIME_CHECK(cudaMalloc(&scale, host_s.size() * sizeof(float)));
  TIME_CHECK(cudaMemcpy(scale, host_s.data(), host_s.size() * sizeof(float), cudaMemcpyHostToDevice));
  TIME_CHECK(cudaMalloc(&out, M * N * 4));
  DecodeI8Args args;
  args.M = M, args.N = N, args.K = K, args.w_format = fi->f, args.A = a, args.out = out;
  args.scaled = group > 0, args.group_size = group > 0 ? group : 0, args.scale = scale;
  args.out_dtype = group > 0 ? bitblas_jax::DType::kF32 : bitblas_jax::DType::kI32;
  auto launch = [&](int i) {
    args.W = w[i % copies];
    const std::string err = bitblas_jax::launch_decode_i8(args, 0);
    if (!err.empty()) {
      std::printf("--time: the launch was refused: %s\n", err.c_str());
      std::exit(2);
    }
  };
  for (int i = 0; i < 2 * copies; ++i) launch(i);
  cudaEvent_t t0, t1;
  TIME_CHECK(cudaEventCreate(&t0));
  TIME_CHECK(cudaEventCreate(&t1));
  std::vector<float> per_launch;
  for (int batch = 0; batch < 15; ++batch) {
    TIME_CHECK(cudaEventRecord(t0));
    for (int i = 0; i < copies; ++i) launch(i);
    TIME_CHECK(cudaEventRecord(t1));
    TIME_CHECK(cudaEventSynchronize(t1));
    float ms = 0.f;
    TIME_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    per_launch.push_back(1e3f * ms / copies);
  }
  TIME_CHECK(cudaGetLastError());
  std::sort(per_launch.begin(), per_launch.end());
  const double us = per_launch[per_launch.size() / 2];
  std::printf("time decode_i8 %s g%ld M=%ld N=%ld K=%ld: %.2f us, %.0f GB/s of weight (back-to-back, %d copies)\n",
              format.c_str(), (long)group, (long)M, (long)N, (long)K, us, w_bytes / us / 1e3, copies);
  for (auto* p : w) cudaFree(p);
  cudaFree(a), cudaFree(scale), cudaFree(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::string(argv[1]) == "--time")
    return time_case(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]), argc > 5 ? argv[5] : "int8",
                     argc > 6 ? std::atoll(argv[6]) : 0);
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
        const std::string err = run_case(bitblas_jax::launch_decode_i8, AOrder::kLane, fi, M, N, K, group, rng);
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
    const std::string err = run_case(bitblas_jax::launch_decode_i8, AOrder::kLane, kFormats[0], 3, 16, 65536, -1, rng);
    if (!err.empty()) ++fails, lines.push_back("FAIL int8 K=65536: " + err);
  }
  // the epilogue: per-channel scales, bias, every float / int8 output (one and two 8-row activation tiles)
  for (const FormatInfo& fi : {kFormats[0], kFormats[1], kFormats[5]})
    for (bitblas_jax::DType out : {bitblas_jax::DType::kF32, bitblas_jax::DType::kF16, bitblas_jax::DType::kBF16,
                                   bitblas_jax::DType::kI8})
      for (int64_t M : {1, 13}) {
        ++cases;
        const std::string err = run_epilogue_case(bitblas_jax::launch_decode_i8, AOrder::kLane, fi, M, 48, 1024, out, rng);
        if (!err.empty())
          ++fails, lines.push_back(std::string("FAIL epilogue ") + fi.name + " M=" + std::to_string(M) + " out=" +
                                   std::to_string(static_cast<int>(out)) + ": " + err);
      }
  for (const std::string& l : lines)
    if (l.rfind("FAIL", 0) == 0) std::printf("%s\n", l.c_str());
  std::printf("decode_i8 selftest: %s  %d cases, %d failed\n", fails ? "FAIL" : "PASS", cases, fails);
  return fails ? 1 : 0;
}
