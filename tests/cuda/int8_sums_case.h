// One self-test case of the kernels with decode_i8's contract (decode_i8, gemm_mma_a8; DecodeI8Args):
// full-range random int8 activations and weights of one format, packed in the shared layout (A in the
// kernel's k order: kSigma per 16-k chunk for gemm_mma_a8, lane order per 32-k block for decode_i8), group
// scales, outputs poisoned (INT32_MIN / NaN) so unwritten elements show, against an int64 host reference (mode none: bit for bit, wrapping mod 2^32)
// or a float64 one (mode scale: within the float32 bound (groups + 10) * 2^-24 * sum_g |s_g S_g|).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "a8_fragment.cuh"  // kSigma, a8_lane_order_k
#include "bitblas_jax/layout.h"
#include "decode_i8.h"
#include "qact_out_check.h"

namespace int8_sums_case {

using bitblas_jax::DecodeI8Args;
using bitblas_jax::WFormat;

struct FormatInfo {
  WFormat f;
  const char* name;
  int bits, lo, hi;   // element value range
};

inline const FormatInfo kFormats[] = {
    {WFormat::kInt8, "int8", 8, -128, 127}, {WFormat::kInt4, "int4", 4, -8, 7},
    {WFormat::kUInt4, "uint4", 4, 0, 15},   {WFormat::kInt2, "int2", 2, -2, 1},
    {WFormat::kUInt2, "uint2", 2, 0, 3},    {WFormat::kInt1, "int1", 1, -1, 1},
    {WFormat::kUInt1, "uint1", 1, 0, 1},
};

// The k order the kernel takes A in (a8_fragment.cuh's, which tests/cuda/fragment_emulation.cc checks against
// mma.m16n8k32's register semantics): the GEMMs' kSigma within each 16-k chunk, decode_i8's lane order within
// each 32-k block. k_at: the k at position p of a row.
enum class AOrder { kSigma, kLane };
inline int64_t k_at(AOrder order, int64_t p) {
  if (order == AOrder::kSigma) return p / 16 * 16 + bitblas_jax::cudak::kSigma[p % 16];
  return p / 32 * 32 + bitblas_jax::cudak::a8_lane_order_k(int(p % 32));
}

inline uint32_t code_of(const FormatInfo& fi, int v) {
  if (fi.lo >= 0) return uint32_t(v);
  if (fi.bits == 1) return uint32_t((v + 1) / 2);
  return uint32_t(v + (1 << (fi.bits - 1)));
}

#define INT8_SUMS_CHECK_CUDA(x)                                                              \
  do {                                                                                       \
    cudaError_t e_ = (x);                                                                    \
    if (e_ != cudaSuccess) {                                                                 \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);  \
      return "cuda error";                                                                   \
    }                                                                                        \
  } while (0)

using Launch = std::string (*)(const DecodeI8Args&, cudaStream_t);

// Random full-range int8 activations (A; A_dev as the kernel takes them: in `order`) and weights of one
// format (w, and packed in the shared layout: Wp).
struct Operands {
  std::vector<int8_t> A, A_dev;
  std::vector<int> w;
  std::vector<uint8_t> Wp;
};

inline Operands make_operands(AOrder order, const FormatInfo& fi, int64_t M, int64_t N, int64_t K,
                              std::mt19937_64& rng) {
  std::uniform_int_distribution<int> a_dist(-128, 127), w_dist(fi.lo, fi.hi);
  Operands o;
  o.A.resize(M * K);
  o.A_dev.resize(M * K);
  for (auto& x : o.A) x = int8_t(a_dist(rng));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      o.A_dev[m * K + k] = o.A[m * K + k_at(order, k)];
  o.w.resize(N * K);
  for (auto& x : o.w) {
    x = w_dist(rng);
    if (fi.bits == 1 && fi.lo < 0 && x == 0) x = 1;   // int1 is -1 or +1
  }
  o.Wp.assign(N * K * fi.bits / 8, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const bitblas_jax::layout::CodeSlot slot = bitblas_jax::layout::code_slot(K, fi.bits, n, k);
      uint32_t word;
      std::memcpy(&word, &o.Wp[slot.byte], 4);
      word |= code_of(fi, o.w[n * K + k]) << slot.shift;
      std::memcpy(&o.Wp[slot.byte], &word, 4);
    }
  return o;
}

