// decode_i8: int8 activations x int8 .. int1 weights on int8 tensor cores (mma.m16n8k32.s8, sm_80+).
//
// What it computes (README, "int8 and float8 activations"; bitblas_jax/quantized_dot.py): for mode
// "none" the exact int32 sums S[m, n] = sum_k A[m, k] w[n, k] (wrapping mod 2^32 as any int32 GEMM);
// for mode "scale" v[m, n] = sum over groups g of s[n, g] * S_g[m, n] in float32, S_g the exact int32
// sum of group g (groups smaller than K; per-channel scales are the epilogue's). The kernel writes the
// output itself: C = cast_out(r[m] s[n] x + bias[n]) in float32 (epilogue.cuh store_qact_sum; x = S or v,
// r the per-row activation scale, s the per-channel scale, each 1 where the call has none).
//
// Shape. One CTA per 16-row band of the packed weight and 16 activation rows (grid.y slices M);
// kDecodeI8Warps warps split the band's K into runs of whole groups and whole packed tiles. Each warp
// streams its tiles through a ring of registers: a slot holds the lane's 16 bytes of one tile and, with two
// 8-row activation tiles, its activation registers for that tile's k32 steps, loaded together (several slots
// in flight: decode_i8_loads_in_flight), so an mma waits on neither; with one, more CTAs per SM stand in
// for them (decode_i8_acts_in_ring). It decodes the lane's codes to int8 in registers and issues one mma per
// 32 k for each 8-row activation tile. A warp's group sums are exact
// int32; at each group end they are scaled into float32 accumulators. The warps' results are added in
// shared memory (int32, or float32 in warp order) and warp 0 writes the 16 x (up to) 16 outputs through
// the epilogue (store_qact_sum: per-channel and activation scales, bias, the output cast).
//
// The k order. A lane decodes its 16 bytes with i8_fragment (a8_fragment.cuh), as the GEMMs do: register
// 4c + i of an m16n8k32 fragment carries k = kSigma[4c + i] of each 16-k chunk (2c, 2c+1, 2c+8, 2c+9), the
// k the lane's fp16 fragment holds, so masks and byte permutes build the registers with no per-element
// shifts. The activations come in the same k order, each 32-k block of A in lane order
// (a8_lane_order_k; bitblas_jax/primitive.py permutes A before the launch): lane (g, c)'s two B registers
// of a k32 step are the 8 bytes at 8c of the block in row g, one 8-byte load, and a warp's load of one
// 8-row tile reads 32 consecutive bytes of each row. (Read from A as it is, a lane's registers would take
// four 2-byte loads per step and tile, each touching 8 rows: at 16 rows those loads, not the weight's bytes,
// would set the time; docs/KERNELS.md has the measurements.)
//
// Wiring: plan.h quantized_activation_kernel picks it (int8 A, decode_i8_takes, M <= the threshold of
// bitblas_jax/gpu_plan.py); ffi_cuda.cc's handler bitblas_jax_decode_i8 checks the operands and calls
// launch_decode_i8 (inst_decode_i8.cu); bitblas_jax/primitive.py's _decode_i8_call binds it
// (_a8_kernel_call) and takes C as the kernel wrote it.
#pragma once

#include <cstdint>

#include "a8_fragment.cuh"  // i8_fragment
#include "decode_i8.h"
#include "epilogue.cuh"
#include "ptx.cuh"

