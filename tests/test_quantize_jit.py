"""bitblas_jax.quantize on JAX arrays (jitted, on the default device, inside traces) gives the
NumPy reference's bits; NaN / inf are refused or carried into NaN, never hidden."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import formats


FP32_FORMATS = ("int4", "uint4", "int1", "nf4", "float8_e4m3fn")   # float32 scales too


def _cases():
    for name, fmt in formats.FORMATS.items():
        for mode in formats.allowed_modes(fmt):
            if not (fmt.kind == "uint" and mode == "scale"):   # refused (test_api: needs zeros)
                yield name, mode


def _kwargs(mode, g, adt):
    zeros = mode in formats.ZEROS_MODES
    return dict(group_size=g, with_scaling=mode != "none", with_zeros=zeros,
                zeros_mode=mode if zeros else "original", A_dtype=adt)


def _weights(rng, N=32, K=256):
    w = rng.standard_normal((N, K)).astype(np.float32)
    spread = (w * 10.0 ** rng.integers(-5, 4, (N, 1))).astype(np.float32)
    spread[0] = 0.0                                          # an all-zero row: scale 1
    ties = (np.round(w * 8) / 8).astype(np.float32)          # many values on rounding ties
    bf16 = w.astype(jnp.bfloat16)                            # narrower than float32
    return [w, spread, ties, bf16]


def _same(a, b):
    for x, y in zip(a, b):
        if x is None:
            assert y is None
            continue
        y = np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, (x.dtype, y.dtype, x.shape, y.shape)
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


@pytest.mark.parametrize("fmt,mode", list(_cases()))
def test_bit_identical_to_numpy(rng, fmt, mode):
    for w in _weights(rng):
        for g, adt in ((64, "float16"), (-1, "bfloat16")) + (((32, "float32"),) if fmt in FP32_FORMATS else ()):
            kw = _kwargs(mode, g, adt)
            _same(bj.quantize(np.asarray(w), fmt, **kw), bj.quantize(jnp.asarray(w), fmt, **kw))


def adversarial_ties(N, K, g, top, seed=0):
    """Groups whose scale is an exact fp16 number s0 (amax = top * s0), every other entry one
    float32 ulp either side of a rounding tie (k + 1/2) * s0: a division that is not correctly
    rounded (x * (1/s), which XLA substitutes for x / broadcast(s)) lands on the tie."""
    rng = np.random.default_rng(seed)
    s0 = rng.uniform(0.01, 1.0, (N, K // g, 1)).astype(np.float16).astype(np.float32)
    k = rng.integers(-top, top, (N, K // g, g)).astype(np.float32)
    tie = ((k + 0.5) * s0).astype(np.float32)
    w = np.nextafter(tie, tie + rng.choice([-1.0, 1.0], tie.shape) * np.inf).astype(np.float32)
    w[..., 0] = top * s0[..., 0]
    return w.reshape(N, K)


@pytest.mark.parametrize("fmt,top", [("int4", 7), ("int8", 127)])
def test_bit_identical_on_rounding_ties(fmt, top):
    w = adversarial_ties(64, 512, 128, top)
    ref = bj.quantize(w, fmt, 128)
    _same(ref, bj.quantize(jnp.asarray(w), fmt, 128))
    _same(ref, jax.jit(lambda w: bj.quantize(w, fmt, 128))(jnp.asarray(w)))


def test_inside_jit_and_vmap(rng):
    ws = np.stack(_weights(rng)[:3])
    kw = _kwargs("quantized", 64, "float16")
    stacked = jax.jit(jax.vmap(lambda w: bj.quantize(w, "uint4", **kw)))(jnp.asarray(ws))
    for i, w in enumerate(ws):
        _same(bj.quantize(w, "uint4", **kw), [None if x is None else x[i] for x in stacked])


def test_float64_weights_keep_float64_arithmetic(rng):
    w = rng.standard_normal((16, 128))
    vals, scale, _ = bj.quantize(w, "int8", 64, A_dtype="float32")
    s = np.abs(w.reshape(16, 2, 64)).max(-1) / 127
    np.testing.assert_array_equal(scale, s.astype(np.float32))
    np.testing.assert_array_equal(vals, np.clip(np.rint(w.reshape(16, 2, 64) / scale.astype(np.float64)[..., None]),
                                                -128, 127).reshape(16, 128))


# ---- NaN / inf --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fmt,kw", [("int4", dict(group_size=64)), ("uint4", dict(group_size=64, with_zeros=True)),
                                    ("nf4", dict(group_size=64)), ("int8", dict(with_scaling=False)),
                                    ("float8_e4m3fn", dict(with_scaling=False)), ("bfloat16", {})])
def test_non_finite_refused(rng, bad, fmt, kw):
    w = rng.standard_normal((16, 128)).astype(np.float32)
    w[3, 70] = bad
    for x in (w, jnp.asarray(w)):
        with pytest.raises(ValueError, match=r"weight holds NaN or inf .*\[3, 70\]"):
            bj.quantize(x, fmt, **kw)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fmt,kw", [("int4", dict(group_size=64)),
                                    ("uint4", dict(group_size=64, with_zeros=True, zeros_mode="quantized")),
                                    ("uint4", dict(group_size=64, with_zeros=True, zeros_mode="rescale")),
                                    ("nf4", dict(group_size=64)), ("float8_e5m2", dict(group_size=64))])
def test_non_finite_under_jit_makes_the_group_nan(rng, bad, fmt, kw):
    """Under a trace the values are unknown: the group's scale is NaN, so everything it
    produces is NaN; the other groups are exactly the reference's."""
    w = rng.standard_normal((16, 128)).astype(np.float32)
    clean = bj.quantize(w, fmt, **kw)
    w[3, 70] = bad
    vals, scale, zeros = jax.jit(lambda w: bj.quantize(w, fmt, **kw))(jnp.asarray(w))
    scale = np.asarray(scale).astype(np.float32)
    assert np.isnan(scale[3, 1]) and np.isfinite(np.delete(scale.ravel(), 3 * 2 + 1)).all()
    keep = np.ones(scale.shape, bool)
    keep[3, 1] = False
    np.testing.assert_array_equal(scale[keep], clean[1].astype(np.float32)[keep])
    mm = bj.Matmul(bj.MatmulConfig(N=16, K=128, A_dtype="float16", W_dtype=fmt, out_dtype="float32",
                                   with_scaling=True, **kw))
    out = np.asarray(mm(jnp.ones((2, 128), jnp.float16), mm.transform_weight(vals), scale=scale,
                        zeros=zeros))
    assert np.isnan(out[:, 3]).all() and np.isfinite(np.delete(out, 3, axis=1)).all()


