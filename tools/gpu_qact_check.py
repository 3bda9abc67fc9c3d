"""GPU check of int8 / float8 activations (issue 29), on a machine whose JAX sees a CUDA GPU and whose
bitblas_jax install has the CUDA kernels.

    python3 tools/gpu_qact_check.py --decode-i8    # decode_i8 only: about 1.5 minutes on an H200
    python3 tools/gpu_qact_check.py --gemm-a8      # gemm_wgmma_a8 only (sm_90): about 2 minutes
    python3 tools/gpu_qact_check.py --fp8          # float8 activations (widened_f16 and the rest): about 7 minutes
    python3 tools/gpu_qact_check.py --gemm-mma-a8  # gemm_mma_a8 only (sm_80+): about 3 minutes
    python3 tools/gpu_qact_check.py                # everything: tests on the GPU, then the timing table
    python3 tools/gpu_qact_check.py --no-bench

--decode-i8 (the int8 decode kernel, csrc/cuda/decode_i8.cuh):
1. Builds and runs tests/cuda/decode_i8_selftest.cu when nvcc is on PATH (the kernel alone: every
   format, modes none / scale, M up to 23, groups 32 / 96 / 128 / per-channel, poisoned outputs, int32
   bit for bit against int64, K = 2^16), for the GPU's architecture. About 15 s.
2. Runs the decode_i8 tests through JAX (pytest -k decode_i8: the plan rule, the lowering, and on the
   GPU every format at M = 1..16 against the int64 / float64 reference with the kernel's output buffer
   poisoned, the epilogues, K = 2^16). About 60 s.
3. Times decode_i8 against the same calls on XLA's dots (BITBLAS_JAX_DECODE_I8=0), XLA's fp16 and int8
   dots and bitblas_jax's W4A16 (the issue's target: W4A8 within 10% of it), N = K = 8192, M = 1 and 16.
   About 20 s.

--gemm-a8 (the 8-bit Hopper GEMM, csrc/cuda/gemm_wgmma_a8.cuh): builds and runs
tests/cuda/gemm_a8_selftest.cu (int8 and float8 activations, every weight format it takes, exact or
within the stated bounds, poisoned outputs), then the tests through JAX (pytest -k gemm_wgmma_a8).

--fp8 (float8 activations; above all widened_f16, float8 A widened to float16 on the 16-bit kernels):
1. Runs the float8 tests through JAX (pytest -k "widened or specials or float8 or fp8" over
   tests/test_quantized_activations.py and tests/test_gpu_plan.py: the plan rule, the lowering, and on the
   GPU every float8 A x {e4m3, e5m2, int4} weight x mode none / per-channel scale / groups of 128 and 64 /
   int4's zeros modes at M = 1, 7, 16, 17, 100, 257 on the path the plan picks (decode, gemm_wgmma,
   gemm_mma and dequantize_then_dot under widened_f16, gemm_wgmma_a8 on sm_90 above M = 16 where it
   runs, XLA's dots), poisoned outputs, NaN / inf in activations and weights, every combination's float8
   rows). Not timed yet; about 5 minutes by count (some 270 GPU cases, a jit each).
2. Times, per float8 layer, the plan's path, widened_f16 (BITBLAS_JAX_GEMM_A8=0) and XLA's dots (and
   BITBLAS_JAX_WIDENED_F16=0), with XLA's fp16 dot, N = K = 8192, M = 1, 16, 256, 1024, 4096: FP8 (e4m3
   x e4m3, per-channel scale), W4F8 (e4m3 x int4, per-channel), E5M2 (e5m2 x e5m2, mode none), fp16
   output, activations quantized per token. About 2 minutes.

--gemm-mma-a8 (the sm_80+ int8 GEMM, csrc/cuda/gemm_mma_a8.cuh): builds and runs
tests/cuda/gemm_mma_a8_selftest.cu (every int8-activation weight format, modes none / scale, M = 17 ..
300, poisoned outputs, int32 bit for bit against int64; about 30 s), its --time rows (M = 64, 256, 1024
on N = K = 8192, int8 and int4 weights), then the tests through JAX (pytest -k gemm_mma_a8: the plan
rule, the lowering, and on the GPU every format against the int64 / float64 reference; about 2 minutes).

Without --decode-i8 / --gemm-a8 / --gemm-mma-a8 / --fp8:
1. Runs tests/test_quantized_activations.py and tests/test_activation_quant.py on the GPU (every
   A x W x mode x group x out x bias combination against the float64 / int64 reference, int32 outputs
   bit for bit, the K = 2^16 limit, jit / vmap / grad, the Flax and torch layers, decode_i8's tests).
2. Builds and runs the decode_i8, gemm_wgmma_a8 and gemm_mma_a8 self-tests (as above).
3. Times, on N = K = 8192, at M = 1, 16, 256, 1024, 4096: XLA's fp16 dot, XLA's int8 dot (int8 x int8
   -> int32, the issue's baseline), and bitblas_jax W8A8 (per-channel), W4A8 (g128) and W_FP8A_FP8
   (per-tensor weight scale), activations already quantized, fp16 output. About 3-5 minutes.

Times are us per op, wall time of back-to-back calls over several weight copies
(benchmarks/bench_matmul.py's time_jit and rotation). Prints a PASS/FAIL table last; exit status 1 on any
failure.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tests(args: list[str]) -> tuple[bool, str]:
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-rs", *args],
                       cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    tail = lines[-1:] or ["(no output)"]
    skipped = [line for line in lines if "skipped (GPU tests)" in line]
    if p.returncode:
        print(p.stdout[-6000:], p.stderr[-3000:])
    elif skipped:   # GPU tests skipped on a GPU machine: the check did not check
        return False, f"{tail[0]}; {skipped[0].strip()}"
    return p.returncode == 0, tail[0]


SELFTESTS = {   # name -> the self-test source and the kernel units it links
    "decode_i8": ["tests/cuda/decode_i8_selftest.cu", "csrc/cuda/inst_decode_i8.cu"],
    "gemm_a8": ["tests/cuda/gemm_a8_selftest.cu", "csrc/cuda/inst_gemm_wgmma_a8.cu",
                "csrc/cuda/inst_gemm_wgmma_a8_f8.cu", "csrc/cuda/tma_map.cu"],
    "gemm_mma_a8": ["tests/cuda/gemm_mma_a8_selftest.cu", "csrc/cuda/inst_gemm_mma_a8.cu"],
}


def run_selftest(name: str, time_args: list[list[str]] = ()) -> tuple[bool, str]:
    """Builds tests/cuda/<name>_selftest.cu for this GPU's architecture and runs it, then once with
    `--time *args` for each of time_args (printed; a failed timing run fails the check)."""
    import jax
    if shutil.which("nvcc") is None:
        return False, "nvcc not on PATH"
    cc = str(getattr(jax.devices()[0], "compute_capability", "9.0")).replace(".", "")
    arch = "90a" if cc == "90" else cc
    exe = os.path.join(ROOT, "build", f"{name}_selftest")
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    b = subprocess.run(["nvcc", "-std=c++17", "-O3", "--expt-relaxed-constexpr",
                        f"-gencode=arch=compute_{arch},code=sm_{arch}", "-Icsrc/include", "-Icsrc/cuda",
                        *SELFTESTS[name], "-o", exe],
                       cwd=ROOT, capture_output=True, text=True)
    if b.returncode:
        return False, "build failed: " + b.stderr[-300:]
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    print(r.stdout[-3000:])
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    ok = r.returncode == 0
    for t in time_args:
        tr = subprocess.run([exe, "--time", *t], cwd=ROOT, capture_output=True, text=True)
        print(tr.stdout.strip())
        ok = ok and tr.returncode == 0
    return ok, last


def _bench_module():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))   # bench_matmul imports torch_baselines from there
    spec = importlib.util.spec_from_file_location("bench_matmul", os.path.join(ROOT, "benchmarks", "bench_matmul.py"))
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    return bm


@contextlib.contextmanager
def plan_env(name: str, value: str | None):
    """The plan's environment variable `name` set to value (None: unset) while jitted calls are traced
    inside."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def decode_i8_env(value: str | None):
    """BITBLAS_JAX_DECODE_I8 set to value (None: unset) while jitted calls are traced inside."""
    return plan_env("BITBLAS_JAX_DECODE_I8", value)


