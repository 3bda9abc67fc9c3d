"""Kernel plan of the CUDA backend, chosen from static shapes at trace time.

A heuristic (no tuning, no device query): which kernel runs (plan), how many
ways K is split across CTAs (split_k) and how many workspace bytes that needs.
The plan ids and the workspace formula are the contract with
csrc/cuda/matmul_cuda.h (cuda_workspace_bytes).

  plan 1  v1 small-M streaming kernel, split-K (what plan 4 cannot run:
          float16 accumulation, groups not whole packed tiles, too little
          shared memory for the activation ring)
  plan 2  tensor-core GEMM (csrc/cuda/gemm.cuh), 128 weight rows x 32 (M <= 32) or
          64 activation rows per CTA, split-K over CTAs to fill the GPU
  plan 3  the same GEMM with 256 weight rows per CTA (one CTA per SM at 64 rows)
  plan 4  decode kernel v2 (M <= 16 per launch, larger M in slices; float32
          accumulation, group_size a multiple of the packed tile's k):
          no split-K, no workspace, one launch per 16 rows
  plan 5  larger M (JAX only): the dequantize kernel writes the weight [N, K] in
          A's dtype, then XLA's own dot (cuBLAS) multiplies (no custom-call plan)
  plan 6  Hopper GEMM (csrc/cuda/gemm_wgmma.cuh, sm_90 only): wgmma with the
          dequantized weight as the register operand, 128 weight rows x 32, 64 or
          128 activation rows per CTA, split-K
  plan 7  the same with 256 activation rows per CTA (many tiles: large M)

Under JAX: plan 4 at decode sizes (M <= 16), then the GEMM up to gemm_max_m() rows (plans 6 / 7 on an
H100 / H200: 1024 on layers of 4096 x 8192 weights and up, 512 from 4096 x 4096, 64 below; plan 2 / 3
elsewhere: 64; BITBLAS_JAX_GEMM_MAX_M overrides it), larger M plan 5. Plan 5 writes and re-reads a
16-bit weight: at M <= 512 it ran 1.07-3.2x slower than plans 6 / 7 on the H200 (benchmarks/RESULTS.md
v3.9); at M = 1024 plan 7 took 2.5-12% less GPU time on 4096x11008 to 28672x8192 and was level on
4096^2 (v3.10); at M = 4096 plan 5 is 12-23% faster everywhere.
The torch shim, which has no XLA dot, runs plan 4 up to M = 32 and the GEMM above.
Plans 6 / 7 run where wgmma_fits(): an sm_90 GPU (hopper()), float32 accumulation, groups of whole
packed tiles, K a multiple of the stage's k; elsewhere plan 2 / 3.

The number of SMs defaults to 132 (H100 SXM); set BITBLAS_JAX_NUM_SMS to
plan for another GPU.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

from . import formats

PLAN_AUTO = 0
PLAN_GEMV = 1
PLAN_GEMM = 2
PLAN_GEMM_WIDE = 3
PLAN_GEMV2 = 4
PLAN_DEQUANT_DOT = 5
PLAN_WGMMA = 6
PLAN_WGMMA_TALL = 7


GEMV_MAX_M = 16          # rows per gemv launch (larger M runs in slices)
GEMV_PLAN_MAX_M = 32     # up to here the gemv plan (in slices of 16 rows) beats the GEMM plans
GEMV_ROWS = 256          # weight rows per gemv CTA
_GEMV_CTAS_PER_SM = 2    # resident 256-thread CTAs per SM (shared memory)
_GEMV_MIN_TILES = 4      # packed k-tiles per warp per split, at least
_PARTIAL_CAP = 16 << 20  # split-K fp32 partials stay in L2: at most this many bytes
_WGMMA_LAYER = 4096 * 4096  # from this many weights plan 6 / 7 beats plan 5 up to M = 512 (RESULTS.md v3.9)
_WGMMA_BIG_LAYER = 4096 * 8192  # from this many, plan 7 beats plan 5 up to M = 1024 too (RESULTS.md v3.10)
GEMV2_SMEM_CAP = 110 * 1024  # csrc/cuda/kernels.h kGemv2SmemCap: two CTAs per H100 SM (ring + activations)
GEMM_MAX_M = 64          # JAX, plan 2 / 3 (no wgmma): up to here the GEMM beats dequantize + XLA's dot
_GEMM_MAX_SPLIT = 8
_GEMM256_MIN_TILES = 100  # plan 3 from this many 256-row output tiles (28672 rows at M <= 64)
WGMMA_MAX_M = 512        # JAX on an H100, layers from _WGMMA_LAYER to under _WGMMA_BIG_LAYER weights: plans 6 / 7 up to here
WGMMA_BIG_MAX_M = 1024   # layers of _WGMMA_BIG_LAYER weights and up
WGMMA_SMALL_MAX_M = 64   # smaller layers: plan 6 up to here, then plan 5
_WGMMA_TALL_MIN_TILES = 128  # plan 7 from this many 128 x 256 output tiles (about one wave)
_WGMMA_MAX_SPLIT = 4
_WGMMA_PARTIAL_CAP = 8 << 20


class CudaPlan(NamedTuple):
    plan: int
    split_k: int
    workspace_bytes: int


def num_sms() -> int:
    try:
        return max(1, int(os.environ.get("BITBLAS_JAX_NUM_SMS", "132")))
    except ValueError:
        return 132


def workspace_bytes(plan: int, split_k: int, M: int, N: int) -> int:
    """Bytes of workspace (plan, split_k) needs; mirrors cuda_workspace_bytes in matmul_cuda.h."""
    if split_k <= 1 or plan in (PLAN_AUTO, PLAN_GEMV2, PLAN_DEQUANT_DOT):
        return 0
    counters = ((N + 127) // 128) * ((M + 31) // 32)   # one per output tile of the smallest tile
    counter_bytes = (counters * 4 + 255) // 256 * 256
    return counter_bytes + split_k * M * N * 4


@functools.lru_cache(maxsize=None)
def _jax_gpu_is_sm90() -> bool:
    try:
        import jax
        return any(getattr(d, "compute_capability", None) == "9.0" for d in jax.devices("gpu"))
    except Exception:  # no GPU backend
        return False


def hopper(detect=_jax_gpu_is_sm90) -> bool:
    """Whether plans 6 / 7 (sm_90a kernels) can run: detect() (default: JAX's GPU is compute
    capability 9.0). BITBLAS_JAX_HOPPER=0 / 1 overrides it (A/B timing, plan tests)."""
    env = os.environ.get("BITBLAS_JAX_HOPPER")
    if env in ("0", "1"):
        return env == "1"
    return bool(detect())


def gemm_max_m(N: int, K: int, wgmma: bool = False) -> int:
    """Largest M that runs the custom GEMM (plan 6 where wgmma, else plan 2) under JAX; larger M
    runs plan 5. BITBLAS_JAX_GEMM_MAX_M overrides it for every layer size (16 or less: never)."""
    env = os.environ.get("BITBLAS_JAX_GEMM_MAX_M")
    if env is not None:
        try:
            return int(env)
        except ValueError:
            pass
    if not wgmma:
        return GEMM_MAX_M
    if N * K >= _WGMMA_BIG_LAYER:
        return WGMMA_BIG_MAX_M
    return WGMMA_MAX_M if N * K >= _WGMMA_LAYER else WGMMA_SMALL_MAX_M


def wgmma_tile(plan: int, M: int) -> tuple[int, int]:
    """(weight rows, activation rows) of a plan 6 / 7 CTA (matmul_cuda.h wgmma_tile)."""
    if plan == PLAN_WGMMA_TALL:
        return 128, 256
    return 128, (32 if M <= 32 else 64 if M <= 64 else 128)


def wgmma_stage_k(bits: int, bm: int) -> int:
    """k per stage of plans 6 / 7 (matmul_cuda.h wgmma_stage_k): at least 128 where enough such
    stages fit (four in 106 KB for tiles of <= 64 activation rows, two CTAs per SM; three in 220 KB
    above, one CTA per SM), else at least 64."""
    stage = bm * 128 * 2 + 8 * 16 * 128 * bits // 8   # activations + 8 bands of weights, 128 k
    long_stages = 4 * stage <= 106 * 1024 if bm <= 64 else 3 * stage <= 220 * 1024
    return max(128 if long_stages else 64, 256 // bits)


def wgmma_fits(M: int, N: int, K: int, bits: int, accum_dtype: str, mode: str, group_size: int,
               sm90: bool) -> bool:
    """Whether plan 6 / 7 runs the Hopper kernel (else the C++ side runs plan 2 instead)."""
    if not sm90 or accum_dtype != "float32":
        return False
    if mode != "none" and group_size % (256 // bits) != 0:   # groups of whole packed tiles
        return False
    return K % wgmma_stage_k(bits, wgmma_tile(wgmma_plan(M, N), M)[1]) == 0


def wgmma_plan(M: int, N: int) -> int:
    """Plan 7 (256 activation rows per CTA) past 128 rows once its tiles about fill the GPU, else plan 6
    (kernel timings, benchmarks/RESULTS.md v3.9: M = 512 on 8192^2, 128 tiles, ran 107 us in plan 7
    against 137 in plan 6)."""
    tall = M > 128 and -(-N // 128) * -(-M // 256) >= _WGMMA_TALL_MIN_TILES
    return PLAN_WGMMA_TALL if tall else PLAN_WGMMA


def wgmma_split(plan: int, M: int, N: int, K: int, bits: int) -> int:
    """Split-K of plans 6 / 7 (_one_wave_split): two CTAs per SM up to 128 x 64 tiles, at most 4
    splits, fp32 partials of at most 8 MB."""
    bn, bm = wgmma_tile(plan, M)
    per_sm = 1 if bm > 64 else 2
    return _one_wave_split(M, N, -(-N // bn) * -(-M // bm), per_sm, K // wgmma_stage_k(bits, bm),
                           _WGMMA_MAX_SPLIT, _WGMMA_PARTIAL_CAP)


def gemm_tile(plan: int, M: int, bits: int, mode: str, group_size: int) -> tuple[int, int]:
    """(weight rows, activation rows) of a plan 2 / 3 CTA (matmul_cuda.cu)."""
    if mode != "none" and group_size % (256 // bits) != 0:   # groups end inside packed tiles
        return 128, 32
    return (128 if plan == PLAN_GEMM else 256), (64 if M > 32 else 32)


def gemm_plan(M: int, N: int) -> int:
    """Plan 3 (256-row tiles: half the activation reads) once its tiles alone fill the GPU, else
    plan 2 (H100 kernel timings, benchmarks/RESULTS.md v2.3)."""
    return PLAN_GEMM_WIDE if -(-N // 256) * -(-M // (64 if M > 32 else 32)) >= _GEMM256_MIN_TILES else PLAN_GEMM


def _one_wave_split(M: int, N: int, tiles: int, per_sm: int, stages: int, max_split: int,
                    partial_cap: int) -> int:
    """Split-K of a GEMM plan: about one wave of resident CTAs (per_sm per SM), at least 4 stages per
    split, at most max_split, fp32 partials of at most partial_cap bytes (they stay in L2)."""
    split = round(per_sm * num_sms() / tiles)
    return max(1, min(split, max_split, stages // 4, partial_cap // (4 * M * N)))


def gemm_split(plan: int, M: int, N: int, K: int, bits: int, mode: str, group_size: int) -> int:
    """Split-K of plan 2 / 3 (_one_wave_split)."""
    bn, bm = gemm_tile(plan, M, bits, mode, group_size)
    stages = -(-K // ((2 if bits >= 4 else 1) * (256 // bits)))   # gemm_stage_k in matmul_cuda.h
    per_sm = 1 if bn * bm > 128 * 64 else 2   # resident CTAs per SM (gemm.cuh launch bounds)
    return _one_wave_split(M, N, -(-N // bn) * -(-M // bm), per_sm, stages, _GEMM_MAX_SPLIT, _PARTIAL_CAP)


def _gemv2_stages(bits: int, n8_blocks: int, tiles: int) -> tuple[int, int]:
    """(tiles per warp and chunk, ring stages) of a v2 decode kernel (csrc/cuda/gemv2.cuh Gemv2Cfg U, NST)."""
    tiles = tiles if bits >= 4 else 1       # formats under 4 bits take one tile per chunk
    stages = 3 if tiles == 4 else 2 if n8_blocks == 2 and tiles == 2 else 6 if n8_blocks == 1 and tiles == 1 else 4
    return tiles, stages


def _gemv2_capped_bytes(M: int, bits: int, n8_blocks: int, tiles: int) -> int:
    """Ring + activations, the part under GEMV2_SMEM_CAP (kernels.h gemv2_smem)."""
    tiles, stages = _gemv2_stages(bits, n8_blocks, tiles)
    ring = stages * 8 * tiles * 1024
    a_row = stages * 8 * (tiles * (256 // bits) + 8) * 2   # each warp's own activation columns
    return ring + M * a_row


def gemv2_stage_bytes(bits: int, n8_blocks: int, tiles: int) -> int:
    """The v2 kernel's staged scales, outside GEMV2_SMEM_CAP (Gemv2Cfg::STAGE_BYTES: 4-tile kernels)."""
    tiles, stages = _gemv2_stages(bits, n8_blocks, tiles)
    return stages * 8 * 128 if tiles == 4 else 0


