// Instantiations and the host launcher of decode_i8 (decode_i8.cuh): every integer weight format
// int8 activations take, mode none / scale, one or two 8-row activation tiles per CTA.
#include <numeric>

#include "bitblas_jax/plan.h"
#include "decode_i8.cuh"

namespace bitblas_jax {
namespace {

template <int BITS, bool SIGNED, bool SCALED>
cudaError_t launch_bits(const cudak::DecodeI8Params& p, dim3 grid, cudaStream_t stream) {
  const dim3 block(32 * cudak::kDecodeI8Warps);
  if (p.M > 8)
    cudak::decode_i8_kernel<BITS, SIGNED, SCALED, 2><<<grid, block, 0, stream>>>(p);
  else
    cudak::decode_i8_kernel<BITS, SIGNED, SCALED, 1><<<grid, block, 0, stream>>>(p);
  return cudaGetLastError();
}

template <bool SCALED>
cudaError_t launch_format(WFormat f, const cudak::DecodeI8Params& p, dim3 grid, cudaStream_t stream) {
  switch (f) {
    case WFormat::kInt8: return launch_bits<8, true, SCALED>(p, grid, stream);
    case WFormat::kInt4: return launch_bits<4, true, SCALED>(p, grid, stream);
    case WFormat::kUInt4: return launch_bits<4, false, SCALED>(p, grid, stream);
    case WFormat::kInt2: return launch_bits<2, true, SCALED>(p, grid, stream);
    case WFormat::kUInt2: return launch_bits<2, false, SCALED>(p, grid, stream);
    case WFormat::kInt1: return launch_bits<1, true, SCALED>(p, grid, stream);
    case WFormat::kUInt1: return launch_bits<1, false, SCALED>(p, grid, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

std::string launch_decode_i8(const DecodeI8Args& a, cudaStream_t stream) {
  const WFormat f = a.w_format;
  const int mode = static_cast<int>(a.scaled ? ScaleMode::kScale : ScaleMode::kNone);
  if (!plan::decode_i8_takes(f, mode, a.group_size, a.K))
    return "decode_i8: takes int8, int4 .. int1 and uint4 .. uint1 weights, K a multiple of the packed "
           "tile's k, and for mode scale a group_size that is a multiple of 32 and divides K";
  const int64_t tk = tile_k(format_bits(f));
  if (a.M < 0 || a.N <= 0 || a.N % kTileN) return "decode_i8: N must be a positive multiple of 16, M >= 0";
  if (a.scaled && !a.scale) return "decode_i8: mode scale needs scale";
  if (a.M == 0) return "";
  if (!a.A || !a.W || !a.out) return "decode_i8: A, W and out must not be null";
  if (reinterpret_cast<uintptr_t>(a.A) % 2 || reinterpret_cast<uintptr_t>(a.W) % 16)
    return "decode_i8: A must be 2-byte and W 16-byte aligned";
  cudak::DecodeI8Params p;
  p.M = a.M; p.N = a.N; p.K = a.K;
  p.tiles_k = a.K / tk;
  p.group_size = a.scaled ? a.group_size : a.K;
  p.groups = a.K / p.group_size;
  // a warp's k range holds whole groups (exact int32 group sums) and whole packed tiles
  p.unit_k = a.scaled ? std::lcm(tk, a.group_size) : tk;
  p.A = a.A; p.W = a.W; p.scale = a.scale; p.out = a.out;
  const int64_t m_slices = (a.M + 15) / 16;
  if (a.N / kTileN > 0x7fffffff || m_slices > 65535) return "decode_i8: N or M too large for one launch";
  const dim3 grid(static_cast<unsigned>(a.N / kTileN), static_cast<unsigned>(m_slices));
  const cudaError_t e = a.scaled ? launch_format<true>(f, p, grid, stream)
                                 : launch_format<false>(f, p, grid, stream);
  return e == cudaSuccess ? "" : std::string("CUDA error in the decode_i8 launch: ") + cudaGetErrorString(e);
}

}  // namespace bitblas_jax
