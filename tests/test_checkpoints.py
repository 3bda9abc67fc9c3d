"""bitblas_jax.gptq_awq (GPTQ / AWQ unpacking) and bitblas_jax.flax.checkpoints (GPTQ / AWQ
import, Orbax / safetensors round trips).

The GPTQ and AutoAWQ files are built here with packers written from the published
packing rules (AutoGPTQ's QuantLinear.pack loop, AutoAWQ's WQLinear_GEMM.from_linear
loop), not with the library's own pack_* helpers; nothing is downloaded. Imported layers
are checked against a float64 dequantization computed straight from the integer
matrices and g_idx, under tests/cases.py's error bound terms (fp32 accumulation,
one fp16 rounding of the decoded weight, two output roundings).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bitblas_jax import gptq_awq
from bitblas_jax.flax import Linear, checkpoints, quantize_model, quantized_layers

U = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


# ---- reference packers (from the published loops) -------------------------------------------
def autogptq_pack(intweight_kn, zeros_gn, bits, zero_minus_one=True):
    """AutoGPTQ QuantLinear.pack: qweight [K*bits/32, N], qzeros [G, N*bits/32], int32.
    zero_minus_one: store zero - 1 as version-1 GPTQ files do (the +1 is added back at
    load time); False: store the zero ("gptq_v2" files)."""
    K, N = intweight_kn.shape
    per = 32 // bits
    intweight = intweight_kn.astype(np.uint32)
    qweight = np.zeros((K // per, N), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        for j in range(i, i + per):
            qweight[row] |= intweight[j] << (bits * (j - i))
        i += per
        row += 1
    zeros = zeros_gn.astype(np.int64) - (1 if zero_minus_one else 0)
    assert zeros.min() >= 0
    zeros = zeros.astype(np.uint32)
    qzeros = np.zeros((zeros.shape[0], N // per), dtype=np.uint32)
    i = col = 0
    while col < qzeros.shape[1]:
        for j in range(i, i + per):
            qzeros[:, col] |= zeros[:, j] << (bits * (j - i))
        i += per
        col += 1
    return qweight.view(np.int32), qzeros.view(np.int32)


def autoawq_pack(intweight_kn, zeros_gn):
    """AutoAWQ WQLinear_GEMM: qweight [K, N/8], qzeros [G, N/8]; field i <- column order_map[i]."""
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]

    def pack(x):
        x = x.astype(np.uint32)
        out = np.zeros((x.shape[0], x.shape[1] // 8), dtype=np.uint32)
        for col in range(x.shape[1] // 8):
            for i in range(8):
                out[:, col] |= x[:, col * 8 + order_map[i]] << (i * 4)
        return out.view(np.int32)

    return pack(intweight_kn), pack(zeros_gn)


def gptq_layer(rng, K, N, bits, group_size, act_order, zero_minus_one):
    """Random GPTQ layer: ints [K, N], zeros [G, N], fp16 scales [G, N], g_idx [K]."""
    G = K // group_size
    q = rng.integers(0, 2**bits, (K, N))
    zlo = 1 if zero_minus_one else 0   # zero 0 cannot be stored as zero - 1 (it would be -1)
    z = rng.integers(zlo, 2**bits, (G, N))
    s = (rng.uniform(0.5, 1.5, (G, N)) / 2**bits).astype(np.float16)
    g_idx = np.arange(K) // group_size
    if act_order:                      # GPTQ: g_idx = (arange // gs)[invperm] for a random perm
        perm = rng.permutation(K)
        g_idx = g_idx[np.argsort(perm)]
    return q, z, s, g_idx.astype(np.int32)


def ref_weight_nk(q_kn, z_gn, s_gn, g_idx, a_dtype="float16"):
    """float64 (q - z[g_idx]) * s[g_idx], transposed to [N, K], rounded to the activation dtype."""
    w = (q_kn - z_gn[g_idx]).astype(np.float64) * s_gn[g_idx].astype(np.float64)
    dt = np.float16 if a_dtype == "float16" else jnp.bfloat16
    return np.asarray(w.T.astype(dt), np.float64)


def check_layer(layer, wd_nk, rng, M=4, a_dtype="float16", bias=None):
    K = wd_nk.shape[1]
    x = rng.standard_normal((M, K)).astype(np.float16 if a_dtype == "float16" else jnp.bfloat16)
    got = np.asarray(layer(jnp.asarray(x))).astype(np.float64)
    x64 = np.asarray(x, np.float64)
    ref = x64 @ wd_nk.T + (0 if bias is None else np.asarray(bias, np.float64))
    absprod = np.abs(x64) @ np.abs(wd_nk).T
    b = 0 if bias is None else np.abs(np.asarray(bias, np.float64))
    bound = (K * 2.0**-24 + U[a_dtype]) * absprod + 2 * U[a_dtype] * (np.abs(ref) + b)
    err = np.abs(got - ref)
    assert np.all(err <= bound), f"max err {err.max():.3g}, worst excess {(err - bound).max():.3g}"


# ---- GPTQ --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,group_size,act_order,version", [
    (4, 64, False, 1), (4, 64, True, 1), (4, 256, True, 2), (2, 128, True, 2), (8, 32, False, 1),
    (8, 64, True, 2)])
def test_unpack_gptq_and_layer(rng, bits, group_size, act_order, version):
    K, N = 256, 64
    q, z, s, g_idx = gptq_layer(rng, K, N, bits, group_size, act_order, version == 1)
    qweight, qzeros = autogptq_pack(q, z, bits, zero_minus_one=version == 1)
    up = gptq_awq.unpack_gptq(qweight, qzeros, s, g_idx, bits=bits, version=version)
    assert up.values.dtype == np.uint8 and up.zeros.dtype == np.uint8 and up.W_dtype == f"uint{bits}"
    assert up.group_size == group_size
    G = K // group_size
    if act_order and G > 1:
        assert up.perm is not None and np.array_equal(g_idx[up.perm], np.arange(K) // group_size)
        np.testing.assert_array_equal(up.values, q.T[:, up.perm])
    else:
        assert up.perm is None
        np.testing.assert_array_equal(up.values, q.T)
    np.testing.assert_array_equal(up.zeros, z.T)
    w64 = (q - z[g_idx]).astype(np.float64) * s[g_idx].astype(np.float64)
    np.testing.assert_array_equal(up.dequantize(), w64.T)
    bias = rng.standard_normal(N).astype(np.float16)
    layer = Linear.from_gptq(qweight, qzeros, s, g_idx, bias, bits=bits, version=version)
    assert layer.A_dtype == "float16" and layer.zeros_mode == "quantized"
    assert layer.permute_inputs == (up.perm is not None)
    wd = ref_weight_nk(q, z, s, g_idx)
    np.testing.assert_array_equal(np.asarray(layer.dequantize()).astype(np.float64), wd)
    check_layer(layer, wd, rng, bias=bias)


def test_gptq_bf16_activations_and_errors(rng):
    q, z, s, g_idx = gptq_layer(rng, 256, 32, 4, 128, True, True)
    qweight, qzeros = autogptq_pack(q, z, 4)
    layer = Linear.from_gptq(qweight, qzeros, s, g_idx, A_dtype="bfloat16")
    # the fp16 scales are rounded to bf16 by the layer: the reference does the same
    wd = ref_weight_nk(q, z, s.astype(jnp.bfloat16).astype(np.float64), g_idx, "bfloat16")
    check_layer(layer, wd, rng, a_dtype="bfloat16")
    with pytest.raises(ValueError, match="bits=3"):
        gptq_awq.unpack_gptq(qweight, qzeros, s, g_idx, bits=3)
    bad = g_idx.copy()
    bad[0] = (bad[0] + 1) % 2           # one channel moves to the other group: sizes 127 / 129
    with pytest.raises(ValueError, match="unequal"):
        gptq_awq.unpack_gptq(qweight, qzeros, s, bad, bits=4)


def test_gptq_stored_zero_minus_one_wraps_like_bitblas():
    # version 1 stores zero - 1; a stored all-ones field means zero = 2**bits -> (qz + 1) & mask = 0
    qzeros = gptq_awq.pack_int32(np.full((1, 8), 15), 4, axis=1)
    up = gptq_awq.unpack_gptq(np.zeros((8, 8), np.int32), qzeros, np.ones((1, 8), np.float16), bits=4)
    assert not up.zeros.any()


# ---- AWQ -----------------------------------------------------------------------------------------
def test_unpack_awq_and_layer(rng):
    K, N, gs = 256, 64, 64
    G = K // gs
    q = rng.integers(0, 16, (K, N))
    z = rng.integers(0, 16, (G, N))
    s = (rng.uniform(0.5, 1.5, (G, N)) / 16).astype(np.float16)
    qweight, qzeros = autoawq_pack(q, z)
    assert qweight.shape == (K, N // 8) and qzeros.shape == (G, N // 8)
    up = gptq_awq.unpack_awq(qweight, qzeros, s)
    np.testing.assert_array_equal(up.values, q.T)
    np.testing.assert_array_equal(up.zeros, z.T)
    assert up.perm is None and up.group_size == gs
    layer = Linear.from_awq(qweight, qzeros, s)
    g_idx = np.arange(K) // gs
    wd = ref_weight_nk(q, z, s, g_idx)
    check_layer(layer, wd, rng)
    # the library's own packers are the inverses
    np.testing.assert_array_equal(gptq_awq.pack_awq(up.values, up.zeros, up.scales)[0], qweight)
    np.testing.assert_array_equal(gptq_awq.pack_gptq(up.values, up.zeros, up.scales, bits=4, version=2)[0],
                                  autogptq_pack(q, z, 4, zero_minus_one=False)[0])


# ---- whole-model import ----------------------------------------------------------------------------
class Attn(nnx.Module):
    def __init__(self, rngs):
        self.q_proj = nnx.Linear(256, 128, use_bias=False, rngs=rngs)
        self.o_proj = nnx.Linear(128, 256, use_bias=False, rngs=rngs)


class Layer(nnx.Module):
    def __init__(self, rngs):
        self.self_attn = Attn(rngs)
        self.norm = nnx.RMSNorm(256, rngs=rngs)


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([Layer(rngs) for _ in range(2)])
        self.lm_head = nnx.Linear(256, 64, use_bias=False, rngs=rngs)


@pytest.mark.parametrize("kind", ["gptq", "awq"])
def test_import_whole_checkpoint(rng, tmp_path, kind):
    tensors, refs = {}, {}
    for i in range(2):
        for name, (K, N) in {"q_proj": (256, 128), "o_proj": (128, 256)}.items():
            prefix = f"model.layers.{i}.self_attn.{name}"
            if kind == "gptq":
                q, z, s, g_idx = gptq_layer(rng, K, N, 4, 64, act_order=(i == 1), zero_minus_one=False)
                qweight, qzeros = autogptq_pack(q, z, 4, zero_minus_one=False)
                tensors[f"{prefix}.g_idx"] = g_idx
            else:
                q = rng.integers(0, 16, (K, N))
                z = rng.integers(0, 16, (K // 64, N))
                s = (rng.uniform(0.5, 1.5, (K // 64, N)) / 16).astype(np.float16)
                g_idx = np.arange(K) // 64
                qweight, qzeros = autoawq_pack(q, z)
            tensors.update({f"{prefix}.qweight": qweight, f"{prefix}.qzeros": qzeros,
                            f"{prefix}.scales": s})
            refs[(i, name)] = ref_weight_nk(q, z, s, g_idx)
    import safetensors.numpy
    d = tmp_path / "ckpt"
    d.mkdir()
    safetensors.numpy.save_file(tensors, str(d / "model.safetensors"))
    with open(d / "config.json", "w") as f:
        json.dump({"quantization_config": {"quant_method": kind, "bits": 4, "group_size": 64,
                                           "desc_act": True, "checkpoint_format": "gptq_v2"}}, f)
    model = Tiny(nnx.Rngs(0))
    name_map = {r"^layers": "model.layers"}
    (checkpoints.import_gptq if kind == "gptq" else checkpoints.import_awq)(model, str(d), name_map=name_map)
    assert sorted(quantized_layers(model)) == sorted(
        f"layers/{i}/self_attn/{n}" for i in range(2) for n in ("q_proj", "o_proj"))
    assert type(model.lm_head) is nnx.Linear
    if kind == "gptq":
        assert model.layers[1].self_attn.q_proj.permute_inputs
    for (i, name), wd in refs.items():
        layer = getattr(model.layers[i].self_attn, name)
        np.testing.assert_array_equal(np.asarray(layer.dequantize()).astype(np.float64), wd)
        check_layer(layer, wd, rng)
    with pytest.raises(ValueError, match="match no"):
        checkpoints.import_gptq(Tiny(nnx.Rngs(0)), tensors, bits=4, verbose=False)


# ---- save / load round trips --------------------------------------------------------------------------
class Mixed(nnx.Module):
    """Quantized layers of several kinds, a float lm_head and a norm."""

    def __init__(self, rngs, seed=0):
        r = np.random.default_rng(seed)
        self.a = Linear(256, 64, W_dtype="int4", group_size=128, rngs=rngs)                  # bf16, bias
        self.b = Linear(256, 32, W_dtype="uint4", group_size=64, with_zeros=True, zeros_mode="quantized",
                        dtype=jnp.float16, use_bias=False, permute_inputs=True, rngs=rngs)
        self.c = Linear(256, 48, W_dtype="uint8", group_size=32, with_zeros=True, zeros_mode="original",
                        rngs=rngs)
        self.d = Linear(128, 16, W_dtype="float8_e4m3fn", A_dtype="float16", rngs=rngs)
        self.b.perm.set_value(jnp.asarray(r.permutation(256).astype(np.int32)))
        self.norm = nnx.RMSNorm(256, rngs=rngs)
        self.lm_head = nnx.Linear(256, 64, use_bias=False, param_dtype=jnp.bfloat16, rngs=rngs)

    def __call__(self, x):
        h = self.norm(x)
        return (self.a(h), self.b(h), self.c(h), self.d(h[:, :128]), self.lm_head(h))


def _bits_equal(m1, m2):
    s1, s2 = nnx.state(m1), nnx.state(m2)
    assert jax.tree.structure(s1) == jax.tree.structure(s2)
    for x, y in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8))


class FloatMixed(nnx.Module):
    """Mixed's structure before quantization (what a user would build from a config)."""

    def __init__(self, rngs):
        self.a = nnx.Linear(256, 64, rngs=rngs)
        self.b = nnx.Linear(256, 32, use_bias=False, rngs=rngs)
        self.c = nnx.Linear(256, 48, rngs=rngs)
        self.d = nnx.Linear(128, 16, rngs=rngs)
        self.norm = nnx.RMSNorm(256, rngs=rngs)
        self.lm_head = nnx.Linear(256, 64, use_bias=False, param_dtype=jnp.bfloat16, rngs=rngs)

    __call__ = Mixed.__call__


