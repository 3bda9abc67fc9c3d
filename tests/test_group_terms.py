"""Group terms held with the weight (Matmul.group_terms, group_terms.py): their values against the formula
of gemm_cutlass's own terms kernel, the checks, and calls that hold them (the GPU's reading of them:
test_gpu.py)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import formats

from cases import check, make_case

# gemm_cutlass's conversion reads a stored code as value + this (docs/KERNELS.md, gemm_cutlass), stated here
# apart from plan.h so the test checks it
VALUE_OFFSET = {"int4": 8, "uint4": 0, "int8": 0, "uint8": -128, "nf4": 0, "fp4_e2m1": 0}
MODES = {"int4": ("none", "scale", "original", "rescale", "quantized"), "nf4": ("none", "scale"),
         "fp4_e2m1": ("none", "scale")}
MAX_SPLIT = 8   # plan.h kCutlassMaxSplit: the copies of a one-per-row term


def _kernel_terms(case) -> np.ndarray:
    """S and Z as csrc/cuda/gemm_cutlass.cu's group_terms_kernel computes them, in NumPy: float32 from the
    operands' values, with w0 = -off (-0.0 where off is 0), Z = (w0 - z) s (original, quantized), w0 s - z
    (rescale), w0 s (scale), w0 (none), each rounded once to A's dtype; [2, rows, N]."""
    cfg, mode = case.mm.config, case.mm.spec.mode
    adt = formats.NUMPY_DTYPES[cfg.A_dtype]
    off = np.float32(VALUE_OFFSET[cfg.W_dtype])
    s = np.ones((cfg.N, 1), np.float32) if mode == "none" else np.asarray(case.scale).astype(np.float32)
    z = np.zeros_like(s) if case.zeros is None else np.asarray(case.zeros).astype(np.float32)
    w0 = -off
    Z = w0 * s - z if mode == "rescale" else (w0 - z) * s
    terms = np.stack([s.astype(adt).T, Z.astype(adt).T])
    one_per_row = mode == "none" or cfg.num_groups == 1
    return np.broadcast_to(terms, (2, MAX_SPLIT if one_per_row else cfg.num_groups, cfg.N))


def _cases():
    for fmt in ("int4", "uint4", "int8", "uint8", "nf4", "fp4_e2m1"):
        for mode in MODES.get(fmt, MODES["int4"]):
            for group in ((-1, 128) if mode == "none" else (-1, 64, 128)):
                for a_dtype in ("float16", "bfloat16"):
                    yield pytest.param(fmt, mode, group, a_dtype, id=f"{fmt}-{mode}-g{group}-{a_dtype}")


@pytest.mark.parametrize("fmt,mode,group,a_dtype", list(_cases()))
def test_terms_are_the_kernels(rng, fmt, mode, group, a_dtype):
    """Matmul.group_terms gives the bits the call's own terms kernel writes (so a call on them returns the same
    output; test_gpu.py checks that on the GPU), jitted or not."""
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, M=2, N=48, K=512)
    assert case.mm.holds_group_terms
    want = _kernel_terms(case)
    for f in (case.mm.group_terms, jax.jit(case.mm.group_terms)):
        got = np.asarray(f(case.scale, case.zeros))
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_terms_reproduce_the_weight(rng):
    """code * S + Z, the GEMM's conversion, is the dequantized weight (int4 original: value = code - 8) up to
    Z's and the product's roundings."""
    case = make_case(rng, "int4", "original", 64, "float16", "float32", "float16", M=2, N=32, K=256)
    S, Z = (np.asarray(t, np.float64) for t in case.mm.group_terms(case.scale, case.zeros))
    code = np.asarray(case.values, np.float64) + 8
    rep = lambda x: np.repeat(x.T, 64, axis=1)  # noqa: E731 - [groups, N] -> [N, K]
    w = code * rep(S) + rep(Z)
    ref = (np.asarray(case.values, np.float64) - np.repeat(np.asarray(case.zeros, np.float64), 64, axis=1)) \
        * np.repeat(np.asarray(case.scale, np.float64), 64, axis=1)
    u = 2.0 ** -11
    assert np.all(np.abs(w - ref) <= u * (np.abs(rep(Z)) + np.abs(code * rep(S))) + 1e-12)


