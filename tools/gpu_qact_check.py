"""GPU check of int8 / float8 activations (issue 29), on a machine whose JAX sees a CUDA GPU.

    python3 tools/gpu_qact_check.py            # tests on the GPU, then a short timing table
    python3 tools/gpu_qact_check.py --no-bench

1. Runs tests/test_quantized_activations.py and tests/test_activation_quant.py on the GPU (every
   A x W x mode x group x out x bias combination against the float64 / int64 reference, int32 outputs
   bit for bit, the K = 2^16 limit, jit / vmap / grad, the Flax and torch layers).
2. Times, on N = K = 8192, at M = 1, 16, 256, 1024, 4096: XLA's fp16 dot, XLA's int8 dot (int8 x int8
   -> int32, the issue's baseline), and bitblas_jax W8A8 (per-channel), W4A8 (g128) and W_FP8A_FP8
   (per-tensor weight scale), activations already quantized, fp16 output; us per op, wall time of
   back-to-back calls (benchmarks/bench_matmul.py's time_jit).
Prints a PASS/FAIL table last; exit status 1 on any failure. About 3-5 minutes on an H200 (mostly
compiling the tests' ~1,000 small jitted calls).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tests() -> tuple[bool, str]:
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                        "tests/test_quantized_activations.py", "tests/test_activation_quant.py"],
                       cwd=ROOT, capture_output=True, text=True)
    tail = [line for line in p.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
    if p.returncode:
        print(p.stdout[-6000:], p.stderr[-3000:])
    return p.returncode == 0, tail[0]


def bench(size: int = 8192, Ms=(1, 16, 256, 1024, 4096)) -> list[str]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import bitblas_jax as bj
    spec = importlib.util.spec_from_file_location("bench_matmul", os.path.join(ROOT, "benchmarks", "bench_matmul.py"))
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    N = K = size
    rng = np.random.default_rng(0)
    rows = [f"{'M':>5} {'fp16 dot':>9} {'XLA int8':>9} {'W8A8':>9} {'W4A8 g128':>10} {'FP8xFP8':>9}  (us per op)"]
    configs = {
        "W8A8": (dict(A_dtype="int8", W_dtype="int8", group_size=-1), rng.integers(-127, 128, (N, K))),
        "W4A8": (dict(A_dtype="int8", W_dtype="int4", group_size=128), rng.integers(-8, 8, (N, K))),
        "FP8": (dict(A_dtype="float8_e4m3fn", W_dtype="float8_e4m3fn", group_size=-1),
                rng.standard_normal((N, K)).astype(np.float32)),
    }
    ops = {}
    for name, (kw, values) in configs.items():
        mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, out_dtype="float16", with_scaling=True, **kw))
        W = mm.transform_weight(values)
        s = jnp.asarray(rng.uniform(0.5, 1.5, (N, mm.config.num_groups)).astype(np.float32) * 1e-3)
        ops[name] = (jax.jit(lambda A, a, W=W, s=s, mm=mm: mm(A, W, scale=s, a_scale=a)), mm.config.A_dtype)
    w16 = jnp.asarray(rng.standard_normal((K, N)), jnp.float16)
    w8 = jnp.asarray(rng.integers(-127, 128, (K, N)), jnp.int8)
    dot16 = jax.jit(lambda x, w: jnp.dot(x, w))
    dot8 = jax.jit(lambda x, w: jax.lax.dot(x, w, preferred_element_type=jnp.int32))
    for M in Ms:
        x16 = jnp.asarray(rng.standard_normal((M, K)), jnp.float16)
        x8, a8 = bj.quantize_activations(x16, "int8")
        xf8, af8 = bj.quantize_activations(x16, "float8_e4m3fn", "per_tensor")
        t = lambda f, *args: bm.time_jit(f, args, 1, 5)["us"]  # noqa: E731
        r = [t(dot16, x16, w16), t(dot8, x8, w8), t(ops["W8A8"][0], x8, a8), t(ops["W4A8"][0], x8, a8),
             t(ops["FP8"][0], xf8, af8)]
        rows.append(f"{M:>5} " + " ".join(f"{v:>9.1f}" if i != 3 else f"{v:>10.1f}" for i, v in enumerate(r)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-bench", action="store_true")
    p.add_argument("--no-tests", action="store_true")
    p.add_argument("--size", type=int, default=8192, help="N = K of the timed layer")
    p.add_argument("--Ms", default="1,16,256,1024,4096")
    args = p.parse_args()
    import jax
    results = {"JAX sees a GPU": (jax.default_backend() == "gpu", str(jax.devices()))}
    if not args.no_tests:
        results["tests on the GPU"] = run_tests()
    if not args.no_bench:
        try:
            rows = bench(args.size, tuple(int(m) for m in args.Ms.split(",")))
            print("\n".join(rows))
            results["benchmark ran"] = (True, f"{len(rows) - 1} rows")
        except Exception as e:  # noqa: BLE001 - reported in the table
            results["benchmark ran"] = (False, f"{type(e).__name__}: {e}"[:200])
    print("\nint8 / float8 activations on the GPU")
    for name, (ok, detail) in results.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
