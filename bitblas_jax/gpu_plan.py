"""Kernel plan of the CUDA backend, chosen from static shapes at trace time.

A heuristic (no tuning, no device query): which kernel runs (plan), how many
ways K is split across CTAs (split_k) and how many workspace bytes that needs.
The plan ids and the workspace formula are the contract with
csrc/cuda/matmul_cuda.h (cuda_workspace_bytes).

  plan 1  v1 small-M streaming kernel, split-K (what plan 4 cannot run:
          float16 accumulation, groups not whole packed tiles, too little
          shared memory for the activation ring)
  plan 2  tensor-core GEMM, 128 (n) x 64 (m) block tile
  plan 3  tensor-core GEMM, 128 (n) x 128 (m) block tile
  plan 4  decode kernel v2 (M <= 16 per launch, larger M in slices; float32
          accumulation, group_size a multiple of the packed tile's k):
          no split-K, no workspace, one launch per 16 rows
  plan 5  M > 16 (M > 8 below 8192 x 8192 weights): the dequantize kernel writes the weight [N, K] in A's dtype,
          then XLA's own dot (cuBLAS) multiplies (JAX only; no custom-call plan;
          the torch shim gets plan 4 up to M = 32 and plans 2 / 3 above)

The number of SMs defaults to 132 (H100 SXM); set BITBLAS_JAX_NUM_SMS to
plan for another GPU.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

from . import formats

PLAN_AUTO = 0
PLAN_GEMV = 1
PLAN_GEMM64 = 2
PLAN_GEMM128 = 3
PLAN_GEMV2 = 4
PLAN_DEQUANT_DOT = 5


GEMV_MAX_M = 16          # rows per gemv launch (larger M runs in slices)
GEMV_PLAN_MAX_M = 32     # up to here the gemv plan (in slices of 16 rows) beats the GEMM plans
GEMV_ROWS = 256          # weight rows per gemv CTA
_GEMV_CTAS_PER_SM = 2    # resident 256-thread CTAs per SM (shared memory)
_GEMV_MIN_TILES = 4      # packed k-tiles per warp per split, at least
_PARTIAL_CAP = 16 << 20  # split-K fp32 partials stay in L2: at most this many bytes
_SMALL_LAYER = 8192 * 8192  # below this many weights plan 5 beats plan 4 at M = 9..16
GEMV2_SMEM_CAP = 110 * 1024  # csrc/cuda/kernels.h kGemv2SmemCap: two CTAs per H100 SM


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
    counters = ((N + 127) // 128) * ((M + 63) // 64)
    counter_bytes = (counters * 4 + 255) // 256 * 256
    return counter_bytes + split_k * M * N * 4


def gemv2_smem_bytes(M: int, bits: int, n8_blocks: int, tiles: int) -> int:
    """Shared memory of one v2 decode launch of M <= 16 rows (csrc/cuda/gemv2.cuh Gemv2Cfg, kernels.h gemv2_smem)."""
    tiles = tiles if bits >= 4 else 1       # consecutive tiles per warp and chunk (Gemv2Cfg::U)
    stages = 3 if tiles == 4 else 6 if n8_blocks == 1 and tiles == 1 else 4
    ring = stages * 8 * tiles * 1024
    a_row = stages * 8 * (tiles * (256 // bits) + 8) * 2   # each warp's own activation columns
    return ring + M * a_row


# the v2 kernels (n8 blocks, tiles per warp and chunk) in the order the host tries them
_GEMV2_VARIANTS = ((1, 4), (1, 2), (2, 1))


def gemv2_launch_smem(M: int, bits: int) -> int | None:
    """Shared memory of the v2 launch for M <= 16 rows: up to 8 rows the one-n8-block kernel with the
    most tiles per warp that fits, else the two-block one; None when none fits (csrc: gemv2_smem_for)."""
    for n8, tiles in _GEMV2_VARIANTS[(0 if M <= 8 else 2):]:
        nbytes = gemv2_smem_bytes(M, bits, n8, tiles)
        if nbytes <= GEMV2_SMEM_CAP:
            return nbytes
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
              mode: str, group_size: int, allow_xla_dot: bool = True) -> CudaPlan:
    """The kernel plan for C[M, N] = A[M, K] x dequant(W)[N, K]^T on the GPU.

    allow_xla_dot: whether plan 5 (dequantize, then the caller's own dot) is
    possible; the torch shim, which runs the custom kernels only, says no.
    """
    del A_dtype, out_dtype
    M, N, K = int(M), int(N), int(K)
    bits = formats.get_format(W_dtype).bits
    # H100 measurements (benchmarks/RESULTS.md, v2): past 16 rows a second
    # plan 4 launch re-streams the weight and plan 5 wins at every shape; at
    # 9..16 rows plan 4's mma work doubles and plan 5 wins below 8192 x 8192.
    if allow_xla_dot and (M > GEMV_MAX_M or (M > 8 and N * K < _SMALL_LAYER)):
        return CudaPlan(PLAN_DEQUANT_DOT, 1, 0)
    if M > 0 and M <= GEMV_PLAN_MAX_M and gemv2_fits(M, bits, accum_dtype, mode, group_size):
        return CudaPlan(PLAN_GEMV2, 1, 0)
    tile_k = 256 // bits
    sms = num_sms()
    ncols = -(-N // 128)
    if M <= 0:
        return CudaPlan(PLAN_GEMV, 1, 0)
    # split-K partials are written once and read once by the last CTA: keep them in L2
    partial_cap = max(1, _PARTIAL_CAP // (4 * M * N))

    if M <= GEMV_PLAN_MAX_M:
        kt = K // tile_k
        gcols = -(-N // GEMV_ROWS)
        target = _GEMV_CTAS_PER_SM * sms  # about one wave of resident CTAs
        split = max(1, round(target / gcols))
        split = min(split, max(1, kt // _GEMV_MIN_TILES), partial_cap)
        split = max(1, split)
        return CudaPlan(PLAN_GEMV, split, workspace_bytes(PLAN_GEMV, split, M, N))

    plan, bm = (PLAN_GEMM64, 64) if M <= 64 else (PLAN_GEMM128, 128)
    bk = max(64, tile_k)
    kb = -(-K // bk)
    tiles = ncols * -(-M // bm)
    split = 1
    if tiles < sms:
        split = min(math.ceil(sms / tiles), max(1, kb // 4), 8, partial_cap)
        split = max(1, split)
    return CudaPlan(plan, split, workspace_bytes(plan, split, M, N))