namespace bitblas_jax {
namespace cudak {

constexpr int kDecodeI8Warps = 8;
// With two 8-row activation tiles (M > 8) a ring slot also holds the tile's activation registers, loaded with
// its weight: sixteen rows' loads are what an mma would otherwise wait on. With one, the kernel keeps the
// registers a slot would take (two per k32 step) and loads them as each step is issued: on large layers at
// M = 1 the larger slots would leave two CTAs per SM where four fit, and fewer warps' loads in flight cost
// more than the activations' latency (docs/KERNELS.md, decode_i8).
constexpr bool decode_i8_acts_in_ring(int NT) { return NT == 2; }
// CTAs per SM the launch bounds ask for: two with the activations in the ring (at most 128 registers a
// thread); without, as many as fit without spilling more than a word, so a lane's few loads in flight are
// made up by more warps: five for the unscaled 8-bit kernel (48 registers), four for the others (at most 64:
// the scaled 8- and 4-bit kernels spill 4 bytes; five would make the scaled 8-bit one spill 144).
constexpr int decode_i8_min_ctas_per_sm(int BITS, bool SCALED, int NT) {
  return decode_i8_acts_in_ring(NT) ? 2 : BITS == 8 && !SCALED ? 5 : 4;
}
// Ring slots (tiles) each lane keeps in flight. One 16-byte weight load per lane is 8 KB in flight per SM at two
// 256-thread CTAs, where the H200's bandwidth x latency asks about 30 KB (4.1 TB/s x ~1 us / 132 SMs). 2- and
// 1-bit tiles hold 4 and 8 mma steps each, so fewer cover the same time; with the activations in the ring 4-bit
// tiles keep three (four spill 40 bytes in the scaled kernel; the scaled 1-bit kernel spills 8 bytes at one).
template <int BITS, int NT>
constexpr int decode_i8_loads_in_flight() {
  return BITS >= 8 ? 4 : BITS == 4 ? (decode_i8_acts_in_ring(NT) ? 3 : 4) : BITS == 2 ? 2 : 1;
}

struct DecodeI8Params {
  int64_t M, N, K, tiles_k, group_size, groups, unit_k;
  const int8_t* A;
  const uint8_t* W;
  const float* scale;
  const float* col_scale;   // the epilogue (DecodeI8Args)
  const float* row_scale;
  const float* bias;
  DType out_dtype;
  void* out;
};

template <WFormat WF, bool SCALED, int NT>
__global__ void __launch_bounds__(32 * kDecodeI8Warps, decode_i8_min_ctas_per_sm(format_bits(WF), SCALED, NT)) decode_i8_kernel(DecodeI8Params p) {
  constexpr int BITS = format_bits(WF);
  constexpr int TK = 256 / BITS;      // k per packed tile
  constexpr int MMAS = TK / 32;       // mma k-steps per tile
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  const int64_t m0 = int64_t(blockIdx.y) * 16;

  // this warp's k range: whole units (whole groups and whole tiles)
  const int64_t units = p.K / p.unit_k;
  const int64_t t0 = (units * warp / kDecodeI8Warps) * (p.unit_k / TK);
  const int64_t t1 = (units * (warp + 1) / kDecodeI8Warps) * (p.unit_k / TK);

  const uint8_t* wlane = p.W + int64_t(blockIdx.x) * p.tiles_k * 512 + lane * 16;
  // row g of each 8-row activation tile, at this lane's 8 bytes of each 32-k block (lane order)
  const uint8_t* arow[NT];
  bool has_row[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int64_t m = m0 + nt * 8 + g;
    has_row[nt] = m < p.M;
    arow[nt] = reinterpret_cast<const uint8_t*>(p.A) + (has_row[nt] ? m : 0) * p.K + 8 * c;
  }
  int acc[NT][4];
  float facc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = 0, facc[nt][i] = 0.0f;

  // group scales: k32 steps left in the current group (a warp's range starts on a group boundary), and
  // this lane's rows' scales of that group, loaded one group ahead
  const int steps_per_group = SCALED ? static_cast<int>(p.group_size / 32) : 1;
  int group_left = steps_per_group;
  int64_t grp = SCALED ? t0 * TK / p.group_size : 0;
  const float* scale_lo = SCALED ? p.scale + (n0 + g) * p.groups : nullptr;   // rows g and g + 8
  const float* scale_hi = SCALED ? scale_lo + 8 * p.groups : nullptr;
  float s_lo = 0.f, s_hi = 0.f;
  if (SCALED && t0 < t1) s_lo = __ldg(scale_lo + grp), s_hi = __ldg(scale_hi + grp);

  // D slots in flight: a ring of registers indexed by the unrolled d (static indices keep it in registers),
  // each slot refilled with the tile D ahead as it is used. A slot: the lane's 16 bytes of tile t and, with two
  // activation tiles (decode_i8_acts_in_ring), its B registers of the tile's k32 steps (zero for rows past M);
  // with one, those are loaded as the step is issued.
  constexpr int D = decode_i8_loads_in_flight<BITS, NT>();
  constexpr bool ACTS_IN_RING = decode_i8_acts_in_ring(NT);
  auto load_act = [&](int64_t t, int j, int nt) {
    return has_row[nt] ? __ldg(reinterpret_cast<const uint2*>(arow[nt] + (t * MMAS + j) * 32)) : make_uint2(0, 0);
  };
  struct Slot {
    uint4 w;
    uint2 b[ACTS_IN_RING ? MMAS : 1][NT];
  };
  auto load = [&](int64_t t, Slot& s) {
    s.w = ldg_stream(wlane + t * 512);
    if constexpr (ACTS_IN_RING) {
#pragma unroll
      for (int j = 0; j < MMAS; ++j)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) s.b[j][nt] = load_act(t, j, nt);
    }
  };
  Slot ring[D];
#pragma unroll
  for (int d = 0; d < D; ++d)
    if (t0 + d < t1) load(t0 + d, ring[d]);
  for (int64_t tb = t0; tb < t1; tb += D) {
#pragma unroll
    for (int d = 0; d < D; ++d) {
      const int64_t t = tb + d;
      if (t >= t1) break;
      const Slot cur = ring[d];
      if (t + D < t1) load(t + D, ring[d]);
#pragma unroll
      for (int j = 0; j < MMAS; ++j) {
        uint32_t a[4];
        i8_fragment<WF>(cur.w, j, a);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const uint2 b = ACTS_IN_RING ? cur.b[j][nt] : load_act(t, j, nt);
          mma_m16n8k32_s8(acc[nt], a, b.x, b.y);
        }
        if constexpr (SCALED) {
          if (--group_left == 0) {                   // a group ends: scale its exact sums
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              facc[nt][0] += s_lo * float(acc[nt][0]);
              facc[nt][1] += s_lo * float(acc[nt][1]);
              facc[nt][2] += s_hi * float(acc[nt][2]);
              facc[nt][3] += s_hi * float(acc[nt][3]);
#pragma unroll
              for (int i = 0; i < 4; ++i) acc[nt][i] = 0;
            }
            group_left = steps_per_group;
            const int64_t next = ++grp < p.groups ? grp : p.groups - 1;   // (past the last: not used)
            s_lo = __ldg(scale_lo + next);
            s_hi = __ldg(scale_hi + next);
          }
        }
      }
    }
  }

  // add the warps' results: int32 (wrapping, as unsigned) or float32 in warp order
  __shared__ uint32_t red[kDecodeI8Warps][NT][4][32];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      red[warp][nt][i][lane] = SCALED ? __float_as_uint(facc[nt][i]) : static_cast<uint32_t>(acc[nt][i]);
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // C fragment: i = 0, 1: weight row g, activation rows 2c, 2c+1; i = 2, 3: weight row g + 8
      const int64_t n = n0 + g + 8 * (i >> 1);
      const int64_t m = m0 + nt * 8 + 2 * c + (i & 1);
      if (m >= p.M) continue;
      if constexpr (SCALED) {
        float v = 0.0f;
        for (int w2 = 0; w2 < kDecodeI8Warps; ++w2) v += __uint_as_float(red[w2][nt][i][lane]);
        store_qact_sum(p.out, m * p.N + n, p.out_dtype, p.col_scale, p.row_scale, p.bias, m, n, v);
      } else {
        uint32_t v = 0;
        for (int w2 = 0; w2 < kDecodeI8Warps; ++w2) v += red[w2][nt][i][lane];
        store_qact_sum(p.out, m * p.N + n, p.out_dtype, p.col_scale, p.row_scale, p.bias, m, n, static_cast<int32_t>(v));
      }
    }
  }
}

}  // namespace cudak
}  // namespace bitblas_jax