def test_non_finite_under_jit_float_values_carry_nan(rng):
    w = rng.standard_normal((16, 128)).astype(np.float32)
    w[2, 5], w[4, 6] = np.inf, np.nan
    for fmt in ("float8_e4m3fn", "float8_e5m2", "float16", "bfloat16"):
        vals, _, _ = jax.jit(lambda w: bj.quantize(w, fmt, with_scaling=False))(jnp.asarray(w))
        v = np.asarray(vals).astype(np.float32)
        assert not np.isfinite(v[2, 5]) and np.isnan(v[4, 6]) and np.isfinite(np.delete(v.ravel(), [2 * 128 + 5, 4 * 128 + 6])).all()


def test_non_finite_under_jit_without_scale_raises_at_run_time(rng):
    """Integer codes without a scale have no NaN: the traced computation raises when it runs."""
    w = rng.standard_normal((16, 128)).astype(np.float32) * 3
    f = jax.jit(lambda w: bj.quantize(w, "int8", with_scaling=False)[0])
    _same([bj.quantize(w, "int8", with_scaling=False)[0]], [f(jnp.asarray(w))])
    w[1, 1] = np.nan
    with pytest.raises(Exception, match="weight holds NaN or inf"):
        jax.block_until_ready(f(jnp.asarray(w)))
