#!/usr/bin/env python3
"""Generates variants/v_<name>.cu (one GEMM instantiation per translation unit, so the build parallelizes)
and variants/variant_list.hpp. Edit the table and rerun to add/remove variants."""
import os
HERE = os.path.dirname(os.path.abspath(__file__))
PP = "cutlass::gemm::KernelTmaWarpSpecializedPingpong"
U4SZ = "cute::tuple<cutlass::uint4b_t, ElemS, ElemZ>"
variants = [
 # small M (64-256): the library's configuration (packed W, uint4 codes, scale + zero) in other tiles, clusters and
 # schedules, beside fp16 baselines of the same tiles
 ("f16_128x64_c1", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_64,_64>, Shape<_1,_1,_1>>::Gemm",
  "fp16 x fp16 baseline, KernelScheduleAuto, tile 128x64x64, cluster 1x1x1, persistent"),
 ("f16_64x128_pp", "KIND_F16", "W_PLAIN", "false",
  f"F16Gemm<Shape<_64,_128,_64>, Shape<_1,_1,_1>, {PP}>::Gemm",
  "fp16 x fp16 baseline, ping-pong, tile 64x128x64, cluster 1x1x1, persistent"),
 ("mx_sz_packedu4_128x64_c1", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  f"MixedGemm<Shape<_128,_64,_64>, Shape<_1,_1,_1>, {U4SZ}, LayoutWP>::Gemm",
  "the library's int4 (packed W, uint4, zeros z - 8 s), tile 128x64x64 (gemm_cutlass tile 0), cooperative, persistent"),
 ("mx_sz_packedu4_128x32_c1", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  f"MixedGemm<Shape<_128,_32,_64>, Shape<_1,_1,_1>, {U4SZ}, LayoutWP>::Gemm",
  "the library's int4, tile 128x32x64 (more tiles at M <= 128), cooperative, persistent"),
 ("mx_sz_packedu4_128x64_c2", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  f"MixedGemm<Shape<_128,_64,_64>, Shape<_2,_1,_1>, {U4SZ}, LayoutWP>::Gemm",
  "the library's int4, tile 128x64x64, cluster 2x1x1 (the activation tile multicast to two weight-row CTAs), cooperative"),
 ("mx_sz_packedu4_128x128_c2", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  f"MixedGemm<Shape<_128,_128,_64>, Shape<_2,_1,_1>, {U4SZ}, LayoutWP>::Gemm",
  "the library's int4, tile 128x128x64, cluster 2x1x1 (activation multicast), cooperative"),
 ("mx_sz_packedu4_64x128_pp", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  f"MixedGemm<Shape<_64,_128,_64>, Shape<_1,_1,_1>, {U4SZ}, LayoutWP, void, ElemX, {PP}>::Gemm",
  "the library's int4, tile 64x128x64, ping-pong (a warpgroup per tile, mainloop over the other's epilogue)"),
 ("mx_sz_packedu4_64x64_pp", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  f"MixedGemm<Shape<_64,_64,_64>, Shape<_1,_1,_1>, {U4SZ}, LayoutWP, void, ElemX, {PP}>::Gemm",
  "the library's int4, tile 64x64x64, ping-pong"),
 # name, kind, weight order (W_PLAIN / W_SHUFFLED / W_PACKED), streamk, gemm type expr, desc
 ("f16_128x128_c1", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>>::Gemm",
  "fp16 x fp16 baseline, KernelScheduleAuto (-> TmaWarpSpecializedCooperative), tile 128x128x64, cluster 1x1x1, persistent"),
 ("f16_128x256_c1", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_256,_64>, Shape<_1,_1,_1>>::Gemm",
  "fp16 x fp16 baseline, KernelScheduleAuto (-> TmaWarpSpecializedCooperative), tile 128x256x64, cluster 1x1x1, persistent"),
 ("f16_128x128_c2", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_128,_64>, Shape<_2,_1,_1>>::Gemm",
  "fp16 x fp16 baseline, KernelScheduleAuto (-> TmaWarpSpecializedCooperative), tile 128x128x64, cluster 2x1x1 (X tile multicast), persistent"),
 ("mx_s_shuf_128x128_c1", "KIND_MIXED_S", "W_SHUFFLED", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWR>::Gemm",
  "int4 x fp16 mixed, scale-only, shuffled W, tile 128x128x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_s_shuf_128x256_c1", "KIND_MIXED_S", "W_SHUFFLED", "false",
  "MixedGemm<Shape<_128,_256,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWR>::Gemm",
  "int4 x fp16 mixed, scale-only, shuffled W, tile 128x256x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_s_shuf_128x64_c1", "KIND_MIXED_S", "W_SHUFFLED", "false",
  "MixedGemm<Shape<_128,_64,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWR>::Gemm",
  "int4 x fp16 mixed, scale-only, shuffled W, tile 128x64x64, cluster 1x1x1, cooperative, persistent (small-M candidate)"),
 ("mx_s_shuf_128x128_c2", "KIND_MIXED_S", "W_SHUFFLED", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_2,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWR>::Gemm",
  "int4 x fp16 mixed, scale-only, shuffled W, tile 128x128x64, cluster 2x1x1 (X tile multicast), cooperative, persistent"),
 ("mx_s_packed_128x128_c1", "KIND_MIXED_S", "W_PACKED", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWP>::Gemm",
  "int4 x fp16 mixed, scale-only, bitblas_jax's packed W (read as it is), tile 128x128x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_s_packed_128x256_c1", "KIND_MIXED_S", "W_PACKED", "false",
  "MixedGemm<Shape<_128,_256,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWP>::Gemm",
  "int4 x fp16 mixed, scale-only, bitblas_jax's packed W (read as it is), tile 128x256x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_sz_packedu4_128x128_c1", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<cutlass::uint4b_t, ElemS, ElemZ>, LayoutWP>::Gemm",
  "bitblas_jax's int4 as it is: packed W, offset-binary codes as uint4 with zeros z - 8 s, tile 128x128x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_sz_packedu4_128x256_c1", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  "MixedGemm<Shape<_128,_256,_64>, Shape<_1,_1,_1>, cute::tuple<cutlass::uint4b_t, ElemS, ElemZ>, LayoutWP>::Gemm",
  "bitblas_jax's int4 as it is: packed W, offset-binary codes as uint4 with zeros z - 8 s, tile 128x256x64, cluster 1x1x1, cooperative, persistent"),
 ("bf16_128x128_c1", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cutlass::gemm::collective::KernelScheduleAuto, cutlass::bfloat16_t>::Gemm",
  "bf16 x bf16 baseline, KernelScheduleAuto, tile 128x128x64, cluster 1x1x1, persistent"),
 ("bf16_128x256_c1", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_256,_64>, Shape<_1,_1,_1>, cutlass::gemm::collective::KernelScheduleAuto, cutlass::bfloat16_t>::Gemm",
  "bf16 x bf16 baseline, KernelScheduleAuto, tile 128x256x64, cluster 1x1x1, persistent"),
 ("mx_sz_packedu4_bf16_128x128_c1", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<cutlass::uint4b_t, cutlass::bfloat16_t, cutlass::bfloat16_t>, LayoutWP, void, cutlass::bfloat16_t>::Gemm",
  "bitblas_jax's int4 as it is under bf16 activations (packed W, uint4 codes, zeros z - 8 s), tile 128x128x64, cooperative, persistent"),
 ("mx_sz_packedu4_bf16_128x256_c1", "KIND_MIXED_SZ", "W_PACKED_U4", "false",
  "MixedGemm<Shape<_128,_256,_64>, Shape<_1,_1,_1>, cute::tuple<cutlass::uint4b_t, cutlass::bfloat16_t, cutlass::bfloat16_t>, LayoutWP, void, cutlass::bfloat16_t>::Gemm",
  "bitblas_jax's int4 as it is under bf16 activations (packed W, uint4 codes, zeros z - 8 s), tile 128x256x64, cooperative, persistent"),
 ("mx_s_plain_128x128_c1", "KIND_MIXED_S", "W_PLAIN", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutA>::Gemm",
  "int4 x fp16 mixed, scale-only, plain K-major W (no reorder), tile 128x128x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_sz_shuf_128x128_c1", "KIND_MIXED_SZ", "W_SHUFFLED", "false",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS, ElemZ>, LayoutWR>::Gemm",
  "int4 x fp16 mixed, scale+zero (w = q*s + z), shuffled W, tile 128x128x64, cluster 1x1x1, cooperative, persistent"),
 ("mx_s_shuf_128x128_sk", "KIND_MIXED_S", "W_SHUFFLED", "true",
  "MixedGemm<Shape<_128,_128,_64>, Shape<_1,_1,_1>, cute::tuple<ElemW, ElemS>, LayoutWR, cutlass::gemm::StreamKScheduler>::Gemm",
  "int4 x fp16 mixed, scale-only, shuffled W, tile 128x128x64, cluster 1x1x1, cooperative, stream-K scheduler (heuristic decomposition)"),
]
os.makedirs(os.path.join(HERE, "variants"), exist_ok=True)
names = []
for name, kind, order, sk, gexpr, desc in variants:
    bf16 = "true" if "bfloat16" in gexpr else "false"
    src = f'''// Variant {name}: {desc}
#include "../common.hpp"
using namespace bench;
namespace {{
using G = {gexpr};
void run_v(const Problem& p, Result& r) {{ bench::bench<G, {kind}, {order}, {sk}, {bf16}>(p, r); }}
}}  // namespace
bench::Variant variant_{name}() {{
  return {{"{name}", "{desc}", {kind}, &run_v, {sk}, {bf16}}};
}}
'''
    path = os.path.join(HERE, "variants", f"v_{name}.cu")
    if not os.path.exists(path) or open(path).read() != src:
        open(path, "w").write(src)
    names.append(name)
reg = "// Generated list of variants (order = run order; fp16 baselines first).\n#define VARIANT_LIST(X) \\\n" + " \\\n".join(f"  X({n})" for n in names) + "\n"
lp = os.path.join(HERE, "variants", "variant_list.hpp")
if not os.path.exists(lp) or open(lp).read() != reg:
    open(lp, "w").write(reg)