@pytest.mark.parametrize("M", [1, 64, 300])
def test_call_on_held_terms(rng, M):
    """A call that holds the terms returns the call's result (the CPU reads scale and zeros; jit, vmap and
    grad as without them)."""
    case = make_case(rng, "uint4", "original", 128, "bfloat16", "float32", "bfloat16", True, M=M, N=64, K=512)
    mm, W = case.mm, case.packed()
    args = [jnp.asarray(x) for x in (case.A, case.scale, case.zeros, case.bias)]
    terms = mm.group_terms(args[1], args[2])
    call = lambda A, s, z, b, t=None: mm(A, W, scale=s, zeros=z, bias=b, group_terms=t)  # noqa: E731
    out = np.asarray(jax.jit(call)(*args, terms))
    check(case, out)
    np.testing.assert_array_equal(out, np.asarray(call(*args)))
    batched = jax.vmap(lambda A: call(A, *args[1:], terms))(jnp.stack([args[0]] * 2))
    np.testing.assert_array_equal(np.asarray(batched[1]), out)

    def loss(A, s, t=None):
        return jnp.sum(call(A, s, args[2], args[3], t).astype(jnp.float32) ** 2)
    for a, b in zip(jax.grad(loss, (0, 1))(args[0], args[1], terms), jax.grad(loss, (0, 1))(args[0], args[1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kw", [
    dict(W_dtype="int2", group_size=128, with_scaling=True),           # gemm_cutlass reads 4- and 8-bit codes
    dict(W_dtype="int4", group_size=32, with_scaling=True),            # groups of whole 64-k stages
    dict(W_dtype="int4", A_dtype="float32"),                           # 16-bit activations
    dict(W_dtype="int4", out_dtype="float32"),                         # output in A's dtype
    dict(W_dtype="int8", A_dtype="int8", out_dtype="int32"),           # 8-bit activations
], ids=["int2", "group32", "f32", "out32", "a8"])
def test_configs_without_terms_raise(kw):
    cfg = bj.MatmulConfig(N=32, K=256, **{"A_dtype": "float16", **kw})
    mm = bj.Matmul(cfg)
    assert not mm.holds_group_terms
    s = jnp.ones((32, cfg.num_groups), cfg.scale_dtype) if cfg.with_scaling else None
    with pytest.raises(ValueError, match="group terms"):
        mm.group_terms(s)
    A = jnp.zeros((2, 256), cfg.A_dtype)
    W = jnp.zeros(bj.layout.packed_shape(32, 256, cfg.format.bits), jnp.uint8)
    with pytest.raises(ValueError, match="group_terms"):
        mm(A, W, scale=s, group_terms=jnp.zeros((2, 8, 32), jnp.float16))


def test_wrong_terms_raise_naming_them(rng):
    case = make_case(rng, "int4", "scale", 128, "float16", "float32", "float16", M=2, N=32, K=256)
    A, W, s = jnp.asarray(case.A), case.packed(), jnp.asarray(case.scale)
    good = case.mm.group_terms(s)
    assert good.shape == (2, 2, 32)
    for bad in (good[:, :1], good.astype(jnp.bfloat16), good[..., :16]):
        with pytest.raises(ValueError, match=r"group_terms must be float16 \(2, 2, 32\)"):
            case.mm(A, W, scale=s, group_terms=bad)


# ---- the Flax layer's held terms ---------------------------------------------------------------------
def test_flax_linear_holds_terms(rng, tmp_path):
    """Linear.hold_group_terms: the same output, the terms of its scales, no trained or checkpointed state;
    a load derives them again from the loaded scales."""
    from flax import nnx

    from bitblas_jax.flax import GroupTerms, Linear, checkpoints, hold_group_terms

    class Model(nnx.Module):
        def __init__(self, seed):
            r = nnx.Rngs(seed)
            self.a = Linear(512, 64, W_dtype="uint4", group_size=128, with_zeros=True, dtype=jnp.float16, rngs=r)
            self.b = Linear(64, 32, W_dtype="int8", group_size=32, dtype=jnp.float16, rngs=r)  # none to hold

        def __call__(self, x):
            return self.b(self.a(x))

    model = Model(0)
    x = jnp.asarray(rng.standard_normal((70, 512)), jnp.float16)
    before = np.asarray(model(x))
    assert hold_group_terms(model) == 1 and model.b.group_terms is None
    terms = model.a.group_terms[...]
    want = model.a.matmul.group_terms(model.a.scales[...], model.a.zeros[...])
    np.testing.assert_array_equal(np.asarray(terms), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(model(x)), before)
    np.testing.assert_array_equal(np.asarray(nnx.jit(lambda m, x: m(x))(model, x)), before)
    assert not jax.tree.leaves(nnx.state(model, GroupTerms).filter(nnx.Param))
    assert model.a.nbytes() == sum(np.asarray(v).nbytes for v in (model.a.qweight[...], model.a.scales[...],
                                                                   model.a.zeros[...], model.a.bias[...], terms))
    path = tmp_path / "m.safetensors"
    checkpoints.save_safetensors(path, model)
    assert not any("group_terms" in k for k in checkpoints.read_safetensors(path))
    other = Model(1)
    hold_group_terms(other)
    checkpoints.load_safetensors(path, other)
    np.testing.assert_array_equal(np.asarray(other.a.group_terms[...]), np.asarray(terms))
    np.testing.assert_array_equal(np.asarray(other(x)), before)


@pytest.mark.parametrize("kw", [dict(group_size=128), dict(group_size=-1, with_scaling=False)], ids=["g128", "none"])
def test_flax_stacked_linear_holds_terms(kw):
    """A stack of layers (nnx.vmap) holds one set of terms per layer, mode none (no scales) too."""
    from flax import nnx

    from bitblas_jax.flax import Linear

    @nnx.vmap(in_axes=0, out_axes=0)
    def make(key):
        return nnx.Linear(256, 64, rngs=nnx.Rngs(key))
    q = Linear.from_linear(make(jax.random.split(jax.random.key(0), 3)), W_dtype="int4", dtype=jnp.float16, **kw)
    assert q.hold_group_terms()
    terms = np.asarray(q.group_terms[...])
    assert terms.shape[0] == 3
    for i in range(3):
        s = None if q.scales is None else q.scales[...][i]
        np.testing.assert_array_equal(terms[i], np.asarray(q.matmul.group_terms(s)))


def test_flax_terms_sharding_metadata():
    """The held terms carry the scales' sharding annotation as [2, rows, N]: N on the output axis, the
    groups on the input axis where the weight is packed per K-shard, one row repeated never split."""
    from flax import nnx

    from bitblas_jax.flax import Linear
    from bitblas_jax.flax.linear import _SHARDING_KEYS

    def names(layer):
        md = layer.group_terms.get_metadata()
        return next(tuple(md[k]) for k in _SHARDING_KEYS if k in md)

    mesh = jax.make_mesh((1, 1), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)

    def layer(group, axes):
        with jax.set_mesh(mesh):
            return Linear(512, 64, W_dtype="int4", group_size=group, dtype=jnp.float16, rngs=nnx.Rngs(0),
                          kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), axes),
                          k_shards=2 if axes[0] else None)     # row-parallel: packed per K-shard

    col, row, per_row = layer(128, (None, "model")), layer(128, ("model", None)), layer(-1, ("model", None))
    assert col.hold_group_terms() and names(col) == (None, None, "model")      # outside the mesh context
    assert row.hold_group_terms() and names(row) == (None, "model", None)
    assert per_row.hold_group_terms() and names(per_row) == (None, None, None)
    x = jnp.ones((64, 512), jnp.float16)
    plain = layer(128, ("model", None))
    with jax.set_mesh(mesh):
        np.testing.assert_array_equal(np.asarray(row(x)), np.asarray(plain(x)))


