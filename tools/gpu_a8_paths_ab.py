"""Three GPU paths of one int8 / float8-activation call, timed through JAX on the same inputs (a GPU and the
CUDA kernels needed):

  kernel  the call as the plan runs it: the 8-bit kernel's epilogue applies the weight scales, the
          activation scales (a_scale), the bias and the cast, writing C once
  after   the same kernel writing float32 v, then XLA's elementwise pass for a_scale, the bias and the cast
          (quantized_dot.epilogue): what the activation-scale operand saves
  xla     XLA's own dots (quantized_dot.matmul_xla; the kernels turned off by their environment overrides):
          whether the plan should route the point there

    python3 tools/gpu_a8_paths_ab.py                       # W8A8, W4A8 g128, W_FP8A_FP8 at M = 1024 / 4096
    python3 tools/gpu_a8_paths_ab.py --points 18944x3584x1024 --formats w8a8

Per call: wall time through JAX of one jitted sequence over 8 weight copies (beyond the L2), median of
--reps, divided by 8; float16 output with a bias and per-token activation scales. Prints one line per
(point, format) as it goes, with the largest difference of `after` and `xla` from `kernel` relative to the
output's largest magnitude.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import bitblas_jax as bj
from bitblas_jax import primitive, quantized_dot

FORMATS = {"w8a8": ("int8", -1, "int8"), "w4a8g128": ("int4", 128, "int8"),
           "fp8a8": ("float8_e4m3fn", -1, "float8_e4m3fn")}
KERNELS_OFF = {"BITBLAS_JAX_DECODE_I8": "0", "BITBLAS_JAX_GEMM_A8": "0", "BITBLAS_JAX_GEMM_MMA_A8": "0",
               "BITBLAS_JAX_WIDENED_F16": "0"}
COPIES = 8


def _time(f, args, reps: int) -> float:
    for _ in range(3):
        jax.block_until_ready(f(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) / COPIES * 1e6


def _inputs(mm: bj.Matmul, M: int, rng):
    cfg = mm.config
    if cfg.A_dtype == "int8":
        A = jnp.asarray(rng.integers(-127, 128, (M, cfg.K)), jnp.int8)
    else:
        A = jnp.asarray(rng.uniform(-2, 2, (M, cfg.K)), jnp.float32).astype(cfg.A_dtype)
    top = 0x70 if cfg.W_dtype.startswith("float8") else 256        # float8 weights: finite codes only
    Ws = [jax.random.randint(jax.random.PRNGKey(i), (cfg.N, cfg.K * cfg.format.bits // 8), 0, top,
                             jnp.int32).astype(jnp.uint8) for i in range(COPIES)]
    scale = jnp.asarray(rng.uniform(0.5, 1.5, (cfg.N, cfg.num_groups)) * 1e-3, jnp.float32)
    bias = jnp.asarray(rng.uniform(-1, 1, cfg.N), jnp.float32)
    a_scale = jnp.asarray(rng.uniform(0.5, 1.5, M) * 1e-2, jnp.float32)
    return A, Ws, scale, bias, a_scale


def run(N: int, K: int, M: int, fmt: str, reps: int) -> None:
    w, group, a = FORMATS[fmt]
    mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, A_dtype=a, W_dtype=w, out_dtype="float16", group_size=group,
                                   with_scaling=True, with_bias=True))
    args = _inputs(mm, M, np.random.default_rng(0))
    call = lambda A, Ws, s, b, r: [mm(A, W, scale=s, bias=b, a_scale=r) for W in Ws]  # noqa: E731
    spec32 = dataclasses.replace(mm.spec, out_dtype="float32")
    none = primitive.empty(jnp.float32)

    def after(A, Ws, s, b, r):
        v = [primitive.bind(A, W, s, none, none, primitive.empty(A.dtype), none, spec32) for W in Ws]
        return [quantized_dot.epilogue(x, b, "float16", r[:, None]) for x in v]

    kernel, after = jax.jit(call), jax.jit(after)
    ref = np.asarray(kernel(*args)[0], np.float64)
    t_kernel, t_after = _time(kernel, args, reps), _time(after, args, reps)
    saved = {k: os.environ.get(k) for k in KERNELS_OFF}
    os.environ.update(KERNELS_OFF)
    try:
        xla = jax.jit(lambda *xs: call(*xs))          # traced now, with the kernels off
        got_xla = np.asarray(xla(*args)[0], np.float64)
        t_xla = _time(xla, args, reps)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    mag = max(np.abs(ref).max(), 1e-30)
    d_after = np.abs(np.asarray(after(*args)[0], np.float64) - ref).max() / mag
    print(f"{fmt:9s} {N}x{K:<6d} M={M:<5d} kernel {t_kernel:8.1f} us  after {t_after:8.1f} us "
          f"(x{t_after / t_kernel:.3f})  xla {t_xla:8.1f} us (x{t_xla / t_kernel:.3f})  "
          f"diff {d_after:.1e} / {np.abs(got_xla - ref).max() / mag:.1e}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", default="18944x3584x1024,29568x8192x1024,4096x4096x1024,18944x3584x4096,"
                                       "29568x8192x4096,4096x4096x4096", help="NxKxM, comma-separated")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--reps", type=int, default=12)
    args = p.parse_args()
    print(jax.devices()[0].device_kind)
    for point in args.points.split(","):
        N, K, M = map(int, point.split("x"))
        for fmt in args.formats.split(","):
            run(N, K, M, fmt, args.reps)


if __name__ == "__main__":
    main()
