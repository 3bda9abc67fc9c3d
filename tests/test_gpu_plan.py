"""The CUDA backend's plan rule (runs without a GPU): which kernel and tile each shape gets, and that the
plan Python hands the custom call is exactly what the C++ dispatcher derives from it."""
from __future__ import annotations

import itertools
import os
import re

import pytest

from bitblas_jax import _bitblas_plan, formats
from bitblas_jax import gpu_plan as gp


def plan(M, N=8192, K=8192, fmt="int4", accum="float32", mode="scale", group=128, sm90=False, gemm_cutlass=False,
         **kw):
    return gp.plan_cuda(M, N, K, fmt, "float16", accum, "float16", mode, group, sm90=sm90, gemm_cutlass=gemm_cutlass,
                        **kw)


def kernel(M, **kw):
    return plan(M, **kw).kernel


def dims(M, **kw):
    return gp.tile_dims(plan(M, **kw))


# ---- the rule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("M", [1, 4, 16])
@pytest.mark.parametrize("fmt", ["int4", "int8", "nf4", "float8_e4m3fn", "float16"])
def test_decode_sizes_run_the_decode_kernel_without_workspace(M, fmt):
    mode, group = ("none", -1) if fmt == "float16" else ("scale", 128)
    p = plan(M, fmt=fmt, mode=mode, group=group)
    assert (p.kernel, p.split_k, p.workspace_bytes) == ("decode", 1, 0)


def test_decode_shapes_follow_the_activation_rows():
    # int4: four tiles per warp at one row, two up to 5 rows, then (activations fill the shared
    # memory) the two-n8-block shape with two stages
    assert dims(1) == (1, 4) and dims(2) == (1, 2) and dims(5) == (1, 2)
    assert dims(6) == (2, 2) and dims(16) == (2, 2)
    assert kernel(8, fmt="int2") == "decode"
    # torch: 16-row slices and a remainder slice with its own shape
    p = plan(20, allow_xla_dot=False)
    assert p.kernel == "decode" and p.tail_tile == 1 and _bitblas_plan.tile_dims("decode", p.tail_tile) == (1, 2)


def test_decode_limits_fall_back_to_decode_splitk():
    assert kernel(1, accum="float16") == "decode_splitk"
    assert kernel(1, K=4096, group=8) == "decode_splitk"        # groups not whole packed tiles
    assert kernel(1, K=4096, group=32) == "decode_splitk"       # int4 tiles are 64 wide
    assert kernel(1, fmt="int8", K=4096, group=32) == "decode"  # int8 tiles are 32 wide
    assert kernel(1, mode="original", K=65536, group=64) == "decode"   # scales are not staged in smem
    p = plan(1, accum="float16")
    assert p.split_k > 1 and p.workspace_bytes > 0


def test_decode_cluster_split(monkeypatch):
    """Where decode's 32-row CTAs leave resident slots empty on an sm_90 GPU (two CTAs per SM), a cluster of CTAs
    shares each 32 rows' K (BITBLAS_JAX_DECODE_CLUSTER_SPLIT=1): at most 4, every part at least 8 warp chunks, no
    workspace; off by default, off before sm_90 and where the grid fills the slots."""
    hop = dict(sm90=True, sms=132)
    assert plan(1, N=4096, K=4096, **hop).split_k == 1                  # off by default
    monkeypatch.setenv("BITBLAS_JAX_DECODE_CLUSTER_SPLIT", "1")
    for M, N, K, fmt, split in ((1, 4096, 4096, "int4", 2),            # 128 CTAs for 264 slots
                                (16, 4096, 14336, "int4", 2), (1, 3584, 18944, "int4", 2),
                                (8, 1024, 4096, "int4", 4),             # 32 CTAs: the largest cluster
                                (1, 1024, 4096, "int4", 2),             # 16 warp chunks of 4 tiles: two parts
                                (1, 2048, 2048, "int4", 1),             # 8 warp chunks: one part
                                (1, 1024, 4096, "int8", 4), (4, 4096, 4096, "int2", 2),
                                (1, 8192, 8192, "int4", 1),             # 256 CTAs fill the slots
                                (1, 14336, 4096, "int4", 1)):
        p = plan(M, N=N, K=K, fmt=fmt, **hop)
        assert (p.kernel, p.split_k, p.workspace_bytes) == ("decode", split, 0), (M, N, K, fmt, p)
        assert plan(M, N=N, K=K, fmt=fmt, sm90=False, sms=132).split_k == 1
    assert plan(1, N=4096, K=4096, sms=64, sm90=True).split_k == 1     # 64 SMs: 128 CTAs fill their slots
    for bad in ("2", "on"):
        monkeypatch.setenv("BITBLAS_JAX_DECODE_CLUSTER_SPLIT", bad)
        with pytest.raises(ValueError, match="BITBLAS_JAX_DECODE_CLUSTER_SPLIT"):
            plan(1, N=4096, K=4096, **hop)


@pytest.mark.parametrize("M", [256, 1024, 4096])
def test_large_m_dequantizes_then_uses_xla_dot(M):
    assert kernel(M) == "dequantize_then_dot"
    # the torch shim has no XLA dot: it gets a GEMM instead
    assert kernel(M, allow_xla_dot=False) == "gemm_mma"


def test_gemm_mma_up_to_64_rows_without_hopper():
    assert kernel(17) == "gemm_mma" and plan(17).split_k == 4
    assert kernel(64) == "gemm_mma" and kernel(64, N=4096, K=4096) == "gemm_mma"
    assert kernel(65) == "dequantize_then_dot"
    # the wide tile (256 weight rows) once its tiles alone about fill the GPU
    assert dims(32) == (128, 32) and dims(32, N=28672) == (256, 32)
    assert dims(64, N=28672, allow_xla_dot=False) == (256, 64)
    assert dims(128, allow_xla_dot=False) == (128, 64) and dims(256, allow_xla_dot=False) == (256, 64)
    # groups that end inside packed tiles take the groups-in-tiles tile
    assert dims(64, K=4096, group=32) == (128, 32) and kernel(64, K=4096, group=32) == "gemm_mma"


