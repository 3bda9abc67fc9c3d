// Host check of the 8-bit tensor-core fragments (csrc/cuda/a8_fragment.cuh), compiled by the C++ compiler
// with no GPU (tests/test_fragment_emulation.py). i8_fragment's A registers and the activation registers
// go through mma.m16n8k32's register semantics and must give the exact integer dot product of a random
// packed tile read through layout.h, for every integer weight format, with A in either k order the kernels
// take: decode_i8's lane order (a8_lane_order_k: a lane's two registers are 8 consecutive bytes of each
// 32-k block) and the GEMMs' kSigma order (4 consecutive bytes of each 16-k chunk per register). Both
// orders are printed for the Python side (primitive.py) to compare with its own transposes;
// int4_codes_to_e4m3 must give each int4 value's e4m3 bits.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

// The device intrinsics these headers use, on the host.
#define __device__
#define __forceinline__ inline
static uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  uint8_t b[8];
  std::memcpy(b, &x, 4);
  std::memcpy(b + 4, &y, 4);
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t(b[(s >> (4 * i)) & 7]) << (8 * i);
  return r;
}
struct uint4 {
  uint32_t x, y, z, w;
};

#include "a8_fragment.cuh"
#include "bitblas_jax/layout.h"

using namespace bitblas_jax;

namespace {

constexpr bool is_signed(WFormat f) {
  return f == WFormat::kInt8 || f == WFormat::kInt4 || f == WFormat::kInt2 || f == WFormat::kInt1;
}

int value_of(WFormat f, int bits, uint32_t code) {
  if (!is_signed(f)) return int(code);
  return bits == 1 ? 2 * int(code) - 1 : int(code) - (1 << (bits - 1));
}

// One packed tile (16 weight rows x 256 / BITS k) times 8 activation rows, every k32 step.
template <WFormat WF>
int check_format(unsigned seed, bool gemm_order) {
  constexpr int BITS = format_bits(WF);
  constexpr int TK = 256 / BITS;
  std::mt19937 rng(seed);
  std::vector<uint8_t> W(512);
  for (auto& b : W) b = uint8_t(rng());
  int8_t A[8][TK];
  for (auto& row : A)
    for (auto& v : row) v = int8_t(rng());
  int wrong = 0;
  for (int j = 0; j < TK / 32; ++j) {
    uint32_t a[32][4], b[32][2];
    for (int lane = 0; lane < 32; ++lane) {
      uint4 w;
      std::memcpy(&w, W.data() + lane * 16, 16);
      cudak::i8_fragment<WF>(w, j, a[lane]);
      const int g = lane >> 2, c = lane & 3;
      if (gemm_order) {  // A permuted by kSigma per 16-k chunk, 4 consecutive bytes per register
        auto sigma4 = [&](int k0) {
          uint32_t r = 0;
          for (int i = 0; i < 4; ++i) r |= uint32_t(uint8_t(A[g][16 * (k0 / 16) + cudak::kSigma[k0 % 16 + i]])) << (8 * i);
          return r;
        };
        b[lane][0] = sigma4(32 * j + 4 * c);
        b[lane][1] = sigma4(32 * j + 16 + 4 * c);
      } else {  // decode_i8: A in lane order, the lane's 8 bytes at 8c of the 32-k block
        for (int r = 0; r < 2; ++r) {
          b[lane][r] = 0;
          for (int i = 0; i < 4; ++i)
            b[lane][r] |= uint32_t(uint8_t(A[g][32 * j + cudak::a8_lane_order_k(8 * c + 4 * r + i)])) << (8 * i);
        }
      }
    }
    for (int row = 0; row < 16; ++row) {
      for (int col = 0; col < 8; ++col) {
        // mma.m16n8k32 (PTX ISA): A register r of lane (g, c) holds row g + 8 (r & 1), k slots
        // 16 (r >> 1) + 4c .. + 3; B register r of lane (n, c) holds column n, k slots 16 r + 4c .. + 3.
        int64_t sum = 0, ref = 0;
        for (int slot = 0; slot < 32; ++slot) {
          const int c = (slot & 15) >> 2, byte = slot & 3, half = slot >> 4;
          const int8_t av = int8_t(a[(row & 7) * 4 + c][(row >> 3) + 2 * half] >> (8 * byte));
          const int8_t bv = int8_t(b[col * 4 + c][half] >> (8 * byte));
          sum += int64_t(av) * bv;
        }
        for (int k = 32 * j; k < 32 * j + 32; ++k)
          ref += int64_t(value_of(WF, BITS, layout::load_code(W.data(), TK, BITS, row, k))) * A[col][k];
        wrong += sum != ref;
      }
    }
  }
  std::printf("%-6s %d-bit, %s: %d of %d sums wrong\n", format_name(WF), BITS,
              gemm_order ? "A in kSigma order (GEMMs)" : "A in lane order (decode_i8)", wrong, 16 * 8 * (TK / 32));
  return wrong;
}

// e4m3 bits -> value (finite codes only: int4 values are small integers).
double e4m3_value(uint8_t bits) {
  const int s = bits >> 7, e = (bits >> 3) & 15, m = bits & 7;
  const double mag = e == 0 ? m / 8.0 * (1.0 / 64) : (1 + m / 8.0) * double(1 << e) / 128.0;
  return s ? -mag : mag;
}

int check_int4_e4m3() {
  int wrong = 0;
  for (uint32_t code = 0; code < 16; ++code) {
    const uint32_t r = code | ((15 - code) << 8) | (((code + 5) & 15) << 16) | (((code * 7) & 15) << 24);
    const uint32_t e = cudak::int4_codes_to_e4m3(r);
    for (int byte = 0; byte < 4; ++byte) {
      const int c = (r >> (8 * byte)) & 15;
      wrong += e4m3_value(uint8_t(e >> (8 * byte))) != double(c - 8);
    }
  }
  std::printf("int4 -> e4m3: %d of 64 wrong\n", wrong);
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned seed = argc > 1 ? unsigned(std::strtoul(argv[1], nullptr, 10)) : 2026u;
  std::printf("seed %u\n", seed);
  int wrong = check_int4_e4m3();
  for (bool gemm_order : {false, true})
    wrong += check_format<WFormat::kInt8>(seed, gemm_order) + check_format<WFormat::kInt4>(seed, gemm_order) +
             check_format<WFormat::kUInt4>(seed, gemm_order) + check_format<WFormat::kInt2>(seed, gemm_order) +
             check_format<WFormat::kUInt2>(seed, gemm_order) + check_format<WFormat::kInt1>(seed, gemm_order) +
             check_format<WFormat::kUInt1>(seed, gemm_order);
  std::printf("kSigma:");
  for (int i = 0; i < 16; ++i) std::printf(" %d", cudak::kSigma[i]);
  std::printf("\nlane order:");
  for (int p = 0; p < 32; ++p) std::printf(" %d", cudak::a8_lane_order_k(p));
  std::printf("\n");
  std::printf(wrong ? "FAIL\n" : "PASS\n");
  return wrong != 0;
}
