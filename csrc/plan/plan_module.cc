// The pybind11 module _bitblas_plan: csrc/include/bitblas_jax/plan.h for Python. Built on every
// install (no CUDA needed), so the plan of the CUDA backend is the same object on a machine without a
// GPU, where tests check it, and in the process that launches the kernels.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bitblas_jax/plan.h"

namespace py = pybind11;
namespace bp = bitblas_jax::plan;

namespace {

py::dict as_dict(const bp::Plan& p) {
  py::dict d;
  d["kernel"] = bp::kernel_name(p.kernel);
  d["kernel_id"] = static_cast<int>(p.kernel);
  d["tile"] = p.tile;
  d["tail_tile"] = p.tail_tile;
  d["split_k"] = p.split_k;
  d["stage_k"] = p.stage_k;
  d["workspace_bytes"] = p.workspace_bytes;
  return d;
}

bp::Kernel kernel_by_name(const std::string& name) {
  for (int k = 0; k < bp::kNumKernels; ++k)
    if (name == bp::kernel_name(static_cast<bp::Kernel>(k))) return static_cast<bp::Kernel>(k);
  throw py::value_error("unknown kernel '" + name + "'");
}

// (weight rows, activation rows) of a GEMM tile; decode kernels: (n8 blocks, tiles per chunk).
py::tuple tile_dims(const std::string& kernel, int tile) {
  const bp::Kernel k = kernel_by_name(kernel);
  if (k == bp::Kernel::kGemmMma && tile >= 0 && tile < bp::kNumMmaTiles)
    return py::make_tuple(bp::kMmaTiles[tile].weight_rows, bp::kMmaTiles[tile].act_rows);
  if (k == bp::Kernel::kGemmWgmma && tile >= 0 && tile < bp::kNumWgmmaTiles)
    return py::make_tuple(bp::kWgmmaTiles[tile].weight_rows, bp::kWgmmaTiles[tile].act_rows);
  if (k == bp::Kernel::kGemmCutlass && tile >= 0 && tile < bp::kNumCutlassTiles)
    return py::make_tuple(bp::kCutlassTiles[tile].weight_rows, bp::kCutlassTiles[tile].act_rows);
  if (k == bp::Kernel::kDecode && tile >= 0 && tile < bp::kNumDecodeShapes)
    return py::make_tuple(bp::kDecodeShapes[tile].n8_blocks, bp::kDecodeShapes[tile].tiles);
  throw py::value_error("no tile " + std::to_string(tile) + " for kernel '" + kernel + "'");
}

}  // namespace