@pytest.mark.parametrize("fmt", ["orbax", "safetensors"])
def test_round_trip_bit_exact(rng, tmp_path, fmt):
    seed = int(rng.integers(1 << 30))
    model = Mixed(nnx.Rngs(seed), seed)
    # make the float state non-trivial too
    model.norm.scale.set_value(jnp.asarray(rng.standard_normal(256), jnp.float32))
    x = jnp.asarray(rng.standard_normal((3, 256)), jnp.float32)
    outs = model(x)
    path = tmp_path / ("ck" if fmt == "orbax" else "m.safetensors")
    save = checkpoints.save_orbax if fmt == "orbax" else checkpoints.save_safetensors
    load = checkpoints.load_orbax if fmt == "orbax" else checkpoints.load_safetensors
    save(path, model)
    targets = [Mixed(nnx.Rngs(seed + 1), seed + 1),                   # same structure, other values
               FloatMixed(nnx.Rngs(1)),                              # float model: layout applied
               nnx.eval_shape(lambda: FloatMixed(nnx.Rngs(2)))]      # abstract float model
    for target in targets:
        load(path, target)
        _bits_equal(model, target)
        for o1, o2 in zip(outs, target(x)):
            np.testing.assert_array_equal(np.asarray(o1), np.asarray(o2))
    assert target.b.permute_inputs and target.b.zeros[...].dtype == jnp.uint8