def test_hopper_runs_gemm_wgmma_up_to_512_or_1024_rows_by_layer_size():
    assert kernel(17, sm90=True) == "gemm_wgmma" and plan(17, sm90=True).split_k == 4
    assert dims(256, sm90=True) == (128, 128)
    assert dims(256, N=28672, sm90=True) == (128, 256)       # 224 tall tiles
    assert dims(512, sm90=True) == (128, 256)                # 128 tall tiles: about one wave
    assert dims(512, N=4096, K=4096, sm90=True) == (128, 128)
    assert dims(1024, sm90=True) == (128, 256)               # from 4096 x 8192 weights: up to 1024
    assert kernel(1025, sm90=True) == "dequantize_then_dot"
    assert kernel(1024, N=4096, K=11008, sm90=True) == "gemm_wgmma"
    assert kernel(4096, N=28672, sm90=True) == "dequantize_then_dot"
    assert kernel(513, N=4096, K=6144, sm90=True) == "dequantize_then_dot"   # below 4096 x 8192: 512
    assert kernel(512, N=4096, K=4096, sm90=True) == "gemm_wgmma"            # from 4096 x 4096
    assert kernel(513, N=4096, K=4096, sm90=True) == "dequantize_then_dot"
    assert kernel(64, N=1024, K=4096, sm90=True) == "gemm_wgmma"             # smaller layers: 64
    assert kernel(65, N=1024, K=4096, sm90=True) == "dequantize_then_dot"
    # split-K: about one wave, none once the fp32 partials would pass 8 MB
    assert plan(64, sm90=True).split_k == 4 and plan(256, sm90=True).split_k == 1
    assert plan(32, N=28672, sm90=True).split_k == 1


def test_gemm_wgmma_needs_fp32_accumulation_whole_tile_groups_aligned_a_and_whole_stages():
    torch_like = dict(sm90=True, allow_xla_dot=False)
    assert kernel(64, **torch_like) == "gemm_wgmma"
    assert kernel(64, accum="float16", **torch_like) == "gemm_mma"
    assert kernel(64, group=32, **torch_like) == "gemm_mma"
    assert kernel(64, K=8192 + 64, **torch_like) == "gemm_mma"       # 128-k stages at 64 rows
    assert kernel(64, a_aligned=False, **torch_like) == "gemm_mma"   # a torch slice off the 16-byte grid
    # 1-bit weights: the tall tile's stages do not fit, so the 128-row tile runs
    assert dims(512, fmt="int1", mode="none", group=-1, **torch_like) == (128, 128)


def test_gemm_wgmma_clusters():
    """Single CTAs by default (measured faster than pairs on the H200: plan.h kWgmmaClusterCtas); forced
    clusters of 1 / 2 / 4 as asked, never more than the CTAs along N; a grid that fits one wave of single
    CTAs but not of clusters (a GPC with an odd SM count) runs single CTAs."""
    c = _bitblas_plan.wgmma_cluster_ctas
    assert (c(128), c(144), c(256), c(8192)) == (1, 1, 1, 1)
    assert (c(144, 2), c(256, 2), c(8192, 2)) == (2, 2, 2)
    assert (c(8192, 1), c(8192, 4), c(384, 4), c(256, 4), c(128, 4)) == (1, 4, 2, 2, 1)
    g = _bitblas_plan.wgmma_cluster_for_grid
    assert g(2, 128, 132, 130) == 2          # fits both waves
    assert g(2, 132, 132, 130) == 1          # one wave alone, two with clusters
    assert g(2, 400, 132, 130) == 2          # several waves either way
    assert g(1, 132, 132, 0) == 1


def test_num_sms_follows_the_gpu(monkeypatch):
    """The waves the split-K rules count are the GPU's: BITBLAS_JAX_NUM_SMS, else the detected count (JAX's
    GPUs; the torch shim its device's), else 132. 4096^2 at M = 128 is 32 tiles of 128 x 128: on 132 SMs
    they split K 4 ways to fill the wave; on 16 SMs they already fill two waves and run whole."""
    monkeypatch.delenv("BITBLAS_JAX_NUM_SMS", raising=False)
    assert gp.num_sms(lambda: 114) == 114
    assert gp.num_sms(lambda: None) == gp.num_sms(lambda: 0) == gp.num_sms(lambda: 1 / 0) == 132
    monkeypatch.setenv("BITBLAS_JAX_NUM_SMS", "8")
    assert gp.num_sms(lambda: 114) == 8
    monkeypatch.setenv("BITBLAS_JAX_NUM_SMS", "many")
    with pytest.raises(ValueError, match="BITBLAS_JAX_NUM_SMS"):
        gp.num_sms()
    monkeypatch.delenv("BITBLAS_JAX_NUM_SMS")
    p132 = plan(128, N=4096, K=4096, sm90=True, sms=132)
    p16 = plan(128, N=4096, K=4096, sm90=True, sms=16)
    assert (p132.split_k, p16.split_k, p16.workspace_bytes) == (4, 1, 0)


