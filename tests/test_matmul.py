"""The op against the float64 reference: every format x mode x group x dtype x bias, M, jit/vmap/grad."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import formats

from cases import all_format_modes, check, make_case

A_DTYPES = ("float16", "bfloat16", "float32")
OUT_DTYPES = ("float16", "bfloat16", "float32")


def _matrix():
    for i, ((fmt, mode), a_dtype, bias) in enumerate(
            itertools.product(all_format_modes(), A_DTYPES, (False, True))):
        groups = (-1,) if mode == "none" else (-1, 32, 128)
        for j, g in enumerate(groups):
            out = OUT_DTYPES[(i + j) % 3]
            accum = "float16" if a_dtype == "float16" and (i + j) % 2 else "float32"
            yield pytest.param(fmt, mode, g, a_dtype, accum, out, bias,
                               id=f"{fmt}-{mode}-g{g}-{a_dtype}-acc{accum[5:]}-{out}-{'bias' if bias else 'nobias'}")


@pytest.mark.parametrize("fmt,mode,group,a_dtype,accum,out,bias", list(_matrix()))
def test_every_combination(rng, fmt, mode, group, a_dtype, accum, out, bias):
    case = make_case(rng, fmt, mode, group, a_dtype, accum, out, bias, M=3, N=32, K=256)
    check(case, case.run())


@pytest.mark.parametrize("accum,out", [(a, o) for a in ("float16", "float32") for o in OUT_DTYPES])
@pytest.mark.parametrize("a_dtype", A_DTYPES)
def test_accum_out_dtypes(rng, a_dtype, accum, out):
    if accum == "float16" and a_dtype != "float16":
        with pytest.raises(ValueError, match="accum_dtype"):
            bj.MatmulConfig(N=32, K=256, A_dtype=a_dtype, accum_dtype=accum)
        return
    case = make_case(rng, "int4", "scale", 128, a_dtype, accum, out, True, M=5, N=48, K=512)
    check(case, case.run())


@pytest.mark.parametrize("M", [1, 3, 17, 100])
@pytest.mark.parametrize("fmt,mode", [("int4", "scale"), ("uint4", "original"), ("int8", "none"),
                                      ("nf4", "scale"), ("uint2", "quantized"), ("float8_e4m3fn", "scale")])
def test_odd_m(rng, M, fmt, mode):
    case = make_case(rng, fmt, mode, 64, "bfloat16", "float32", "bfloat16", True, M=M, N=64, K=512)
    check(case, case.run())


def test_leading_dims_fold_into_m(rng):
    case = make_case(rng, "int4", "scale", 128, "float16", a_shape=(2, 3, 5, 256))
    out = case.run()
    assert out.shape == (2, 3, 5, 32)
    check(case, out)


def test_larger_shapes_and_groups(rng):
    for g in (8, 16, 24, 96, 1024, -1):
        case = make_case(rng, "uint4", "original", g, "float16", M=7, N=80, K=3072 if g in (24, 96) else 1024)
        check(case, case.run())


def test_under_jit(rng):
    case = make_case(rng, "int4", "rescale", 64, "float16", with_bias=True, M=9, N=64, K=512)
    f = jax.jit(lambda A, W, s, z, b: case.mm(A, W, scale=s, zeros=z, bias=b))
    out = f(jnp.asarray(case.A), case.packed(), case.scale, case.zeros, case.bias)
    check(case, out)
    # a second call with new activations reuses the compiled executable
    A2 = rng.standard_normal(case.A.shape).astype(case.A.dtype)
    check(case, f(jnp.asarray(A2), case.packed(), case.scale, case.zeros, case.bias), A=A2)


def test_vmap_over_activations(rng):
    case = make_case(rng, "nf4", "scale", 32, "bfloat16", with_bias=True, a_shape=(4, 6, 256))
    W = case.packed()
    out = jax.vmap(lambda a: case.mm(a, W, scale=case.scale, bias=case.bias))(jnp.asarray(case.A))
    check(case, out)
    out = jax.vmap(lambda a: case.mm(a, W, scale=case.scale, bias=case.bias), in_axes=1, out_axes=1)(
        jnp.asarray(case.A))
    check(case, out)


def test_vmap_over_weights(rng):
    """Batched packed weights / scales fall back to one kernel call per batch element."""
    cases = [make_case(rng, "int4", "scale", 64, "float16", M=3, N=32, K=256) for _ in range(3)]
    W = jnp.stack([c.packed() for c in cases])
    S = jnp.stack([c.scale for c in cases])
    A = jnp.asarray(cases[0].A)
    out = jax.vmap(lambda w, s: cases[0].mm(A, w, scale=s))(W, S)
    for i, c in enumerate(cases):
        check(c, out[i], A=cases[0].A)




@pytest.mark.parametrize("mode", ["scale", "original", "rescale", "quantized"])
def test_grad_matches_finite_differences(rng, mode):
    """float32 end to end so central differences are accurate to ~1e-6 relative."""
    case = make_case(rng, "uint4", mode, 64, "float32", "float32", "float32", True, M=4, N=32, K=256)
    W = case.packed()
    cot = jnp.asarray(rng.standard_normal((4, 32)), jnp.float32)
    zeros = case.zeros

    def loss(A, s, b, z):
        return jnp.sum(case.mm(A, W, scale=s, zeros=z, bias=b) * cot)

    args = [jnp.asarray(case.A, jnp.float32), jnp.asarray(case.scale), jnp.asarray(case.bias),
            None if zeros is None else jnp.asarray(zeros)]
    float_zeros = mode in ("original", "rescale")
    argnums = (0, 1, 2, 3) if float_zeros else (0, 1, 2)
    grads = jax.grad(loss, argnums=argnums)(*args)
    # exact gradients of the linear/bilinear op in float64
    c64 = np.asarray(cot, np.float64)
    wd = case.wd()
    np.testing.assert_allclose(np.asarray(grads[0]), c64 @ wd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grads[2]), c64.sum(0), rtol=1e-5, atol=1e-5)
    # d loss / d scale, d zeros by central differences on a few entries
    for argi in argnums[1:]:
        if argi == 2:
            continue
        x = np.asarray(args[argi], np.float64)
        for (n, g) in [(0, 0), (5, 1), (31, 3)]:
            h = 0.25  # the loss is linear in each of scale, zeros: differences are exact up to roundoff
            xp, xm = x.copy(), x.copy()
            xp[n, g] += h
            xm[n, g] -= h
            lp = float(loss(*[jnp.asarray(xp, jnp.float32) if i == argi else a for i, a in enumerate(args)]))
            lm = float(loss(*[jnp.asarray(xm, jnp.float32) if i == argi else a for i, a in enumerate(args)]))
            fd = (lp - lm) / (2 * h)
            got = float(np.asarray(grads[argnums.index(argi)])[n, g])
            assert abs(got - fd) <= 2e-3 * (1 + abs(fd)), (argi, n, g, got, fd)


def test_grad_half_precision_and_jit_vmap(rng):
    """grad through jit and vmap with fp16 activations matches the float64 formula."""
    case = make_case(rng, "int4", "scale", 128, "float16", "float32", "float32", False, M=6, N=32, K=256)
    W = case.packed()

    @jax.jit
    def loss(A, s):
        return jnp.sum(jax.vmap(lambda a: case.mm(a, W, scale=s))(A))

    A = jnp.asarray(case.A).reshape(2, 3, 256)
    gA, gS = jax.grad(loss, argnums=(0, 1))(A, jnp.asarray(case.scale))
    wd = case.wd()
    np.testing.assert_allclose(np.asarray(gA, np.float64).reshape(6, 256),
                               np.broadcast_to(wd.sum(0), (6, 256)), rtol=2e-3, atol=2e-3)
    # d/ds[n,g] = sum_m sum_{k in g} A[m,k] * w[n,k]
    w = case.values.astype(np.float64)
    As = np.asarray(case.A, np.float64).sum(0)
    expect = (w * As).reshape(32, 2, 128).sum(-1)
    np.testing.assert_allclose(np.asarray(gS, np.float64), expect, rtol=1e-2, atol=1e-2 * np.abs(expect).max())


def test_jvp_forward_mode(rng):
    case = make_case(rng, "int8", "scale", 64, "float32", "float32", "float32", True, M=2, N=16, K=128)
    W = case.packed()
    dA = rng.standard_normal(case.A.shape).astype(np.float32)
    f = lambda A: case.mm(A, W, scale=case.scale, bias=case.bias)  # noqa: E731
    _, t = jax.jvp(f, (jnp.asarray(case.A),), (jnp.asarray(dA),))
    np.testing.assert_allclose(np.asarray(t), dA.astype(np.float64) @ case.wd().T, rtol=1e-5, atol=1e-4)


def test_dequantize_matches_reference(rng):
    for fmt, mode in all_format_modes():
        case = make_case(rng, fmt, mode, 64 if mode != "none" else -1, "bfloat16")
        got = case.mm.dequantize(case.packed(), case.scale, case.zeros)
        assert got.dtype == jnp.bfloat16 and got.shape == (32, 256)
        np.testing.assert_array_equal(np.asarray(got, np.float64), case.wd(), err_msg=f"{fmt} {mode}")


def test_int1_and_fp4_decode_table():
    """The README's decode table, for the formats BitBLAS decodes inconsistently."""
    int1 = formats.get_format("int1")
    np.testing.assert_array_equal(formats.decode_codes(int1, np.array([0, 1])), [-1, 1])
    fp4 = formats.get_format("fp4_e2m1")
    np.testing.assert_array_equal(formats.decode_codes(fp4, np.arange(8)), [0, .5, 1, 1.5, 2, 3, 4, 6])
    np.testing.assert_array_equal(formats.decode_codes(fp4, np.arange(8, 16)), [0, -.5, -1, -1.5, -2, -3, -4, -6])
    int4 = formats.get_format("int4")
    np.testing.assert_array_equal(formats.decode_codes(int4, formats.values_to_codes(int4, np.arange(-8, 8))),
                                  np.arange(-8, 8))
