// Standalone test of the decode_i8 kernel (csrc/cuda/decode_i8.cuh): every weight format int8
// activations take, modes none / scale, odd M, several K and group sizes, full-range random int8 data,
// against an int64 host reference (none: bit for bit) and a float64 one (scale: within the float32
// bound of (groups + 10) * 2^-24 * sum_g |s_g S_g|), outputs poisoned (int8_sums_case.h). Prints a
// PASS / FAIL table last; exit 1 on failure.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc/cuda \
//     tests/cuda/decode_i8_selftest.cu csrc/cuda/inst_decode_i8.cu -o /tmp/decode_i8_selftest && /tmp/decode_i8_selftest
//   (compute_80 / sm_80 on an A100.) Takes a few seconds.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "decode_i8.h"
#include "int8_sums_case.h"

using namespace int8_sums_case;

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
        const std::string err = run_case(bitblas_jax::launch_decode_i8, false, fi, M, N, K, group, rng);
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
    const std::string err = run_case(bitblas_jax::launch_decode_i8, false, kFormats[0], 3, 16, 65536, -1, rng);
    if (!err.empty()) ++fails, lines.push_back("FAIL int8 K=65536: " + err);
  }
  // the epilogue: per-channel scales, bias, every float / int8 output (one and two 8-row activation tiles)
  for (const FormatInfo& fi : {kFormats[0], kFormats[1], kFormats[5]})
    for (bitblas_jax::DType out : {bitblas_jax::DType::kF32, bitblas_jax::DType::kF16, bitblas_jax::DType::kBF16,
                                   bitblas_jax::DType::kI8})
      for (int64_t M : {1, 13}) {
        ++cases;
        const std::string err = run_epilogue_case(bitblas_jax::launch_decode_i8, false, fi, M, 48, 1024, out, rng);
        if (!err.empty())
          ++fails, lines.push_back(std::string("FAIL epilogue ") + fi.name + " M=" + std::to_string(M) + " out=" +
                                   std::to_string(static_cast<int>(out)) + ": " + err);
      }
  for (const std::string& l : lines)
    if (l.rfind("FAIL", 0) == 0) std::printf("%s\n", l.c_str());
  std::printf("decode_i8 selftest: %s  %d cases, %d failed\n", fails ? "FAIL" : "PASS", cases, fails);
  return fails ? 1 : 0;
}
