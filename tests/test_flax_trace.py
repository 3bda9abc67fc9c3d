"""Flax layers created under a trace hold the weights eager creation gives (never zeros):
nnx.jit, nnx.vmap, nnx.eval_shape + restore, jax.jit(Dense.init), Linen nn.scan / nn.vmap;
stacked nnx.Linear layers quantize into stacked Linears that nnx.scan runs with one
custom call per step."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from bitblas_jax.flax import Dense, Linear, quantize_dense_params, quantize_model

K, N, L = 256, 128, 3
OPTIONS = [dict(W_dtype="int4", group_size=64), dict(W_dtype="uint4", group_size=128, with_zeros=True,
                                                     zeros_mode="quantized"),
           dict(W_dtype="nf4", group_size=64, use_bias=False), dict(W_dtype="int8", group_size=-1),
           dict(W_dtype="float8_e4m3fn", group_size=64)]


def _arrays(m) -> dict:
    return {k: np.asarray(v) for k, v in nnx.to_pure_dict(nnx.state(m)).items()}


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k].view(np.uint8), b[k].view(np.uint8), err_msg=k)
    assert a["qweight"].any()


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: o["W_dtype"])
def test_nnx_jit_creation_equals_eager(opts):
    make = lambda: Linear(K, N, dtype=jnp.float16, rngs=nnx.Rngs(3), **opts)  # noqa: E731
    _assert_same(_arrays(make()), _arrays(nnx.jit(make)()))


def test_nnx_vmap_from_linear_equals_per_layer():
    keys = jax.random.split(jax.random.key(0), L)
    floats = nnx.vmap(lambda k: nnx.Linear(K, N, rngs=nnx.Rngs(k)), in_axes=0, out_axes=0)(keys)
    stacked = nnx.vmap(lambda lin: Linear.from_linear(lin, W_dtype="int4", group_size=64),
                       in_axes=0, out_axes=0)(floats)
    st = _arrays(stacked)
    for i in range(L):
        one = nnx.Linear(K, N, rngs=nnx.Rngs(keys[i]))
        _assert_same(_arrays(Linear.from_linear(one, W_dtype="int4", group_size=64)),
                     {k: v[i] for k, v in st.items()})


def test_eval_shape_then_restore():
    make = lambda: Linear(K, N, W_dtype="int4", group_size=64, dtype=jnp.float16, rngs=nnx.Rngs(1))  # noqa: E731
    abstract = nnx.eval_shape(make)
    eager = make()
    assert jax.tree.map(lambda x: (x.shape, x.dtype), nnx.state(abstract)) == \
        jax.tree.map(lambda x: (x.shape, x.dtype), nnx.state(eager))
    graphdef, _ = nnx.split(abstract)
    restored = nnx.merge(graphdef, nnx.state(eager))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, K)), jnp.float16)
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(eager(x)))


def test_quantize_model_under_eval_shape_and_jit():
    class Two(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(K, N, rngs=rngs)
            self.b = nnx.Linear(N, K, rngs=rngs)

    def build():
        return quantize_model(Two(nnx.Rngs(5)), "int4", 64, exclude=(), progress=False, verbose=False)
    eager = build()
    _assert_same(_arrays(eager.a), _arrays(nnx.jit(build)().a))
    abstract = nnx.eval_shape(build)
    assert abstract.b.qweight.get_value().shape == eager.b.qweight[...].shape


# ---- Linen --------------------------------------------------------------------------------------
def test_jax_jit_dense_init_equals_eager():
    x = jnp.ones((2, K), jnp.float16)
    mod = Dense(N, W_dtype="uint4", group_size=64, with_zeros=True, A_dtype="float16")
    eager = mod.init(jax.random.key(0), x)
    jitted = jax.jit(mod.init)(jax.random.key(0), x)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
    assert np.asarray(eager["quantized"]["qweight"]).any()


class _FloatTwin(nn.Module):
    """The float kernel a bitblas_jax Dense at the same path draws: the same first make_rng,
    the same collections (a lifted transform's keys depend on them)."""
    features: int

    @nn.compact
    def __call__(self, x):
        k_rng, _ = jax.random.split(self.make_rng("params"))
        self.param("kernel", lambda _: nn.initializers.lecun_normal()(k_rng, (x.shape[-1], self.features),
                                                                      jnp.float32))
        self.variable("quantized", "unused", lambda: jnp.zeros(()))
        return x


class _Cell(nn.Module):
    layer: type

    @nn.compact
    def __call__(self, x, _):
        self.layer(K, name="layer")(x)
        return x, None


@pytest.mark.parametrize("lift", ["scan", "vmap"])
def test_linen_scan_and_vmap_stacked_dense(lift):
    x = jnp.ones((2, K), jnp.float32)
    opts = dict(W_dtype="int4", group_size=64, use_bias=False)
    quant = lambda *a, **k: Dense(*a, **opts, **k)  # noqa: E731
    if lift == "scan":
        def stack(layer, cols):
            return nn.scan(_Cell, variable_axes={c: 0 for c in cols}, split_rngs={"params": True},
                           length=L)(layer)
        q = stack(quant, ("params", "quantized")).init(jax.random.key(0), x, None)
        f = stack(_FloatTwin, ("params", "quantized")).init(jax.random.key(0), x, None)
    else:
        def stack(layer, cols):
            return nn.vmap(_Cell, variable_axes={c: 0 for c in cols}, split_rngs={"params": True},
                           in_axes=(None, None), axis_size=L)(layer)
        q = stack(quant, ("params", "quantized")).init(jax.random.key(0), x, None)
        f = stack(_FloatTwin, ("params", "quantized")).init(jax.random.key(0), x, None)
    qw = np.asarray(q["quantized"]["layer"]["qweight"])
    kernels = np.asarray(f["params"]["layer"]["kernel"])
    assert qw.shape[0] == L and kernels.shape[0] == L
    for i in range(L):
        ref = quantize_dense_params(kernels[i], None, **{k: v for k, v in opts.items() if k != "use_bias"})
        np.testing.assert_array_equal(qw[i], np.asarray(ref["quantized"]["qweight"]))
        np.testing.assert_array_equal(np.asarray(q["params"]["layer"]["scales"][i]),
                                      np.asarray(ref["params"]["scales"]))


# ---- stacked quantize_model + nnx.scan ------------------------------------------------------------
class _Block(nnx.Module):
    def __init__(self, rngs):
        self.proj = nnx.Linear(K, K, use_bias=True, rngs=rngs)

    def __call__(self, x):
        return x + jax.nn.gelu(self.proj(x))


class _Deep(nnx.Module):
    def __init__(self, rngs):
        @nnx.split_rngs(splits=L)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(rngs):
            return _Block(rngs)
        self.blocks = make(rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def step(x, block):
            return block(x)
        return step(x, self.blocks)


def test_stacked_quantize_model_runs_under_scan_one_call_per_step():
    model = _Deep(nnx.Rngs(0))
    float_kernels = np.asarray(model.blocks.proj.kernel[...])
    float_bias = np.asarray(model.blocks.proj.bias[...])
    q, summary = quantize_model(model, "int4", 64, exclude=(), progress=False, verbose=False,
                                return_summary=True)
    assert summary.converted == ["blocks/proj"]
    proj = q.blocks.proj
    assert isinstance(proj, Linear) and proj.qweight[...].shape == (L, K, K // 2)
    # each step equals the 2-D layer quantized from that step's float kernel
    for i in range(L):
        one = Linear.from_linear(_one_linear(float_kernels[i], float_bias[i]), W_dtype="int4", group_size=64)
        np.testing.assert_array_equal(np.asarray(proj.qweight[...][i]), np.asarray(one.qweight[...]))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, K)), jnp.bfloat16)
    y = nnx.jit(lambda m, x: m(x))(q, x)
    ref = x
    for i in range(L):
        one = Linear.from_linear(_one_linear(float_kernels[i], float_bias[i]), W_dtype="int4", group_size=64)
        ref = ref + jax.nn.gelu(one(ref))
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref, np.float32), rtol=2e-2, atol=2e-2)
    graphdef, state = nnx.split(q)
    hlo = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x).as_text()
    assert hlo.count("while") >= 1
    assert len(re.findall(r"custom_call @?bitblas_jax_matmul|bitblas_jax_matmul\(", hlo)) == 1, hlo[:2000]


def _one_linear(kernel, bias):
    lin = nnx.Linear(K, K, rngs=nnx.Rngs(0))
    lin.kernel[...] = jnp.asarray(kernel)
    lin.bias[...] = jnp.asarray(bias)
    return lin