# ---- gemm_cutlass --------------------------------------------------------------------------------------
def test_gemm_cutlass_rule(monkeypatch):
    """On sm_90 with gemm_cutlass built, int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights with 16-bit output and
    float32 accumulation run gemm_cutlass from gemm_cutlass_min_m() to GEMM_CUTLASS_MAX_M rows under JAX (every M
    from there under the torch shim), in every mode the format has, with groups of whole 64-k stages or one per row;
    every other call keeps its kernel. The fewest rows: integer codes above decode sizes, 4-bit ones from
    GEMM_CUTLASS_DECODE_MIN_M on layers of GEMM_CUTLASS_DECODE_LAYER weights and up (instead of decode); the table
    formats from GEMM_CUTLASS_TABLE_MIN_M."""
    cut = dict(sm90=True, gemm_cutlass=True, sms=132)
    assert (gp.GEMM_CUTLASS_DECODE_MIN_M, gp.GEMM_CUTLASS_MIN_M, gp.GEMM_CUTLASS_TABLE_MIN_M) == (6, 17, 64)
    big = dict(N=16384, K=8192, **cut)      # GEMM_CUTLASS_DECODE_LAYER weights
    assert plan(5, **big).kernel == "decode" and plan(6, **big).kernel == plan(16, **big).kernel == "gemm_cutlass"
    assert plan(16, N=16384 - 16, K=8192, **cut).kernel == "decode"   # under GEMM_CUTLASS_DECODE_LAYER weights
    assert plan(16, fmt="uint8", **big).kernel == "decode" and plan(17, fmt="int8", **big).kernel == "gemm_cutlass"
    assert plan(16, **cut).kernel == "decode" and plan(17, **cut).kernel == "gemm_cutlass"   # 8192^2
    assert plan(17, N=4096, K=4096, **cut).kernel == plan(63, N=4096, K=4096, **cut).kernel == "gemm_cutlass"
    for fmt in ("nf4", "fp4_e2m1"):
        assert plan(16, fmt=fmt, **cut).kernel == "decode" and plan(63, fmt=fmt, **cut).kernel == "gemm_wgmma"
        assert plan(64, fmt=fmt, **cut).kernel == "gemm_cutlass"
    assert plan(8, fmt="int2", **cut).kernel == "decode"      # a format gemm_cutlass does not take keeps decode
    assert plan(8, allow_xla_dot=False, **big).kernel == "gemm_cutlass"   # the torch shim: the same rule
    assert plan(20, allow_xla_dot=False, **cut).kernel == "gemm_cutlass"
    assert plan(64, **cut).kernel == plan(4096, **cut).kernel == "gemm_cutlass"
    assert plan(4097, **cut).kernel == "dequantize_then_dot"
    assert plan(100000, allow_xla_dot=False, **cut).kernel == "gemm_cutlass"
    for fmt in ("int4", "uint4", "int8", "uint8"):
        for mode in ("none", "scale", "original", "rescale", "quantized"):
            for group in ((8192,) if mode == "none" else (64, 128, 8192)):
                assert plan(256, fmt=fmt, mode=mode, group=group, **cut).kernel == "gemm_cutlass", (fmt, mode, group)
    for fmt in ("nf4", "fp4_e2m1"):
        for mode, group in (("none", 8192), ("scale", 64), ("scale", 128), ("scale", 8192)):
            assert plan(256, fmt=fmt, mode=mode, group=group, **cut).kernel == "gemm_cutlass", (fmt, mode, group)
    # what it does not take: other formats, groups inside a stage, float16 accumulation or float32 output,
    # an unaligned A (its TMA), a GPU before sm_90, or a build without it
    for fmt in ("float8_e4m3fn", "float8_e5m2", "int2", "uint1", "float16"):
        assert plan(256, fmt=fmt, **cut).kernel != "gemm_cutlass", fmt
    assert plan(256, group=32, **cut).kernel != "gemm_cutlass"
    assert plan(256, accum="float16", **cut).kernel != "gemm_cutlass"
    assert gp.plan_cuda(256, 8192, 8192, "int4", "float16", "float32", "float32", "scale", 128,
                        **cut).kernel != "gemm_cutlass"
    assert plan(256, a_aligned=False, **cut).kernel != "gemm_cutlass"
    assert plan(256, sm90=False, gemm_cutlass=True).kernel == "dequantize_then_dot"
    assert plan(256, sm90=True, gemm_cutlass=False).kernel == "gemm_wgmma"
    # the workspace: the group terms S and Z ([groups][N] of 2 bytes each), then, K split, the float32 partials
    # (the persistent tiles: stream-K's below)
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    p = plan(512, N=4096, K=6144, group=128, **cut)
    assert (p.split_k, p.stage_k, p.workspace_bytes) == (1, 64, 2 * 2 * (6144 // 128) * 4096)
    p = plan(256, N=4096, K=6144, group=128, **cut)
    assert (p.split_k, p.stage_k, p.workspace_bytes) == (2, 64, 2 * 2 * (6144 // 128) * 4096 + 2 * 256 * 4096 * 4)
    # without scales the terms come in one group per row of each part, whatever group the call names (32: not
    # a stage)
    for group in (32, 128, 6144):
        assert plan(512, N=4096, K=6144, mode="none", group=group, **cut).workspace_bytes == 2 * 2 * 1 * 4096
        assert plan(256, N=4096, K=6144, mode="none", group=group, **cut).workspace_bytes == \
            2 * 2 * 2 * 4096 + 2 * 256 * 4096 * 4


@pytest.mark.parametrize("M,N,tile", [
    # the fastest tile (weight rows x activation rows) measured on the H100 (benchmarks/cutlass_mixed_gemm, int4
    # g128): the 256-row weight tiles where they fill one wave that the 128-row ones fill and a bit
    (128, 4096, (128, 64)), (256, 4096, (128, 64)), (512, 4096, (128, 128)), (1024, 4096, (128, 256)),
    (128, 18944, (256, 128)), (256, 18944, (128, 128)), (1024, 18944, (128, 256)),
    (64, 29568, (256, 64)), (128, 29568, (256, 128)), (256, 29568, (128, 256)), (1024, 29568, (128, 256)),
    (128, 8192, (128, 64)), (256, 8192, (128, 128)), (512, 8192, (128, 256)), (256, 14336, (128, 256))])
def test_gemm_cutlass_tile_follows_the_waves(M, N, tile, monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT", "1")    # the tiles the H100 measured, K whole
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    p = plan(M, N=N, K=4096, sm90=True, gemm_cutlass=True, sms=132)
    assert p.kernel == "gemm_cutlass" and gp.tile_dims(p) == tile and p.split_k == 1


def test_gemm_cutlass_256_row_tiles_only_for_integer_codes_and_unsplit():
    """The 256-row weight tiles (plan.h kCutlassTiles 5-7) are built for integer codes and without float32 output:
    the table formats keep the 128-row tiles on the layers where int4 takes them, and no plan splits K on them."""
    cut = dict(sm90=True, gemm_cutlass=True, sms=132)
    assert gp.tile_dims(plan(128, N=29568, K=8192, fmt="int4", **cut)) == (256, 128)
    assert gp.tile_dims(plan(128, N=29568, K=8192, fmt="uint8", mode="quantized", **cut)) == (256, 128)
    for fmt in ("nf4", "fp4_e2m1"):
        for M in (64, 128):
            assert gp.tile_dims(plan(M, N=29568, K=8192, fmt=fmt, **cut))[0] == 128, (fmt, M)
    for M in (64, 65, 128, 200, 256):
        for N, K in ((29568, 8192), (4096, 4096), (18944, 3584), (1024, 8192)):
            p = plan(M, N=N, K=K, **cut)
            assert gp.tile_dims(p)[0] == 128 or p.split_k == 1, (M, N, K, p)


@pytest.mark.parametrize("M,N,K,tile,split", [
    # decode sizes: one wave of 256-row tiles where the 128-row ones would take two (256 x 32 to M = 32, then 256 x
    # 64), else the 128 x 64 tile, split where its tiles leave SMs idle
    (6, 29568, 8192, (256, 32), 1), (16, 28672, 8192, (256, 32), 1), (16, 16384, 8192, (128, 64), 1),
    (16, 8192, 28672, (128, 64), 2), (32, 29568, 8192, (256, 32), 1), (33, 29568, 8192, (256, 64), 1),
    (48, 28672, 8192, (256, 64), 1), (24, 18944, 3584, (256, 32), 1), (32, 8192, 8192, (128, 64), 2),
    (32, 4096, 4096, (128, 64), 4), (17, 3584, 18944, (128, 64), 4)])
def test_gemm_cutlass_decode_size_tiles(M, N, K, tile, split):
    p = plan(M, N=N, K=K, sm90=True, gemm_cutlass=True, sms=132)
    assert (p.kernel, gp.tile_dims(p), p.split_k) == ("gemm_cutlass", tile, split)


@pytest.mark.parametrize("M,N,K,rows,split", [
    # a fraction of a wave: K split until the tiles about fill one
    (128, 4096, 4096, 128, 4), (256, 4096, 4096, 128, 2), (65, 4096, 4096, 128, 4), (128, 8192, 8192, 128, 2),
    (65, 1024, 4096, 64, 8),
    # whole waves, or the partials' round trip costs more than the wave it saves (18944 x 3584 at M = 128: 148
    # tiles, two waves; split two ways the H100 took 5% longer)
    (512, 4096, 4096, 128, 1), (256, 18944, 3584, 128, 1), (128, 14336, 3584, 128, 1),
    (1024, 4096, 4096, 256, 1)])
def test_gemm_cutlass_splits_k_where_the_tiles_fill_part_of_a_wave(M, N, K, rows, split, monkeypatch):
    """plan.h gemm_cutlass_choice among the persistent tiles: K split into whole parts where one wave of tiles
    would leave most SMs idle (the small layers at M = 65-256), one part where the tiles already fill whole
    waves."""
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    p = plan(M, N=N, K=K, sm90=True, gemm_cutlass=True, sms=132)
    assert p.kernel == "gemm_cutlass" and (gp.tile_dims(p), p.split_k) == ((128, rows), split)


@pytest.mark.parametrize("M,N,K,tile", [
    # stream-K where the tiles fill a wave and a bit, or a few waves and a bit (the fastest of every tile and
    # split on an H100, kernel alone: gemm_cutlass_selftest --time-list)
    (128, 18944, 3584, 3), (256, 18944, 3584, 4), (512, 18944, 3584, 4), (1024, 18944, 3584, 4),
    (256, 29568, 8192, 4), (512, 29568, 8192, 4),
    (1024, 14336, 4096, 4),
    # whole waves or a fraction of one (split K there), and long rows of tiles: the persistent tiles
    (128, 4096, 4096, 1), (256, 4096, 4096, 1), (256, 8192, 8192, 1), (256, 14336, 4096, 2),
    (1024, 29568, 8192, 2), (2048, 18944, 3584, 2), (1024, 4096, 4096, 2),
    # one wave of 256-row weight tiles where the 128-row ones fill a wave and a bit (H100, kernel alone:
    # 29568 x 8192 at M = 64 68.8 us against 87.7 for 128 x 64, at M = 128 87.9 against 102.6 for 128 x 128)
    (64, 29568, 8192, 5), (128, 29568, 8192, 6), (128, 28672, 8192, 6), (64, 18944, 3584, 5)])
def test_gemm_cutlass_stream_k_where_the_last_wave_is_partly_filled(M, N, K, tile):
    """plan.h gemm_cutlass_choice among every tile: the stream-K tiles (3: 128 activation rows, 4: 256) where they
    ran fastest on the H100, the persistent ones (and K split) elsewhere."""
    p = plan(M, N=N, K=K, sm90=True, gemm_cutlass=True, sms=132)
    assert p.kernel == "gemm_cutlass" and p.tile == tile, p
    assert gp.stream_k(p) == (tile in gp.GEMM_CUTLASS_STREAM_K_TILES) and (not gp.stream_k(p) or p.split_k == 1)


def test_gemm_cutlass_choice_against_the_h100_sweep(capsys):
    """The model's choice on the H100 sweep it was fit to (benchmarks/results/h100-gemm-cutlass-sweep.log: every
    tile and split timed, kernel alone, 9 layers x 5 M, and 6 layers at M = 64): never more than 15% slower than the fastest measured
    configuration (10.5% at worst when fit)."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("gemm_cutlass_sweep", os.path.join(root, "tools", "gemm_cutlass_sweep.py"))
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    log = os.path.join(root, "benchmarks", "results", "h100-gemm-cutlass-sweep.log")
    assert sweep.check(log, sms=132, tolerance=0.15) == 0, capsys.readouterr().out
    assert "over 52 points" in capsys.readouterr().out


def test_gemm_cutlass_table_format_choice_against_the_h100_sweep(capsys):
    """nf4's choice (its register lookup slows the 64- and 128-row tiles most: plan.h table_pct) on the nf4 lines
    of the same log (every tile, six layers, M = 128..1024): within 10% of the fastest measured (8.0% at worst
    when fit); at M = 256 on 8192 x 8192 it takes the 256-row stream-K tile where int4 keeps the 128-row one."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("gemm_cutlass_sweep", os.path.join(root, "tools", "gemm_cutlass_sweep.py"))
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    log = os.path.join(root, "benchmarks", "results", "h100-gemm-cutlass-sweep.log")
    assert sweep.check(log, sms=132, tolerance=0.10, weights="nf4") == 0, capsys.readouterr().out
    assert "over 24 points" in capsys.readouterr().out
    cut = dict(sm90=True, gemm_cutlass=True, sms=132)
    assert plan(256, N=8192, K=8192, fmt="nf4", **cut).tile == 4
    assert plan(256, N=8192, K=8192, fmt="fp4_e2m1", **cut).tile == 4
    assert plan(256, N=8192, K=8192, fmt="int4", **cut).tile == 1


def test_gemm_cutlass_stream_k_env(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    p = plan(128, N=18944, K=3584, sm90=True, gemm_cutlass=True, sms=132)
    assert p.kernel == "gemm_cutlass" and not gp.stream_k(p)
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "1")
    assert gp.stream_k(plan(128, N=18944, K=3584, sm90=True, gemm_cutlass=True, sms=132))
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "2")     # only the stream-K tiles (split never)
    for M, N, K in ((128, 4096, 4096), (256, 8192, 8192), (65, 1024, 1024)):
        p = plan(M, N=N, K=K, sm90=True, gemm_cutlass=True, sms=132)
        assert gp.stream_k(p) and p.split_k == 1, (M, N, K, p)
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "yes")
    with pytest.raises(ValueError, match="BITBLAS_JAX_GEMM_CUTLASS_STREAM_K"):
        plan(128, N=18944, K=3584, sm90=True, gemm_cutlass=True, sms=132)


def test_gemm_cutlass_in_kernel_split(monkeypatch):
    """The stream-K tiles split K in the kernel (CUTLASS's split-K decomposition) where asked
    (BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT=1): parts of at least 8 stages, the workspace the group terms
    of the whole K (one batch) then a float32 partial tile and a flag pair for every output tile."""
    cut = dict(sm90=True, gemm_cutlass=True, sms=132)
    assert not gp.stream_k(plan(256, N=4096, K=4096, **cut))       # off by default
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT", "1")
    p = plan(256, N=4096, K=4096, **cut)
    assert gp.stream_k(p) and p.split_k > 1, p
    rows = gp.tile_dims(p)[1]
    tiles = (4096 // 128) * -(-256 // rows)
    terms = -(-(2 * (4096 // 128) * 4096 * 2) // 256) * 256
    partials = -(-(tiles * 128 * rows * 4) // 128) * 128 + -(-(tiles * 8) // 128) * 128
    assert p.workspace_bytes == terms + partials
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "2")
    for K in (1024, 1536, 3584, 4096, 18944):
        for M in (65, 128, 256, 512):
            p = plan(M, N=1024, K=K, **cut)
            assert gp.stream_k(p) and K // 64 >= 8 * p.split_k and p.split_k <= gp.GEMM_CUTLASS_MAX_SPLIT, (K, M, p)
    # one wave of parts at most: 148 tiles of 128 x 128 (18944 x 3584 at M = 128) never split in the kernel
    assert plan(128, N=18944, K=3584, **cut).split_k == 1
    for M, N, K in ((128, 4096, 4096), (256, 3584, 18944), (256, 8192, 8192)):
        p = plan(M, N=N, K=K, **cut)
        rows = gp.tile_dims(p)[1]
        assert (N // 128) * -(-M // rows) * p.split_k <= 132, (M, N, K, p)
    for bad in ("2", "yes"):
        monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT", bad)
        with pytest.raises(ValueError, match="BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT"):
            plan(256, N=4096, K=4096, **cut)


def test_gemm_cutlass_in_kernel_split_fit(tmp_path, capsys):
    """tools/gemm_cutlass_sweep.py --fit-in-kernel-split recovers the two constants from lines made with them
    (the model's parts plus a fixed cost and each part's turn at a given rate)."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("gemm_cutlass_sweep", os.path.join(root, "tools", "gemm_cutlass_sweep.py"))
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    lines = []
    for (N, K), M, t, s in itertools.product(((4096, 4096), (3584, 18944), (8192, 8192)), (128, 256), (3, 4), (2, 4)):
        parts, turn = _bitblas_plan.gemm_cutlass_in_kernel_split_terms(M=M, N=N, K=K, tile=t, split=s, num_sms=132)
        assert turn == s * 128 * _bitblas_plan.tile_dims("gemm_cutlass", t)[1] * 4    # float32 partial tiles
        us = (parts + 2500 + turn / 150) / 1e3
        lines.append(f"time gemm_cutlass fp16 int4 g128 M={M} N={N} K={K} tile {t} split {s}: {us:.4f} us, 1 TFLOP/s")
    log = tmp_path / "sweep.log"
    log.write_text("\n".join(lines) + "\n")
    assert sweep.fit_in_kernel_split(str(log), sms=132) == 0
    out = capsys.readouterr().out
    fixed, bw = map(float, re.search(r"fixed (-?\d+) ns, (\d+) bytes per ns", out).groups())
    assert abs(fixed - 2500) < 50 and abs(bw - 150) < 3, out


def test_gemm_cutlass_split_parts_are_whole():
    """Every part of a split K is whole 64-k stages and whole groups of the terms (per-channel and mode none:
    one group per part); the choice never exceeds the cap nor splits with the 256-row tile."""
    cut = dict(sm90=True, gemm_cutlass=True, sms=132)
    for K in (1024, 1536, 3584, 4096, 4160, 11008, 14336):
        for mode, group in (("scale", 64), ("scale", 128), ("scale", K), ("none", K), ("original", 1024 if K % 1024 == 0 else 64)):
            if K % group:
                continue
            for M in (65, 128, 256):
                p = plan(M, N=1024, K=K, mode=mode, group=group, **cut)
                assert p.kernel == "gemm_cutlass"
                part = K // p.split_k
                assert K % p.split_k == 0 and part % 64 == 0 and 1 <= p.split_k <= gp.GEMM_CUTLASS_MAX_SPLIT
                assert group == K or mode == "none" or part % group == 0, (K, mode, group, M, p.split_k)
                assert p.split_k == 1 or gp.tile_dims(p)[1] <= 128


def test_gemm_cutlass_max_split_env(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT", "2")
    assert plan(128, N=4096, K=4096, sm90=True, gemm_cutlass=True, sms=132).split_k == 2
    for bad in ("0", "9", "x", ""):
        monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT", bad)
        with pytest.raises(ValueError, match="BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT"):
            plan(128, N=4096, K=4096, sm90=True, gemm_cutlass=True, sms=132)


def test_gemm_cutlass_env_override(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS", "1")
    assert gp.gemm_cutlass_runs(lambda: False) and plan(256, sm90=True, gemm_cutlass=None).kernel == "gemm_cutlass"
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS", "0")
    assert not gp.gemm_cutlass_runs(lambda: True) and plan(256, sm90=True, gemm_cutlass=None).kernel == "gemm_wgmma"
    monkeypatch.delenv("BITBLAS_JAX_GEMM_CUTLASS")
    assert gp.gemm_cutlass_runs(lambda: True) and not gp.gemm_cutlass_runs(lambda: False)
    from bitblas_jax import _ext
    assert gp.gemm_cutlass_runs() == _ext.has_cutlass()


def test_hopper_env_override(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", "1")
    assert gp.hopper(lambda: False) and plan(64, sm90=None).kernel == "gemm_wgmma"
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", "0")
    assert not gp.hopper(lambda: True) and plan(64, sm90=None).kernel == "gemm_mma"
    monkeypatch.delenv("BITBLAS_JAX_HOPPER")
    assert gp.hopper(lambda: True) and not gp.hopper(lambda: False)


def test_gemm_max_m_env_override(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "4096")
    assert kernel(4096) == "gemm_mma" and kernel(4096, sm90=True) == "gemm_wgmma"
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "0")
    assert kernel(17) == "dequantize_then_dot" and kernel(16) == "decode"


# ---- int8 / float8 activations ----------------------------------------------------------------------
def qact(M, w="int4", mode="scale", group=128, K=6144, a_dtype="int8", decode_i8=True, sm90=False,
         gemm_mma_a8=False, widened_f16=False):
    return gp.quantized_activation_kernel(a_dtype, w, mode, K if group == -1 else group, M, K, decode_i8=decode_i8,
                                          sm90=sm90, gemm_mma_a8=gemm_mma_a8, widened_f16=widened_f16)


@pytest.mark.parametrize("w", formats.QUANTIZED_A["int8"]["W"])
@pytest.mark.parametrize("mode,group", [("none", -1), ("scale", -1), ("scale", 32), ("scale", 96), ("scale", 128)])
def test_int8_activations_at_decode_sizes_run_decode_i8(w, mode, group):
    """Every weight format of int8 activations, modes none / scale with groups of whole 32-k mma steps:
    decode_i8 for M = 1 .. 16 on an sm_80+ GPU, XLA's dots above and where it cannot run."""
    assert gp.DECODE_I8_MAX_M == 16
    for M in range(1, gp.DECODE_I8_MAX_M + 1):
        assert qact(M, w, mode, group) == "decode_i8", M
    assert qact(gp.DECODE_I8_MAX_M + 1, w, mode, group) == "xla_dot"
    assert qact(1, w, mode, group, decode_i8=False) == "xla_dot"
    assert qact(0, w, mode, group) == "xla_dot"


@pytest.mark.parametrize("w,mode,group,a_dtype", [
    ("int4", "original", 128, "int8"), ("uint4", "rescale", 64, "int8"), ("int2", "quantized", 128, "int8"),
    ("int4", "scale", 16, "int8"), ("int8", "scale", 48, "int8"), ("int8", "scale", 8, "int8"),
    ("float8_e4m3fn", "scale", 128, "float8_e4m3fn"), ("int4", "scale", 128, "float8_e5m2"),
    ("float8_e5m2", "none", -1, "float8_e4m3fn"),
])
def test_what_decode_i8_does_not_compute_stays_on_xla_dots(w, mode, group, a_dtype):
    """Zeros modes, groups that end inside a 32-k mma step, float8 activations: XLA's exact dots."""
    for M in (1, 16):
        assert qact(M, w, mode, group, a_dtype=a_dtype) == "xla_dot"


@pytest.mark.parametrize("w", formats.QUANTIZED_A["int8"]["W"])
@pytest.mark.parametrize("mode,group", [("none", -1), ("scale", -1), ("scale", 128), ("scale", 64), ("scale", 256),
                                        ("original", 128)])
def test_int8_activations_above_decode_sizes_run_gemm_wgmma_a8_on_hopper(w, mode, group):
    """On an sm_90 GPU, int8 activations past the decode regime with int8 / int4 / uint4 weights and mode
    none, per-channel scales or groups of 128 run gemm_wgmma_a8; other groups, zeros, other formats and
    K off its 128-k stage stay on XLA's dots, and so does everything without sm_90."""
    takes = w in ("int8", "int4", "uint4") and (mode == "none" or (mode == "scale" and group in (-1, 128)))
    for M in (17, 64, 1024, 100000):
        assert qact(M, w, mode, group, sm90=True) == ("gemm_wgmma_a8" if takes else "xla_dot"), M
        assert qact(M, w, mode, group, sm90=False) == "xla_dot"
    assert qact(16, w, mode, group, sm90=True) != "gemm_wgmma_a8"
    assert qact(64, w, mode, group, K=6144 + 64, sm90=True) == "xla_dot" or w not in ("int8", "int4", "uint4")


@pytest.mark.parametrize("a_dtype", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("w", formats.QUANTIZED_A["float8_e4m3fn"]["W"])
@pytest.mark.parametrize("mode,group", [("none", -1), ("scale", -1), ("scale", 128), ("scale", 256), ("scale", 384),
                                        ("scale", 64), ("original", 128), ("quantized", 128)])
def test_float8_activations_above_decode_sizes_run_gemm_wgmma_a8_on_hopper(a_dtype, w, mode, group):
    """On an sm_90 GPU, float8 activations past the decode regime with float8 / int4 weights and mode none,
    per-channel scales or groups of whole 128-k stages (dividing K) run gemm_wgmma_a8; groups inside a
    stage and the zeros modes stay on XLA's dots, and so does everything without sm_90 or at M <= 16."""
    K = 6144                                         # 384 divides it: 3 stages a group
    takes = mode == "none" or (mode == "scale" and (group == -1 or group % 128 == 0))
    for M in (17, 64, 1024, 100000):
        assert qact(M, w, mode, group, K=K, a_dtype=a_dtype, sm90=True) == ("gemm_wgmma_a8" if takes else "xla_dot")
        assert qact(M, w, mode, group, K=K, a_dtype=a_dtype, sm90=False) == "xla_dot"
    for M in (1, 16):
        assert qact(M, w, mode, group, K=K, a_dtype=a_dtype, sm90=True) == "xla_dot"
    assert qact(64, w, "scale", 256, K=6144 + 128, a_dtype=a_dtype, sm90=True) == "xla_dot"    # 256 does not divide K
    assert qact(64, w, "none", -1, K=6144 + 64, a_dtype=a_dtype, sm90=True) == "xla_dot"      # K off the stage


def test_a8_kernels_who_scales():
    """Which part of the 8-bit kernels applies mode scale (gpu_plan.a8_kernel_scales, plan.h): groups
    smaller than K in the main loop; per-channel scales (group = K) in the epilogue; mode none: none."""
    K = 1024
    assert not gp.a8_kernel_scales("none", K, K)
    assert not gp.a8_kernel_scales("scale", K, K)
    assert gp.a8_kernel_scales("scale", 128, K)
    assert gp.a8_kernel_scales("scale", 256, K)


@pytest.mark.parametrize("M, N, rows256, rows", [
    (1, 4096, True, 64), (64, 4096, True, 64), (65, 4096, True, 128), (128, 29568, True, 128),
    (256, 4096, True, 128),     # 32 CTAs of 256 rows in one round take 1.31x 64 of 128 in one round
    (512, 4096, True, 128),     # 64 of 256 vs 128 of 128: one round each
    (1024, 4096, True, 256),    # 128 of 256 in one round vs 256 of 128 in two
    (256, 18944, True, 256),    # 148 of 256 in two rounds (2.62) vs 296 of 128 in three
    (1024, 18944, True, 256), (4096, 8192, True, 256),
    (1024, 18944, False, 128),  # group scales / float8: two accumulator sets, at most 128 rows
])
def test_gemm_wgmma_a8_rows_fill_the_gpu(M, N, rows256, rows):
    """gemm_wgmma_a8's activation rows per CTA (plan.h gemm_wgmma_a8_rows, its launcher's rule): the 256-row
    tile only where its launch takes fewer rounds of CTAs, each 1.31x a 128-row one's time (132 SMs)."""
    assert _bitblas_plan.gemm_wgmma_a8_rows(M, N, rows256, 132) == rows


@pytest.mark.parametrize("N, along_x", [
    (4096, False), (8192, False),      # 32 / 64 weight tiles: a tile's CTAs of every activation tile run together
    (8448, False), (8576, True),       # 66 / 67 weight tiles: half the 132 SMs is the edge
    (14336, True), (18944, True), (29568, True),
])
def test_gemm_wgmma_a8_grid_order(N, along_x):
    """gemm_wgmma_a8's grid order (plan.h gemm_a8_act_tiles_along_x): the activation tiles of a weight tile go
    first once the weight tiles outnumber half the SMs (132), so that the CTAs reading one weight tile run
    together; with fewer, the weight tiles go first (each weight tile's CTAs still share one round)."""
    assert _bitblas_plan.gemm_a8_act_tiles_along_x(N, 132) is along_x
    assert not _bitblas_plan.gemm_a8_act_tiles_along_x(N, 0)   # no SM count: the plain order


def test_gemm_wgmma_a8_needs_hopper_and_the_cuda_kernels(monkeypatch):
    from bitblas_jax import _ext
    monkeypatch.delenv("BITBLAS_JAX_GEMM_A8", raising=False)
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", "1")
    assert gp.gemm_a8_runs() == _ext.has_cuda()
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "1")
    assert gp.gemm_a8_runs() and qact(64, "int8", "none", -1, sm90=None) == "gemm_wgmma_a8"
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "0")
    assert not gp.gemm_a8_runs() and qact(64, "int8", "none", -1, sm90=None) == "xla_dot"


def test_decode_i8_needs_an_sm80_gpu_and_the_cuda_kernels(monkeypatch):
    from bitblas_jax import _ext
    monkeypatch.delenv("BITBLAS_JAX_DECODE_I8", raising=False)
    assert gp.decode_i8_runs(lambda: True) == _ext.has_cuda()
    assert not gp.decode_i8_runs(lambda: False)
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "1")
    assert gp.decode_i8_runs(lambda: False) and qact(8, decode_i8=None) == "decode_i8"
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "0")
    assert not gp.decode_i8_runs(lambda: True) and qact(8, decode_i8=None) == "xla_dot"


FP8 = ("float8_e4m3fn", "float8_e5m2")


def _fp8_kinds():
    """(A, W, mode, group, whether widened_f16 computes it): every float8-activation weight format and
    mode, per channel and in groups."""
    for a_dtype, w in itertools.product(FP8, formats.QUANTIZED_A["float8_e4m3fn"]["W"]):
        for mode in formats.allowed_modes(formats.get_format(w)):
            for group in ((-1,) if mode == "none" else (-1, 128, 64)):
                yield a_dtype, w, mode, group, group == -1


@pytest.mark.parametrize("a_dtype,w,mode,group,takes", list(_fp8_kinds()))
def test_float8_activations_run_widened_f16(a_dtype, w, mode, group, takes):
    """On an sm_80+ GPU with the CUDA kernels, float8 activations in mode none or with one group per row
    (per-channel scales; int4's zeros modes too) run widened_f16 at every M; grouped scales stay on XLA's
    dots (the 16-bit kernels take float16 scales), and so does everything without the GPU. On sm_90,
    gemm_wgmma_a8 is tried first above decode sizes, for what it computes (its own test above)."""
    a8 = mode == "none" or (mode == "scale" and (group == -1 or group % 128 == 0))
    for M in (1, 7, 16, 17, 100, 257, 4096, 100000):
        widened = "widened_f16" if takes else "xla_dot"
        assert qact(M, w, mode, group, a_dtype=a_dtype, sm90=False, widened_f16=True) == widened, M
        assert qact(M, w, mode, group, a_dtype=a_dtype, sm90=True, widened_f16=True) == \
            ("gemm_wgmma_a8" if M > gp.DECODE_I8_MAX_M and a8 else widened), M
        assert qact(M, w, mode, group, a_dtype=a_dtype, widened_f16=False) == "xla_dot"
    assert qact(0, w, mode, group, a_dtype=a_dtype, widened_f16=True) == "xla_dot"


@pytest.mark.parametrize("w", formats.QUANTIZED_A["int8"]["W"])
def test_int8_activations_never_run_widened_f16(w):
    """widened_f16 is the float8 rule: int8 activations keep their own kernels and XLA's int32 dots."""
    for M in (1, 16, 17, 1024):
        for mode, group in (("none", -1), ("scale", -1)):
            assert qact(M, w, mode, group, decode_i8=False, widened_f16=True) == "xla_dot"
            assert qact(M, w, mode, group, widened_f16=True) == qact(M, w, mode, group, widened_f16=False)


def test_widened_f16_needs_an_sm80_gpu_and_the_cuda_kernels(monkeypatch):
    from bitblas_jax import _ext
    monkeypatch.delenv("BITBLAS_JAX_WIDENED_F16", raising=False)
    assert gp.widened_f16_runs(lambda: True) == _ext.has_cuda()
    assert not gp.widened_f16_runs(lambda: False)
    fp8 = dict(w="float8_e4m3fn", mode="scale", group=-1, a_dtype="float8_e4m3fn", widened_f16=None)
    monkeypatch.setenv("BITBLAS_JAX_WIDENED_F16", "1")
    assert gp.widened_f16_runs(lambda: False) and qact(8, **fp8) == "widened_f16"
    monkeypatch.setenv("BITBLAS_JAX_WIDENED_F16", "0")
    assert not gp.widened_f16_runs(lambda: True) and qact(8, **fp8) == "xla_dot"


@pytest.mark.parametrize("w", formats.QUANTIZED_A["int8"]["W"])
@pytest.mark.parametrize("mode,group", [("none", -1), ("scale", -1), ("scale", 32), ("scale", 64), ("scale", 96),
                                        ("scale", 128), ("scale", 16), ("scale", 48), ("original", 128),
                                        ("quantized", 64)])
def test_int8_activations_above_decode_sizes_run_gemm_mma_a8_on_sm80(w, mode, group):
    """On an sm_80+ GPU, int8 activations past the decode regime run gemm_mma_a8 where it computes the mode
    (decode_i8's rule: modes none / scale, groups of whole 32-k mma steps) and gemm_wgmma_a8 does not take
    the call: everything it takes without sm_90; on sm_90 the 2- and 1-bit weights and the groups other
    than 128 / per-channel. Zeros modes and groups inside a 32-k step stay on XLA's dots."""
    takes = mode == "none" or (mode == "scale" and (group == -1 or group % 32 == 0))
    wgmma = w in ("int8", "int4", "uint4") and (mode == "none" or (mode == "scale" and group in (-1, 128)))
    for M in (17, 64, 65, 1024, 100000):
        assert qact(M, w, mode, group, gemm_mma_a8=True) == ("gemm_mma_a8" if takes else "xla_dot"), M
        on_sm90 = "gemm_wgmma_a8" if wgmma else "gemm_mma_a8" if takes else "xla_dot"
        assert qact(M, w, mode, group, gemm_mma_a8=True, sm90=True) == on_sm90, M
        assert qact(M, w, mode, group, gemm_mma_a8=False) == "xla_dot"
    for M in (1, 16):   # the decode regime: decode_i8, or XLA's dots without it
        assert qact(M, w, mode, group, gemm_mma_a8=True) == ("decode_i8" if takes else "xla_dot")
        assert qact(M, w, mode, group, gemm_mma_a8=True, decode_i8=False) == "xla_dot"
    assert qact(64, w, mode, group, K=6144 + 16, gemm_mma_a8=True) == "xla_dot"    # K off every packed tile
    assert qact(64, w, mode, group, a_dtype="float8_e4m3fn", gemm_mma_a8=True) == "xla_dot"


def test_gemm_mma_a8_needs_an_sm80_gpu_and_the_cuda_kernels(monkeypatch):
    from bitblas_jax import _ext
    monkeypatch.delenv("BITBLAS_JAX_GEMM_MMA_A8", raising=False)
    assert gp.gemm_mma_a8_runs(lambda: True) == _ext.has_cuda()
    assert not gp.gemm_mma_a8_runs(lambda: False)
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "1")
    assert gp.gemm_mma_a8_runs(lambda: False) and qact(64, "int2", gemm_mma_a8=None) == "gemm_mma_a8"
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "0")
    assert not gp.gemm_mma_a8_runs(lambda: True) and qact(64, "int2", gemm_mma_a8=None) == "xla_dot"


def test_quantized_activation_kernel_names_and_bad_input():
    assert gp.QUANTIZED_ACTIVATION_KERNELS == ("xla_dot", "decode_i8", "gemm_wgmma_a8", "gemm_mma_a8", "widened_f16")
    with pytest.raises(ValueError, match="A_dtype='float16' is not int8 / float8"):
        qact(1, a_dtype="float16")


# ---- Python and C++ agree --------------------------------------------------------------------------
def _agreement_cases():
    for fmt, mode in itertools.product(list(formats.FORMATS), ["none", "scale", "original", "quantized"]):
        f = formats.get_format(fmt)
        if mode not in formats.allowed_modes(f):
            continue
        for group in ([-1, 128] if mode == "none" else [32, 64, 128, -1]):
            yield fmt, mode, group


@pytest.mark.parametrize("fmt,mode,group", list(_agreement_cases()))
def test_the_dispatcher_derives_the_same_plan(fmt, mode, group):
    """Every (format, mode, group, M, N, K, accumulation, GPU, caller): the plan Python hands the custom
    call (kernel, tile, split_k) completes in C++ (plan::finish, what matmul_cuda launches) to the very
    plan Python sized its workspace and decisions by, and names a tile that exists."""
    bits = formats.get_format(fmt).bits
    n = 0
    for M, (N, K), accum, sm90, xla, cutlass in itertools.product(
            [1, 3, 8, 9, 16, 17, 20, 33, 64, 65, 130, 257, 512, 1000, 1025, 5000],
            [(256, 1024), (4096, 4096), (8192, 8192), (28672, 8192), (1024, 65536)],
            ["float32", "float16"], [False, True], [True, False], [False, True]):
        g = K if group == -1 else group
        if K % (256 // bits) or K % g:
            continue
        p = gp.plan_cuda(M, N, K, fmt, "float16", accum, "float16", mode, g, allow_xla_dot=xla, sm90=sm90,
                         gemm_cutlass=cutlass)
        again = _bitblas_plan.finish(p.kernel, p.tile, p.split_k, M, N, K, bits, mode=formats.MODE_IDS[mode],
                                     group_size=g)
        assert (again["kernel"], again["tile"], again["tail_tile"], again["split_k"], again["stage_k"],
                again["workspace_bytes"]) == (p.kernel, p.tile, p.tail_tile, p.split_k, p.stage_k,
                                              p.workspace_bytes), (M, N, K, accum, sm90, xla)
        # gemm_cutlass: one group per row of each part of K without scales or with one group over K
        terms_group = K // p.split_k if mode == "none" or g == K else g
        if p.kernel != "gemm_cutlass":
            terms_group = K if mode == "none" else g
        assert p.workspace_bytes == _bitblas_plan.workspace_bytes(p.kernel, p.tile, p.split_k, M, N, K, terms_group)
        if p.kernel != "dequantize_then_dot" and p.kernel != "decode_splitk":
            gp.tile_dims(p)   # raises for a tile the kernel does not have
        if p.kernel == "decode":
            assert p.tile >= 0 and (M <= 16 or M % 16 == 0 or p.tail_tile >= 0)
            assert accum == "float32"
        if p.kernel == "gemm_wgmma":
            assert sm90 and accum == "float32" and K % p.stage_k == 0
        if p.kernel == "gemm_cutlass":
            assert cutlass and sm90 and accum == "float32" and M >= gp.gemm_cutlass_min_m(N, K, fmt)
            assert fmt in ("int4", "uint4", "int8", "uint8", "nf4", "fp4_e2m1")
            partials = 4 * p.split_k * M * N if p.split_k > 1 else 0
            if gp.stream_k(p):
                # CUTLASS's stream-K workspace: a float32 tile and two 32-bit flags for each tile it may share
                # (at most twice its 132 CTAs), each part rounded to 128 bytes
                rows = gp.tile_dims(p)[1]
                shared = min(-(-N // 128) * -(-M // rows), 2 * 132)
                partials = -(-shared * 128 * rows * 4 // 128) * 128 + -(-shared * 8 // 128) * 128
                assert p.split_k == 1
            assert p.workspace_bytes == -(-4 * (K // terms_group) * N // 256) * 256 + partials
            assert 1 <= p.split_k <= gp.GEMM_CUTLASS_MAX_SPLIT and (K // p.split_k) % 64 == 0
        if not xla:
            assert p.kernel != "dequantize_then_dot"
        n += 1
    assert n > 0