def bench_decode_i8(size: int = 8192, Ms=(1, 16), repeats: int = 5) -> tuple[list[str], list[str]]:
    """(table rows, plan names) of decode_i8 against XLA's dots at decode sizes."""
    bm = _bench_module()
    N = K = size
    weights = bm.Weights(0)   # drawn on the device once, shared by every M
    head = (f"{'M':>3} {'fp16 dot':>9} {'XLA int8':>9} {'W4A16':>9} {'W8A8':>9} {'W8A8 xla':>9} "
            f"{'W4A8':>9} {'W4A8 xla':>9}  (us per op; 'xla': the same call on XLA's dots)")
    rows, plans = [head], []
    for M in Ms:
        t = [bm.measure(bm.xla_item("fp16", M, N, K, weights), repeats)["us"],
             bm.measure(bm.xla_item("xla_int8", M, N, K, weights), repeats)["us"]]
        cfg16 = bm.bitblas_config(M, N, K, "w4g128")
        t.append(bm.measure(bm.bitblas_item(cfg16, "w4g128", weights)[0], repeats)["us"])
        for fmt in ("w8a8", "w4a8g128"):
            cfg = bm.bitblas_config(M, N, K, fmt)
            for env in (None, "0"):
                with decode_i8_env(env):
                    item = bm.bitblas_item(cfg, fmt, weights)[0]
                    t.append(bm.measure(item, repeats)["us"])   # traced (the plan read) in here
                    plans.append(f"{fmt} M={M} {'default' if env is None else 'BITBLAS_JAX_DECODE_I8=0'}: "
                                 f"{bm.plan_name(cfg, M)}")
        rows.append(f"{M:>3} " + " ".join(f"{v:>9.1f}" for v in t))
    return rows, plans


