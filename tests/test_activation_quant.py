"""Dynamic activation quantization (quantize_activations) and the layers' int8 / float8 mode
(SmoothQuant W8A8 / W4A8, FP8 per tensor / per token), against float64."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import bitblas_jax as bj
from bitblas_jax import formats, reference
from bitblas_jax.activations import QMAX
from bitblas_jax.flax import Dense, Linear, quantize_model

from cases import QCase, UNIT_ROUNDOFF, check_quantized, on_float8_tensor_cores, qerror_bound, random_values

# half the relative spacing of normal float8 values, and half the subnormal spacing
FP8_HALF_ULP = {"float8_e4m3fn": (2.0**-4, 2.0**-10), "float8_e5m2": (2.0**-3, 2.0**-17)}


def _float_input(rng, shape, dtype):
    x = rng.standard_normal(shape) * rng.uniform(0.1, 10, shape[:-1] + (1,))
    x[..., :3] *= 30                      # outlier channels, as in LLM activations
    if len(shape) > 1:
        x[0] = 0                          # an all-zero token
    return x.astype(formats.NUMPY_DTYPES[dtype])


@pytest.mark.parametrize("x_dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("granularity", ["per_token", "per_tensor"])
@pytest.mark.parametrize("dtype", ["int8", "float8_e4m3fn", "float8_e5m2"])
def test_quantize_activations_against_float64(rng, dtype, granularity, x_dtype):
    x = _float_input(rng, (2, 5, 256), x_dtype)
    q, s = jax.jit(bj.quantize_activations, static_argnums=(1, 2))(jnp.asarray(x), dtype, granularity)
    assert q.dtype == jnp.dtype(dtype) and s.dtype == jnp.float32
    assert s.shape == ((2, 5) if granularity == "per_token" else ())
    x64 = x.astype(np.float64)
    amax = np.abs(x64).max(axis=-1) if granularity == "per_token" else np.abs(x64).max()
    want_s = np.where(amax > 0, amax / QMAX[dtype], 1.0)
    np.testing.assert_allclose(np.asarray(s, np.float64), want_s, rtol=2**-22)
    s64 = np.asarray(s, np.float64)[..., None] if granularity == "per_token" else float(s)
    q64 = np.asarray(q).astype(np.float64)
    err = np.abs(x64 - q64 * s64)
    if dtype == "int8":
        assert np.abs(q64).max() <= 127
        assert np.all(err <= (0.5 + 2.0**-15) * s64)      # x * (1/s) is within 1.5 ulps of x / s
        if granularity == "per_token":      # each nonzero token reaches +-127
            np.testing.assert_array_equal(np.abs(q64).max(-1)[amax > 0], 127)
    else:
        rel, sub = FP8_HALF_ULP[dtype]
        assert np.all(err <= (rel + 2.0**-20) * np.abs(x64) + sub * s64 + 1e-30)
    assert np.all(q64[0] == 0) if granularity == "per_token" else True


def test_quantize_activations_errors():
    x = jnp.ones((2, 32), jnp.float16)
    with pytest.raises(ValueError, match="dtype='int4'"):
        bj.quantize_activations(x, "int4")
    with pytest.raises(ValueError, match="granularity='per_channel'"):
        bj.quantize_activations(x, "int8", "per_channel")
    with pytest.raises(TypeError, match="A must be float16, bfloat16 or float32, got int8"):
        bj.quantize_activations(x.astype(jnp.int8))
    v, s = bj.quantize_activations(x, "e4m3_float8")       # BitBLAS's spelling
    assert v.dtype == jnp.float8_e4m3fn


def _recipe_case(rng, A_dtype, W_dtype, mode, group, out, granularity, M=6, N=48, K=512):
    """A float x quantized by quantize_activations, as a QCase (its values and scales)."""
    fmt = formats.get_format(W_dtype)
    cfg = bj.MatmulConfig(N=N, K=K, A_dtype=A_dtype, W_dtype=W_dtype, out_dtype=out, with_bias=True,
                          group_size=group, **formats.mode_flags(mode))
    values = random_values(rng, fmt, N, K)
    G = cfg.num_groups
    w_mag = {"int": 2.0 ** (fmt.bits - 1)}.get(fmt.kind, 16.0)
    scale = (rng.uniform(0.5, 1.5, (N, G)) / (w_mag * np.sqrt(K))).astype(np.float32)
    zeros = rng.integers(-8, 8, (N, G)).astype(np.int8) if mode == "quantized" else None
    bias = rng.standard_normal(N).astype(np.float32)
    x = _float_input(rng, (M, K), "bfloat16")
    q, s = bj.quantize_activations(jnp.asarray(x), A_dtype, granularity)
    case = QCase(cfg, values, scale, zeros, bias, np.asarray(q), np.asarray(s))
    return case, x


@pytest.mark.parametrize("granularity", ["per_token", "per_tensor"])
@pytest.mark.parametrize("A_dtype,W_dtype,mode,group,out", [
    ("int8", "int8", "scale", -1, "bfloat16"),        # SmoothQuant W8A8, per-channel weight scales
    ("int8", "int4", "scale", 128, "float16"),        # W4A8, per-group weight scales
    ("int8", "int4", "quantized", 128, "int8"),
    ("float8_e4m3fn", "float8_e4m3fn", "scale", -1, "bfloat16"),
    ("float8_e4m3fn", "int4", "quantized", 64, "float32"),
    ("float8_e5m2", "float8_e5m2", "scale", 128, "float16"),
])
def test_quantize_and_call(rng, A_dtype, W_dtype, mode, group, out, granularity):
    case, x = _recipe_case(rng, A_dtype, W_dtype, mode, group, out, granularity)
    mm, W = case.mm, case.packed()
    y = jax.jit(lambda x, W: mm.quantize_and_call(x, W, case.scale, case.zeros, case.bias,
                                                  granularity=granularity))(jnp.asarray(x), W)
    check_quantized(case, y, on_float8_tensor_cores(case))   # exact chain: float64 of the quantized values
    if out == "int8":
        return
    # and against the float product of the unquantized x: off by the activation rounding only
    x64 = x.astype(np.float64)
    dx = np.abs(x64 - np.asarray(case.A, np.float64) * (np.asarray(case.a_scale, np.float64)[..., None]
                                                        if granularity == "per_token" else float(case.a_scale)))
    wd = case.wd()
    ideal = x64 @ wd.T + case.bias
    bound = dx @ np.abs(wd).T + qerror_bound(case) + UNIT_ROUNDOFF[out] * (np.abs(ideal) + 1) * 2
    assert np.all(np.abs(np.asarray(y, np.float64) - ideal) <= bound)


@pytest.mark.parametrize("A_dtype,W_dtype,group", [("int8", "int8", -1), ("int8", "int4", 128),
                                                   ("float8_e4m3fn", "int4", 128),
                                                   ("float8_e4m3fn", "float8_e4m3fn", -1)])
def test_flax_linear_quantized_activations(rng, A_dtype, W_dtype, group):
    case, x = _recipe_case(rng, A_dtype, W_dtype, "scale", group, "bfloat16", "per_token")
    layer = Linear.from_quantized(case.values, case.scale, bias=case.bias, W_dtype=W_dtype, group_size=group,
                                  A_dtype=A_dtype, dtype=jnp.bfloat16)
    assert layer.config.out_dtype == "bfloat16" and layer.scales.get_value().dtype == jnp.float32
    y = nnx.jit(lambda m, x: m(x))(layer, jnp.asarray(x))
    assert y.dtype == jnp.bfloat16
    check_quantized(case, y, on_float8_tensor_cores(case))
    # int8 / float8 input is taken as given (no activation scale)
    y_raw = layer(jnp.asarray(case.A))
    case.a_scale = None
    check_quantized(case, y_raw)


def test_flax_per_tensor_and_metadata(rng):
    case, x = _recipe_case(rng, "int8", "int8", "scale", -1, "float16", "per_tensor")
    layer = Linear.from_quantized(case.values, case.scale, bias=case.bias, W_dtype="int8", A_dtype="int8",
                                  dtype=jnp.float16, activation_granularity="per_tensor")
    check_quantized(case, layer(jnp.asarray(x)))
    meta = layer.layout_metadata()
    assert meta["activation_granularity"] == "per_tensor" and meta["A_dtype"] == "int8"
    empty = Linear.from_layout_metadata(meta)
    assert empty.activation_granularity == "per_tensor" and empty.config == layer.config
    with pytest.raises(ValueError, match="activation_granularity='token'"):
        Linear(64, 32, A_dtype="int8", W_dtype="int8", activation_granularity="token")


class _MLP(nnx.Module):
    def __init__(self, rngs):
        self.up = nnx.Linear(256, 512, rngs=rngs, dtype=jnp.bfloat16)
        self.down = nnx.Linear(512, 256, rngs=rngs, dtype=jnp.bfloat16)
        self.lm_head = nnx.Linear(256, 64, rngs=rngs, dtype=jnp.bfloat16)

    def __call__(self, x):
        return self.lm_head(self.down(jax.nn.relu(self.up(x))))


def test_quantize_model_w8a8(rng):
    """SmoothQuant-style W8A8 of a whole Flax model (README example): int8 weights with per-channel
    scales, int8 per-token activations, bf16 in and out; close to the float model."""
    model = _MLP(nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((4, 256)), jnp.bfloat16)
    y_float = np.asarray(model(x), np.float64)
    quantize_model(model, W_dtype="int8", group_size=-1, A_dtype="int8", progress=False, verbose=False)
    assert isinstance(model.up, Linear) and model.up.config.A_dtype == "int8"
    assert model.up.config.out_dtype == "bfloat16" and isinstance(model.lm_head, nnx.Linear)
    y = nnx.jit(lambda m, x: m(x))(model, x)
    assert y.dtype == jnp.bfloat16
    rel = np.abs(np.asarray(y, np.float64) - y_float).max() / np.abs(y_float).max()
    assert rel < 0.05, rel       # int8 RTN of weights and activations: ~1% on random layers


def test_linen_dense_quantized_activations(rng):
    x = jnp.asarray(rng.standard_normal((3, 256)), jnp.bfloat16)
    d = Dense(64, W_dtype="int4", group_size=128, A_dtype="float8_e4m3fn", dtype=jnp.bfloat16)
    variables = d.init(jax.random.key(0), x)
    assert variables["params"]["scales"].dtype == jnp.float32
    y = jax.jit(d.apply)(variables, x)
    assert y.shape == (3, 64) and y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y)))


# ---- the torch shim -------------------------------------------------------------------------------
def test_torch_quantize_activations_matches_jax(rng):
    torch = pytest.importorskip("torch")
    from bitblas_jax.torch import ops
    x = _float_input(rng, (4, 16, 1024), "float32")
    for dtype in ("int8", "float8_e4m3fn", "float8_e5m2"):
        for gran in ("per_token", "per_tensor"):
            qj, sj = bj.quantize_activations(jnp.asarray(x), dtype, gran)
            qt, st = ops.quantize_activations(torch.from_numpy(x), dtype, gran)
            np.testing.assert_array_equal(np.asarray(sj), st.numpy())
            np.testing.assert_array_equal(np.asarray(qj).view(np.uint8), qt.view(torch.uint8).numpy())


@pytest.mark.parametrize("A_dtype,W_dtype,group,out", [("int8", "int8", -1, "bfloat16"),
                                                       ("int8", "uint4", 128, "int8"),
                                                       ("float8_e5m2", "int4", 64, "float16")])
def test_torch_linear_quantized_activations(rng, A_dtype, W_dtype, group, out):
    """The torch Linear in int8 / float8 mode: the same bits as JAX's quantize_and_call."""
    torch = pytest.importorskip("torch")
    import bitblas_jax.torch as bbt
    case, x = _recipe_case(rng, A_dtype, W_dtype, "scale", group, out, "per_token")
    layer = bbt.Linear(case.cfg.K, case.cfg.N, bias=True, A_dtype=A_dtype, W_dtype=W_dtype, group_size=group,
                       with_scaling=True, out_dtype=out)
    assert layer.scales.dtype == torch.float32 and layer.bias.dtype == torch.float32
    layer.load_and_transform_weight(case.values, case.scale, bias=case.bias)
    xt = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    y = layer(xt)
    assert y.dtype == ops_dtype(out)
    want = case.mm.quantize_and_call(jnp.asarray(x), case.packed(), case.scale, None, case.bias)
    got = _to_numpy(y)
    if A_dtype == "int8":   # exact int32 sums on both sides
        np.testing.assert_array_equal(np.asarray(want).view(np.uint8), got.view(np.uint8))
    else:
        # float8: float32 sums in each side's own order (XLA's dot, the shim's K slices), so a sum on a rounding
        # boundary of the output dtype may round the other way: one unit in the last place at most
        w = np.asarray(want)
        w64, g64 = w.astype(np.float64), got.astype(np.float64)
        ulp = np.spacing(np.abs(w)).astype(np.float64)
        assert np.all(np.abs(g64 - w64) <= ulp), np.max(np.abs(g64 - w64) / ulp)
        check_quantized(case, got)
    check_quantized(case, np.asarray(want))
    # int8 / float8 input as given
    raw = torch.from_numpy(np.array(case.A).view(np.uint8)).view(layer._a_torch)
    case.a_scale = None
    check_quantized(case, _to_numpy(layer(raw)))


