"""The PyTorch shim (bitblas_jax.torch) against the float64 reference.

Same cases and error bound as the JAX tests (tests/cases.py: `check` bounds
|kernel - float64| by the accumulation, A-dtype and output roundings). CPU
tensors run the CPU kernel; CUDA cases run when a GPU and the CUDA kernels are
there (skipped otherwise).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import bitblas_jax.torch as bbt  # noqa: E402
from bitblas_jax import formats, reference  # noqa: E402
from bitblas_jax.quantize import quantize  # noqa: E402

from cases import UNIT_ROUNDOFF, all_format_modes, check, make_case  # noqa: E402

TD = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
HAS_GPU = torch.cuda.is_available() and bbt.has_cuda_kernels()
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU and the CUDA kernels")


# ---- helpers --------------------------------------------------------------------------
def to_torch(a: np.ndarray, device="cpu") -> torch.Tensor:
    """numpy (float16 / bfloat16 / float32 / ints) -> torch, exactly."""
    a = np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16).to(device)
    return torch.from_numpy(a.copy()).to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def linear_for(case, device="cpu") -> bbt.Linear:
    c = case.cfg
    lin = bbt.Linear(c.K, c.N, bias=c.with_bias, A_dtype=c.A_dtype, W_dtype=c.W_dtype,
                     accum_dtype=c.accum_dtype, out_dtype=c.out_dtype, group_size=c.group_size,
                     with_scaling=c.with_scaling, with_zeros=c.with_zeros, zeros_mode=c.zeros_mode,
                     device=device)
    lin.load_and_transform_weight(case.values, case.scale, case.zeros, case.bias)
    return lin


def _matrix():
    outs = ("float16", "bfloat16", "float32")
    for i, ((fmt, mode), a_dtype) in enumerate(
            [(fm, a) for fm in all_format_modes() for a in ("float16", "bfloat16", "float32")]):
        group = -1 if mode == "none" else (-1, 32, 128)[i % 3]
        accum = "float16" if a_dtype == "float16" and i % 2 else "float32"
        out = outs[i % 3]
        bias = bool(i % 2)
        yield pytest.param(fmt, mode, group, a_dtype, accum, out, bias,
                           id=f"{fmt}-{mode}-g{group}-{a_dtype}-acc{accum[5:]}-{out}-{'bias' if bias else 'nobias'}")


# ---- forward against the reference ----------------------------------------------------------
@pytest.mark.parametrize("fmt,mode,group,a_dtype,accum,out,bias", list(_matrix()))
def test_linear_every_format_mode(rng, fmt, mode, group, a_dtype, accum, out, bias):
    case = make_case(rng, fmt, mode, group, a_dtype, accum, out, bias, M=5, N=32, K=256)
    lin = linear_for(case)
    with torch.no_grad():
        y = lin(to_torch(case.A))
    assert y.dtype == TD[out] and y.shape == (5, 32)
    check(case, to_numpy(y))


@pytest.mark.parametrize("a_shape", [(1, 512), (17, 512), (2, 3, 512), (2, 1, 4, 512), (512,)])
def test_leading_shapes(rng, a_shape):
    case = make_case(rng, "uint4", "original", 128, "bfloat16", "float32", "bfloat16", True,
                     M=1, N=48, K=512, a_shape=a_shape)
    y = linear_for(case)(to_torch(case.A))
    assert tuple(y.shape) == a_shape[:-1] + (48,)
    check(case, to_numpy(y))


def test_empty_and_noncontiguous_input(rng):
    case = make_case(rng, "int4", "scale", 64, "float16", a_shape=(6, 256))
    lin = linear_for(case)
    assert lin(torch.zeros((0, 256), dtype=torch.float16)).shape == (0, 32)
    assert lin(torch.zeros((2, 0, 256), dtype=torch.float16)).shape == (2, 0, 32)
    big = to_torch(np.concatenate([case.A, case.A], axis=1))       # [6, 512]
    view = big[:, ::2]                                              # strided [6, 256]
    assert not view.is_contiguous()
    check(case, to_numpy(lin(view)), A=to_numpy(view))
    At = to_torch(np.ascontiguousarray(case.A.T)).t()               # transposed storage
    check(case, to_numpy(lin(At)))


def test_op_directly_and_opcheck(rng):
    case = make_case(rng, "uint4", "quantized", 64, "float16", "float32", "float32", True, M=4, N=32, K=256)
    lin = linear_for(case)
    args = (to_torch(case.A), lin.qweight, lin.scales, lin.zeros, lin.bias, "uint4", "quantized", 64,
            "float32", "float32")
    check(case, to_numpy(torch.ops.bitblas_jax.matmul(*args)))
    torch.library.opcheck(torch.ops.bitblas_jax.matmul.default, args)
    A = to_torch(case.A).requires_grad_()
    torch.library.opcheck(torch.ops.bitblas_jax.matmul.default, (A,) + args[1:])


def test_out_variant_writes_in_place(rng):
    """matmul.out writes every element of `out` (poisoned with NaN first) and returns it; opcheck;
    Linear(A, output=) hands a fitting output to the kernel and copies into any other."""
    case = make_case(rng, "int4", "original", 64, "bfloat16", "float32", "bfloat16", True,
                     a_shape=(2, 3, 256), N=48, K=256)
    lin = linear_for(case)
    args = (to_torch(case.A), lin.qweight, lin.scales, lin.zeros, lin.bias, "int4", "original", 64,
            "float32", "bfloat16")
    out = torch.full((2, 3, 48), float("nan"), dtype=torch.bfloat16)
    assert torch.ops.bitblas_jax.matmul.out(*args, out=out) is None
    check(case, to_numpy(out))
    out.fill_(float("nan"))
    assert bbt.ops.matmul_out(*args, out=out) is out
    check(case, to_numpy(out))
    torch.library.opcheck(torch.ops.bitblas_jax.matmul.out, args, {"out": torch.empty_like(out)})
    with torch.no_grad():
        out2 = torch.full_like(out, float("nan"))
        assert lin(to_torch(case.A), output=out2).data_ptr() == out2.data_ptr()
        check(case, to_numpy(out2))
        wide = torch.full((2, 3, 96), float("nan"), dtype=torch.bfloat16)
        strided = wide[..., ::2]                       # not contiguous: filled by a copy
        assert lin(to_torch(case.A), output=strided).data_ptr() == strided.data_ptr()
        check(case, to_numpy(strided))
    # out = A itself (N = K here): the op refuses, Linear falls back to a copy
    sq = make_case(rng, "int8", "scale", 64, "float32", "float32", "float32", False, M=4, N=64, K=64)
    sq_lin = linear_for(sq)
    A_sq = to_torch(sq.A)
    with pytest.raises(ValueError, match="out shares memory with A"):
        torch.ops.bitblas_jax.matmul.out(A_sq, sq_lin.qweight, sq_lin.scales, None, None, "int8", "scale", 64,
                                         "float32", "float32", out=A_sq)
    with torch.no_grad():
        assert sq_lin(A_sq, output=A_sq).data_ptr() == A_sq.data_ptr()
    check(sq, to_numpy(A_sq))
    for bad, err in ((torch.empty((2, 3, 47), dtype=torch.bfloat16), "shape"),
                     (torch.empty((2, 3, 48), dtype=torch.float16), "bfloat16"),
                     (torch.empty((2, 3, 96), dtype=torch.bfloat16)[..., ::2], "contiguous")):
        with pytest.raises((ValueError, TypeError), match=err):
            torch.ops.bitblas_jax.matmul.out(*args, out=bad)


def test_dequantize_matches_reference(rng):
    for fmt, mode in (("int4", "scale"), ("uint2", "rescale"), ("nf4", "scale"), ("int8", "quantized")):
        case = make_case(rng, fmt, mode, 32, "bfloat16", N=32, K=256)
        wd = linear_for(case).dequantize()
        assert wd.dtype == torch.bfloat16 and wd.shape == (32, 256)
        np.testing.assert_array_equal(to_numpy(wd).astype(np.float64), case.wd())   # exact


# ---- errors ---------------------------------------------------------------------------------
def test_constructor_errors():
    with pytest.raises(ValueError, match="N=40"):
        bbt.Linear(256, 40, W_dtype="int4")
    with pytest.raises(ValueError, match="K=96"):
        bbt.Linear(96, 32, W_dtype="int4")
    with pytest.raises(ValueError, match="group_size"):
        bbt.Linear(256, 32, W_dtype="int4", group_size=100, with_scaling=True)
    with pytest.raises(ValueError, match="A_dtype"):
        bbt.Linear(256, 32, A_dtype="int4")
    with pytest.raises(ValueError, match="zero points"):
        bbt.Linear(256, 32, W_dtype="nf4", with_scaling=True, with_zeros=True)


def test_load_errors(rng):
    lin = bbt.Linear(256, 32, W_dtype="int4", group_size=128, with_scaling=True)
    with pytest.raises(ValueError, match=r"weight must be \[out_features, in_features\]"):
        lin.load_and_transform_weight(np.zeros((256, 32), np.int8))
    with pytest.raises(ValueError, match=r"weight: int4 element values must lie in \[-8, 7\]"):
        lin.load_and_transform_weight(np.full((32, 256), 8, np.int8))
    with pytest.raises(ValueError, match="scales must be"):
        lin.load_and_transform_weight(np.zeros((32, 256), np.int8), scales=torch.ones(32, 4))
    with pytest.raises(ValueError, match="zeros given"):
        lin.load_and_transform_weight(np.zeros((32, 256), np.int8), zeros=torch.ones(32, 2))
    q = bbt.Linear(256, 32, W_dtype="uint4", group_size=128, with_scaling=True, with_zeros=True,
                   zeros_mode="quantized")
    with pytest.raises(TypeError, match="quantized' zeros must be integers"):
        q.load_and_transform_weight(np.zeros((32, 256), np.uint8), zeros=np.ones((32, 2), np.float32))
    with pytest.raises(ValueError, match=r"zeros for uint4 must lie in \[0, 15\]"):
        q.load_and_transform_weight(np.zeros((32, 256), np.uint8), zeros=np.full((32, 2), 16))


def test_forward_errors(rng):
    lin = bbt.Linear(256, 32, W_dtype="int4", group_size=128, with_scaling=True)
    with pytest.raises(TypeError, match=r"A must be torch.float16 \(A_dtype='float16'\), got torch.float32"):
        lin(torch.zeros(2, 256))
    with pytest.raises(ValueError, match=r"A must be \[\.\.\., in_features=256\]"):
        lin(torch.zeros(2, 128, dtype=torch.float16))
    A = torch.zeros(2, 256, dtype=torch.float16)
    op = torch.ops.bitblas_jax.matmul
    base = [A, lin.qweight, lin.scales, None, None, "int4", "scale", 128, "float32", "float16"]

    def call(**over):
        names = ["A", "W", "scale", "zeros", "bias", "w_format", "mode", "group_size", "accum", "out"]
        a = list(base)
        for k, v in over.items():
            a[names.index(k)] = v
        return op(*a)

    with pytest.raises(TypeError, match="scale must be torch.float16, got torch.float32"):
        call(scale=lin.scales.float())
    with pytest.raises(ValueError, match=r"scale must have shape \(32, 2\)"):
        call(scale=lin.scales[:, :1].contiguous())
    with pytest.raises(ValueError, match="scale is required"):
        call(scale=None)
    with pytest.raises(ValueError, match="zeros given but mode='scale'"):
        call(zeros=lin.scales)
    with pytest.raises(ValueError, match=r"bias must have shape \(32,\)"):
        call(bias=torch.zeros(16, dtype=torch.float16))
    with pytest.raises(ValueError, match="W has shape"):
        call(W=lin.qweight[:, :64].contiguous())
    with pytest.raises(TypeError, match="W must be the packed uint8"):
        call(W=lin.qweight.to(torch.int8))
    with pytest.raises(ValueError, match="w_format"):
        call(w_format="int5")
    with pytest.raises(ValueError, match="mode='quantized' is not supported by w_format='nf4'"):
        call(w_format="nf4", mode="quantized")
    with pytest.raises(ValueError, match="accum_dtype='float16' needs float16 A"):
        call(A=A.bfloat16(), scale=lin.scales.bfloat16(), accum="float16")
    with pytest.raises(TypeError, match="A must be float16, bfloat16, float32, int8 or float8"):
        call(A=A.to(torch.float64))
    # meta tensors get the fake implementation: shapes and dtypes only
    meta = call(A=A.to("meta").expand(4, 2, 256), W=lin.qweight.to("meta"), scale=lin.scales.to("meta"))
    assert meta.device.type == "meta" and meta.shape == (4, 2, 32) and meta.dtype == torch.float16


# ---- module plumbing ----------------------------------------------------------------------
def test_state_dict_roundtrip(rng):
    case = make_case(rng, "uint4", "rescale", 64, "bfloat16", "float32", "float32", True, M=3, N=32, K=256)
    lin = linear_for(case)
    buf = io.BytesIO()
    torch.save(lin.state_dict(), buf)
    assert set(lin.state_dict()) == {"qweight", "scales", "zeros", "bias"}
    fresh = bbt.Linear(256, 32, bias=True, A_dtype="bfloat16", W_dtype="uint4", out_dtype="float32",
                       group_size=64, with_scaling=True, with_zeros=True, zeros_mode="rescale")
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    A = to_torch(case.A)
    assert torch.equal(fresh(A), lin(A))
    check(case, to_numpy(fresh(A)))
    wrong = bbt.Linear(256, 32, bias=True, A_dtype="bfloat16", W_dtype="uint2", group_size=64,
                       with_scaling=True, with_zeros=True, zeros_mode="rescale")
    with pytest.raises(RuntimeError, match="qweight"):
        wrong.load_state_dict(lin.state_dict())


def test_dtype_casts_keep_a_dtype(rng):
    case = make_case(rng, "int8", "original", 32, "bfloat16", N=32, K=256)
    lin = linear_for(case)
    lin.half()
    lin.to(torch.float32)
    assert lin.scales.dtype == lin.zeros.dtype == torch.bfloat16 and lin.qweight.dtype == torch.uint8
    check(case, to_numpy(lin(to_torch(case.A))))


def test_import_bitblas_jax_does_not_import_torch():
    code = "import sys, bitblas_jax; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


# ---- autograd -------------------------------------------------------------------------------
@pytest.mark.parametrize("a_dtype", ["float16", "bfloat16", "float32"])
def test_grad_in_A_and_bias(rng, a_dtype):
    case = make_case(rng, "int4", "scale", 64, a_dtype, "float32", a_dtype, True, M=1, N=32, K=256,
                     a_shape=(2, 3, 256))
    lin = linear_for(case)
    lin.bias.requires_grad_(True)
    A = to_torch(case.A).requires_grad_(True)
    y = lin(A)
    check(case, to_numpy(y))
    G = rng.standard_normal(y.shape).astype(formats.NUMPY_DTYPES[a_dtype])
    y.backward(to_torch(G))
    g64 = G.astype(np.float64)
    ref = g64 @ case.wd()                                           # dA = dC x Wd, float64
    # float32 products of exact A-dtype numbers: <= N * 2^-24 * sum|g||w|, then one rounding to A dtype
    bound = 32 * 2.0**-24 * (np.abs(g64) @ np.abs(case.wd())) + UNIT_ROUNDOFF[a_dtype] * np.abs(ref) + 1e-30
    assert np.all(np.abs(to_numpy(A.grad).astype(np.float64) - ref) <= bound)
    db = g64.reshape(-1, 32).sum(0)
    assert np.all(np.abs(to_numpy(lin.bias.grad).astype(np.float64) - db)
                  <= 6 * 2.0**-24 * np.abs(g64).reshape(-1, 32).sum(0) + UNIT_ROUNDOFF[a_dtype] * np.abs(db))


# ---- torch.compile --------------------------------------------------------------------------
def test_torch_compile_fullgraph_cpu(rng):
    torch._dynamo.reset()
    case = make_case(rng, "int4", "original", 128, "float32", "float32", "float32", True, M=8, N=64, K=256)
    lin = linear_for(case)
    compiled_lin = torch.compile(lin, fullgraph=True, dynamic=True)
    net = nn.Sequential(lin, nn.GELU())
    compiled_net = torch.compile(net, fullgraph=True, dynamic=True)
    for M in (8, 3, 16):                                   # one graph serves every M
        A = rng.standard_normal((M, 256)).astype(np.float32)
        with torch.no_grad():
            check(case, compiled_lin(torch.from_numpy(A)).numpy(), A=A)
            # the same kernel runs in both; only GELU = x * Phi(x) is computed differently by
            # inductor: Phi to a few float32 ulps, so the outputs differ by <= 8 * 2^-24 * |x|
            x = lin(torch.from_numpy(A))
            torch.testing.assert_close(compiled_net(torch.from_numpy(A)), net(torch.from_numpy(A)),
                                       rtol=1e-5, atol=8 * 2.0**-24 * float(x.abs().max()))


def test_torch_compile_matches_kernel_exactly(rng):
    torch._dynamo.reset()
    case = make_case(rng, "nf4", "scale", 32, "bfloat16", "float32", "bfloat16", True, M=5, N=32, K=256)
    lin = linear_for(case)
    f = torch.compile(lambda x: lin(x), fullgraph=True)
    A = to_torch(case.A)
    y = f(A)
    assert torch.equal(y, lin(A))
    check(case, to_numpy(y))


# ---- GPTQ / AWQ -------------------------------------------------------------------------------
class FakeGPTQ(nn.Module):
    """An AutoGPTQ-style QuantLinear: just its buffers (qweight [K/8, N], qzeros, scales, g_idx, bias)."""

    def __init__(self, bits, q, z, s, g_idx, bias, version):
        super().__init__()
        N, K = q.shape
        per = 32 // bits
        self.bits, self.infeatures, self.outfeatures = bits, K, N
        stored_z = (z - 1) & ((1 << bits) - 1) if version == 1 else z
        qw = np.zeros((K // per, N), np.uint32)
        for k in range(K):                        # element k of word k // per, low bits first
            qw[k // per] |= q[:, k].astype(np.uint32) << np.uint32(bits * (k % per))
        G = z.shape[1]
        qz = np.zeros((G, N // per), np.uint32)
        for n in range(N):
            qz[:, n // per] |= stored_z[n].astype(np.uint32) << np.uint32(bits * (n % per))
        self.register_buffer("qweight", torch.from_numpy(qw.view(np.int32)))
        self.register_buffer("qzeros", torch.from_numpy(qz.view(np.int32)))
        self.register_buffer("scales", torch.from_numpy(np.ascontiguousarray(s.T)))
        self.register_buffer("g_idx", torch.from_numpy(g_idx.astype(np.int32)))
        self.register_buffer("bias", None if bias is None else torch.from_numpy(bias))


def gptq_problem(rng, bits=4, N=64, K=512, gs=128, act_order=False, bias=True, version=1):
    G = K // gs
    q = rng.integers(0, 2**bits, (N, K)).astype(np.uint8)
    z = rng.integers(0, 2**bits, (N, G)).astype(np.uint8)
    s = (rng.uniform(0.5, 1.5, (N, G)) / 2**bits).astype(np.float16)
    g_idx = np.arange(K) // gs
    if act_order:
        g_idx = rng.permutation(g_idx)
    b = rng.standard_normal(N).astype(np.float16) if bias else None
    mod = FakeGPTQ(bits, q, z, s, g_idx, b, version)
    # float64 GPTQ semantics, in the original column order
    w = (q.astype(np.float64) - z[:, g_idx]) * s.astype(np.float64)[:, g_idx]
    return mod, w, (q, z, s, g_idx, b)


def check_gptq(lin, w, b, rng, a_dtype, zs_abs):
    A = rng.standard_normal((7, w.shape[1])).astype(formats.NUMPY_DTYPES[a_dtype])
    y = to_numpy(lin(to_torch(A))).astype(np.float64)
    ref = reference.matmul(A, w, b)
    a64 = np.abs(A.astype(np.float64))
    u_a, u_out = UNIT_ROUNDOFF[a_dtype], UNIT_ROUNDOFF[lin.out_dtype]
    # the weight element q*s - z*s rounds to A dtype at most twice (product, difference):
    # <= 2 u_A (|q s| + |z s|); float32 accumulation K 2^-24; output and bias roundings.
    babs = 0 if b is None else np.abs(b.astype(np.float64))
    bound = (2 * u_a + w.shape[1] * 2.0**-24) * (a64 @ zs_abs.T) + 2 * u_out * (np.abs(ref) + babs) + 1e-30
    err = np.abs(y - ref)
    assert np.all(err <= bound), f"worst {err.max():.3g}, bound there {bound.flat[np.argmax(err - bound)]:.3g}"


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("W_dtype,zeros_mode", [("uint4", "quantized"), ("uint4", "original"),
                                                 ("uint4", "rescale"), ("int4", "quantized")])
def test_repack_from_gptq(rng, version, act_order, W_dtype, zeros_mode):
    mod, w, (q, z, s, g_idx, b) = gptq_problem(rng, act_order=act_order, version=version)
    lin = bbt.Linear(512, 64, bias=True, A_dtype="float16", W_dtype=W_dtype, group_size=128,
                     with_scaling=True, with_zeros=True, zeros_mode=zeros_mode)
    if version == 1:
        lin.repack_from_gptq(mod)
    else:
        lin.repack_from_gptq_v2(mod)
    assert (lin.perm is not None) == act_order
    zs_abs = (np.abs(q.astype(np.float64)) + z[:, g_idx]) * s.astype(np.float64)[:, g_idx]
    check_gptq(lin, w, b, rng, "float16", zs_abs)
    # the wrong zero rule gives a different layer (so the rule is really applied)
    other = bbt.Linear(512, 64, bias=True, W_dtype=W_dtype, group_size=128, with_scaling=True,
                       with_zeros=True, zeros_mode=zeros_mode)
    other.repack_from_gptq(mod, version=3 - version)
    assert not torch.equal(other.zeros, lin.zeros)
    # state_dict round trip into a fresh layer (perm and bias come back)
    fresh = bbt.Linear(512, 64, W_dtype=W_dtype, group_size=128, with_scaling=True, with_zeros=True,
                       zeros_mode=zeros_mode)
    fresh.load_state_dict(lin.state_dict())
    A = torch.randn(3, 512, dtype=torch.float16)
    assert torch.equal(fresh(A), lin(A))


def test_from_gptq_bf16_and_symmetric(rng):
    mod, w, (q, z, s, g_idx, b) = gptq_problem(rng, bits=8, N=32, K=256, gs=64, act_order=True, bias=False)
    lin = bbt.Linear.from_gptq(mod, A_dtype="bfloat16")
    assert lin.W_dtype == "uint8" and lin.perm is not None and lin.bias is None
    zs_abs = (q.astype(np.float64) + z[:, g_idx]) * s.astype(np.float64)[:, g_idx]
    check_gptq(lin, w, None, rng, "bfloat16", zs_abs)
    np.testing.assert_allclose(to_numpy(lin.dequantize()).astype(np.float64), w,
                               rtol=2 * 2.0**-8, atol=0)
    # symmetric checkpoint (every zero 2^(bits-1)): an int4 Linear without zeros holds it exactly
    mod, w, (q, z, s, g_idx, b) = gptq_problem(rng, bits=4, N=32, K=256, gs=128, bias=True)
    sym = FakeGPTQ(4, q, np.full_like(z, 8), s, g_idx, b, 1)
    lin = bbt.Linear(256, 32, W_dtype="int4", group_size=128, with_scaling=True)
    lin.repack_from_gptq(sym)
    w_sym = (q.astype(np.float64) - 8) * s.astype(np.float64)[:, g_idx]
    check_gptq(lin, w_sym, b, rng, "float16", np.abs(w_sym))
    with pytest.raises(ValueError, match="asymmetric"):
        lin.repack_from_gptq(mod)
    with pytest.raises(ValueError, match="group size is 128"):
        bbt.Linear(256, 32, W_dtype="uint4", group_size=64, with_scaling=True,
                   with_zeros=True).repack_from_gptq(mod)
    with pytest.raises(ValueError, match="W_dtype='uint4'"):
        bbt.Linear(256, 32, W_dtype="uint8", group_size=128, with_scaling=True,
                   with_zeros=True).repack_from_gptq(mod)


def test_repack_from_awq(rng):
    N, K, gs = 64, 256, 64
    order = (0, 2, 4, 6, 1, 3, 5, 7)       # AutoAWQ: field i of a word holds column 8c + order[i]
    q = rng.integers(0, 16, (N, K)).astype(np.uint32)
    z = rng.integers(0, 16, (N, K // gs)).astype(np.uint32)
    s = (rng.uniform(0.5, 1.5, (N, K // gs)) / 16).astype(np.float16)

    def pack(x):                           # x [rows, N] -> int32 [rows, N/8]
        out = np.zeros((x.shape[0], x.shape[1] // 8), np.uint32)
        for c in range(x.shape[1] // 8):
            for i in range(8):
                out[:, c] |= x[:, 8 * c + order[i]] << np.uint32(4 * i)
        return out.view(np.int32)

    awq = nn.Module()
    awq.register_buffer("qweight", torch.from_numpy(pack(q.T)))
    awq.register_buffer("qzeros", torch.from_numpy(pack(z.T)))
    awq.register_buffer("scales", torch.from_numpy(np.ascontiguousarray(s.T)))
    awq.bias = None
    lin = bbt.Linear(K, N, W_dtype="uint4", group_size=gs, with_scaling=True, with_zeros=True,
                     zeros_mode="quantized")
    lin.repack_from_awq(awq)
    g = np.arange(K) // gs
    w = (q.astype(np.float64) - z[:, g]) * s.astype(np.float64)[:, g]
    check_gptq(lin, w, None, rng, "float16", (q + z[:, g]) * s.astype(np.float64)[:, g])


# ---- quantize_model -----------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.proj = nn.Linear(256, 128, dtype=dtype)
        self.block = nn.ModuleDict({"up": nn.Linear(128, 256, bias=False, dtype=dtype),
                                    "down": nn.Linear(256, 128, dtype=dtype)})
        self.odd = nn.Linear(128, 40, dtype=dtype)           # 40 rows: not a multiple of 16
        self.lm_head = nn.Linear(128, 64, dtype=dtype)
        self.attn = nn.MultiheadAttention(128, 4, batch_first=True, dtype=dtype)

    def forward(self, x):
        h = self.proj(x)
        h = h + self.block["down"](torch.relu(self.block["up"](h)))
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.lm_head(h), self.odd(h)


def test_quantize_model(rng, capsys):
    torch.manual_seed(int(rng.integers(2**31)))
    net = Net(torch.float32)
    ref_net = Net(torch.float32)
    ref_net.load_state_dict(net.state_dict())
    w_up = net.block["up"].weight.detach().numpy().copy()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = bbt.quantize_model(net, W_dtype="int4", group_size=128, rules={r"down": {"W_dtype": "int8"}})
    assert out is net
    assert isinstance(net.proj, bbt.Linear) and net.proj.W_dtype == "int4" and net.proj.A_dtype == "float32"
    assert isinstance(net.block["up"], bbt.Linear) and net.block["up"].bias is None
    assert isinstance(net.block["down"], bbt.Linear) and net.block["down"].W_dtype == "int8"
    assert type(net.odd) is nn.Linear and type(net.lm_head) is nn.Linear          # shape / excluded
    assert type(net.attn.out_proj) is not bbt.Linear                               # MHA reads its weight
    assert any("odd" in str(r.message) for r in rec)
    assert "quantize_model" in capsys.readouterr().err                             # the progress bar
    # a replaced layer is exactly RTN (bitblas_jax.quantize) + the kernel
    values, scale, _ = quantize(w_up, "int4", 128, True, False, "original", "float32")
    A = rng.standard_normal((5, 128)).astype(np.float32)
    wd = reference.dequantize_values(values, "int4", "scale", scale, None, 128, "float32")
    y = net.block["up"](torch.from_numpy(A)).numpy().astype(np.float64)
    ref = reference.matmul(A, wd)
    assert np.all(np.abs(y - ref) <= 128 * 2.0**-24 * (np.abs(A) @ np.abs(wd).T) * 2 + 2**-24 * np.abs(ref))
    # the whole model stays close to the float one: int4 RTN with g128 keeps cosine > 0.99
    x = torch.randn(2, 5, 256)
    with torch.no_grad():
        a, b = net(x)[0].flatten(), ref_net(x)[0].flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    # rules=None skips, include limits, and the progress bar can be off
    net2 = Net(torch.bfloat16)
    bbt.quantize_model(net2, include=[r"^block\."], rules={r"up": None}, group_size=64, progress=False)
    assert type(net2.block["up"]) is nn.Linear and isinstance(net2.block["down"], bbt.Linear)
    assert type(net2.proj) is nn.Linear and net2.block["down"].A_dtype == "bfloat16"
    assert capsys.readouterr().err == ""
    with torch.no_grad():
        net2(torch.randn(2, 5, 256, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="unknown keys"):
        bbt.quantize_model(Net(torch.float32), rules={"up": {"bits": 4}})
    single = bbt.quantize_model(nn.Linear(256, 64), group_size=64, progress=False)
    assert isinstance(single, bbt.Linear)


def test_unsigned_without_zeros_refused():
    """uint formats quantized without zeros raise ValueError naming with_zeros (from_float,
    load_float_weight, quantize_model before any layer is replaced); loading given values works."""
    with pytest.raises(ValueError, match="with_zeros=True"):
        bbt.Linear.from_float(nn.Linear(256, 64), W_dtype="uint4", group_size=64)
    layer = bbt.Linear(256, 64, bias=False, A_dtype="float32", W_dtype="uint4", group_size=64,
                       with_scaling=True, with_zeros=False)
    with pytest.raises(ValueError, match="with_zeros=True"):
        layer.load_float_weight(torch.randn(64, 256))
    layer.load_and_transform_weight(np.full((64, 256), 3, np.uint8), np.ones((64, 4), np.float32))
    y = layer(torch.ones(1, 256))
    assert torch.equal(y, torch.full((1, 64), 768.0))
    net = Net(torch.float32)
    with pytest.raises(ValueError, match=r"quantize_model: layer '.*'.*with_zeros=True"):
        bbt.quantize_model(net, W_dtype="uint4", group_size=64, progress=False)
    assert not any(isinstance(m, bbt.Linear) for m in net.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the layer of 40 outputs stays in float (its warning)
        bbt.quantize_model(net, W_dtype="uint4", group_size=64, with_zeros=True, progress=False)
    assert isinstance(net.proj, bbt.Linear) and net.proj.config.with_zeros


def test_quantize_model_compiles(rng):
    torch._dynamo.reset()
    torch.manual_seed(int(rng.integers(2**31)))
    mlp = nn.Sequential(nn.Linear(256, 128), nn.SiLU(), nn.Linear(128, 64))
    bbt.quantize_model(mlp, W_dtype="uint4", with_zeros=True, zeros_mode="quantized", group_size=64,
                       progress=False)
    x = torch.randn(4, 256)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(mlp, fullgraph=True)(x), mlp(x), rtol=1e-5, atol=1e-5)


# ---- CUDA --------------------------------------------------------------------------------
@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("fmt,mode", [("int4", "scale"), ("uint4", "quantized"), ("uint4", "original"),
                                      ("int8", "none"), ("int2", "rescale"), ("uint1", "scale"),
                                      ("nf4", "scale"), ("fp4_e2m1", "scale"), ("float8_e4m3fn", "scale"),
                                      ("float16", "none")])
@pytest.mark.parametrize("a_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("M", [1, 16, 77])
def test_cuda_forward(rng, fmt, mode, a_dtype, M):
    case = make_case(rng, fmt, mode, 128 if mode != "none" else -1, a_dtype, "float32", a_dtype, True,
                     M=M, N=256, K=512)
    lin = linear_for(case, "cuda")
    y = lin(to_torch(case.A, "cuda"))
    assert y.device.type == "cuda"
    check(case, to_numpy(y))


@gpu
@pytest.mark.gpu
def test_cuda_side_stream_and_graph(rng):
    case = make_case(rng, "int4", "scale", 128, "float16", M=16, N=256, K=1024)
    lin = linear_for(case, "cuda")
    A = to_torch(case.A, "cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):              # runs on torch's current stream (s)
        for _ in range(3):
            y = lin(A)
    torch.cuda.current_stream().wait_stream(s)
    check(case, to_numpy(y))
    g = torch.cuda.CUDAGraph()
    static_in = A.clone()
    with torch.cuda.graph(g):
        static_out = lin(static_in)
    A2 = rng.standard_normal((16, 1024)).astype(np.float16)
    static_in.copy_(to_torch(A2, "cuda"))
    g.replay()
    check(case, to_numpy(static_out), A=A2)


@gpu
@pytest.mark.gpu
def test_cuda_compile_and_device_errors(rng):
    torch._dynamo.reset()
    case = make_case(rng, "uint4", "quantized", 128, "bfloat16", "float32", "bfloat16", True, M=8, N=256, K=512)
    lin = linear_for(case, "cuda")
    f = torch.compile(lin, fullgraph=True, mode="reduce-overhead")
    A = to_torch(case.A, "cuda")
    for _ in range(3):
        y = f(A)
    check(case, to_numpy(y))
    with pytest.raises(ValueError, match="W is on cuda"):
        lin(to_torch(case.A))
    with pytest.raises(TypeError, match="float32 A runs on CPU only"):
        bbt.Linear(512, 256, A_dtype="float32", device="cuda")(torch.zeros(2, 512, device="cuda"))


@gpu
@pytest.mark.gpu
def test_cuda_split_k_workspace_streams_and_graph(rng):
    """Shapes whose plan splits K (decode_splitk: groups of 32 end inside int4's 64-wide packed tiles, so
    decode cannot run them): eager, two streams at once, a CUDA graph."""
    from bitblas_jax.torch import ops
    case = make_case(rng, "int4", "scale", 32, "bfloat16", "float32", "bfloat16", True, M=1, N=256, K=4096)
    lin = linear_for(case, "cuda")
    splits = {}
    for M in (1, 3, 16):
        splits[M] = ops._plan(torch.cuda.current_device(), M, 256, 4096, "int4", "bfloat16", "float32",
                              "bfloat16", "scale", 32)[2]
        A = rng.standard_normal((M, 4096)).astype(case.A.dtype)
        check(case, to_numpy(lin(to_torch(A, "cuda"))), A=A)
    M = 3
    assert splits[M] > 1, f"the plan does not split K at M=3 (splits {splits}): this test needs a case that does"
    As = [rng.standard_normal((M, 4096)).astype(case.A.dtype) for _ in range(2)]
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    outs = [None, None]
    ins = [to_torch(a, "cuda") for a in As]
    torch.cuda.synchronize()
    for _ in range(20):                     # interleaved on two streams, each with its workspace
        for i, s in enumerate(streams):
            with torch.cuda.stream(s):
                outs[i] = lin(ins[i])
    torch.cuda.synchronize()
    for a, o in zip(As, outs):
        check(case, to_numpy(o), A=a)
    static_in = ins[0].clone()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = lin(static_in)
    static_in.copy_(ins[1])
    lin(ins[0])                             # an eager call between capture and replay
    g.replay()
    torch.cuda.synchronize()
    check(case, to_numpy(static_out), A=As[1])


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("fmt,mode,a_dtype", [("int4", "original", "float16"), ("nf4", "scale", "bfloat16"),
                                               ("fp4_e2m1", "scale", "float16")])
def test_cuda_gemm_cutlass_misaligned_and_graph(rng, fmt, mode, a_dtype):
    """The torch shim runs gemm_cutlass (g128; integer codes from M = 17, the table formats' register lookup from 64,
    on sm_90 where the install holds it): eager, a slice of A off the 16-byte grid (planned as misaligned: another
    kernel), and a CUDA graph (the group terms' kernel and CUTLASS's launch captured)."""
    from bitblas_jax import _ext, gpu_plan
    from bitblas_jax.torch import ops
    if not (_ext.has_cutlass() and torch.cuda.get_device_capability() == (9, 0)):
        pytest.skip("gemm_cutlass runs on sm_90 GPUs of installs built with CUTLASS")
    M, N, K = 300, 4096, 1024
    case = make_case(rng, fmt, mode, 128, a_dtype, "float32", a_dtype, True, M=M, N=N, K=K)
    kid = ops._plan(torch.cuda.current_device(), M, N, K, fmt, a_dtype, "float32", a_dtype, mode, 128)[0]
    assert gpu_plan.KERNELS[kid] == "gemm_cutlass"
    lin = linear_for(case, "cuda")
    A = to_torch(case.A, "cuda")
    check(case, to_numpy(lin(A)))
    wide = to_torch(np.concatenate([np.zeros((M, 1), case.A.dtype), case.A], axis=1), "cuda")
    view = wide[:, 1:]                      # 2 bytes off the grid: copied contiguous (aligned) by the shim
    check(case, to_numpy(lin(view)))
    static_in = A.clone()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = lin(static_in)
    A2 = rng.standard_normal((M, K)).astype(formats.NUMPY_DTYPES[a_dtype])
    static_in.copy_(to_torch(A2, "cuda"))
    g.replay()
    torch.cuda.synchronize()
    check(case, to_numpy(static_out), A=A2)
    # held group terms (Linear.hold_group_terms): the same bits, eager and captured in a graph
    plain = to_numpy(lin(A))
    assert lin.hold_group_terms()
    np.testing.assert_array_equal(to_numpy(lin(A)), plain)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = lin(static_in)
    static_in.copy_(A)
    g.replay()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(to_numpy(static_out), plain)
