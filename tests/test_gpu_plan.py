"""The CUDA plan heuristic (pure Python: runs without a GPU)."""
from __future__ import annotations

import pytest

from bitblas_jax import gpu_plan as gp


def plan(M, N=8192, K=8192, fmt="int4", accum="float32", mode="scale", group=128, sm90=False, **kw):
    return gp.plan_cuda(M, N, K, fmt, "float16", accum, "float16", mode, group, sm90=sm90, **kw)


@pytest.mark.parametrize("M", [1, 4, 16])
@pytest.mark.parametrize("fmt", ["int4", "int8", "nf4", "float8_e4m3fn", "float16"])
def test_decode_runs_the_v2_kernel_without_workspace(M, fmt):
    mode, group = ("none", -1) if fmt == "float16" else ("scale", 128)
    assert plan(M, fmt=fmt, mode=mode, group=group) == gp.CudaPlan(gp.PLAN_GEMV2, 1, 0)


def test_v2_activation_staging_limits_low_bit_formats():
    # int4: four tiles per warp at one row, two up to 5 rows, then the two-n8-block kernel (two tiles,
    # two stages); int2 (one tile per chunk below 4 bits) takes the two-block kernel from 5 rows
    assert gp.gemv2_launch_smem(1, 4) == gp.gemv2_smem_bytes(1, 4, 1, 4)
    assert gp.gemv2_launch_smem(2, 4) == gp.gemv2_smem_bytes(2, 4, 1, 2)
    assert gp.gemv2_launch_smem(5, 4) == gp.gemv2_smem_bytes(5, 4, 1, 2)
    assert gp.gemv2_launch_smem(8, 4) == gp.gemv2_smem_bytes(8, 4, 2, 2)
    assert gp.gemv2_launch_smem(16, 4) == gp.gemv2_smem_bytes(16, 4, 2, 2)
    assert gp.gemv2_launch_smem(5, 2) == gp.gemv2_smem_bytes(5, 2, 2, 1)
    assert plan(8, fmt="int2").plan == gp.PLAN_GEMV2
    # int2's 128-column tiles of 10+ rows do not fit next to the ring: v1 runs them
    assert plan(16, fmt="int2", allow_xla_dot=False).plan == gp.PLAN_GEMV


def test_past_16_rows_jax_runs_the_gemm_then_dequantizes_then_dots():
    assert plan(17) == gp.CudaPlan(gp.PLAN_GEMM, 4, gp.workspace_bytes(gp.PLAN_GEMM, 4, 17, 8192))
    assert plan(32, N=28672) == gp.CudaPlan(gp.PLAN_GEMM_WIDE, 2, gp.workspace_bytes(gp.PLAN_GEMM_WIDE, 2, 32, 28672))
    assert plan(64).plan == gp.PLAN_GEMM and plan(65).plan == gp.PLAN_DEQUANT_DOT
    assert plan(64, N=4096, K=4096).plan == gp.PLAN_GEMM       # every layer size
    assert plan(16, N=4096, K=4096).plan == gp.PLAN_GEMV2      # plan 4 up to 16 rows on every layer
    assert plan(4, N=4096, K=11008).plan == gp.PLAN_GEMV2
    assert plan(32, allow_xla_dot=False).plan == gp.PLAN_GEMV2


def test_gemm_max_m_env_override(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "256")
    assert plan(256, N=4096, K=4096).plan == gp.PLAN_GEMM
    assert plan(257).plan == gp.PLAN_DEQUANT_DOT
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "16")
    assert plan(17).plan == gp.PLAN_DEQUANT_DOT


def test_gemm_plan_takes_256_row_tiles_when_they_fill_the_gpu():
    assert gp.gemm_plan(32, 8192) == gp.PLAN_GEMM      # 32 tiles of 256 x 32
    assert gp.gemm_plan(32, 28672) == gp.PLAN_GEMM_WIDE    # 112
    assert gp.gemm_plan(128, 8192) == gp.PLAN_GEMM     # 64 tiles of 256 x 64
    assert gp.gemm_plan(256, 8192) == gp.PLAN_GEMM_WIDE    # 128
    assert gp.gemm_plan(256, 4096) == gp.PLAN_GEMM
    assert plan(64, N=28672, allow_xla_dot=False).plan == gp.PLAN_GEMM_WIDE


