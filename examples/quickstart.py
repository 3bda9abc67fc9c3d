"""Quick start: quantize a float weight (int4, groups of 128), pack it, multiply, check the result
against its error bound, and time it against jnp.dot.

Runs on the GPU when JAX has one, else on the CPU:
    python examples/quickstart.py [--M 16] [--N 4096] [--K 4096] [--W_dtype int4] [--group_size 128]

Exits 1 when the result is outside its bound.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import bitblas_jax
from bitblas_jax import _ext, reference

# The error bound every kernel test checks (one definition, tests/cases.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from cases import Case, error_bound  # noqa: E402


def rel_rms(x, ref) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def time_call(fn, args, reps: int = 10, runs: int = 5):
    """Wall-clock seconds per call (dispatch included, as a user's loop sees it): median and spread
    of `runs` runs of `reps` calls."""
    fn(*args).block_until_ready()                      # compile and warm up
    per_call = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(reps):
            out = fn(*args)
        out.block_until_ready()
        per_call.append((time.perf_counter() - t0) / reps)
    return float(np.median(per_call)), min(per_call), max(per_call)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--N", type=int, default=4096)
    p.add_argument("--K", type=int, default=4096)
    p.add_argument("--W_dtype", default="int4")
    p.add_argument("--group_size", type=int, default=128)
    p.add_argument("--A_dtype", default="float16")
    args = p.parse_args()
    M, N, K, fmt, gs, adt = args.M, args.N, args.K, args.W_dtype, args.group_size, args.A_dtype

    dev = jax.devices()[0]
    where = dev.device_kind if dev.platform == "gpu" else f"{os.cpu_count()} cores"
    print(f"bitblas_jax {bitblas_jax.__version__} on {dev.platform} ({where}); "
          f"CUDA kernels in this install: {'yes' if _ext.has_cuda() else 'no'}")

    cfg = bitblas_jax.MatmulConfig(M=M, N=N, K=K, A_dtype=adt, W_dtype=fmt, accum_dtype="float32",
                                   out_dtype=adt, group_size=gs, with_scaling=True)
    matmul = bitblas_jax.Matmul(cfg)
    rng = np.random.default_rng()
    weight = rng.standard_normal((N, K)) * 0.02                      # a float weight [N, K]
    values, scale, _ = bitblas_jax.quantize(weight, fmt, group_size=gs, A_dtype=adt)  # round to nearest
    W_packed = matmul.transform_weight(values)                       # the kernels' layout
    A = jnp.asarray(rng.standard_normal((M, K)), adt)
    f = jax.jit(lambda a, w, s: matmul(a, w, scale=s))
    C = np.asarray(f(A, W_packed, scale), np.float64)

    group = "row" if gs == -1 else f"{gs} weights of a row (group {gs})"
    print(f"computed C[{M}, {N}] = A[{M}, {K}] x W[{N}, {K}]^T: A {adt}, W {fmt} with one {adt} scale per "
          f"{group}, float32 accumulation, {adt} output")

    # 1. The kernel against a float64 reference of exactly the quantized weight it multiplies.
    case = Case(cfg, np.asarray(values), np.asarray(scale), None, None, np.asarray(A))
    ref = case.ref()
    err, bound = np.abs(C - ref), error_bound(case)
    worst = int(np.argmax(err / bound))
    ok = bool(np.all(err <= bound))
    print(f"kernel vs float64 reference of the quantized weight: max error {err.max():.2e}, "
          f"worst element at {err.flat[worst] / bound.flat[worst]:.0%} of its bound "
          f"({bound.flat[worst]:.2e}; max |C| {np.abs(ref).max():.2f}): {'PASS' if ok else 'FAIL'}")
    print("  (the bound: float32 sums of K products plus one rounding of the weight and the output "
          f"to {adt}, element by element, as in the tests)")

    # 2. What quantizing the weight costs, against the float weight: expected, not a kernel error.
    ref_float = reference.matmul(np.asarray(A), weight)

    def quant_error(W_dtype, group_size):
        v, s, _ = bitblas_jax.quantize(weight, W_dtype, group_size=group_size, A_dtype=adt)
        wd = reference.dequantize_values(v, W_dtype, "scale", s, None, group_size, adt)
        return rel_rms(reference.matmul(np.asarray(A), wd), ref_float)

    others = "; ".join(f"as {w} g{g}: {quant_error(w, g):.1%}" for w, g in (("int8", 128), ("int4", 32))
                       if K % g == 0)
    print(f"quantization: C from the {fmt} g{gs} weight is {rel_rms(ref, ref_float):.1%} off C from the "
          "float weight (RMS), as expected: round-to-nearest moves each weight by up to half a step "
          "(int4: step = group absmax / 7), an RMS error of step / sqrt(12), which is about 12% of a "
          "Gaussian weight's RMS with groups of 128 (absmax about 2.8 sigma)."
          + (f" The same weight {others}." if others else ""))

    # 3. Speed, against what a JAX user would run otherwise.
    dense = jnp.asarray(case.wd(), adt)                              # the dequantized weight, [N, K]
    w_float = jnp.asarray(weight, jnp.float32)
    dot = jax.jit(lambda a, w: jnp.dot(a, w.T))
    timings = [("bitblas_jax (packed weight)", f, (A, W_packed, scale)),
               (f"jnp.dot, dequantized weight ({adt})", dot, (A, dense)),
               ("jnp.dot, float weight (float32)", dot, (A.astype(jnp.float32), w_float))]
    print(f"speed on {dev.platform}: wall clock per call, dispatch included, median of 5 runs of 10 calls "
          "[min - max]:")
    base = None
    for name, fn, fargs in timings:
        med, lo, hi = time_call(fn, fargs)
        base = base or med
        ratio = "" if med == base else f"   bitblas_jax speed-up: {med / base:.2f}x"
        print(f"  {name:<36} {med * 1e3:8.3f} ms  [{lo * 1e3:.3f} - {hi * 1e3:.3f}]{ratio}")
    if not ok:
        raise SystemExit(f"FAIL: {int((err > bound).sum())} of {err.size} elements outside their bound")


if __name__ == "__main__":
    main()