def ops_dtype(name):
    from bitblas_jax.torch import ops
    return ops.TORCH_DTYPES[name]


def _to_numpy(t):
    import torch
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(formats.NUMPY_DTYPES["bfloat16"])
    return t.numpy()


def test_torch_op_errors(rng):
    torch = pytest.importorskip("torch")
    import bitblas_jax.torch as bbt
    layer = bbt.Linear(256, 32, A_dtype="int8", W_dtype="int8", with_scaling=True, bias=True)
    W, s, b = layer.qweight, layer.scales, layer.bias
    A = torch.zeros(2, 256, dtype=torch.int8)
    op = torch.ops.bitblas_jax.matmul
    with pytest.raises(TypeError, match="scale must be torch.float32"):
        op(A, W, s.half(), None, b, "int8", "scale", -1, "int32", "float16")
    with pytest.raises(ValueError, match="accum_dtype='float32' with int8 A"):
        op(A, W, s, None, b, "int8", "scale", -1, "float32", "float16")
    with pytest.raises(ValueError, match="w_format='nf4' with int8 A"):
        op(A, torch.zeros(32, 128, dtype=torch.uint8), s, None, b, "nf4", "scale", -1, "int32", "float16")
    with pytest.raises(ValueError, match="takes no bias"):
        op(A, W, None, None, b, "int8", "none", -1, "int32", "int32")
    with pytest.raises(TypeError, match="A must be float16, bfloat16, float32, int8 or float8"):
        op(A.to(torch.int32), W, s, None, b, "int8", "scale", -1, "int32", "float16")
    out = op(A, W, None, None, None, "int8", "none", -1, "int32", "int32")
    assert out.dtype == torch.int32 and out.shape == (2, 32)
    with pytest.raises(ValueError, match="activation_granularity"):
        bbt.Linear(256, 32, A_dtype="int8", W_dtype="int8", activation_granularity="row")


def test_w8a8_checkpoint_round_trip_into_the_float_model(rng, tmp_path):
    """A W8A8 model saved with safetensors loads bit-exactly into a fresh float model (the quantized
    layout, activation mode included, is rebuilt from the file)."""
    pytest.importorskip("safetensors")
    from bitblas_jax.flax import checkpoints
    model = _MLP(nnx.Rngs(0))
    quantize_model(model, W_dtype="int4", group_size=128, A_dtype="int8", activation_granularity="per_tensor",
                   progress=False, verbose=False)
    x = jnp.asarray(rng.standard_normal((3, 256)), jnp.bfloat16)
    y = model(x)
    path = str(tmp_path / "w4a8.safetensors")
    checkpoints.save_safetensors(path, model)
    fresh = _MLP(nnx.Rngs(1))
    checkpoints.load_safetensors(path, fresh)
    assert isinstance(fresh.up, Linear) and fresh.up.config.A_dtype == "int8"
    assert fresh.up.activation_granularity == "per_tensor"
    np.testing.assert_array_equal(np.asarray(fresh(x), np.float32), np.asarray(y, np.float32))