def test_load_errors(tmp_path):
    model = quantize_model(FloatMixed(nnx.Rngs(0)), "int4", 64, exclude=("lm_head", "d"), progress=False,
                           verbose=False)
    p = str(tmp_path / "m.safetensors")
    checkpoints.save_safetensors(p, model)
    tensors, meta = checkpoints.read_safetensors(p, with_metadata=True)
    assert tensors["a.qweight"].dtype == np.uint8 and tensors["lm_head.kernel"].dtype == jnp.bfloat16
    assert json.loads(meta["bitblas_jax.layout"])["format"] == "bitblas_jax/1"

    class Other(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(128, 64, rngs=rngs)

    with pytest.raises(ValueError, match="does not exist|in, out"):
        checkpoints.load_safetensors(p, Other(nnx.Rngs(0)))
    # a structure that matches but lacks a tensor: strict load refuses
    partial = {k: np.array(v) for k, v in tensors.items() if k != "norm.scale"}
    import safetensors.numpy
    safetensors.numpy.save_file(partial, str(tmp_path / "p.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="missing"):
        checkpoints.load_safetensors(str(tmp_path / "p.safetensors"), FloatMixed(nnx.Rngs(0)))
    checkpoints.load_safetensors(str(tmp_path / "p.safetensors"), FloatMixed(nnx.Rngs(0)), strict=False)
    assert os.path.exists(p)