PYBIND11_MODULE(_bitblas_plan, m) {
  m.doc() = "The kernel plan of bitblas_jax's CUDA backend (csrc/include/bitblas_jax/plan.h)";
  m.def(
      "make_plan",
      [](int64_t M, int64_t N, int64_t K, int bits, bool accum_f32, int mode, int64_t group_size, bool sm90,
         bool a_aligned, int num_sms, int64_t decode_max_m, int64_t decode_splitk_max_m, int64_t mma_max_m,
         int64_t wgmma_max_m, int w_format, bool out_is_act, bool gemm_cutlass, int64_t cutlass_min_m,
         int64_t cutlass_max_m, int64_t cutlass_max_split, int cutlass_stream_k, bool cutlass_in_kernel_split,
         bool decode_cluster_split) {
        if (w_format < 0 || w_format >= bitblas_jax::kNumWFormats) throw py::value_error("bad w_format id");
        bp::PlanQuery q;
        q.M = M, q.N = N, q.K = K, q.bits = bits, q.accum_f32 = accum_f32, q.mode = mode;
        q.group_size = group_size, q.sm90 = sm90, q.a_aligned = a_aligned, q.num_sms = num_sms;
        q.decode_max_m = decode_max_m, q.decode_splitk_max_m = decode_splitk_max_m;
        q.mma_max_m = mma_max_m, q.wgmma_max_m = wgmma_max_m;
        q.w_format = static_cast<bitblas_jax::WFormat>(w_format), q.out_is_act = out_is_act;
        q.gemm_cutlass = gemm_cutlass, q.cutlass_min_m = cutlass_min_m, q.cutlass_max_m = cutlass_max_m;
        if (cutlass_stream_k < 0 || cutlass_stream_k > 2) throw py::value_error("cutlass_stream_k: 0, 1 or 2");
        q.cutlass_max_split = cutlass_max_split, q.cutlass_stream_k = static_cast<bp::CutlassStreamK>(cutlass_stream_k);
        q.cutlass_in_kernel_split = cutlass_in_kernel_split, q.decode_cluster_split = decode_cluster_split;
        return as_dict(bp::make_plan(q));
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("bits"), py::arg("accum_f32"), py::arg("mode"),
      py::arg("group_size"), py::arg("sm90"), py::arg("a_aligned"), py::arg("num_sms"), py::arg("decode_max_m"),
      py::arg("decode_splitk_max_m"), py::arg("mma_max_m"), py::arg("wgmma_max_m"), py::arg("w_format"),
      py::arg("out_is_act"), py::arg("gemm_cutlass"), py::arg("cutlass_min_m"), py::arg("cutlass_max_m"),
      py::arg("cutlass_max_split") = bp::kCutlassMaxSplit, py::arg("cutlass_stream_k") = 1,
      py::arg("cutlass_in_kernel_split") = false, py::arg("decode_cluster_split") = false,
      "The plan for one problem (plan::make_plan), as a dict.");
  m.def(
      "finish",
      [](const std::string& kernel, int tile, int64_t split_k, int64_t M, int64_t N, int64_t K, int bits, int mode,
         int64_t group_size) {
        return as_dict(bp::finish(kernel_by_name(kernel), tile, split_k, M, N, K, bits, mode, group_size));
      },
      py::arg("kernel"), py::arg("tile"), py::arg("split_k"), py::arg("M"), py::arg("N"), py::arg("K"),
      py::arg("bits"), py::arg("mode") = 0, py::arg("group_size") = 0, "What the dispatcher derives from (kernel, tile, split_k) for one problem (plan::finish).");
  m.def(
      "gemm_wgmma_a8_rows",
      [](int64_t M, int64_t N, bool rows256, int num_sms) { return bp::gemm_wgmma_a8_rows(M, N, rows256, num_sms); },
      py::arg("M"), py::arg("N"), py::arg("rows256"), py::arg("num_sms"),
      "gemm_wgmma_a8's activation rows per CTA (rows256: the kernel keeps one accumulator set).");
  m.def(
      "gemm_a8_act_tiles_along_x", [](int64_t N, int num_sms) { return bp::gemm_a8_act_tiles_along_x(N, num_sms); },
      py::arg("N"), py::arg("num_sms"),
      "gemm_wgmma_a8's grid order: whether consecutive CTAs take the activation tiles of one weight tile.");
  m.def("tile_dims", &tile_dims, py::arg("kernel"), py::arg("tile"),
        "GEMM tiles: (weight rows, activation rows); decode shapes: (n8 blocks, tiles per chunk).");
  m.def(
      "decode_smem_bytes", [](int bits, int shape, int64_t rows) { return bp::decode_smem_bytes(bits, shape, rows); },
      py::arg("bits"), py::arg("shape"), py::arg("rows"));
  m.def(
      "wgmma_stage_k", [](int bits, int act_rows) { return bp::wgmma_stage_k(bits, act_rows); }, py::arg("bits"),
      py::arg("act_rows"));
  m.def(
      "wgmma_cluster_ctas", [](int64_t N, int forced) { return bp::wgmma_cluster_ctas(N, forced); }, py::arg("N"),
      py::arg("forced") = 0, "gemm_wgmma's CTAs per cluster along N (forced: BITBLAS_JAX_WGMMA_CLUSTER).");
  m.def(
      "wgmma_cluster_for_grid",
      [](int cl, int64_t grid_ctas, int64_t wave_ctas, int64_t cluster_wave_ctas) {
        return bp::wgmma_cluster_for_grid(cl, grid_ctas, wave_ctas, cluster_wave_ctas);
      },
      py::arg("cl"), py::arg("grid_ctas"), py::arg("wave_ctas"), py::arg("cluster_wave_ctas"),
      "The cluster size a launch keeps, given the GPU's CTAs at once with and without clusters.");
  m.def(
      "workspace_bytes",
      [](const std::string& kernel, int tile, int64_t split_k, int64_t M, int64_t N, int64_t K, int64_t group_size) {
        return bp::workspace_bytes(kernel_by_name(kernel), tile, split_k, M, N, K, group_size);
      },
      py::arg("kernel"), py::arg("tile"), py::arg("split_k"), py::arg("M"), py::arg("N"), py::arg("K") = 0,
      py::arg("group_size") = 0);
  m.def(
      "gemm_cutlass_takes",
      [](int w_format, bool out_is_act, bool accum_f32, int64_t group_size, int64_t N, int64_t K) {
        if (w_format < 0 || w_format >= bitblas_jax::kNumWFormats) throw py::value_error("bad w_format id");
        return bp::gemm_cutlass_takes(static_cast<bitblas_jax::WFormat>(w_format), out_is_act, accum_f32, group_size,
                                      N, K);
      },
      py::arg("w_format"), py::arg("out_is_act"), py::arg("accum_f32"), py::arg("group_size"), py::arg("N"),
      py::arg("K"), "What gemm_cutlass computes (plan::gemm_cutlass_takes; group_size resolved: K for one per row).");
  m.def(
      "gemm_cutlass_value_offset",
      [](int w_format) {
        if (w_format < 0 || w_format >= bitblas_jax::kNumWFormats) throw py::value_error("bad w_format id");
        return bp::gemm_cutlass_value_offset(static_cast<bitblas_jax::WFormat>(w_format));
      },
      py::arg("w_format"),
      "gemm_cutlass's code as converted = value + this (plan::gemm_cutlass_value_offset: int4 8, uint4 0, int8 0, "
      "uint8 -128).");
  m.def(
      "gemm_cutlass_group",
      [](int mode, int64_t group_size, int64_t K) { return bp::gemm_cutlass_group(mode, group_size, K); },
      py::arg("mode"), py::arg("group_size"), py::arg("K"),
      "The group gemm_cutlass's terms come in, K unsplit (plan::gemm_cutlass_group; group_size resolved).");
  m.def(
      "gemm_cutlass_held_terms_rows",
      [](int mode, int64_t group_size, int64_t K) { return bp::gemm_cutlass_held_terms_rows(mode, group_size, K); },
      py::arg("mode"), py::arg("group_size"), py::arg("K"),
      "The rows of the group terms a caller holds ([2, rows, N]: plan::gemm_cutlass_held_terms_rows; group_size "
      "resolved).");
  m.attr("GEMM_CUTLASS_MAX_SPLIT") = bp::kCutlassMaxSplit;
  {
    py::list stream_k;
    for (int t = 0; t < bp::kNumCutlassTiles; ++t)
      if (bp::kCutlassTiles[t].stream_k) stream_k.append(t);
    m.attr("GEMM_CUTLASS_STREAM_K_TILES") = py::tuple(stream_k);  // plan.h kCutlassTiles' stream_k
  }
  m.def(
      "gemm_cutlass_in_kernel_split_terms",
      [](int64_t M, int64_t N, int64_t K, int tile, int64_t split, int num_sms, int w_format) {
        if (tile < 0 || tile >= bp::kNumCutlassTiles || !bp::kCutlassTiles[tile].stream_k)
          throw py::value_error("tile must be a gemm_cutlass stream-K tile id");
        if (split < 2) throw py::value_error("split must be >= 2 (the in-kernel split)");
        if (w_format < 0 || w_format >= bitblas_jax::kNumWFormats) throw py::value_error("bad w_format id");
        const bool table = bp::gemm_cutlass_table_codes(static_cast<bitblas_jax::WFormat>(w_format));
        return py::make_tuple(bp::gemm_cutlass_in_kernel_split_parts_ns(M, N, K, tile, split, num_sms, table),
                              bp::gemm_cutlass_in_kernel_split_turn_bytes(tile, split));
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("tile"), py::arg("split"), py::arg("num_sms"),
      py::arg("w_format") = static_cast<int>(bitblas_jax::WFormat::kInt4),
      "The model's terms of a stream-K tile split in the kernel, (parts ns, turn bytes): its time is parts ns + "
      "GEMM_CUTLASS_IN_KERNEL_SPLIT_FIXED_NS + turn bytes / GEMM_CUTLASS_IN_KERNEL_SPLIT_BYTES_PER_NS "
      "(plan::gemm_cutlass_time_ns).");
  m.attr("GEMM_CUTLASS_IN_KERNEL_SPLIT_FIXED_NS") = bp::kCutlassInKernelSplitFixedNs;
  m.attr("GEMM_CUTLASS_IN_KERNEL_SPLIT_BYTES_PER_NS") = bp::kCutlassInKernelSplitBytesPerNs;
  m.def(
      "gemm_cutlass_choice",
      [](int64_t M, int64_t N, int64_t K, int mode, int64_t group_size, int num_sms, int64_t max_split,
         int stream_k, int w_format, bool in_kernel_split) {
        if (stream_k < 0 || stream_k > 2) throw py::value_error("stream_k: 0, 1 or 2");
        if (w_format < 0 || w_format >= bitblas_jax::kNumWFormats) throw py::value_error("bad w_format id");
        const bp::CutlassChoice c =
            bp::gemm_cutlass_choice(M, N, K, mode, group_size, num_sms, max_split,
                                    static_cast<bp::CutlassStreamK>(stream_k),
                                    bp::gemm_cutlass_table_codes(static_cast<bitblas_jax::WFormat>(w_format)),
                                    in_kernel_split);
        return py::make_tuple(c.tile, c.split);
      },
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("mode"), py::arg("group_size"), py::arg("num_sms"),
      py::arg("max_split") = bp::kCutlassMaxSplit, py::arg("stream_k") = 1,
      py::arg("w_format") = static_cast<int>(bitblas_jax::WFormat::kInt4), py::arg("in_kernel_split") = false,
      "gemm_cutlass's (tile id, split) by its model of the time for a weight of format id w_format (default "
      "int4) (plan::gemm_cutlass_choice).");
  m.def(
      "quantized_activation_kernel",
      [](int64_t M, int64_t K, int a_dtype, int w_format, int mode, int64_t group_size, bool decode_i8,
         int64_t decode_i8_max_m, bool sm90, bool gemm_mma_a8, bool widened_f16) {
        if (a_dtype < 0 || a_dtype >= bitblas_jax::kNumDTypes) throw py::value_error("bad a_dtype id");
        if (w_format < 0 || w_format >= bitblas_jax::kNumWFormats) throw py::value_error("bad w_format id");
        bp::QActQuery q;
        q.M = M, q.K = K, q.a_dtype = static_cast<bitblas_jax::DType>(a_dtype);
        q.w_format = static_cast<bitblas_jax::WFormat>(w_format), q.mode = mode, q.group_size = group_size;
        q.decode_i8 = decode_i8, q.decode_i8_max_m = decode_i8_max_m, q.sm90 = sm90;
        q.gemm_mma_a8 = gemm_mma_a8;
        q.widened_f16 = widened_f16;
        return std::string(bp::qact_kernel_name(bp::quantized_activation_kernel(q)));
      },
      py::arg("M"), py::arg("K"), py::arg("a_dtype"), py::arg("w_format"), py::arg("mode"), py::arg("group_size"),
      py::arg("decode_i8"), py::arg("decode_i8_max_m"), py::arg("sm90") = false, py::arg("gemm_mma_a8") = false,
      py::arg("widened_f16") = false,
      "The GPU path of int8 / float8 activations (plan::quantized_activation_kernel), by name.");
  m.def(
      "a8_kernel_scales",
      [](int mode, int64_t group_size, int64_t K) { return bp::a8_kernel_scales(mode, group_size, K); },
      py::arg("mode"), py::arg("group_size"), py::arg("K"),
      "Whether the 8-bit kernels apply the group scales in their main loop (else a per-channel scale in "
      "their epilogue): plan::a8_kernel_scales.");
  py::list names;
  for (int k = 0; k < bp::kNumKernels; ++k) names.append(bp::kernel_name(static_cast<bp::Kernel>(k)));
  m.attr("KERNELS") = names;
  py::list qact_names;
  for (int k = 0; k < bp::kNumQActKernels; ++k)
    qact_names.append(bp::qact_kernel_name(static_cast<bp::QActKernel>(k)));
  m.attr("QUANTIZED_ACTIVATION_KERNELS") = qact_names;
}