def test_gemm_tiles_and_split():
    assert gp.gemm_tile(gp.PLAN_GEMM, 32, 4, "scale", 128) == (128, 32)
    assert gp.gemm_tile(gp.PLAN_GEMM, 33, 4, "scale", 128) == (128, 64)
    assert gp.gemm_tile(gp.PLAN_GEMM_WIDE, 64, 4, "scale", 128) == (256, 64)
    assert gp.gemm_tile(gp.PLAN_GEMM_WIDE, 64, 4, "scale", 32) == (128, 32)  # groups inside int4 tiles
    assert gp.gemm_tile(gp.PLAN_GEMM_WIDE, 64, 8, "scale", 32) == (256, 64)  # int8 tiles are 32 wide
    # one wave of two CTAs per SM: 64 tiles of 128 x 64 at 8192 x 8192, M = 64 -> 4 ways
    assert gp.gemm_split(gp.PLAN_GEMM, 64, 8192, 8192, 4, "scale", 128) == 4
    # one CTA per SM for the 256 x 64 tile: 32 tiles -> 4 ways
    assert gp.gemm_split(gp.PLAN_GEMM_WIDE, 64, 8192, 8192, 4, "scale", 128) == 4
    # at least 4 stages of 128 k per split, at most 8 ways
    assert gp.gemm_split(gp.PLAN_GEMM, 64, 256, 1024, 4, "scale", 128) == 2
    assert gp.gemm_split(gp.PLAN_GEMM, 32, 128, 65536, 4, "scale", 128) == 8
    # the workspace: counters for the smallest tile (128 x 32) + the fp32 partials
    assert gp.workspace_bytes(gp.PLAN_GEMM, 4, 64, 8192) == 64 * 2 * 4 + 4 * 64 * 8192 * 4


@pytest.mark.parametrize("M", [256, 1024, 4096])
def test_large_m_dequantizes_then_uses_xla_dot(M):
    assert plan(M).plan == gp.PLAN_DEQUANT_DOT
    # the torch shim has no XLA dot: it gets a tensor-core GEMM plan instead
    assert plan(M, allow_xla_dot=False).plan in (gp.PLAN_GEMM, gp.PLAN_GEMM_WIDE)


def test_v2_limits_fall_back_to_v1():
    assert plan(1, accum="float16").plan == gp.PLAN_GEMV      # float16 accumulation
    assert plan(1, K=4096, group=8).plan == gp.PLAN_GEMV      # groups not whole packed tiles
    assert plan(1, K=4096, group=32).plan == gp.PLAN_GEMV     # int4 tiles are 64 wide
    assert plan(1, fmt="int8", K=4096, group=32).plan == gp.PLAN_GEMV2
    assert plan(1, mode="original", K=65536, group=64).plan == gp.PLAN_GEMV2  # scales are not in smem
    p = plan(1, accum="float16")
    assert p.workspace_bytes == gp.workspace_bytes(p.plan, p.split_k, 1, 8192)


def test_gemv2_smem_formula_matches_the_kernel_config():
    # gemv2.cuh: ring NST*8*U KB; activations NST*8*(U*TK+8)*2 B per row; 4-tile kernels: 128 B of staged
    # scales per warp and stage
    assert gp.gemv2_smem_bytes(1, 4, 1, 4) == 3 * 8 * 4096 + 3 * 8 * (4 * 64 + 8) * 2 + 3 * 8 * 128
    assert gp.gemv2_smem_bytes(1, 4, 1, 2) == 4 * 8 * 2048 + 4 * 8 * (2 * 64 + 8) * 2
    assert gp.gemv2_smem_bytes(1, 2, 1, 4) == 6 * 8192 + 6 * 8 * (128 + 8) * 2   # under 4 bits: one tile
    assert gp.gemv2_smem_bytes(16, 4, 2, 1) == 4 * 8192 + 16 * 4 * 8 * (64 + 8) * 2
    assert gp.gemv2_smem_bytes(16, 4, 2, 2) == 2 * 16384 + 16 * 2 * 8 * (2 * 64 + 8) * 2   # two stages
    assert gp.gemv2_smem_bytes(9, 8, 2, 1) == 4 * 8192 + 9 * 4 * 8 * (32 + 8) * 2


