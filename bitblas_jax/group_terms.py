"""gemm_cutlass's group terms, held with the weight: `Matmul.group_terms`.

`gemm_cutlass` (CUTLASS's Hopper mixed-input GEMM, docs/KERNELS.md) turns each weight code into wgmma's
operand as `code * S + Z`, with two terms per group and output row in the activations' dtype: S the scale
(1 without one) and Z the dequantized weight of the code its conversion reads as 0 (value
`-plan::gemm_cutlass_value_offset`), both laid out [groups][N] as CUTLASS reads them. A call writes them
with a small kernel before its GEMM (a few microseconds, the share that matters from M = 64 to 256). They
depend only on scale and zeros, so a caller that keeps a weight can compute them once here and pass them to
every call (`Matmul.__call__(..., group_terms=)`, the Flax and torch layers' `hold_group_terms`; the torch
shim computes them in torch: `bitblas_jax.torch.ops.group_terms`); the call then skips that kernel. Every other
kernel, and the CPU, reads scale and zeros as before: the terms must be those of the same scale and zeros.

Layout: [2, rows, N] in A's dtype, S then Z. rows is the number of groups, or, where the terms come one per
row (mode none, or one group spanning K), `GEMM_CUTLASS_MAX_SPLIT` copies of that row, so a call whose plan
splits K reads its parts' rows from the same array (plan.h gemm_cutlass_held_terms_rows).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _bitblas_plan, dequant, formats
from .spec import KernelSpec


def takes(spec: KernelSpec) -> bool:
    """Whether a call of this spec can run gemm_cutlass, the one kernel that reads group terms: float16 /
    bfloat16 activations with output of the same dtype and float32 accumulation, and a weight format, group
    and shape gemm_cutlass computes (plan.h gemm_cutlass_takes)."""
    return (spec.a_dtype in ("float16", "bfloat16") and spec.out_dtype == spec.a_dtype
            and spec.accum_dtype == "float32"
            and bool(_bitblas_plan.gemm_cutlass_takes(spec.format.id, True, True, spec.group_size, spec.N, spec.K)))


def rows(spec: KernelSpec) -> int:
    """The terms' rows (plan.h gemm_cutlass_held_terms_rows)."""
    return int(_bitblas_plan.gemm_cutlass_held_terms_rows(formats.MODE_IDS[spec.mode], spec.group_size, spec.K))


def one_per_row(spec: KernelSpec) -> bool:
    """Whether the terms come one per row of each part of K (plan.h gemm_cutlass_group): mode none, or one
    group spanning K. Their rows are then copies of one."""
    return int(_bitblas_plan.gemm_cutlass_group(formats.MODE_IDS[spec.mode], spec.group_size, spec.K)) == spec.K


def shape(spec: KernelSpec) -> tuple[int, int, int]:
    return (2, rows(spec), spec.N)


def zero_code_value(spec: KernelSpec) -> np.float32:
    """The value whose code gemm_cutlass's conversion reads as 0: -plan::gemm_cutlass_value_offset, -0.0 where
    the offset is 0 (as the terms kernel's float32 -val_off)."""
    return -np.float32(_bitblas_plan.gemm_cutlass_value_offset(spec.format.id))


def check_takes(spec: KernelSpec) -> None:
    """ValueError naming the config where a call of it never reads group terms (takes)."""
    if not takes(spec):
        raise ValueError(
            f"group terms serve only calls gemm_cutlass can run (float16 / bfloat16 A with output in A's "
            f"dtype, float32 accumulation, int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights, groups of "
            f"whole 64-k stages or one per row, N % 16 == 0, K % 64 == 0); this config has A_dtype="
            f"{spec.a_dtype}, out_dtype={spec.out_dtype}, accum_dtype={spec.accum_dtype}, "
            f"W_dtype={spec.w_format}, group_size={spec.group_size}, N={spec.N}, K={spec.K}")


def compute(spec: KernelSpec, scale=None, zeros=None) -> jax.Array:
    """S and Z of the mode, [2, rows, N] in A's dtype: S = scale (1 in mode none), Z = the mode's rule
    (dequant.mode_rule) at the value whose code gemm_cutlass's conversion reads as 0, in float32, rounded
    once to A's dtype, as the call's own terms kernel computes them (csrc/cuda/gemm_cutlass.cu), so a call on
    held terms returns the same bits. scale / zeros: [N, groups] as the call takes them."""
    check_takes(spec)
    dt = jnp.dtype(spec.a_dtype)
    value = zero_code_value(spec)
    if spec.mode == "none":
        s = jnp.ones((spec.N, 1), jnp.float32)
        z = None
    else:
        s = jnp.asarray(scale).astype(jnp.float32)
        z = None if spec.mode == "scale" else jnp.asarray(zeros).astype(jnp.float32)
    Z = dequant.mode_rule(jnp.full(s.shape, value, jnp.float32), spec.mode, s, z)
    terms = jnp.stack([s.astype(dt).T, Z.astype(dt).T])          # [2, groups, N] (1 group: one per row)
    return jnp.broadcast_to(terms, shape(spec))                  # one per row: a copy for each part
