"""Kernel plan of the CUDA backend, chosen from static shapes at trace time.

A heuristic (no tuning, no device query): which kernel runs (plan), how many
ways K is split across CTAs (split_k) and how many workspace bytes that needs.
The plan ids and the workspace formula are the contract with
csrc/cuda/matmul_cuda.h (cuda_workspace_bytes).

  plan 1  small-M streaming kernel (M <= 16 per launch, larger M in slices; decode)
  plan 2  tensor-core GEMM, 128 (n) x 64 (m) block tile
  plan 3  tensor-core GEMM, 128 (n) x 128 (m) block tile

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

GEMV_MAX_M = 16          # rows per gemv launch (larger M runs in slices)
GEMV_PLAN_MAX_M = 32     # up to here the gemv plan (in slices of 16 rows) beats the GEMM plans
GEMV_ROWS = 256          # weight rows per gemv CTA
_GEMV_CTAS_PER_SM = 2    # resident 256-thread CTAs per SM (shared memory)
_GEMV_MIN_TILES = 4      # packed k-tiles per warp per split, at least
_PARTIAL_CAP = 16 << 20  # split-K fp32 partials stay in L2: at most this many bytes


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
    if split_k <= 1 or plan == PLAN_AUTO:
        return 0
    counters = ((N + 127) // 128) * ((M + 63) // 64)
    counter_bytes = (counters * 4 + 255) // 256 * 256
    return counter_bytes + split_k * M * N * 4


def plan_cuda(M: int, N: int, K: int, W_dtype: str, A_dtype: str, accum_dtype: str, out_dtype: str,
              mode: str, group_size: int) -> CudaPlan:
    """The kernel plan for C[M, N] = A[M, K] x dequant(W)[N, K]^T on the GPU."""
    del A_dtype, accum_dtype, out_dtype, mode, group_size  # the plan depends on shapes and bits only
    M, N, K = int(M), int(N), int(K)
    bits = formats.get_format(W_dtype).bits
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
