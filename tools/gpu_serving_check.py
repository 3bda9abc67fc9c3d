"""Serving checks on one GPU (issue: sharded weights, traced creation, on-device quantization).

    python tools/gpu_serving_check.py            # about a minute on one H200

Prints a table:
  * the sharding path on one device: Matmul under jax.jit with NamedShardings of a 1-device
    mesh (Auto and Explicit), a K-shard-packed weight, and nnx.jit-created Flax layers, each
    against the plain call (bit-identical expected);
  * the jitted quantizer on the GPU against the NumPy reference (bits), on rounding ties;
  * the time of quantize_model on a 7B-shaped model (32 blocks of Llama-2-7B layers,
    bf16 kernels created on the GPU), int4 g128, after one warm-up block.
Exit status 1 if any check fails.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402

import bitblas_jax as bj  # noqa: E402
from bitblas_jax.flax import Linear, quantize_model  # noqa: E402

ROWS = []


def row(name, ok, detail=""):
    ROWS.append((name, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name:<58} {detail}", flush=True)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def sharding_single_device():
    dev = jax.devices()[0]
    rng = np.random.default_rng(0)
    for (M, N, K, fmt, g) in ((1, 4096, 4096, "int4", 128), (16, 4096, 4096, "nf4", 128),
                              (64, 11008, 4096, "int4", 128), (512, 4096, 4096, "int8", -1)):
        cfg = bj.MatmulConfig(N=N, K=K, A_dtype="float16", W_dtype=fmt, group_size=g, with_scaling=True,
                              with_bias=True)
        vals, scale, _ = bj.quantize(jnp.asarray(rng.standard_normal((N, K)), jnp.float32), fmt, g)
        A = jnp.asarray(rng.standard_normal((M, K)), jnp.float16)
        b = jnp.asarray(rng.standard_normal(N), jnp.float16)
        mm = bj.Matmul(cfg)
        W = mm.transform_weight(vals)
        ref = jax.jit(lambda A, W, s, b: mm(A, W, scale=s, bias=b))(A, W, scale, b)
        for kind in (AxisType.Auto, AxisType.Explicit):
            mesh = jax.make_mesh((1, 1), ("data", "model"), axis_types=(kind,) * 2, devices=[dev])
            specs = (P("data"), P("model"), P("model"), P("model"))
            with jax.set_mesh(mesh):
                args = [jax.device_put(x, NamedSharding(mesh, p)) for x, p in zip((A, W, scale, b), specs)]
                out = jax.jit(lambda A, W, s, b: mm(A, W, scale=s, bias=b))(*args)
            row(f"1-device mesh {kind.name:<8} {fmt} M={M} {N}x{K}", same_bits(out, ref))
        mm4 = bj.Matmul(cfg, k_shards=4)
        out = jax.jit(lambda A, W, s, b: mm4(A, W, scale=s, bias=b))(A, mm4.transform_weight(vals), scale, b)
        row(f"K-shard-packed weight (k_shards=4) {fmt} M={M}", same_bits(out, ref))
    # The quantizer under nnx.jit must give eager's bits for the same float kernel. A uniform draw
    # scaled by a power of two is the same float kernel under any compilation; XLA may compile the
    # default (normal) initializer differently inside a larger jit (fusion, FMA contraction), so
    # there the float draw can differ by ulps, and a code or a group's scale may move by one step.
    exact_init = lambda key, shape, dtype: (jax.random.uniform(key, shape, dtype) - 0.5) * 0.125  # noqa: E731
    make = lambda: Linear(4096, 4096, W_dtype="int4", group_size=128, dtype=jnp.float16,  # noqa: E731
                          kernel_init=exact_init, rngs=nnx.Rngs(0))
    eager, traced = make(), nnx.jit(make)()
    identical = all(same_bits(a, b) for a, b in zip(jax.tree.leaves(nnx.state(eager)),
                                                    jax.tree.leaves(nnx.state(traced))))
    row("Linear created under nnx.jit == eager (same float kernel)", identical and np.asarray(eager.qweight[...]).any())
    plain = lambda: nnx.Linear(4096, 4096, param_dtype=jnp.float32, rngs=nnx.Rngs(0))  # noqa: E731
    floats_same = same_bits(plain().kernel[...], nnx.jit(plain)().kernel[...])
    make = lambda: Linear(4096, 4096, W_dtype="int4", group_size=128, dtype=jnp.float16,  # noqa: E731
                          rngs=nnx.Rngs(0))
    eager, traced = make(), nnx.jit(make)()
    deq = lambda lin: np.asarray(bj.Matmul(lin.config).dequantize(lin.qweight[...], lin.scales[...]),  # noqa: E731
                                 np.float64)
    step = np.repeat(np.maximum(np.abs(np.asarray(eager.scales[...], np.float64)),
                                np.abs(np.asarray(traced.scales[...], np.float64))), 128, axis=-1)
    diff = np.abs(deq(eager) - deq(traced))
    ok = bool((diff <= 1.02 * step).all()) if not floats_same else bool((diff == 0).all())
    row("Linear (default init) under nnx.jit vs eager", ok and np.asarray(traced.qweight[...]).any(),
        "float draw identical, codes identical" if floats_same and ok else
        f"XLA's float draw differs by ulps: {(diff > 0).sum()} of {diff.size} weights moved")


def quantizer_bits():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4096, 4096)).astype(np.float32)
    for fmt, kw in (("int4", dict(group_size=128)), ("uint4", dict(group_size=128, with_zeros=True,
                                                                    zeros_mode="quantized")),
                    ("nf4", dict(group_size=64)), ("int8", dict(group_size=-1)),
                    ("float8_e4m3fn", dict(group_size=128)), ("int1", dict(group_size=128)),
                    ("uint4", dict(group_size=128, with_zeros=True, zeros_mode="rescale", A_dtype="float32"))):
        ref = bj.quantize(w, fmt, **kw)
        got = bj.quantize(jnp.asarray(w), fmt, **kw)
        row(f"quantize on GPU == NumPy: {fmt} {kw}", all(x is None or same_bits(x, y) for x, y in zip(ref, got)))
    # rounding ties, where a reciprocal-multiply division would differ
    s0 = rng.uniform(0.01, 1.0, (1024, 8, 1)).astype(np.float16).astype(np.float32)
    k = rng.integers(-7, 7, (1024, 8, 128)).astype(np.float32)
    tie = ((k + 0.5) * s0).astype(np.float32)
    wt = np.nextafter(tie, tie + rng.choice([-1.0, 1.0], tie.shape) * np.inf).astype(np.float32)
    wt[..., 0] = 7 * s0[..., 0]
    wt = wt.reshape(1024, 1024)
    ref, got = bj.quantize(wt, "int4", 128), bj.quantize(jnp.asarray(wt), "int4", 128)
    row("quantize on GPU == NumPy on rounding ties (int4)", all(same_bits(x, y) for x, y in zip(ref[:2], got[:2])))
    wn = w.copy()
    wn[5, 300] = np.nan
    _, s, _ = jax.jit(lambda w: bj.quantize(w, "int4", 128))(jnp.asarray(wn))
    s = np.asarray(s).astype(np.float32)
    row("NaN under jit -> that group's scale is NaN only", np.isnan(s[5, 2]) and np.isnan(s).sum() == 1)


class _Block(nnx.Module):
    """Llama-2-7B's linear layers (bf16 kernels)."""

    def __init__(self, rngs):
        mk = lambda i, o: nnx.Linear(i, o, use_bias=False, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16,  # noqa: E731
                                     kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
        self.q, self.k, self.v, self.o = (mk(4096, 4096) for _ in range(4))
        self.gate, self.up, self.down = mk(4096, 11008), mk(4096, 11008), mk(11008, 4096)


class _Model(nnx.Module):
    def __init__(self, n, rngs):
        self.blocks = nnx.List([_Block(rngs) for _ in range(n)])


def quantize_7b_time():
    warm = _Model(1, nnx.Rngs(0))
    quantize_model(warm, "int4", 128, progress=False, verbose=False)   # compiles the per-shape programs
    model = _Model(32, nnx.Rngs(1))
    jax.block_until_ready(nnx.state(model))
    t0 = time.perf_counter()
    _, summary = quantize_model(model, "int4", 128, progress=False, verbose=False, return_summary=True)
    dt = time.perf_counter() - t0
    row("quantize_model, 7B-shaped (224 layers, 6.5 G weights), int4 g128",
        len(summary.converted) == 224, f"{dt:.2f} s ({summary.layer_bytes_before / 2**30:.1f} GiB -> "
        f"{summary.layer_bytes_after / 2**30:.2f} GiB)")
    # the NumPy reference on one such matrix, for scale
    wf = np.random.default_rng(2).standard_normal((11008, 4096)).astype(np.float32)
    t0 = time.perf_counter()
    bj.quantize(wf, "int4", 128)
    row("NumPy reference, one 11008x4096 int4 g128 matrix (host)", True, f"{time.perf_counter() - t0:.2f} s")


def main():
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, backend {jax.default_backend()}")
    for part in (sharding_single_device, quantizer_bits, quantize_7b_time):
        try:
            part()
        except Exception as e:  # noqa: BLE001 - report and go on
            row(f"{part.__name__} raised", False, f"{type(e).__name__}: {str(e)[:300]}")
    failed = [r for r in ROWS if not r[1]]
    print(f"\n{len(ROWS) - len(failed)}/{len(ROWS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
