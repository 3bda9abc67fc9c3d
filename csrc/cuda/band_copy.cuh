// The weight half of an mma.sync GEMM's pipeline stage (gemm_mma, gemm_mma_a8): a CTA's NB bands of
// packed tiles, TPB tiles of each, copied by cp.async into shared memory as they are (a band's tiles
// after one another, bands after one another), so a lane reads its 16 bytes of a tile with one shared
// load. THREADS threads copy 16-byte chunks in passes of whole bands; each thread's addresses are
// computed once.
#pragma once

#include <cstdint>

#include "ptx.cuh"

namespace bitblas_jax {
namespace cudak {

template <int NB, int TPB, int TK, int THREADS>
struct BandStageCopy {
  static constexpr int CPB = TPB * kTileBytes / 16;  // 16-byte chunks per band and stage
  static constexpr int BPI = THREADS / CPB;  // bands per pass
  static constexpr int PASSES = NB / BPI;
  static_assert(THREADS % CPB == 0 && NB % BPI == 0, "whole bands per pass");

  const uint8_t* src;      // this thread's chunk of its first band's first tile
  uint32_t dst;            // ... and where it goes in a stage
  long long band_stride;   // bytes of a band's tiles (KT tiles of kTileBytes)
  int band;                // this thread's first band of the weight
  int tile_k0;             // the first k of its tile within the stage

  // W: the packed weight; first_band: the CTA's first band; KT: packed tiles per band.
  __device__ __forceinline__ BandStageCopy(const uint8_t* W, uint32_t smem, int first_band, int KT, int tid) {
    const int b = tid / CPB, rest = tid % CPB;
    band_stride = static_cast<long long>(KT) * kTileBytes;
    band = first_band + b;
    tile_k0 = rest / (kTileBytes / 16) * TK;
    src = W + static_cast<long long>(band) * band_stride + rest * 16;
    dst = smem + b * TPB * kTileBytes + rest * 16;
  }

  // Stage kb into the stage at shared-memory offset `stage`: the bands below nbands, the tiles that
  // start before k_left, the k from the stage's start to the end of K (fewer than TPB tiles where K
  // ends inside the stage).
  __device__ __forceinline__ void operator()(uint32_t stage, int kb, int nbands, long long k_left) const {
#pragma unroll
    for (int j = 0; j < PASSES; ++j)
      if (band + j * BPI < nbands && tile_k0 < k_left)
        cp_async16_stream(dst + stage + j * BPI * TPB * kTileBytes,
                          src + j * BPI * band_stride + static_cast<long long>(kb) * TPB * kTileBytes);
  }
};

}  // namespace cudak
}  // namespace bitblas_jax
