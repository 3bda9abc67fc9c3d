// Standalone test of the gemm_mma_a8 kernel (csrc/cuda/gemm_mma_a8.cuh) on any sm_80+ GPU: every weight
// format int8 activations take, modes none / scale (per channel, groups of 32, 96, 128), M = 17, 64,
// 100, 300 (both activation tiles, partly filled), N = 144 (a CTA of one band after a full one) and 16,
// K of several stages, ending inside a stage where the format's tiles allow; full-range random int8 data
// in kSigma order, outputs poisoned, against an int64 host reference (none: bit for bit) and a float64
// one (scale: within the float32 bound), as int8_sums_case.h says. Prints the failures and a PASS /
// FAIL line last; exit 1 on failure.
//
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_80,code=sm_80 -Icsrc/include \
//     -Icsrc/cuda tests/cuda/gemm_mma_a8_selftest.cu csrc/cuda/inst_gemm_mma_a8.cu -o build/gemm_mma_a8_selftest \
//     && build/gemm_mma_a8_selftest          (compute_90a / sm_90a on an H100 / H200; about 30 s)
//   build/gemm_mma_a8_selftest --time M N K BITS   # mode none, int8 .. int1 weights: us and TOPS
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gemm_mma_a8.h"
#include "int8_sums_case.h"

using namespace int8_sums_case;

namespace {

// Back-to-back launches of mode none on random data, timed with events.
int time_case(int64_t M, int64_t N, int64_t K, int bits) {
  const FormatInfo* fi = nullptr;
  for (const FormatInfo& f : kFormats)
    if (f.bits == bits && f.lo < 0) fi = &f;
  if (!fi || M <= 0 || N <= 0 || K <= 0) {
    std::printf("--time M N K BITS: BITS one of 8, 4, 2, 1\n");
    return 2;
  }
  std::vector<int8_t> A(M * K);
  std::vector<uint8_t> W(N * K * bits / 8);
  std::mt19937_64 rng(7);
  for (auto& x : A) x = static_cast<int8_t>(rng());
  for (auto& x : W) x = static_cast<uint8_t>(rng());
  int8_t* dA;
  uint8_t* dW;
  void* dOut;
  if (cudaMalloc(&dA, A.size()) || cudaMalloc(&dW, W.size()) || cudaMalloc(&dOut, M * N * 4)) {
    std::printf("cudaMalloc failed\n");
    return 2;
  }
  cudaMemcpy(dA, A.data(), A.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dW, W.data(), W.size(), cudaMemcpyHostToDevice);
  DecodeI8Args args;
  args.M = M, args.N = N, args.K = K, args.w_format = fi->f, args.A = dA, args.W = dW, args.out = dOut;
  const std::string err = bitblas_jax::launch_gemm_mma_a8(args, 0);
  if (!err.empty()) {
    std::printf("%s\n", err.c_str());
    return 2;
  }
  constexpr int kReps = 20;
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  cudaEventRecord(t0);
  for (int i = 0; i < kReps; ++i) bitblas_jax::launch_gemm_mma_a8(args, 0);
  cudaEventRecord(t1);
  cudaEventSynchronize(t1);
  float ms = 0.f;
  cudaEventElapsedTime(&ms, t0, t1);
  const cudaError_t e = cudaGetLastError();
  const double us = 1e3 * ms / kReps;
  std::printf("time %s M=%ld N=%ld K=%ld: %.2f us, %.0f TOPS (back-to-back launches)%s%s\n", fi->name, (long)M,
              (long)N, (long)K, us, 2.0 * M * N * K / us / 1e6, e ? ": CUDA error " : "",
              e ? cudaGetErrorString(e) : "");
  return e ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("gemm_mma_a8 selftest: FAIL  no CUDA device\n");
    return 1;
  }
  if (argc >= 6 && std::string(argv[1]) == "--time")
    return time_case(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]), std::atoi(argv[5]));
  std::mt19937_64 rng(2024);
  int fails = 0, cases = 0;
  auto run = [&](const FormatInfo& fi, int64_t M, int64_t N, int64_t K, int64_t group) {
    ++cases;
    const std::string err = run_case(bitblas_jax::launch_gemm_mma_a8, AOrder::kSigma, fi, M, N, K, group, rng);
    if (!err.empty()) {
      ++fails;
      std::printf("FAIL %s M=%ld N=%ld K=%ld group=%ld: %s\n", fi.name, (long)M, (long)N, (long)K, (long)group,
                  err.c_str());
    }
  };
  for (const FormatInfo& fi : kFormats) {
    const int64_t tile_k = 256 / fi.bits;
    // K = 1536: 12 stages of 128 k (6 of 256 for 1-bit weights); K = 1536 + one packed tile ends inside a
    // stage for 8- and 4-bit weights (stages of 4 / 2 tiles)
    for (int64_t M : {17, 64, 100, 300}) {
      for (int64_t group : {int64_t(-1), int64_t(32), int64_t(96), int64_t(128)}) run(fi, M, 144, 1536, group);
      for (int64_t group : {int64_t(-1), int64_t(32)}) run(fi, M, 144, 1536 + tile_k, group);
    }
    run(fi, 33, 16, 1536, 64);    // a CTA of one band
  }
  // K = 2^16 with full-range int8 weights: the documented no-overflow limit (|S| <= 2^30)
  run(kFormats[0], 17, 16, 65536, -1);
  // the epilogue: per-channel scales, bias, every float / int8 output, both activation tiles
  for (const FormatInfo& fi : {kFormats[0], kFormats[1], kFormats[4]})
    for (bitblas_jax::DType out : {bitblas_jax::DType::kF32, bitblas_jax::DType::kF16, bitblas_jax::DType::kBF16,
                                   bitblas_jax::DType::kI8})
      for (int64_t M : {40, 300}) {
        ++cases;
        const std::string err = run_epilogue_case(bitblas_jax::launch_gemm_mma_a8, AOrder::kSigma, fi, M, 144, 1536, out, rng);
        if (!err.empty()) {
          ++fails;
          std::printf("FAIL epilogue %s M=%ld out=%d: %s\n", fi.name, (long)M, static_cast<int>(out), err.c_str());
        }
      }
  std::printf("gemm_mma_a8 selftest: %s  %d cases, %d failed\n", fails ? "FAIL" : "PASS", cases, fails);
  return fails ? 1 : 0;
}