// "" on success, else what went wrong. group <= 0: mode none.
inline std::string run_case(Launch launch, AOrder order, const FormatInfo& fi, int64_t M, int64_t N,
                            int64_t K, int64_t group, std::mt19937_64& rng) {
  const bool scaled = group > 0;
  const int64_t G = scaled ? K / group : 1, gs = scaled ? group : K;
  std::uniform_real_distribution<float> s_dist(-2.0f, 2.0f);
  const Operands o = make_operands(order, fi, M, N, K, rng);
  const std::vector<int8_t>& A = o.A;
  const std::vector<int>& w = o.w;
  std::vector<float> scale(N * G);
  for (auto& x : scale) x = s_dist(rng);
  const uint32_t poison = scaled ? 0x7fc00000u : 0x80000000u;   // NaN / INT32_MIN
  std::vector<uint32_t> out(M * N, poison);

  int8_t* dA; uint8_t* dW; float* dS; void* dOut;
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dA, A.size()));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dW, o.Wp.size()));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dS, scale.size() * 4));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dOut, M * N * 4));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dA, o.A_dev.data(), A.size(), cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dW, o.Wp.data(), o.Wp.size(), cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dS, scale.data(), scale.size() * 4, cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dOut, out.data(), out.size() * 4, cudaMemcpyHostToDevice));
  DecodeI8Args args;
  args.M = M; args.N = N; args.K = K; args.w_format = fi.f; args.scaled = scaled;
  args.group_size = group; args.A = dA; args.W = dW; args.scale = scaled ? dS : nullptr; args.out = dOut;
  args.out_dtype = scaled ? bitblas_jax::DType::kF32 : bitblas_jax::DType::kI32;   // the sums themselves
  std::string err = launch(args, 0);
  if (!err.empty()) return err;
  INT8_SUMS_CHECK_CUDA(cudaDeviceSynchronize());
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(out.data(), dOut, out.size() * 4, cudaMemcpyDeviceToHost));
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

// The epilogue: per-channel scales (col_scale) and a bias, out_dtype float32 / float16 / bfloat16 / int8,
// against the float64 value s[n] * S + b[n]: within the float32 rounding of the product plus the
// output's rounding (int8: half a unit, saturated). "" on success.
inline std::string run_epilogue_case(Launch launch, AOrder order, const FormatInfo& fi, int64_t M, int64_t N,
                                     int64_t K, bitblas_jax::DType out_dtype, std::mt19937_64& rng) {
  using bitblas_jax::DType;
  const Operands o = make_operands(order, fi, M, N, K, rng);
  const std::vector<int8_t>& A = o.A;
  const std::vector<int>& w = o.w;
  // scales that put |C| near 100, so int8 outputs round and saturate; a bias of the same size
  const double amp = 64.0 * std::max(std::abs(fi.lo), std::abs(fi.hi)) * std::sqrt(double(K));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> cs(N), bias(N);
  for (auto& x : cs) x = float(100.0 / amp * u(rng));
  for (auto& x : bias) x = 50.0f * u(rng);
  const int esize = qact_out_check::element_bytes(out_dtype);
  std::vector<uint8_t> out(M * N * esize, 0x7f);
  int8_t* dA; uint8_t* dW; float *dS, *dB; void* dOut;
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dA, A.size()));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dW, o.Wp.size()));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dS, N * 4));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dB, N * 4));
  INT8_SUMS_CHECK_CUDA(cudaMalloc(&dOut, out.size()));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dA, o.A_dev.data(), A.size(), cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dW, o.Wp.data(), o.Wp.size(), cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dS, cs.data(), N * 4, cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dB, bias.data(), N * 4, cudaMemcpyHostToDevice));
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dOut, out.data(), out.size(), cudaMemcpyHostToDevice));
  DecodeI8Args args;
  args.M = M; args.N = N; args.K = K; args.w_format = fi.f; args.scaled = false; args.group_size = K;
  args.A = dA; args.W = dW; args.col_scale = dS; args.bias = dB; args.out_dtype = out_dtype; args.out = dOut;
  std::string err = launch(args, 0);
  if (!err.empty()) return err;
  INT8_SUMS_CHECK_CUDA(cudaDeviceSynchronize());
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(out.data(), dOut, out.size(), cudaMemcpyDeviceToHost));
  // again over a second poison (0x80): an element the kernel left unwritten differs between the runs
  // (0x7f alone reads as 127, a saturated int8 value)
  std::vector<uint8_t> again(out.size(), 0x80);
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(dOut, again.data(), again.size(), cudaMemcpyHostToDevice));
  err = launch(args, 0);
  if (!err.empty()) return err;
  INT8_SUMS_CHECK_CUDA(cudaDeviceSynchronize());
  INT8_SUMS_CHECK_CUDA(cudaMemcpy(again.data(), dOut, again.size(), cudaMemcpyDeviceToHost));
  cudaFree(dA); cudaFree(dW); cudaFree(dS); cudaFree(dB); cudaFree(dOut);
  if (again != out) return "epilogue: unwritten elements (the outputs over two poisons differ)";
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t S = 0;
      for (int64_t k = 0; k < K; ++k) S += int64_t(A[m * K + k]) * w[n * K + k];
      const double v = double(cs[n]) * double(S) + bias[n];
      // float(S) and the fmaf: two float32 roundings of terms up to |s S| + |b|
      const double bound = 4 * std::ldexp(std::fabs(double(cs[n]) * double(S)) + std::fabs(bias[n]), -24);
      const double g = qact_out_check::element(&out[(m * N + n) * esize], out_dtype);
      const bool ok = qact_out_check::within(g, out_dtype, v, bound);
      if (!ok)
        return "epilogue mismatch at m=" + std::to_string(m) + " n=" + std::to_string(n) + ": got " +
               std::to_string(g) + ", want " + std::to_string(v);
    }
  return "";
}

}  // namespace int8_sums_case
