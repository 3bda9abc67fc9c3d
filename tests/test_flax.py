"""bitblas_jax.flax: the NNX Linear, the Linen Dense and quantize_model.

Outputs are compared with the float64 reference under tests/cases.py's error bound
(fp32 accumulation K*2^-24*sum|a*w|, one A-dtype rounding of the decoded weight, two
output roundings), with fresh random inputs each run (the `rng` fixture prints its seed).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import bitblas_jax as bj
from bitblas_jax import reference
from bitblas_jax.flax import (QUANT_COLLECTION, Dense, Linear, QuantizedWeight, quantize_dense_params,
                              quantize_model, quantized_layers)

from cases import check, make_case  # noqa: E402

LAYER_CASES = [  # (W_dtype, mode, group_size, A_dtype, with_bias)
    ("int4", "scale", 128, "float16", False),
    ("int4", "scale", 64, "bfloat16", True),
    ("uint4", "quantized", 64, "float16", True),
    ("uint4", "original", 128, "bfloat16", False),
    ("int8", "scale", -1, "float16", True),
    ("int2", "rescale", 128, "float16", False),
    ("nf4", "scale", 64, "bfloat16", False),
    ("float8_e4m3fn", "scale", -1, "float16", False),
    ("float16", "none", -1, "float16", True),
]


def layer_from_case(case, perm=None, **kw) -> Linear:
    c = case.cfg
    return Linear.from_quantized(case.values, case.scale, case.zeros, case.bias, perm, W_dtype=c.W_dtype,
                                 group_size=c.group_size, zeros_mode=c.zeros_mode, A_dtype=c.A_dtype,
                                 out_dtype=c.out_dtype, **kw)


# ---- Linear ----------------------------------------------------------------------------
@pytest.mark.parametrize("W_dtype,mode,gs,adt,bias", LAYER_CASES)
def test_linear_matches_reference(rng, W_dtype, mode, gs, adt, bias):
    case = make_case(rng, W_dtype, mode, gs, A_dtype=adt, out_dtype=adt, with_bias=bias, M=5, N=48, K=256)
    layer = layer_from_case(case)
    assert layer.qweight[...].dtype == jnp.uint8
    check(case, layer(jnp.asarray(case.A)))
    # the dequantized weight is the reference's, bit for bit (same decode, one rounding to A_dtype)
    np.testing.assert_array_equal(np.asarray(layer.dequantize()).astype(np.float64), case.wd())
    np.testing.assert_array_equal(np.asarray(layer.kernel), np.asarray(layer.dequantize()).T)


def test_linear_leading_shapes_and_input_cast(rng):
    case = make_case(rng, "int4", "scale", 64, A_dtype="bfloat16", out_dtype="bfloat16", M=6, N=32, K=128)
    layer = layer_from_case(case)
    A3 = case.A.reshape(2, 3, 128)
    y = layer(jnp.asarray(A3))
    assert y.shape == (2, 3, 32) and y.dtype == jnp.bfloat16
    check(case, np.asarray(y).reshape(6, 32))
    np.testing.assert_array_equal(np.asarray(layer(jnp.asarray(case.A[0]))), np.asarray(y).reshape(6, 32)[0])
    # float32 inputs are cast to A_dtype (the case's A is already bf16-representable: exact)
    np.testing.assert_array_equal(np.asarray(layer(jnp.asarray(A3, jnp.float32))), np.asarray(y))
    with pytest.raises(ValueError, match="in_features"):
        layer(jnp.zeros((2, 64), jnp.bfloat16))


def test_linear_permute_inputs(rng):
    case = make_case(rng, "uint4", "quantized", 64, M=4, N=32, K=256)
    perm = rng.permutation(256)
    layer = layer_from_case(case, perm=perm)
    assert layer.permute_inputs and layer.perm[...].dtype == jnp.int32
    # y = x[:, perm] @ Wd^T
    out = np.asarray(layer(jnp.asarray(case.A)))
    Ap = case.A[:, perm]
    check(case, out, A=Ap)
    # dequantize() is in the original input order: x @ dequantize()^T == x[:, perm] @ Wd^T
    w_orig = np.asarray(layer.dequantize()).astype(np.float64)
    np.testing.assert_array_equal(w_orig[:, perm], case.wd())


def test_linear_init_with_rngs_and_abstract():
    layer = Linear(256, 64, W_dtype="int4", group_size=128, rngs=nnx.Rngs(0))
    assert layer.qweight[...].shape == (64, 128) and layer.scales[...].shape == (64, 2)
    assert layer.scales[...].dtype == jnp.bfloat16 and layer.bias[...].dtype == jnp.bfloat16
    assert float(jnp.abs(layer.kernel.astype(jnp.float32)).max()) > 0      # a real, quantized init
    y = layer(jnp.ones((3, 256)))
    assert y.shape == (3, 64) and y.dtype == jnp.bfloat16
    abstract = nnx.eval_shape(lambda: Linear(256, 64, W_dtype="uint4", group_size=64, with_zeros=True,
                                             zeros_mode="quantized", rngs=nnx.Rngs(0)))
    assert abstract.qweight.get_value().shape == (64, 128)
    assert abstract.zeros.get_value().dtype == jnp.uint8
    empty = Linear(256, 64, rngs=None, use_bias=False)
    assert not np.asarray(empty.qweight[...]).any() and empty.bias is None
    with pytest.raises(ValueError, match="disagree"):
        Linear(256, 64, dtype=jnp.float16, A_dtype="bfloat16")
    with pytest.raises(ValueError, match="group_size"):
        Linear(256, 64, group_size=100)


def test_from_linear_is_rtn_quantization(rng):
    lin = nnx.Linear(256, 96, rngs=nnx.Rngs(int(rng.integers(1 << 30))))
    q = Linear.from_linear(lin, W_dtype="int4", group_size=64, A_dtype="float16")
    kernel = np.asarray(lin.kernel[...], np.float64)
    values, scale, zeros = bj.quantize(kernel.T, "int4", 64, A_dtype="float16")
    wd = reference.dequantize_values(values, "int4", "scale", scale, None, 64, "float16")
    np.testing.assert_array_equal(np.asarray(q.dequantize()).astype(np.float64), wd)
    # RTN: every weight within half a step (plus the fp16 roundings of scale and weight)
    step = np.repeat(scale.astype(np.float64), 64, axis=1)
    assert np.all(np.abs(wd - kernel.T) <= 0.5 * step + 2**-10 * np.abs(kernel.T) + 1e-7)
    assert q.A_dtype == "float16" and q.out_dtype == "float16" and q.use_bias
    np.testing.assert_array_equal(np.asarray(q.bias[...]), np.asarray(lin.bias[...]).astype(np.float16))
    x = rng.standard_normal((4, 256)).astype(np.float16)
    ref = reference.matmul(x, wd, np.asarray(lin.bias[...]).astype(np.float16))
    got = np.asarray(q(jnp.asarray(x))).astype(np.float64)
    bound = 256 * 2.0**-24 * (np.abs(x.astype(np.float64)) @ np.abs(wd).T) + 2 * 2.0**-11 * (np.abs(ref) + 1)
    assert np.all(np.abs(got - ref) <= bound)
    # activation dtype follows a bf16 layer; no-bias layers stay bias-free
    lin16 = nnx.Linear(128, 32, use_bias=False, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    q16 = Linear.from_linear(lin16, W_dtype="nf4", group_size=64)
    assert q16.A_dtype == "bfloat16" and q16.bias is None and q16.W_dtype == "nf4"


def test_nnx_transforms_and_training_filters(rng):
    case = make_case(rng, "uint4", "original", 64, A_dtype="bfloat16", out_dtype="bfloat16",
                     with_bias=True, M=4, N=32, K=128)
    layer = layer_from_case(case)
    x = jnp.asarray(case.A)
    eager = np.asarray(layer(x))
    np.testing.assert_array_equal(np.asarray(nnx.jit(lambda m, a: m(a))(layer, x)), eager)
    graphdef, state = nnx.split(layer)
    np.testing.assert_array_equal(np.asarray(nnx.merge(graphdef, state)(x)), eager)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(lambda s, a: nnx.merge(graphdef, s)(a))(state, x)), eager)
    params = nnx.state(layer, nnx.Param)
    ints = nnx.state(layer, QuantizedWeight)
    assert set(params.keys()) == {"scales", "zeros", "bias"}
    assert set(ints.keys()) == {"qweight"}
    # gradients flow to the float state only
    grads = nnx.grad(lambda m: jnp.sum(m(x).astype(jnp.float32) ** 2), argnums=nnx.DiffState(0, nnx.Param))(layer)
    g = nnx.state(grads)
    assert set(g.keys()) == {"scales", "zeros", "bias"}
    assert all(bool(jnp.isfinite(v).all()) for v in jax.tree.leaves(g))
    import optax
    opt = nnx.Optimizer(layer, optax.sgd(1e-3), wrt=nnx.Param)
    before = np.asarray(layer.qweight[...]).copy()
    opt.update(layer, grads)
    np.testing.assert_array_equal(np.asarray(layer.qweight[...]), before)
    # vmap over a batch of inputs
    xb = jnp.stack([x, x * 2])
    yb = nnx.vmap(lambda m, a: m(a), in_axes=(None, 0))(layer, xb)
    assert yb.shape == (2, 4, 32)


def test_sharding_metadata_carried_over():
    mesh = jax.make_mesh((1, 1), ("data", "model"))
    with jax.set_mesh(mesh):
        lin = nnx.Linear(128, 64, rngs=nnx.Rngs(0), kernel_metadata={"out_sharding": ("data", "model")},
                         bias_metadata={"out_sharding": ("model",)})
        q = Linear.from_linear(lin, W_dtype="int8", group_size=-1)
        y = q(jnp.ones((2, 128), jnp.bfloat16))
    assert y.shape == (2, 64)
    md = q.qweight.get_metadata()
    assert md.get("out_sharding") == ("model", None), md
    assert q.scales.get_metadata().get("out_sharding") == ("model", None)
    assert q.bias.get_metadata().get("out_sharding") == ("model",)


# ---- quantize_model -----------------------------------------------------------------------
class Block(nnx.Module):
    def __init__(self, rngs):
        self.attn = nnx.Linear(256, 128, use_bias=False, rngs=rngs)
        self.up = nnx.Linear(256, 256, rngs=rngs)
        self.down = nnx.Linear(256, 256, rngs=rngs)
        self.norm = nnx.LayerNorm(256, rngs=rngs)

    def __call__(self, x):
        return self.down(nnx.relu(self.up(self.norm(x)))) + x


class Toy(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([Block(rngs) for _ in range(2)])
        self.odd = nnx.Linear(256, 24, rngs=rngs)          # N % 16 != 0: kernels do not take it
        self.lm_head = nnx.Linear(256, 64, use_bias=False, rngs=rngs)

    def __call__(self, x):
        for b in self.layers:
            x = b(x)
        return self.lm_head(x)


def test_quantize_model_defaults(capsys):
    model = Toy(nnx.Rngs(0))
    kernel0 = np.asarray(model.layers[0].up.kernel[...])
    out, summary = quantize_model(model, "int4", 128, return_summary=True)
    assert out is model
    q = quantized_layers(model)
    assert sorted(q) == sorted(f"layers/{i}/{n}" for i in range(2) for n in ("attn", "up", "down"))
    assert type(model.lm_head) is nnx.Linear and type(model.odd) is nnx.Linear
    assert set(summary.kept) == {"lm_head", "odd"} and "multiple of 16" in summary.kept["odd"]
    assert len(summary.converted) == 6
    up = model.layers[0].up
    assert up.W_dtype == "int4" and up.group_size == 128 and up.A_dtype == "bfloat16"
    # bytes: float32 kernels + biases before; packed int4 + bf16 scales + bf16 biases after
    before = 2 * (256 * 128 + 2 * (256 * 256 + 256)) * 4
    after = 2 * (128 * 128 + 128 * 2 * 2 + 2 * (256 * 128 + 256 * 2 * 2 + 256 * 2))
    assert summary.layer_bytes_before == before and summary.layer_bytes_after == after
    assert summary.model_bytes_before - summary.model_bytes_after == before - after
    err = capsys.readouterr().err
    assert "converted 6 layer(s)" in err and "quantize" in err
    values, scale, _ = bj.quantize(kernel0.T, "int4", 128, A_dtype="bfloat16")
    np.testing.assert_array_equal(
        np.asarray(up.dequantize()).astype(np.float64),
        reference.dequantize_values(values, "int4", "scale", scale, None, 128, "bfloat16"))
    y = model(jnp.ones((2, 256), jnp.float32))
    assert y.shape == (2, 64) and bool(jnp.isfinite(y).all())


def test_quantize_model_rules_and_copy():
    model = Toy(nnx.Rngs(1))
    rules = [(r"attn", None), (r"up", {"W_dtype": "int8", "group_size": -1}), (r".*", {})]
    new, summary = quantize_model(model, "uint4", 64, with_zeros=True, zeros_mode="quantized",
                                  rules=rules, exclude=("lm_head", "odd"), inplace=False,
                                  progress=False, verbose=False, return_summary=True)
    assert new is not model
    assert all(type(b.up) is nnx.Linear for b in model.layers)                  # original untouched
    assert new.layers[0].up.W_dtype == "int8" and new.layers[0].up.group_size == -1
    assert new.layers[1].down.W_dtype == "uint4" and new.layers[1].down.zeros_mode == "quantized"
    assert new.layers[1].down.zeros[...].dtype == jnp.uint8
    assert type(new.layers[0].attn) is nnx.Linear
    assert new.layers[0].attn.kernel[...] is model.layers[0].attn.kernel[...]     # shared, not copied
    assert summary.kept["layers/0/attn"].startswith("rule")
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_model(Toy(nnx.Rngs(2)), exclude=("lm_head",), on_error="raise", progress=False,
                       verbose=False)
    # callable rules; an abstract model quantizes abstractly
    abstract = nnx.eval_shape(lambda: quantize_model(
        Toy(nnx.Rngs(3)), rules=lambda path, m: {"W_dtype": "int2"} if path.endswith("down") else None,
        progress=False, verbose=False))
    assert sorted(quantized_layers(abstract)) == ["layers/0/down", "layers/1/down"]
    assert abstract.layers[0].down.qweight.get_value().shape == (256, 64)


def test_unsigned_without_zeros_refused_before_any_work():
    """uint formats quantized without zeros: every front end raises ValueError naming with_zeros
    (quantize_model whatever on_error says, before a layer is replaced); with_zeros=True works."""
    with pytest.raises(ValueError, match="with_zeros=True"):
        Linear(256, 64, W_dtype="uint4", group_size=64, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="with_zeros=True"):
        Linear.from_linear(nnx.Linear(256, 64, rngs=nnx.Rngs(0)), W_dtype="uint8")
    with pytest.raises(ValueError, match="with_zeros=True"):
        Dense(64, W_dtype="uint2", group_size=64).init(jax.random.key(0), jnp.ones((1, 128)))
    with pytest.raises(ValueError, match="with_zeros=True"):
        quantize_dense_params(jnp.ones((128, 64)), W_dtype="uint4", group_size=64)
    model = Toy(nnx.Rngs(0))
    for on_error in ("keep", "raise"):
        with pytest.raises(ValueError, match=r"quantize_model: layer 'layers/0/attn'.*with_zeros=True"):
            quantize_model(model, "uint4", 64, on_error=on_error, progress=False, verbose=False)
        assert not quantized_layers(model)
    with pytest.raises(ValueError, match=r"layer 'layers/0/up'.*with_zeros=True"):
        quantize_model(model, "int4", 64, rules=[(r"up", {"W_dtype": "uint4"}), (r".*", {})],
                       progress=False, verbose=False)
    assert not quantized_layers(model)
    # loading given unsigned values without zeros stays possible (no quantization involved)
    layer = Linear.from_quantized(np.full((64, 256), 3, np.uint8), np.ones((64, 4), np.float16),
                                  W_dtype="uint4", group_size=64, A_dtype="float16")
    np.testing.assert_array_equal(np.asarray(layer.dequantize(), np.float32), 3.0)
    quantize_model(model, "uint4", 64, with_zeros=True, progress=False, verbose=False)
    assert len(quantized_layers(model)) == 6


# ---- Linen -----------------------------------------------------------------------------------
def test_linen_dense(rng):
    x = jnp.asarray(rng.standard_normal((3, 5, 128)), jnp.float32)
    mod = Dense(64, W_dtype="int4", group_size=64)
    variables = mod.init(jax.random.key(0), x)
    assert set(variables) == {"params", QUANT_COLLECTION}
    assert set(variables["params"]) == {"scales", "bias"}
    assert variables[QUANT_COLLECTION]["qweight"].shape == (64, 64)
    y = jax.jit(mod.apply)(variables, x)
    assert y.shape == (3, 5, 64) and y.dtype == jnp.bfloat16
    # params converted from a float nn.Dense match the NNX layer built from the same weight
    dense = nn.Dense(64)
    p = dense.init(jax.random.key(1), x)["params"]
    qv = quantize_dense_params(p["kernel"], p["bias"], W_dtype="uint4", group_size=32, with_zeros=True,
                               zeros_mode="quantized", A_dtype="float16")
    qmod = Dense(64, W_dtype="uint4", group_size=32, with_zeros=True, zeros_mode="quantized", A_dtype="float16")
    assert set(qv[QUANT_COLLECTION]) == {"qweight", "zeros"}
    yq = qmod.apply(qv, x)
    values, scale, zeros = bj.quantize(np.asarray(p["kernel"]).T, "uint4", 32, with_zeros=True,
                                       zeros_mode="quantized", A_dtype="float16")
    wd = reference.dequantize_values(values, "uint4", "quantized", scale, zeros, 32, "float16")
    xa = np.asarray(x, np.float16).reshape(-1, 128)
    ref = reference.matmul(xa, wd, np.asarray(p["bias"]).astype(np.float16))
    got = np.asarray(yq).reshape(-1, 64).astype(np.float64)
    bound = 128 * 2.0**-24 * (np.abs(xa.astype(np.float64)) @ np.abs(wd).T) + 2 * 2.0**-11 * (np.abs(ref) + 1)
    assert np.all(np.abs(got - ref) <= bound)
    # the integer collection is not differentiated
    g = jax.grad(lambda prm: jnp.sum(qmod.apply({"params": prm, QUANT_COLLECTION: qv[QUANT_COLLECTION]}, x)
                                     .astype(jnp.float32)))(qv["params"])
    assert set(g) == {"scales", "bias"}


def test_llama_decode_example_runs():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "llama_decode.py"
    spec = importlib.util.spec_from_file_location("llama_decode", path)
    mod = importlib.util.module_from_spec(spec)
    import sys
    sys.modules["llama_decode"] = mod          # dataclasses look their module up there
    spec.loader.exec_module(mod)
    r = mod.main(["--config", "tiny", "--layers", "1", "--prompt-len", "4", "--new-tokens", "4"])
    # int4 g128 RTN moves the logits by a fraction of their spread, not by the spread itself
    assert 0 < r["max_logit_diff"] < 0.5 * r["logit_std"], r
