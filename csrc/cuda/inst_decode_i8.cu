// Instantiations and the host launcher of decode_i8 (decode_i8.cuh): every integer weight format
// int8 activations take, mode none / scale, one or two 8-row activation tiles per CTA.
#include <numeric>

#include "bitblas_jax/plan.h"
#include "decode_i8.cuh"

namespace bitblas_jax {
namespace {

template <WFormat WF, bool SCALED>
cudaError_t launch_tiles(const cudak::DecodeI8Params& p, dim3 grid, cudaStream_t stream) {
  const dim3 block(32 * cudak::kDecodeI8Warps);
  if (p.M > 8)
    cudak::decode_i8_kernel<WF, SCALED, 2><<<grid, block, 0, stream>>>(p);
  else
    cudak::decode_i8_kernel<WF, SCALED, 1><<<grid, block, 0, stream>>>(p);
  return cudaGetLastError();
}

template <bool SCALED>
cudaError_t launch_format(WFormat f, const cudak::DecodeI8Params& p, dim3 grid, cudaStream_t stream) {
  switch (f) {
    case WFormat::kInt8: return launch_tiles<WFormat::kInt8, SCALED>(p, grid, stream);
    case WFormat::kInt4: return launch_tiles<WFormat::kInt4, SCALED>(p, grid, stream);
    case WFormat::kUInt4: return launch_tiles<WFormat::kUInt4, SCALED>(p, grid, stream);
    case WFormat::kInt2: return launch_tiles<WFormat::kInt2, SCALED>(p, grid, stream);
    case WFormat::kUInt2: return launch_tiles<WFormat::kUInt2, SCALED>(p, grid, stream);
    case WFormat::kInt1: return launch_tiles<WFormat::kInt1, SCALED>(p, grid, stream);
    case WFormat::kUInt1: return launch_tiles<WFormat::kUInt1, SCALED>(p, grid, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

std::string launch_decode_i8(const DecodeI8Args& a, cudaStream_t stream) {
  const WFormat f = a.w_format;
  // a lane reads 8 bytes of A per k32 step
  if (std::string err = check_int8_sums_args(a, "decode_i8", plan::decode_i8_takes, 8); !err.empty() || a.M == 0)
    return err;
  const int64_t tk = tile_k(format_bits(f));
  cudak::DecodeI8Params p;
  p.M = a.M; p.N = a.N; p.K = a.K;
  p.tiles_k = a.K / tk;
  p.group_size = a.scaled ? a.group_size : a.K;
  p.groups = a.K / p.group_size;
  // a warp's k range holds whole groups (exact int32 group sums) and whole packed tiles
  p.unit_k = a.scaled ? std::lcm(tk, a.group_size) : tk;
  p.A = a.A; p.W = a.W; p.scale = a.scale; p.out = a.out;
  p.col_scale = a.col_scale; p.row_scale = a.row_scale; p.bias = a.bias; p.out_dtype = a.out_dtype;
  const int64_t m_slices = (a.M + 15) / 16;
  if (a.N / kTileN > 0x7fffffff || m_slices > 65535) return "decode_i8: N or M too large for one launch";
  const dim3 grid(static_cast<unsigned>(a.N / kTileN), static_cast<unsigned>(m_slices));
  const cudaError_t e = a.scaled ? launch_format<true>(f, p, grid, stream)
                                 : launch_format<false>(f, p, grid, stream);
  return e == cudaSuccess ? "" : std::string("CUDA error in the decode_i8 launch: ") + cudaGetErrorString(e);
}

}  // namespace bitblas_jax
