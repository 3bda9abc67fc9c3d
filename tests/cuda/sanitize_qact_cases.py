"""The int8 / float8-activation cases compute-sanitizer runs beside the 16-bit ones (sanitize_cases.py
calls run_cases): every quantized-activation kernel (decode_i8, gemm_wgmma_a8 with int8 and float8
activations, gemm_mma_a8, widened_f16 on the 16-bit kernels), through JAX (most float-output cases with
activation scales per row, which the 8-bit kernels read in their epilogue) and the torch shim, each result
checked against the float64 / int64 reference (tests/cases.py check_quantized). float8 operands are
integer-valued (|a|, |w| <= 8), so the float8 tensor cores' sums are exact and every path is held to the
float32 bound. The plan of each case comes from the rule or from the environment overrides it sets.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cases import check_quantized, make_qcase  # noqa: E402
from fuzz import plan_env  # noqa: E402

A8_OFF = {"BITBLAS_JAX_GEMM_A8": "0"}       # what gemm_wgmma_a8 would take goes to the next rule on sm_90

# (A dtype, weight format, mode, group, out dtype, M, N, K, environment)
SPECS = [
    ("int8", "int4", "scale", 128, "float16", 4, 64, 1024, {}),                  # decode_i8
    ("int8", "int8", "none", -1, "int32", 16, 64, 1024, {}),
    ("int8", "int8", "none", -1, "int32", 100, 272, 1024, {}),                    # gemm_wgmma_a8 (sm_90)
    ("int8", "int4", "scale", 128, "bfloat16", 200, 272, 1024, {}),               # its group scales
    ("int8", "uint4", "scale", -1, "float16", 70, 272, 1024, {}),                 # per channel
    ("float8_e4m3fn", "float8_e4m3fn", "scale", 256, "float16", 100, 272, 1024, {}),
    ("float8_e5m2", "int4", "none", -1, "float32", 300, 144, 512, {}),
    ("int8", "int8", "scale", -1, "float16", 100, 136 * 128 + 16, 256, {}),       # activation tiles first
    ("int8", "int2", "scale", 64, "float32", 100, 272, 1024, {}),                 # gemm_mma_a8
    ("int8", "int4", "none", -1, "int32", 130, 272, 1024, A8_OFF),
    ("float8_e4m3fn", "float8_e5m2", "scale", -1, "bfloat16", 8, 64, 1024, {}),   # widened_f16
    ("float8_e5m2", "int4", "original", -1, "float32", 200, 272, 1024, A8_OFF),
    ("int8", "uint4", "scale", 64, "bfloat16", 13, 64, 1024, {}),                 # decode_i8, 2 activation tiles
]


def _integer_valued(case, rng):
    """float8 cases with integer activations in [-8, 8] and weights in [-8, 7] (exact tensor-core sums)."""
    if case.cfg.A_dtype == "int8":
        return case
    A = rng.integers(-8, 9, case.A.shape).astype(np.float32).astype(case.A.dtype)
    values = rng.integers(-8, 8, case.values.shape).astype(np.float32).astype(case.values.dtype)
    return dataclasses.replace(case, A=A, values=values)


def _plan(case) -> str:
    from bitblas_jax import gpu_plan
    c = case.cfg
    return gpu_plan.quantized_activation_kernel(c.A_dtype, c.W_dtype, c.mode, c.resolved_group_size, c.M, c.K)


def _run_jax(case):
    import jax
    import jax.numpy as jnp
    dev = jax.devices("gpu")[0]
    put = lambda x: None if x is None else jax.device_put(jnp.asarray(x), dev)  # noqa: E731
    f = jax.jit(lambda A, W, s, z, b, a: case.mm(A, W, scale=s, zeros=z, bias=b, a_scale=a))
    return np.asarray(f(put(case.A), put(case.packed()), put(case.scale), put(case.zeros), put(case.bias),
                        put(case.a_scale)))


def _run_torch(case):
    import torch

    from bitblas_jax.torch import quantized_cuda
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from test_torch_qact import op_args, to_numpy
    quantized_cuda.kernel_for.cache_clear()          # the environment of this case, not an earlier one's
    out = torch.ops.bitblas_jax.matmul(*op_args(case, "cuda"))
    torch.cuda.synchronize()
    return to_numpy(out), quantized_cuda.kernel_for(torch.cuda.current_device(), case.cfg.M, case.cfg.K,
                                                    case.cfg.W_dtype, case.cfg.A_dtype, case.cfg.mode,
                                                    case.cfg.resolved_group_size)


def run_cases(list_only: bool = False, only=None, torch_too: bool = True) -> tuple[dict, int]:
    """Runs (or lists) the cases; returns (path -> set of kernels reached, failures)."""
    reached = collections.defaultdict(set)
    failed = 0
    for i, (a_dtype, w, mode, group, out, M, N, K, env) in enumerate(SPECS):
        if only is not None and i not in only:
            continue
        rng = np.random.default_rng(1000 + i)
        bias = i % 2 == 0 and out != "int32"
        a_scale = "token" if i % 3 != 2 and out != "int32" else None
        case = _integer_valued(make_qcase(rng, a_dtype, w, mode, group, out, with_bias=bias, M=M, N=N, K=K,
                                          a_scale=a_scale), rng)
        notes = []
        with plan_env(env):
            kernel = _plan(case)
            reached["jax"].add(kernel)
            line = f"[q{i:2d}] {a_dtype} x {w} {mode} g{group} -> {out} M={M} N={N} K={K} {dict(env) or ''}: " \
                   f"jax {kernel}"
            if not list_only:
                try:
                    check_quantized(case, _run_jax(case))
                except Exception as e:  # noqa: BLE001 - reported per case
                    notes.append(f"jax: {type(e).__name__}: {str(e)[:200]}")
                if torch_too:
                    try:      # the torch op takes no activation scales (its layer applies them after)
                        torch_case = dataclasses.replace(case, a_scale=None)
                        got, tk = _run_torch(torch_case)
                        reached["torch"].add(tk)
                        line += f", torch {tk}"
                        check_quantized(torch_case, got)
                    except ImportError:
                        torch_too = False
                    except Exception as e:  # noqa: BLE001
                        notes.append(f"torch: {type(e).__name__}: {str(e)[:200]}")
        failed += bool(notes)
        print(line + (": FAIL " + "; ".join(notes) if notes else (": listed" if list_only else ": ok")), flush=True)
    return reached, failed


def missing_coverage(reached: dict, sm90: bool, torch_ran: bool) -> list[str]:
    want = ["decode_i8", "gemm_mma_a8", "widened_f16"] + ["gemm_wgmma_a8"] * sm90
    paths = ["jax"] + ["torch"] * torch_ran
    return [f"{p} {k}" for p in paths for k in want if k not in reached.get(p, set())]
