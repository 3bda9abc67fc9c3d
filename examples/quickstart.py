"""Quick start: quantize a float weight to int4 (group 128), pack it, multiply, check, time.

Runs on the GPU when JAX has one, else on the CPU:
    python examples/quickstart.py [--M 16] [--N 4096] [--K 4096] [--W_dtype int4]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import bitblas_jax
from bitblas_jax import reference


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--N", type=int, default=4096)
    p.add_argument("--K", type=int, default=4096)
    p.add_argument("--W_dtype", default="int4")
    p.add_argument("--group_size", type=int, default=128)
    p.add_argument("--A_dtype", default="float16")
    args = p.parse_args()
    M, N, K = args.M, args.N, args.K
    print(f"device: {jax.devices()[0].platform} ({jax.devices()[0].device_kind})")

    cfg = bitblas_jax.MatmulConfig(M=M, N=N, K=K, A_dtype=args.A_dtype, W_dtype=args.W_dtype,
                                   accum_dtype="float32", out_dtype=args.A_dtype,
                                   group_size=args.group_size, with_scaling=True)
    matmul = bitblas_jax.Matmul(cfg)

    rng = np.random.default_rng()
    weight = rng.standard_normal((N, K)) * 0.02                      # a float weight [N, K]
    values, scale, _ = bitblas_jax.quantize(weight, args.W_dtype, group_size=args.group_size,
                                            A_dtype=args.A_dtype)   # round to nearest
    W_packed = matmul.transform_weight(values)                       # the kernels' layout
    A = jnp.asarray(rng.standard_normal((M, K)), args.A_dtype)

    f = jax.jit(lambda a, w, s: matmul(a, w, scale=s))
    C = f(A, W_packed, scale).block_until_ready()

    # float64 reference of exactly the quantized weight, and of the original float weight
    wd = reference.dequantize_values(values, args.W_dtype, "scale", scale, None, args.group_size,
                                     args.A_dtype)
    ref = reference.matmul(np.asarray(A), wd)
    err = np.abs(np.asarray(C, np.float64) - ref).max() / np.abs(ref).max()
    qerr = np.abs(ref - reference.matmul(np.asarray(A), weight)).max() / np.abs(ref).max()
    print(f"C[{M}, {N}] {C.dtype}: max |C - ref64| / max|ref64| = {err:.2e} (kernel), "
          f"{qerr:.2e} (quantization vs the float weight)")

    dense = jnp.asarray(wd, args.A_dtype)
    g = jax.jit(lambda a, w: a @ w.T)
    for name, fn, fargs in (("bitblas_jax", f, (A, W_packed, scale)), ("jnp.dot dequantized", g, (A, dense))):
        fn(*fargs).block_until_ready()
        reps, t0 = 20, time.perf_counter()
        for _ in range(reps):
            out = fn(*fargs)
        out.block_until_ready()
        print(f"{name:>22}: {(time.perf_counter() - t0) / reps * 1e6:9.1f} us per call (wall clock, incl. dispatch)")
    if err > 1e-2:
        raise SystemExit("kernel error too large")


if __name__ == "__main__":
    main()