# ---- the torch shim's held terms ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt,mode,group,a_dtype", [p for p in _cases() if p.values[0] in ("int4", "uint8", "nf4")])
def test_torch_terms_are_jaxs(rng, fmt, mode, group, a_dtype):
    """bitblas_jax.torch.ops.group_terms gives Matmul.group_terms' bits (the same float32 operations)."""
    torch = pytest.importorskip("torch")
    from bitblas_jax.torch import ops
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, M=2, N=48, K=512)
    from test_torch import to_torch
    W = to_torch(np.asarray(case.packed()), "cpu")
    t = lambda x: None if x is None else to_torch(np.asarray(x), "cpu")  # noqa: E731
    got = ops.group_terms(W, t(case.scale), t(case.zeros), fmt, mode, group, ops.TORCH_DTYPES[a_dtype])
    want = np.asarray(case.mm.group_terms(case.scale, case.zeros))
    np.testing.assert_array_equal(got.view(torch.int16).numpy(), want.view(np.int16))


def test_torch_linear_holds_terms(rng):
    """torch Linear.hold_group_terms: the same output, a buffer outside the state_dict, derived again by a load;
    the op checks held terms it is given."""
    torch = pytest.importorskip("torch")
    from bitblas_jax.torch import Linear, ops
    lin = Linear(512, 64, bias=True, A_dtype="float16", W_dtype="uint4", group_size=128, with_scaling=True,
                 with_zeros=True, zeros_mode="original")
    lin.load_float_weight(rng.standard_normal((64, 512)).astype(np.float32))
    A = torch.from_numpy(rng.standard_normal((70, 512)).astype(np.float16))
    before = lin(A)
    assert lin.hold_group_terms() and lin.group_terms.shape == (2, 4, 64)
    torch.testing.assert_close(lin(A), before, rtol=0, atol=0)
    assert "group_terms" not in lin.state_dict()
    other = Linear(512, 64, bias=True, A_dtype="float16", W_dtype="uint4", group_size=128, with_scaling=True,
                   with_zeros=True, zeros_mode="original")
    other.hold_group_terms()
    other.load_state_dict(lin.state_dict())
    assert torch.equal(other.group_terms, lin.group_terms)
    lin.load_float_weight(rng.standard_normal((64, 512)).astype(np.float32))   # new scales: terms derived again
    assert torch.equal(lin.group_terms, ops.group_terms(lin.qweight, lin.scales, lin.zeros, "uint4", "original",
                                                        128, torch.float16))
    with pytest.raises(ValueError, match="group_terms must have shape"):
        ops.matmul_impl(A, lin.qweight, lin.scales, lin.zeros, None, "uint4", "original", 128, "float32",
                        "float16", lin.group_terms[:, :2])
    lin8 = Linear(512, 64, A_dtype="float16", W_dtype="int2", group_size=128)
    assert not lin8.hold_group_terms() and lin8.group_terms is None
