#!/usr/bin/env python3
"""Generates variants/v_<name>.cu (one GEMM instantiation per translation unit, so the build parallelizes)
and variants/variant_list.hpp. Edit the table and rerun to add/remove variants."""
import os
HERE = os.path.dirname(os.path.abspath(__file__))
PP = "cutlass::gemm::KernelTmaWarpSpecializedPingpong"


def packed_u4(m, n, cluster_m=1, pingpong=False, note="", streamk=False):
    """The library's own int4 (its packed weight, offset-binary codes read as uint4, zeros z - 8 s) in tile m x n."""
    name = f"mx_sz_packedu4_{m}x{n}_" + ("pp" if pingpong else f"c{cluster_m}") + ("_sk" if streamk else "")
    sched = f", void, ElemX, {PP}" if pingpong else (", cutlass::gemm::StreamKScheduler" if streamk else "")
    expr = (f"MixedGemm<Shape<_{m},_{n},_64>, Shape<_{cluster_m},_1,_1>, cute::tuple<cutlass::uint4b_t, ElemS, ElemZ>, "
            f"LayoutWP{sched}>::Gemm")
    desc = (f"the library's int4 (packed W, uint4 codes, zeros z - 8 s), tile {m}x{n}x64, cluster {cluster_m}x1x1, "
            + ("ping-pong" if pingpong else "cooperative") + (", stream-K" if streamk else ", persistent")
            + (f" ({note})" if note else ""))
    return (name, "KIND_MIXED_SZ", "W_PACKED_U4", "true" if streamk else "false", expr, desc)


variants = [
 # name, kind, weight order (W_PLAIN / W_SHUFFLED / W_PACKED), streamk, gemm type expr, desc
 # small M (64-256): the library's configuration in other tiles, clusters and schedules, beside fp16 baselines
 ("f16_128x64_c1", "KIND_F16", "W_PLAIN", "false",
  "F16Gemm<Shape<_128,_64,_64>, Shape<_1,_1,_1>>::Gemm",
  "fp16 x fp16 baseline, KernelScheduleAuto, tile 128x64x64, cluster 1x1x1, persistent"),
 ("f16_64x128_pp", "KIND_F16", "W_PLAIN", "false",
  f"F16Gemm<Shape<_64,_128,_64>, Shape<_1,_1,_1>, {PP}>::Gemm",
  "fp16 x fp16 baseline, ping-pong, tile 64x128x64, cluster 1x1x1, persistent"),
 packed_u4(128, 64, note="gemm_cutlass tile 0"),
 packed_u4(128, 32, note="more tiles at M <= 128"),
 packed_u4(128, 64, cluster_m=2, note="the activation tile multicast to two weight-row CTAs"),
 packed_u4(128, 128, cluster_m=2, note="the activation tile multicast to two weight-row CTAs"),
 packed_u4(64, 128, pingpong=True, note="a consumer warpgroup per tile, its mainloop over the other's epilogue"),
 packed_u4(64, 64, pingpong=True),
 # decode sizes (M = 8-32; --m 8,16,32): fewer activation rows per tile, 256-row tiles for one wave on large layers
 packed_u4(256, 64, note="gemm_cutlass tile 5"),
 packed_u4(128, 16, note="decode sizes"),
 packed_u4(256, 16, note="decode sizes"),
 packed_u4(256, 32, note="decode sizes"),
 packed_u4(128, 16, streamk=True, note="decode sizes, stream-K"),
 packed_u4(64, 16, pingpong=True, note="decode sizes"),
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
