// gemm_wgmma_a8's float8-activation instantiations (e4m3 / e5m2 activations x float8_e4m3fn /
// float8_e5m2 / int4 weights, with or without group scales; 64 or 128 activation rows per CTA): a
// unit of its own so the build compiles them beside the int8 ones.
#include "inst_gemm_wgmma_a8.inc"

namespace bitblas_jax {
namespace a8 {
namespace {

template <DType ACT, bool SCALED>
std::string by_weight(const GemmA8Args& a, int num_sms, cudaStream_t stream) {
  switch (a.w_format) {
    case WFormat::kFP8E4M3: return launch_m<ACT, WFormat::kFP8E4M3, SCALED, false>(a, num_sms, stream);
    case WFormat::kFP8E5M2: return launch_m<ACT, WFormat::kFP8E5M2, SCALED, false>(a, num_sms, stream);
    case WFormat::kInt4: return launch_m<ACT, WFormat::kInt4, SCALED, false>(a, num_sms, stream);
    default: return "gemm_wgmma_a8: float8 activations take float8_e4m3fn, float8_e5m2 and int4 weights";
  }
}

}  // namespace

std::string launch_float8(const GemmA8Args& a, int num_sms, cudaStream_t stream) {
  if (a.act == DType::kF8E4M3) return a.scale ? by_weight<DType::kF8E4M3, true>(a, num_sms, stream)
                                              : by_weight<DType::kF8E4M3, false>(a, num_sms, stream);
  return a.scale ? by_weight<DType::kF8E5M2, true>(a, num_sms, stream)
                 : by_weight<DType::kF8E5M2, false>(a, num_sms, stream);
}

}  // namespace a8
}  // namespace bitblas_jax
