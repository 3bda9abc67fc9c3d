"""Seeded fuzzing of the matmul against the float64 reference (tests/cases.py's derived bound).

Case `index` of seed `seed` is drawn from numpy's generator seeded with (seed, index) alone, so any
case is rebuilt from those two numbers and the options that change the draw (`device`, `force_plans`):
`command()` prints that one line (`python tools/fuzz.py --seed S --case I ...`).

A case draws: format, mode, group size (whole packed tiles or inside them), M in 0..5000 (biased to
small M and to the plan's boundaries), N, K (bounded by a work budget: M N K multiply-adds), A's dtype,
accumulation and output dtypes, bias, A's leading dims, NaN / inf in A, the bias and (fp8, 16-bit
formats) the weight, an element offset for the torch activation (a slice off the 16-byte grid), and
with force_plans an environment override of the GPU plan (gpu_plan.py). A share of the cases
(GEMM_REGIME_SHARE) is drawn where the Hopper GEMM gemm_cutlass runs, which uniform draws rarely reach:
int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1, M of 65..1024, 16-bit A and output of its dtype, float32
accumulation, groups of whole 64-k stages (or none / one per row). It runs through JAX (jit, on
`device`) and, when torch is importable, through the torch shim on the same device. Outputs are
poisoned: the JAX output buffer is a donated array of NaN (a finite sentinel where NaN is expected),
which XLA hands to the kernel as its output (whether it really wrote there is checked by pointer and
counted); the torch shim writes into a tensor of NaN through matmul.out.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os

import numpy as np

from bitblas_jax import formats, layout

from cases import check, check_nonfinite, make_case

PLAN_BOUNDARIES = (1, 2, 5, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513, 1024, 1025, 4096)
FORCED_PLANS = (  # environment overrides that reach every kernel whatever the rule picks
    {},
    {"BITBLAS_JAX_GEMM_MAX_M": "4096"},                               # the GEMM up to M = 4096
    {"BITBLAS_JAX_GEMM_MAX_M": "16"},                                 # dequantize_then_dot above 16
    {"BITBLAS_JAX_GEMM_MAX_M": "4096", "BITBLAS_JAX_HOPPER": "0"},    # gemm_mma instead of gemm_wgmma
    {"BITBLAS_JAX_NUM_SMS": "8"},                                     # other split-K choices
    {"BITBLAS_JAX_NUM_SMS": "264", "BITBLAS_JAX_GEMM_MAX_M": "1024"},
    {"BITBLAS_JAX_GEMM_CUTLASS": "0", "BITBLAS_JAX_GEMM_MAX_M": "4096"},  # gemm_wgmma where gemm_cutlass runs
    {"BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT": "1"},                      # gemm_cutlass without K split
    {"BITBLAS_JAX_NUM_SMS": "16"},                                    # gemm_cutlass's K split more often
    {"BITBLAS_JAX_GEMM_CUTLASS_STREAM_K": "0"},                       # its batch split where stream-K runs
    {"BITBLAS_JAX_GEMM_CUTLASS_STREAM_K": "2", "BITBLAS_JAX_NUM_SMS": "8"},   # its stream-K tiles, few or many
                                                                      # tiles shared (planned for 8 SMs)
    {"BITBLAS_JAX_GEMM_CUTLASS_STREAM_K": "2", "BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT": "1"},  # ... K split in
                                                                      # the kernel
    {"BITBLAS_JAX_DECODE_CLUSTER_SPLIT": "1"},                        # decode's K over a cluster (sm_90)
)
WORK_BUDGET = {"cpu": 1 << 23, "gpu": 1 << 28}     # M * N * K per case (the float64 reference runs on the host)
GEMM_REGIME_SHARE = 0.15                            # of the cases, drawn where gemm_cutlass runs (its K splits too)
GEMM_TABLE_SHARE = 0.3                              # of those, nf4 / fp4_e2m1 (its register lookup)
SENTINEL = -30000.0                                 # poison where the result may hold NaN


@dataclasses.dataclass(frozen=True)
class FuzzCase:
    seed: int
    index: int
    device: str
    force_plans: bool
    fmt: str
    mode: str
    group: int
    lead: tuple           # A's leading dims (their product is M)
    N: int
    K: int
    a_dtype: str
    accum: str
    out: str
    bias: bool
    a_special: int        # how many NaN / inf entries in A
    bias_special: bool
    w_special: int        # special codes in the weight (fp8, float16, bfloat16)
    torch_offset: int     # elements the torch activation starts past a 16-byte boundary
    env: tuple            # ((name, value), ...) plan overrides

    @property
    def M(self) -> int:
        return math.prod(self.lead)

    def describe(self) -> str:
        g = "" if self.mode == "none" else f" g{self.group}"
        sp = "".join([f" A-special{self.a_special}" if self.a_special else "",
                      " bias-special" if self.bias_special else "",
                      f" W-special{self.w_special}" if self.w_special else ""])
        env = "".join(f" {k}={v}" for k, v in self.env)
        return (f"{self.fmt} {self.mode}{g} A{list(self.lead) + [self.K]} N={self.N} {self.a_dtype} "
                f"acc={self.accum} out={self.out}{' bias' if self.bias else ''}{sp}"
                f" torch-offset={self.torch_offset}{env}")


def command(case: FuzzCase) -> str:
    """The one line that reruns this case."""
    return (f"python tools/fuzz.py --seed {case.seed} --case {case.index} --device {case.device}"
            + (" --force-plans" if case.force_plans else ""))


def _draw_m(rng) -> int:
    r = rng.random()
    if r < 0.04:
        return 0
    if r < 0.5:
        return int(rng.integers(1, 17))
    if r < 0.75:
        return max(0, int(rng.choice(PLAN_BOUNDARIES)) + int(rng.choice([-1, 0, 0, 1])))
    return int(math.exp(rng.uniform(math.log(17), math.log(5001))))


def _draw_lead(rng, M: int) -> tuple:
    r = rng.random()
    if r < 0.6 or M == 0 and r < 0.8:
        return (M,)
    if r < 0.75:
        return (1, M)
    divisors = [d for d in range(1, min(M, 64) + 1) if M % d == 0] or [1]
    d = int(rng.choice(divisors))
    return (d, M // d) if rng.random() < 0.7 else (d, 1, M // d)


def draw(seed: int, index: int, device: str = "cpu", force_plans: bool = False) -> FuzzCase:
    rng = np.random.default_rng([seed, index])
    # its own stream: every other case of a seed draws the same whatever the share
    gemm_regime = np.random.default_rng([seed, index, 5]).random() < GEMM_REGIME_SHARE
    names = ["int4", "uint4", "int8", "uint8"] if gemm_regime else sorted(formats.FORMATS)
    # its own stream too: the integer formats' cases of a seed draw the same whatever the table formats' share
    if gemm_regime and np.random.default_rng([seed, index, 6]).random() < GEMM_TABLE_SHARE:
        names = ["nf4", "fp4_e2m1"]
    fmt = formats.get_format(names[int(rng.integers(len(names)))])
    modes = formats.allowed_modes(fmt)
    mode = modes[int(rng.integers(len(modes)))]
    tk = layout.tile_k(fmt.bits)
    budget = WORK_BUDGET[device]
    M = int(math.exp(rng.uniform(math.log(65), math.log(1025)))) if gemm_regime else _draw_m(rng)
    # N, K: mostly small, sometimes LLM-sized; shrunk to the work budget (M is kept: its plan matters)
    N = 16 * int(rng.choice([1, 2, 3, 4, 8, 16, 64, 256], p=[.2, .15, .1, .15, .15, .1, .1, .05]))
    kt = int(rng.choice([1, 2, 3, 4, 8, 16, 32, 64], p=[.2, .2, .1, .15, .15, .1, .05, .05]))
    while max(M, 1) * N * kt * tk > budget and (N > 16 or kt > 1):
        if N > 16 and (N >= kt * tk // 4 or kt == 1):
            N = max(16, (N // 2) // 16 * 16)
        else:
            kt = max(1, kt // 2)
    K = kt * tk
    if max(M, 1) * N * K > budget:
        M = budget // (N * K)
    group = -1
    if mode != "none" and rng.random() < 0.8:
        sizes = (64, 128, 256, 512, 1024) if gemm_regime else (8, 16, 32, 64, 128, 256, 512, 1024)
        choices = [g for g in sizes if K % g == 0 and g < K]
        if choices:
            group = int(rng.choice(choices))
    if gemm_regime:
        a_dtype = str(rng.choice(["float16", "bfloat16"]))
        accum, out = "float32", a_dtype
    else:
        a_dtype = str(rng.choice(["float16", "bfloat16", "float32"], p=[.45, .45, .1]))
        accum = "float16" if a_dtype == "float16" and rng.random() < 0.3 else "float32"
        out = str(rng.choice(["float16", "bfloat16", "float32"]))
    bias = bool(rng.random() < 0.5)
    a_special = int(rng.integers(1, 4)) if rng.random() < 0.08 and M > 0 else 0
    bias_special = bias and rng.random() < 0.04
    w_special = int(rng.integers(1, 5)) if fmt.kind in ("fp8", "dense") and rng.random() < 0.2 else 0
    torch_offset = int(rng.choice([0, 0, 1, 2, 3, 4, 7]))
    env = FORCED_PLANS[int(rng.integers(len(FORCED_PLANS)))] if force_plans else {}
    return FuzzCase(seed, index, device, force_plans, fmt.name, mode, group, _draw_lead(rng, M), N, K,
                    a_dtype, accum, out, bias, a_special, bias_special, w_special, torch_offset,
                    tuple(sorted(env.items())))


_WEIGHT_SPECIALS = {"float8_e4m3fn": [0x7F, 0xFF], "float8_e5m2": [0x7C, 0xFC, 0x7D, 0xFF],
                    "float16": [0x7C00, 0xFC00, 0x7E00], "bfloat16": [0x7F80, 0xFF80, 0x7FC0]}


def build(fc: FuzzCase):
    """The cases.Case of a fuzz case, specials injected."""
    rng = np.random.default_rng([fc.seed, fc.index, 1])
    case = make_case(rng, fc.fmt, fc.mode, fc.group, fc.a_dtype, fc.accum, fc.out, fc.bias,
                     M=max(fc.M, 1), N=fc.N, K=fc.K, a_shape=fc.lead + (fc.K,))
    specials = np.array([np.nan, np.inf, -np.inf])
    if fc.a_special:
        flat = case.A.reshape(-1)          # a view: writes go to case.A
        flat[rng.integers(0, flat.size, fc.a_special)] = rng.choice(specials, fc.a_special)
    if fc.bias_special:
        case.bias[rng.integers(0, fc.N)] = rng.choice(specials)
    if fc.w_special:
        wide = formats.get_format(fc.fmt).bits == 16
        codes = case.values.view(np.uint16 if wide else np.uint8).copy()
        for _ in range(fc.w_special):
            codes[rng.integers(0, fc.N), rng.integers(0, fc.K)] = rng.choice(_WEIGHT_SPECIALS[fc.fmt])
        case.values = codes.view(case.values.dtype)
    return case


@contextlib.contextmanager
def plan_env(env):
    """Plan overrides (a mapping or (name, value) pairs) in os.environ, where the plan reads them at
    trace time; restored afterwards. Not thread-safe: trace under it before starting threads."""
    env = dict(env)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _expects_nonfinite(fc: FuzzCase) -> bool:
    return bool(fc.a_special or fc.bias_special or fc.w_special)


def run_jax(fc: FuzzCase, case, device, held_terms: bool = False):
    """(output, whether the kernel wrote into the poisoned buffer). held_terms: the call holds its group
    terms (Matmul.group_terms, computed first)."""
    import jax
    import jax.numpy as jnp
    args = [case.A, case.packed(), case.scale, case.zeros, case.bias]
    args = [None if a is None else jax.device_put(jnp.asarray(a), device) for a in args]
    args.append(jax.jit(case.mm.group_terms)(args[2], args[3]) if held_terms else None)
    # made on the device itself, as on a machine without a GPU: on a GPU machine (JAX's default device
    # there) a poison copied over to the CPU was not always taken as the donated output buffer
    with jax.default_device(device):
        poison = jnp.full(fc.lead + (fc.N,), SENTINEL if _expects_nonfinite(fc) else np.nan,
                          formats.NUMPY_DTYPES[fc.out])
    ptr = poison.unsafe_buffer_pointer() if poison.size else None
    f = jax.jit(lambda p, A, W, s, z, b, t: case.mm(A, W, scale=s, zeros=z, bias=b, group_terms=t),
                donate_argnums=0, keep_unused=True)    # a fresh function: traced now, under plan_env
    out = f(poison, *args)
    written = out.size == 0 or out.unsafe_buffer_pointer() == ptr
    return np.asarray(out), written


def run_torch(fc: FuzzCase, case, device: str):
    """(output, True) through torch.ops.bitblas_jax.matmul.out, which writes into poison."""
    import torch

    from bitblas_jax.torch import ops
    from test_torch import TD, to_numpy, to_torch
    ops._plan.cache_clear()                            # the plan cache does not see plan_env
    A = to_torch(case.A, device)
    if fc.torch_offset:                                # the same values, off the 16-byte grid
        buf = torch.empty(A.numel() + fc.torch_offset, dtype=A.dtype, device=device)
        A = buf[fc.torch_offset:].view(A.shape).copy_(A)
    W = to_torch(np.asarray(case.packed()), device)
    aux = [None if x is None else to_torch(x, device) for x in (case.scale, case.zeros, case.bias)]
    out = torch.full(A.shape[:-1] + (fc.N,), SENTINEL if _expects_nonfinite(fc) else float("nan"),
                     dtype=TD[fc.out], device=device)
    torch.ops.bitblas_jax.matmul.out(A, W, *aux, fc.fmt, fc.mode, case.cfg.group_size, fc.accum, fc.out, out=out)
    return to_numpy(out), True


def check_result(fc: FuzzCase, case, out) -> None:
    """AssertionError unless out matches the float64 reference under the bound."""
    if _expects_nonfinite(fc):
        # zero points applied through activation sums (the decode kernel) may turn inf - inf into NaN
        check_nonfinite(case, out, inf_may_be_nan=fc.mode in formats.ZEROS_MODES)
    else:
        check(case, out)


def plans(fc: FuzzCase) -> dict:
    """The GPU plan of each path: {"jax": (kernel, split_k), "torch": (kernel, split_k)} (plan_cuda under
    the case's environment; the torch shim's plan has no XLA dot and sees A's alignment; kernel:
    gpu_plan.kernel_label, which names gemm_cutlass's stream-K tiles apart)."""
    from bitblas_jax import gpu_plan
    args = (fc.M, fc.N, fc.K, fc.fmt, fc.a_dtype, fc.accum, fc.out, fc.mode, fc.K if fc.group == -1 else fc.group)
    out = {}
    with plan_env(fc.env):
        p = gpu_plan.plan_cuda(*args)
        out["jax"] = (gpu_plan.kernel_label(p), p.split_k)
        if fc.a_dtype != "float32":
            itemsize = np.dtype(formats.NUMPY_DTYPES[fc.a_dtype]).itemsize
            p = gpu_plan.plan_cuda(*args, allow_xla_dot=False, a_aligned=fc.torch_offset * itemsize % 16 == 0)
            out["torch"] = (gpu_plan.kernel_label(p), p.split_k)
    return out


def run_case(fc: FuzzCase, use_torch: bool = True) -> dict:
    """Runs one case; returns {"failures": [...], "paths": the paths run ("jax", "jax-held-terms", "torch"),
    "poisoned": those whose output was written into poisoned memory, "plans": plans() of the paths
    run (the GPU and M > 0 only)}."""
    import jax
    res = {"failures": [], "poisoned": [], "paths": [], "plans": {}}
    device = jax.devices("cuda" if fc.device == "gpu" else "cpu")[0]
    with plan_env(fc.env):
        try:
            case = build(fc)
        except Exception as e:          # noqa: BLE001 - a case the generator should not draw
            res["failures"].append(f"build: {type(e).__name__}: {e}")
            return res
        paths = [("jax", lambda: run_jax(fc, case, device))]
        if fc.device == "gpu" and fc.M and case.mm.holds_group_terms:    # gemm_cutlass on held terms
            paths.append(("jax-held-terms", lambda: run_jax(fc, case, device, held_terms=True)))
        if use_torch and _torch_available() and not (fc.device == "gpu" and fc.a_dtype == "float32"):
            paths.append(("torch", lambda: run_torch(fc, case, "cuda" if fc.device == "gpu" else "cpu")))
        if fc.device == "gpu" and fc.M:
            res["plans"] = {k: v for k, v in plans(fc).items() if k in dict(paths)}
        for name, run in paths:
            res["paths"].append(name)
            try:
                out, written = run()
                if written:
                    res["poisoned"].append(name)
                check_result(fc, case, out)
            except Exception as e:      # noqa: BLE001 - every failure is reported with its case
                res["failures"].append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
    return res


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
        import bitblas_jax.torch  # noqa: F401
        return True
    except ImportError:
        return False