def bench(size: int = 8192, Ms=(1, 16, 256, 1024, 4096)) -> list[str]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import bitblas_jax as bj
    bm = _bench_module()
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


def bench_fp8(size: int = 8192, Ms=(1, 16, 256, 1024, 4096), repeats: int = 5) -> tuple[list[str], list[str]]:
    """(table rows, plan names) of float8 activations: the plan's path, widened_f16 (gemm_wgmma_a8 off)
    and XLA's dots (both off), with XLA's fp16 dot."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import bitblas_jax as bj
    from bitblas_jax.gpu_plan import quantized_activation_kernel
    bm = _bench_module()
    N = K = size
    rng = np.random.default_rng(0)
    configs = {   # name -> (config keywords, element values)
        "FP8": (dict(A_dtype="float8_e4m3fn", W_dtype="float8_e4m3fn", with_scaling=True),
                      rng.standard_normal((N, K)).astype(np.float32)),
        "W4F8": (dict(A_dtype="float8_e4m3fn", W_dtype="int4", with_scaling=True),
                      rng.integers(-8, 8, (N, K))),
        "E5M2": (dict(A_dtype="float8_e5m2", W_dtype="float8_e5m2"),
                      rng.standard_normal((N, K)).astype(np.float32)),
    }
    # column -> (BITBLAS_JAX_GEMM_A8, BITBLAS_JAX_WIDENED_F16): the plan's choice, widened_f16, XLA's dots
    columns = {"plan": (None, None), "widened": ("0", None), "xla": ("0", "0")}
    mms = {}
    for name, (kw, values) in configs.items():
        mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, out_dtype="float16", group_size=-1, **kw))
        s = (jnp.asarray(rng.uniform(0.5, 1.5, (N, 1)).astype(np.float32) * 1e-3)
             if mm.config.with_scaling else None)
        mms[name] = (mm, mm.transform_weight(values), s)
    w16 = jnp.asarray(rng.standard_normal((K, N)), jnp.float16)
    dot16 = jax.jit(lambda x, w: jnp.dot(x, w))
    head = f"{'M':>5} {'fp16 dot':>9}  " + "  ".join(" ".join(f"{n + ' ' + c:>12}" for c in columns)
                                                    for n in configs) + "  (us per op)"
    rows, plans = [head], []
    for M in Ms:
        x16 = jnp.asarray(rng.standard_normal((M, K)), jnp.float16)
        t = [bm.time_jit(dot16, (x16, w16), 1, repeats)["us"]]
        for name, (mm, W, s) in mms.items():
            A, a_scale = bj.quantize_activations(x16, mm.config.A_dtype, "per_token")
            for col, (a8, widened) in columns.items():
                with plan_env("BITBLAS_JAX_GEMM_A8", a8), plan_env("BITBLAS_JAX_WIDENED_F16", widened):
                    f = jax.jit(lambda A, a, W=W, s=s, mm=mm: mm(A, W, scale=s, a_scale=a))
                    t.append(bm.time_jit(f, (A, a_scale), 1, repeats)["us"])   # traced (the plan read) in here
                    c = mm.config
                    plans.append(f"{name} M={M} {col}: "
                                 f"{quantized_activation_kernel(c.A_dtype, c.W_dtype, c.mode, c.resolved_group_size, M, K)}")
        per = len(columns)
        rows.append(f"{M:>5} {t[0]:>9.1f}  " + "  ".join(
            " ".join(f"{v:>12.1f}" for v in t[1 + per * i:1 + per * (i + 1)]) for i in range(len(configs))))
    return rows, plans


def _timed(results: dict, name: str, fn):
    try:
        rows = fn()
        if isinstance(rows, tuple):
            rows, notes = rows
            print("\n".join(notes))
        print("\n".join(rows))
        results[name] = (True, f"{len(rows) - 1} rows")
    except Exception as e:  # noqa: BLE001 - reported in the table
        results[name] = (False, f"{type(e).__name__}: {e}"[:200])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decode-i8", action="store_true", help="the decode_i8 checks only (about 1.5 minutes)")
    p.add_argument("--gemm-a8", action="store_true",
                   help="the gemm_wgmma_a8 checks only (sm_90: self-test and GPU tests, about 2 minutes)")
    p.add_argument("--fp8", action="store_true",
                   help="the float8-activation checks only (widened_f16; about 7 minutes)")
    p.add_argument("--gemm-mma-a8", action="store_true",
                   help="the gemm_mma_a8 checks only (sm_80+: self-test, its timing and GPU tests, about 3 minutes)")
    p.add_argument("--no-bench", action="store_true")
    p.add_argument("--no-tests", action="store_true")
    p.add_argument("--size", type=int, default=8192, help="N = K of the timed layer")
    p.add_argument("--Ms", default=None, help="default 1,16 with --decode-i8, else 1,16,256,1024,4096")
    args = p.parse_args()
    import jax

    from bitblas_jax import _ext
    results = {"JAX sees a GPU": (jax.default_backend() == "gpu", str(jax.devices())),
               "bitblas_jax has its CUDA kernels": (_ext.has_cuda(), "built with nvcc" if _ext.has_cuda() else
                                                   "reinstall with nvcc on PATH")}
    Ms = tuple(int(m) for m in (args.Ms or ("1,16" if args.decode_i8 else "1,16,256,1024,4096")).split(","))
    if args.fp8:
        if not args.no_tests:
            results["float8 tests on the GPU"] = run_tests(
                ["tests/test_quantized_activations.py", "tests/test_gpu_plan.py",
                 "-k", "widened or specials or float8 or fp8"])
        if not args.no_bench:
            _timed(results, "widened_f16 timing ran", lambda: bench_fp8(args.size, Ms))
    elif not args.no_tests:
        results["decode_i8 CUDA selftest"] = run_selftest("decode_i8")
        only = args.decode_i8 or args.gemm_a8 or args.gemm_mma_a8
        if args.gemm_a8 or not only:
            results["gemm_wgmma_a8 CUDA selftest (sm_90)"] = run_selftest("gemm_a8")
        if args.gemm_mma_a8 or not only:
            timing = [[str(m), "8192", "8192", bits] for bits in ("8", "4") for m in (64, 256, 1024)]
            results["gemm_mma_a8 CUDA selftest"] = run_selftest("gemm_mma_a8", timing if args.gemm_mma_a8 else ())
        if args.gemm_mma_a8:
            results["gemm_mma_a8 tests on the GPU"] = run_tests(
                ["tests/test_quantized_activations.py", "tests/test_gpu_plan.py", "-k", "gemm_mma_a8"])
        elif args.gemm_a8:
            results["gemm_wgmma_a8 tests on the GPU"] = run_tests(
                ["tests/test_quantized_activations.py", "tests/test_gpu_plan.py", "-k", "gemm_wgmma_a8"])
        elif args.decode_i8:
            results["decode_i8 tests on the GPU"] = run_tests(
                ["tests/test_quantized_activations.py", "tests/test_gpu_plan.py", "-k", "decode_i8"])
        else:
            results["tests on the GPU"] = run_tests(["tests/test_quantized_activations.py",
                                                     "tests/test_activation_quant.py"])
    if not args.no_bench and not args.gemm_a8 and not args.fp8 and not args.gemm_mma_a8:
        if args.decode_i8:
            _timed(results, "decode_i8 timing ran", lambda: bench_decode_i8(args.size, Ms))
        else:
            _timed(results, "benchmark ran", lambda: bench(args.size, Ms))
    print("\nint8 / float8 activations on the GPU")
    for name, (ok, detail) in results.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