def gemv2_smem_bytes(M: int, bits: int, n8_blocks: int, tiles: int) -> int:
    """Shared memory of one v2 decode launch of M <= 16 rows (csrc/cuda/gemv2.cuh Gemv2Cfg)."""
    return _gemv2_capped_bytes(M, bits, n8_blocks, tiles) + gemv2_stage_bytes(bits, n8_blocks, tiles)


# the v2 kernels (n8 blocks, tiles per warp and chunk) in the order the host tries them (kernels.h kGemv2Shapes)
_GEMV2_VARIANTS = ((1, 4), (1, 2), (2, 2), (2, 1))


def gemv2_launch_smem(M: int, bits: int) -> int | None:
    """Shared memory of the v2 launch for M <= 16 rows: up to 8 rows the one-n8-block kernel with the
    most tiles per warp that fits, else the two-block one with the most; None when none fits (csrc:
    gemv2_smem_for)."""
    for n8, tiles in _GEMV2_VARIANTS[(0 if M <= 8 else 2):]:
        if _gemv2_capped_bytes(M, bits, n8, tiles) <= GEMV2_SMEM_CAP:
            return gemv2_smem_bytes(M, bits, n8, tiles)
    return None


def gemv2_fits(M: int, bits: int, accum_dtype: str, mode: str, group_size: int) -> bool:
    """Whether every 16-row launch of M rows can run the v2 decode kernel (csrc: gemv2_smem_for)."""
    if accum_dtype != "float32":
        return False
    if mode != "none" and group_size % (256 // bits) != 0:   # groups of whole packed tiles
        return False
    slices = {min(M, 16)} | ({M % 16} if M % 16 else set())
    return all(gemv2_launch_smem(m, bits) is not None for m in slices)


def plan_cuda(M: int, N: int, K: int, W_dtype: str, A_dtype: str, accum_dtype: str, out_dtype: str,
              mode: str, group_size: int, allow_xla_dot: bool = True, sm90: bool | None = None) -> CudaPlan:
    """The kernel plan for C[M, N] = A[M, K] x dequant(W)[N, K]^T on the GPU.

    allow_xla_dot: whether plan 5 (dequantize, then the caller's own dot) is
    possible; the torch shim, which runs the custom kernels only, says no.
    sm90: whether the GPU is an sm_90 one (plans 6 / 7); None asks hopper().
    """
    del A_dtype, out_dtype
    M, N, K = int(M), int(N), int(K)
    bits = formats.get_format(W_dtype).bits
    if M <= 0:
        return CudaPlan(PLAN_GEMV, 1, 0)
    if sm90 is None:
        sm90 = hopper()
    wgmma = wgmma_fits(M, N, K, bits, accum_dtype, mode, group_size, sm90)
    # H100 / H200 measurements (benchmarks/RESULTS.md v3.7, v3.9): plan 4 up to 16 rows, then the
    # GEMM up to gemm_max_m() rows, then dequantize + XLA's dot.
    decode_max = GEMV_MAX_M if allow_xla_dot else GEMV_PLAN_MAX_M
    if M <= decode_max and gemv2_fits(M, bits, accum_dtype, mode, group_size):
        return CudaPlan(PLAN_GEMV2, 1, 0)
    if allow_xla_dot and M > max(decode_max, gemm_max_m(N, K, wgmma)):
        return CudaPlan(PLAN_DEQUANT_DOT, 1, 0)
    if M <= GEMV_PLAN_MAX_M and not (allow_xla_dot and M > 8):
        # what v2 cannot run (float16 accumulation, groups not whole tiles, too little
        # shared memory): the v1 decode kernel with split-K
        tile_k = 256 // bits
        partial_cap = max(1, _PARTIAL_CAP // (4 * M * N))
        kt = K // tile_k
        gcols = -(-N // GEMV_ROWS)
        target = _GEMV_CTAS_PER_SM * num_sms()  # about one wave of resident CTAs
        split = max(1, round(target / gcols))
        split = max(1, min(split, max(1, kt // _GEMV_MIN_TILES), partial_cap))
        return CudaPlan(PLAN_GEMV, split, workspace_bytes(PLAN_GEMV, split, M, N))
    if wgmma:
        gplan = wgmma_plan(M, N)
        split = wgmma_split(gplan, M, N, K, bits)
        return CudaPlan(gplan, split, workspace_bytes(gplan, split, M, N))
    gplan = gemm_plan(M, N)
    split = gemm_split(gplan, M, N, K, bits, mode, group_size)
    return CudaPlan(gplan, split, workspace_bytes(gplan, split, M, N))