def test_hopper_runs_the_wgmma_gemm_up_to_512_or_1024_rows_on_large_layers():
    assert plan(17, sm90=True) == gp.CudaPlan(gp.PLAN_WGMMA, 4, gp.workspace_bytes(gp.PLAN_WGMMA, 4, 17, 8192))
    assert plan(256, sm90=True).plan == gp.PLAN_WGMMA
    assert plan(256, N=28672, sm90=True).plan == gp.PLAN_WGMMA_TALL
    assert plan(512, sm90=True).plan == gp.PLAN_WGMMA_TALL                     # 128 tiles
    assert plan(1024, sm90=True).plan == gp.PLAN_WGMMA_TALL                    # from 4096 x 8192 weights
    assert plan(1025, sm90=True).plan == gp.PLAN_DEQUANT_DOT
    assert plan(1024, N=4096, K=8192, sm90=True).plan == gp.PLAN_WGMMA_TALL
    assert plan(1024, N=4096, K=11008, sm90=True).plan == gp.PLAN_WGMMA_TALL
    assert plan(4096, N=28672, sm90=True).plan == gp.PLAN_DEQUANT_DOT
    assert plan(513, N=4096, K=6144, sm90=True).plan == gp.PLAN_DEQUANT_DOT   # below 4096 x 8192: 512
    assert plan(512, N=4096, K=4096, sm90=True).plan == gp.PLAN_WGMMA          # from 4096 x 4096 weights
    assert plan(513, N=4096, K=4096, sm90=True).plan == gp.PLAN_DEQUANT_DOT
    assert plan(64, N=1024, K=4096, sm90=True).plan == gp.PLAN_WGMMA           # smaller layers: up to 64
    assert plan(65, N=1024, K=4096, sm90=True).plan == gp.PLAN_DEQUANT_DOT
    assert plan(65, sm90=False).plan == gp.PLAN_DEQUANT_DOT                    # elsewhere: 64 rows, plan 2
    assert plan(64, sm90=False).plan == gp.PLAN_GEMM


def test_wgmma_needs_float32_accumulation_and_whole_tile_groups():
    assert plan(64, sm90=True, allow_xla_dot=False).plan == gp.PLAN_WGMMA
    assert plan(64, accum="float16", sm90=True, allow_xla_dot=False).plan in (gp.PLAN_GEMM, gp.PLAN_GEMM_WIDE)
    assert plan(64, group=32, sm90=True, allow_xla_dot=False).plan in (gp.PLAN_GEMM, gp.PLAN_GEMM_WIDE)
    assert plan(64, K=8192 + 64, sm90=True, allow_xla_dot=False).plan in (gp.PLAN_GEMM, gp.PLAN_GEMM_WIDE)
    # k per stage: (bits, activation rows) -> k (matmul_cuda.h wgmma_stage_k)
    stage_k = {(4, 64): 128, (8, 64): 64, (8, 32): 128, (4, 128): 128, (16, 128): 128, (4, 256): 128, (8, 256): 64, (1, 32): 256}
    assert {key: gp.wgmma_stage_k(*key) for key in stage_k} == stage_k
    assert plan(128, K=8192 + 64, sm90=True, allow_xla_dot=False).plan in (gp.PLAN_GEMM, gp.PLAN_GEMM_WIDE)


def test_wgmma_tiles_plan_and_split():
    assert gp.wgmma_tile(gp.PLAN_WGMMA, 32) == (128, 32)
    assert gp.wgmma_tile(gp.PLAN_WGMMA, 33) == (128, 64)
    assert gp.wgmma_tile(gp.PLAN_WGMMA, 300) == (128, 128)
    assert gp.wgmma_tile(gp.PLAN_WGMMA_TALL, 300) == (128, 256)
    assert gp.wgmma_plan(64, 28672) == gp.PLAN_WGMMA          # 256-row tiles only past 128 rows
    assert gp.wgmma_plan(256, 28672) == gp.PLAN_WGMMA_TALL    # 224 tiles
    assert gp.wgmma_plan(512, 8192) == gp.PLAN_WGMMA_TALL     # 128 tiles: about one wave
    assert gp.wgmma_plan(512, 4096) == gp.PLAN_WGMMA          # 64
    assert gp.wgmma_plan(256, 8192) == gp.PLAN_WGMMA
    assert gp.wgmma_plan(1024, 8192) == gp.PLAN_WGMMA_TALL
    # H100 kernel sweep (benchmarks/RESULTS.md v3): split 4 at 64 tiles, 1 once partials pass 8 MB
    assert gp.wgmma_split(gp.PLAN_WGMMA, 64, 8192, 8192, 4) == 4
    assert gp.wgmma_split(gp.PLAN_WGMMA, 256, 8192, 8192, 4) == 1
    assert gp.wgmma_split(gp.PLAN_WGMMA, 32, 28672, 8192, 4) == 1


def test_hopper_env_override(monkeypatch):
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", "1")
    assert gp.hopper(lambda: False) and plan(64, sm90=None).plan == gp.PLAN_WGMMA
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", "0")
    assert not gp.hopper(lambda: True) and plan(64, sm90=None).plan == gp.PLAN_GEMM
    monkeypatch.delenv("BITBLAS_JAX_HOPPER")
    assert gp.hopper(lambda: True) and not gp.hopper(lambda: False)
