"""int8 / float8 activations in the torch shim (bitblas_jax/torch/quantized_cuda.py, quantized_dot.py)
against the float64 / int64 reference (tests/cases.py: check_quantized, the float32 bound of
qerror_bound; int32 outputs bit for bit).

On this machine: the exact torch path (qdot.matmul_exact, what CUDA tensors run where the plan says
"xla_dot") on CPU tensors, its unpack and k permutation, the plan's wiring and the decode_i8 /
gemm_wgmma_a8 glue with the kernels stood in for by NumPy on CPU memory. With a CUDA GPU and the CUDA
kernels: every path on CUDA tensors (the `gpu` tests; tools/gpu_torch_qact_check.py runs them).
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bitblas_jax.torch as bbt  # noqa: E402
from bitblas_jax import _ext, formats, gpu_plan, layout, primitive, reference  # noqa: E402
from bitblas_jax.torch import ops  # noqa: E402
from bitblas_jax.torch import quantized_cuda as qcuda, quantized_dot as qdot  # noqa: E402

from cases import check_quantized, make_qcase, on_float8_tensor_cores  # noqa: E402

HAS_GPU = torch.cuda.is_available() and bbt.has_cuda_kernels()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU and the CUDA kernels")]
FP8 = ("float8_e4m3fn", "float8_e5m2")


def on_gpu(test):
    for mark in gpu:
        test = mark(test)
    return test


# ---- helpers ----------------------------------------------------------------------------------------
def to_torch(a, device="cpu") -> torch.Tensor:
    """NumPy (ints, float32, float8, bfloat16) -> torch, bit for bit."""
    a = np.ascontiguousarray(np.asarray(a))
    name = a.dtype.name
    if name in ops.TORCH_DTYPES and a.dtype.itemsize == 1 and name != "int8":       # float8
        return torch.from_numpy(a.view(np.uint8).copy()).view(ops.TORCH_DTYPES[name]).to(device)
    if name == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16).to(device)
    return torch.from_numpy(a.copy()).to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(formats.NUMPY_DTYPES["bfloat16"])
    return t.numpy()


def operands(case, device="cpu"):
    """(A, W, scale, zeros, bias) of a QCase as torch tensors."""
    opt = lambda x: None if x is None else to_torch(x, device)  # noqa: E731
    return (to_torch(case.A, device), to_torch(case.packed(), device), opt(case.scale), opt(case.zeros),
            opt(case.bias))


def op_args(case, device="cpu"):
    """The op's arguments for a QCase: its operands and static parameters."""
    c = case.cfg
    return (*operands(case, device), c.W_dtype, c.mode, c.group_size, c.accum_dtype, c.out_dtype)


def exact(case, device="cpu", int_mm=None):
    """qdot.matmul_exact on the case's operands ([M, K] A)."""
    c = case.cfg
    A, W, s, z, b = operands(case, device)
    return qdot.matmul_exact(A.reshape(-1, c.K), W, s, z, b, c.W_dtype, c.A_dtype, c.mode,
                                  c.resolved_group_size, ops.TORCH_DTYPES[c.out_dtype], int_mm=int_mm)


def _combinations():
    """Every A dtype x weight format x mode x output x bias, groups cycling through per channel, 32, 64
    and 128 (the int32 output only in mode none without bias)."""
    groups = (-1, 32, 64, 128)
    i = 0
    for a_dtype, allowed in formats.QUANTIZED_A.items():
        for w in allowed["W"]:
            for mode in formats.allowed_modes(formats.get_format(w)):
                for out in allowed["out"]:
                    for bias in (False, True):
                        if out == "int32" and (mode != "none" or bias):
                            continue
                        g = -1 if mode == "none" else groups[i % len(groups)]
                        i += 1
                        yield pytest.param(a_dtype, w, mode, g, out, bias,
                                           id=f"{a_dtype}-{w}-{mode}-g{g}-{out}-{'bias' if bias else 'nobias'}")


COMBINATIONS = list(_combinations())


# ---- the exact torch path on CPU tensors -----------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
def test_unpack_codes_matches_layout(rng, bits):
    """qdot.unpack_codes (shifts and one transpose) is layout.unpack, on random packed bytes;
    also from a weight that starts off the 4-byte grid (a slice), and for a range of k."""
    N, K = 48, layout.tile_k(bits) * 3
    packed = rng.integers(0, 256, (N, K * bits // 8)).astype(np.uint8)
    want = layout.unpack(packed, N, K, bits)
    got = qdot.unpack_codes(torch.from_numpy(packed), N, K, bits).numpy()
    np.testing.assert_array_equal(got.astype(np.uint32), want)
    flat = torch.from_numpy(np.concatenate([[7], packed.ravel()]).astype(np.uint8))
    got = qdot.unpack_codes(flat[1:].reshape(packed.shape), N, K, bits).numpy()
    np.testing.assert_array_equal(got.astype(np.uint32), want)
    tk = layout.tile_k(bits)                       # a range of whole packed tiles
    got = qdot.unpack_codes(torch.from_numpy(packed), N, K, bits, (tk, 3 * tk)).numpy()
    np.testing.assert_array_equal(got.astype(np.uint32), want[:, tk:3 * tk])


@pytest.mark.parametrize("w", sorted({w for a in formats.QUANTIZED_A.values() for w in a["W"]}))
def test_weight_values_are_the_format_values(rng, w):
    fmt = formats.get_format(w)
    case = make_qcase(rng, "int8" if fmt.is_integer else "float8_e4m3fn", w, N=32, K=256)
    want = formats.decode_codes(fmt, formats.values_to_codes(fmt, np.asarray(case.values)))
    for dtype in ((torch.int8, torch.float32) if fmt.is_integer else (torch.float32,)):
        got = qdot.weight_values(to_torch(case.packed()), 32, 256, w, dtype)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.numpy().astype(np.float64), want)


@pytest.mark.parametrize("axes,order", [(primitive.SIGMA_ORDER_AXES, primitive.a8_k_order(primitive.SIGMA_ORDER_AXES)),
                                        (primitive.LANE_ORDER_AXES, primitive.DECODE_I8_LANE_ORDER)],
                         ids=["sigma", "lane"])
def test_in_a8_order_puts_k_in_the_kernels_order(rng, axes, order):
    """in_a8_order (a transpose of each 32-k block) puts k in primitive's order for the GEMMs (kSigma per 16-k
    chunk) and for decode_i8 (lane order), as primitive.in_a8_order does under JAX."""
    A = rng.integers(-128, 128, (5, 256)).astype(np.int8)
    want = A.reshape(5, 8, 32)[:, :, order].reshape(5, 256)
    got = qcuda.in_a8_order(torch.from_numpy(A), axes)
    assert got.is_contiguous()
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(np.asarray(primitive.in_a8_order(A, axes)), want)


@pytest.mark.parametrize("a_dtype,w,mode,group,out,bias", COMBINATIONS)
def test_exact_path_every_combination(rng, a_dtype, w, mode, group, out, bias):
    """matmul_exact on CPU tensors (int8 A: the float64 dot and torch._int_mm; float8 A: float32) against
    the reference: int32 outputs bit for bit, others within the float32 bound; the int32 ones also equal
    to the CPU kernel's."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, M=5, N=48, K=256)
    for int_mm in ((False, True) if a_dtype == "int8" else (None,)):
        got = exact(case, int_mm=int_mm)
        check_quantized(case, to_numpy(got))
    if out == "int32":
        np.testing.assert_array_equal(to_numpy(got), to_numpy(torch.ops.bitblas_jax.matmul(*op_args(case))))


@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize("int_mm", [False, True])
def test_exact_path_wraps_int32_like_the_kernels(monkeypatch, int_mm, sliced):
    """K = 2^17 with every product (-128)^2: S = 2^31 wraps to -2^31 as in an int32 GEMM (and in the CPU
    kernel); 127 * -128 * 2^17 = -2^31 + 2^24 does not wrap. Also with K walked in slices of 2^13."""
    if sliced:
        monkeypatch.setattr(qdot, "_CHUNK_ELEMENTS", 16 * 8192)
    K, N = 1 << 17, 16
    lin = bbt.Linear(K, N, A_dtype="int8", W_dtype="int8", out_dtype="int32")
    lin.load_and_transform_weight(np.full((N, K), -128, np.int8))
    A = torch.full((2, K), -128, dtype=torch.int8)
    A[1] = 127
    got = qdot.matmul_exact(A, lin.qweight, None, None, None, "int8", "int8", "none", K, torch.int32,
                                 int_mm=int_mm)
    want = reference.integer_matmul(A.numpy(), np.full((N, K), -128, np.int8), "int8")
    wrapped = ((want + 2**31) % 2**32 - 2**31).astype(np.int32)
    assert wrapped[0, 0] == -(2**31) and want[1, 0] == wrapped[1, 0]
    np.testing.assert_array_equal(got.numpy(), wrapped)
    np.testing.assert_array_equal(got.numpy(), lin(A).numpy())


@pytest.mark.parametrize("a_dtype,w,mode,group,out", [("int8", "int4", "quantized", 32, "float32"),
                                                      ("int8", "uint2", "original", 128, "bfloat16"),
                                                      ("int8", "int1", "none", -1, "int32"),
                                                      ("int8", "uint4", "none", -1, "float16"),
                                                      ("float8_e5m2", "int4", "rescale", 64, "float32"),
                                                      ("float8_e4m3fn", "float8_e5m2", "scale", -1, "float32"),
                                                      ("float8_e4m3fn", "float8_e4m3fn", "none", -1, "float32")])
@pytest.mark.parametrize("M", [1, 17, 300])
def test_exact_path_in_k_slices(rng, monkeypatch, a_dtype, w, mode, group, out, M):
    """K walked in slices of whole groups and packed tiles (a small limit here: several slices, a few
    groups each) gives the same exactness and bound, for every int8 route."""
    monkeypatch.setattr(qdot, "_CHUNK_ELEMENTS", 3 * M * 32)
    case = make_qcase(rng, a_dtype, w, mode, group, out, out != "int32", M=M, N=32, K=1024)
    assert qdot._k_slice(M, 32, 1024, 256 if w == "int1" else 128, None if mode == "none" else 128) < 1024
    for int_mm in ((False, True) if a_dtype == "int8" else (None,)):
        check_quantized(case, to_numpy(exact(case, int_mm=int_mm)))


def test_epilogue_is_the_ops_one(rng):
    """ops.quantized_epilogue (the op's activation-scale epilogue, in torch) and qdot.finish share one cast:
    int8 rounds half to even, saturates, NaN -> 0."""
    v = torch.tensor([[0.5, 1.5, 2.5, -0.5, 200.0, -300.0, float("nan"), float("inf")]])
    want = [0, 2, 2, 0, 127, -128, 0, 127]
    assert qdot.finish(v, None, torch.int8).tolist() == [want]
    assert ops.quantized_epilogue(v, torch.tensor(1.0), None, "int8").tolist() == [want]
    assert ops.quantized_epilogue(v[:, :4], torch.tensor([2.0]), torch.ones(4), "float32").tolist() == \
        [[2.0, 4.0, 6.0, 0.0]]


@pytest.mark.parametrize("a_dtype,out", [("int8", o) for o in formats.QUANTIZED_A["int8"]["out"]] +
                         [("float8_e5m2", o) for o in formats.QUANTIZED_A["float8_e5m2"]["out"]])
def test_out_variant_every_output_dtype_cpu(rng, a_dtype, out):
    """matmul.out with int8 / float8 A on CPU tensors (the CPU kernel) writes every element of a poisoned
    `out` of each output dtype; the exact torch path gives the same int32 bits."""
    mode, group = ("none", -1) if out == "int32" else ("scale", 64)
    case = make_qcase(rng, a_dtype, "int4", mode, group, out, out != "int32", a_shape=(2, 3, 256), N=32, K=256)
    dt = ops.TORCH_DTYPES[out]
    for poison in ((float("nan"),) if dt.is_floating_point else (77, -77)):
        C = torch.full((2, 3, 32), poison, dtype=dt)
        assert bbt.ops.matmul_out(*op_args(case), out=C) is C
        check_quantized(case, to_numpy(C))
    if out == "int32":
        np.testing.assert_array_equal(to_numpy(exact(case)).reshape(2, 3, 32), to_numpy(C))


@pytest.mark.parametrize("a_dtype,w,mode,group,out,bias,kind", [
    ("int8", "int4", "scale", 128, "float16", True, "token"),
    ("int8", "int8", "scale", -1, "bfloat16", False, "tensor"),
    ("int8", "uint2", "none", -1, "int8", True, "token"),
    ("int8", "int4", "original", 64, "float32", True, "token"),
    ("float8_e4m3fn", "float8_e4m3fn", "scale", -1, "bfloat16", True, "token"),
    ("float8_e5m2", "int4", "none", -1, "float16", False, "tensor"),
])
def test_op_activation_scales_cpu(rng, a_dtype, w, mode, group, out, bias, kind):
    """The op's a_scale (float32, one per row of A or one for all) on CPU tensors: C = cast(a_scale * v + bias)
    within the float32 bound, through the op and its out= variant into a poisoned `out`, A of rank 3."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, a_shape=(2, 3, 256), N=32, K=256, a_scale=kind)
    a_scale = torch.tensor(np.asarray(case.a_scale, np.float32))      # (a scalar stays 0-d)
    check_quantized(case, to_numpy(torch.ops.bitblas_jax.matmul(*op_args(case), None, a_scale)))
    dt = ops.TORCH_DTYPES[out]
    C = torch.full((2, 3, 32), float("nan") if dt.is_floating_point else 77, dtype=dt)
    assert bbt.ops.matmul_out(*op_args(case), None, a_scale, out=C) is C
    check_quantized(case, to_numpy(C))


def test_op_activation_scales_errors(rng):
    """a_scale is checked before any pointer reaches a kernel: int8 / float8 A only, a float output, float32,
    A's leading shape or a scalar, on A's device."""
    case = make_qcase(rng, "int8", "int4", "scale", 128, "float16", False, M=4, N=32, K=256)
    args = op_args(case)
    good = torch.ones(4, dtype=torch.float32)
    with pytest.raises(TypeError, match="a_scale must be torch.float32"):
        torch.ops.bitblas_jax.matmul(*args, None, good.to(torch.float16))
    with pytest.raises(ValueError, match=r"a_scale must have shape \(4,\)"):
        torch.ops.bitblas_jax.matmul(*args, None, torch.ones(3, dtype=torch.float32))
    f16 = make_qcase(rng, "int8", "int4", "none", -1, "int32", False, M=4, N=32, K=256)
    with pytest.raises(ValueError, match="takes no a_scale"):
        torch.ops.bitblas_jax.matmul(*op_args(f16), None, good)
    A16 = torch.ones((4, 256), dtype=torch.float16)
    W16 = bbt.Linear(256, 32, A_dtype="float16", W_dtype="int4", group_size=128, with_scaling=True)
    with pytest.raises(ValueError, match="a_scale scales int8 / float8 A; A is float16"):
        torch.ops.bitblas_jax.matmul(A16, W16.qweight, W16.scales, None, None, "int4", "scale", 128, "float32",
                                     "float16", None, good)


def test_linear_int8_compiles_fullgraph(rng):
    """torch.compile(fullgraph=True) traces Linear(A_dtype="int8") on float inputs (quantization, the op,
    the epilogue): within one int8 step of the eager layer's quantization."""
    torch._dynamo.reset()
    case = make_qcase(rng, "int8", "int4", "scale", 128, "float16", True, M=5, N=64, K=256)
    layer = bbt.Linear(256, 64, bias=True, A_dtype="int8", W_dtype="int4", group_size=128, with_scaling=True,
                       out_dtype="float16")
    layer.load_and_transform_weight(case.values, case.scale, bias=case.bias)
    x = torch.from_numpy(rng.standard_normal((5, 256)).astype(np.float16))
    with torch.no_grad():
        y, yc = layer(x), torch.compile(layer, fullgraph=True)(x)
    assert yc.dtype == torch.float16
    torch.testing.assert_close(yc.float(), y.float(), rtol=1e-2, atol=float(y.abs().max()) * 1e-2)


# ---- the plan and the kernels' glue, on this machine -------------------------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch):
    """kernel_for as on a GPU of compute capability `cap` with the CUDA kernels (set cap[0])."""
    cap = [(9, 0)]
    monkeypatch.setattr(_ext, "_bitblas_cuda", object())          # gpu_plan's "this install has them"
    monkeypatch.setattr(qcuda, "_cuda_module", lambda: object())
    monkeypatch.setattr(qcuda, "_capability", lambda index: cap[0])
    for var in ("BITBLAS_JAX_DECODE_I8", "BITBLAS_JAX_GEMM_A8", "BITBLAS_JAX_GEMM_MMA_A8", "BITBLAS_JAX_WIDENED_F16",
                "BITBLAS_JAX_HOPPER"):
        monkeypatch.delenv(var, raising=False)
    qcuda.kernel_for.cache_clear()
    yield cap
    qcuda.kernel_for.cache_clear()


@pytest.mark.parametrize("cap,a_dtype,w,mode,group,M,kernel", [
    ((9, 0), "int8", "int4", "scale", 128, 1, "decode_i8"),
    ((9, 0), "int8", "uint1", "none", 256, 16, "decode_i8"),
    ((9, 0), "int8", "int8", "none", 256, 17, "gemm_wgmma_a8"),
    ((9, 0), "int8", "uint4", "scale", 128, 300, "gemm_wgmma_a8"),
    ((9, 0), "int8", "int4", "scale", 256, 300, "gemm_wgmma_a8"),      # per channel (K = 256)
    ((9, 0), "int8", "int2", "original", 128, 300, "xla_dot"),         # zeros modes: XLA's dots
    ((9, 0), "int8", "int4", "quantized", 128, 1, "xla_dot"),
    ((9, 0), "float8_e4m3fn", "int4", "scale", 128, 1, "xla_dot"),      # groups: XLA's dots
    ((9, 0), "float8_e4m3fn", "int4", "scale", 256, 1, "widened_f16"),  # per channel at decode sizes
    ((9, 0), "float8_e4m3fn", "float8_e5m2", "scale", 128, 40, "gemm_wgmma_a8"),
    ((9, 0), "float8_e5m2", "int4", "none", 256, 300, "gemm_wgmma_a8"),
    ((8, 0), "float8_e4m3fn", "float8_e4m3fn", "none", 256, 300, "widened_f16"),
    ((7, 5), "float8_e4m3fn", "float8_e4m3fn", "none", 256, 300, "xla_dot"),
    ((8, 0), "int8", "int4", "scale", 128, 1, "decode_i8"),
    ((8, 0), "int8", "int8", "none", 256, 17, "gemm_mma_a8"),
    ((9, 0), "int8", "int2", "scale", 64, 300, "gemm_mma_a8"),
    ((8, 0), "int8", "int4", "quantized", 128, 300, "xla_dot"),
    ((7, 5), "int8", "int4", "scale", 128, 1, "xla_dot"),
])
def test_kernel_for_is_gpu_plans_rule(fake_gpu, cap, a_dtype, w, mode, group, M, kernel):
    """The torch shim's path for int8 / float8 A is gpu_plan.quantized_activation_kernel for the tensors'
    GPU (decode_i8, gemm_mma_a8 and widened_f16 on sm_80+, gemm_wgmma_a8 on sm_90)."""
    fake_gpu[0] = cap
    assert qcuda.kernel_for(0, M, 256, w, a_dtype, mode, group) == kernel


def test_kernel_for_without_cuda_kernels_and_env(fake_gpu, monkeypatch):
    """Without the CUDA kernels every case takes the exact torch path; BITBLAS_JAX_DECODE_I8 /
    BITBLAS_JAX_GEMM_A8 / BITBLAS_JAX_GEMM_MMA_A8 turn the kernels off as under JAX."""
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "0")
    assert qcuda.kernel_for(0, 1, 256, "int4", "int8", "scale", 128) == "xla_dot"
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "0")
    assert qcuda.kernel_for(0, 300, 256, "int8", "int8", "none", 256) == "gemm_mma_a8"
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "0")
    assert qcuda.kernel_for(0, 301, 256, "int8", "int8", "none", 256) == "xla_dot"
    qcuda.kernel_for.cache_clear()
    monkeypatch.delenv("BITBLAS_JAX_DECODE_I8")
    monkeypatch.setattr(qcuda, "_cuda_module", lambda: None)
    assert qcuda.kernel_for(0, 1, 256, "int4", "int8", "scale", 128) == "xla_dot"


class _NumpyKernels:
    """decode_i8_raw / gemm_mma_a8_raw / gemm_wgmma_a8_raw computed by the reference on the CPU memory behind
    the pointers: the glue in quantized_cuda.py (buffers, kSigma order, per-channel scales, finish) runs as on a GPU."""

    def __init__(self, values):
        self.values = np.asarray(values).astype(np.float64)       # the weight's element values [N, K]
        self.calls = []

    @staticmethod
    def _array(ptr, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype=dtype).reshape(shape)

    def _sums(self, A, scale, group, float_out):
        """The group sums (exact in float64 here: int8 sums < 2^53, float8 products exact), then the int32
        S (wrapping) or the float32 sum of the (scaled) group sums."""
        S = np.stack([A[:, g:g + group] @ self.values[:, g:g + group].T
                      for g in range(0, A.shape[1], group)])                 # [G, M, N]
        if not float_out:
            return ((S.sum(0).astype(np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)
        s = np.ones((S.shape[2], S.shape[0]), np.float32) if scale is None else scale
        return sum(np.float32(s[:, i])[None, :] * S[i].astype(np.float32) for i in range(S.shape[0]))

    def _kernel(self, name, a, M, N, K, a_name, mode, group_size, scale, bias, row_scale, out_dtype, out):
        """A kernel's sums, group scales in its main loop (plan.h a8_kernel_scales), then its epilogue:
        per-channel scale, activation scale per row, bias, the cast (quantized_dot.cast_out), written to out."""
        self.calls.append(name)
        o_name = {v: k for k, v in formats.DTYPE_IDS.items()}[out_dtype]
        mode_name = {v: k for k, v in formats.MODE_IDS.items()}[mode]
        kernel_scales = gpu_plan.a8_kernel_scales(mode_name, group_size, K)
        s = self._array(scale, (N, K // group_size), np.float32) if mode_name == "scale" else None
        # int8 sums are exact int32 unless the main loop scales groups; float8 sums are float32
        res = self._sums(a, s if kernel_scales else None, group_size if kernel_scales else K,
                         a_name != "int8" or kernel_scales)
        if o_name != "int32":
            v = res.astype(np.float64)
            if mode_name == "scale" and not kernel_scales:
                v = s.reshape(1, N).astype(np.float64) * v
            if row_scale:
                v = self._array(row_scale, (M, 1), np.float32) * v
            if bias:
                v = v + self._array(bias, (N,), np.float32)
            res = np.asarray(qdot_cast_out(v.astype(np.float32), o_name))
        self._array(out, (M, N), res.dtype)[...] = res

    def _unorder(self, A, M, K, dtype, axes=primitive.SIGMA_ORDER_AXES):
        """A as the kernel took it (each 32-k block in the k order `axes`), back in k order."""
        a_ordered = self._array(A, (M, K), dtype).astype(np.float64)
        a = np.empty_like(a_ordered)
        a.reshape(M, K // 32, 32)[:, :, primitive.a8_k_order(axes)] = a_ordered.reshape(M, K // 32, 32)
        return a

    def decode_i8_raw(self, M, N, K, w_format, mode, group_size, A, W, scale, bias, row_scale, out_dtype, out,
                      stream):
        a = self._unorder(A, M, K, np.int8, primitive.LANE_ORDER_AXES)
        self._kernel("decode_i8", a, M, N, K, "int8", mode, group_size, scale, bias, row_scale, out_dtype, out)

    def gemm_mma_a8_raw(self, M, N, K, w_format, mode, group_size, A, W, scale, bias, row_scale, out_dtype, out,
                        stream):
        a = self._unorder(A, M, K, np.int8)
        self._kernel("gemm_mma_a8", a, M, N, K, "int8", mode, group_size, scale, bias, row_scale, out_dtype, out)

    def gemm_wgmma_a8_raw(self, M, N, K, a_dtype, w_format, mode, group_size, A, W, scale, bias, row_scale,
                          out_dtype, out, stream):
        a_name = {v: k for k, v in formats.DTYPE_IDS.items()}[a_dtype]
        a = self._unorder(A, M, K, formats.NUMPY_DTYPES[a_name])
        self._kernel("gemm_wgmma_a8", a, M, N, K, a_name, mode, group_size, scale, bias, row_scale, out_dtype,
                     out)


def qdot_cast_out(v, out_dtype):
    """quantized_dot.cast_out in NumPy (the epilogue's cast)."""
    if out_dtype == "int8":
        return np.round(np.clip(np.where(np.isnan(v), 0.0, v), -128.0, 127.0)).astype(np.int8)
    return v.astype(formats.NUMPY_DTYPES[out_dtype])


@pytest.mark.parametrize("kernel,a_dtype,w,mode,group,out,bias", [
    ("decode_i8", "int8", "int4", "none", -1, "int32", False),
    ("decode_i8", "int8", "uint2", "none", -1, "bfloat16", True),
    ("decode_i8", "int8", "int8", "scale", 64, "float32", True),          # the kernel writes C, + bias in place
    ("decode_i8", "int8", "int1", "scale", -1, "int8", True),
    ("gemm_mma_a8", "int8", "int2", "none", -1, "int32", False),
    ("gemm_mma_a8", "int8", "uint1", "scale", 64, "float32", True),       # the kernel writes C, + bias
    ("gemm_mma_a8", "int8", "int4", "scale", -1, "bfloat16", True),
    ("gemm_wgmma_a8", "int8", "int8", "none", -1, "int32", False),
    ("gemm_wgmma_a8", "int8", "uint4", "none", -1, "float16", True),
    ("gemm_wgmma_a8", "int8", "int4", "scale", -1, "float32", True),       # per channel: s * S here
    ("gemm_wgmma_a8", "int8", "int8", "scale", 128, "float32", False),     # groups of 128: v from the kernel
    ("gemm_wgmma_a8", "int8", "uint4", "scale", 128, "int8", True),
    ("gemm_wgmma_a8", "float8_e4m3fn", "float8_e4m3fn", "none", -1, "float32", False),   # the kernel writes C
    ("gemm_wgmma_a8", "float8_e5m2", "float8_e4m3fn", "scale", -1, "bfloat16", True),
    ("gemm_wgmma_a8", "float8_e4m3fn", "int4", "scale", 256, "float16", True),          # groups of 2 stages
])
def test_kernel_glue_on_cpu_memory(rng, monkeypatch, kernel, a_dtype, w, mode, group, out, bias):
    """run_cuda's decode_i8 / gemm_wgmma_a8 branches with the kernels replaced by the reference on CPU
    tensors: the output written into a NaN / int-min poisoned C (directly where the kernel's sums are the
    output), per-channel scales, bias and cast as quantized_dot.finish; the kernel that ran is the plan's."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, M=19, N=48, K=512)
    fake = _NumpyKernels(case.values)
    monkeypatch.setattr(qcuda, "_cuda_module", lambda: fake)
    monkeypatch.setattr(qcuda, "kernel_for", lambda *a: kernel)
    c = case.cfg
    A, W, s, z, b = operands(case)
    poison = np.iinfo(np.int32).min if out == "int32" else (77 if out == "int8" else float("nan"))
    C = torch.full((19, 48), poison, dtype=ops.TORCH_DTYPES[out])
    qcuda.run_cuda(A, W, s, z, b, c.W_dtype, a_dtype, c.mode, c.resolved_group_size, c.out_dtype, C, 0, 0)
    assert fake.calls == [kernel]
    check_quantized(case, to_numpy(C))


@pytest.mark.parametrize("kernel,a_dtype,w,mode,group,out", [
    ("decode_i8", "int8", "int4", "scale", 128, "float16"),
    ("gemm_mma_a8", "int8", "uint1", "scale", 64, "int8"),
    ("gemm_wgmma_a8", "int8", "int4", "scale", -1, "bfloat16"),
    ("gemm_wgmma_a8", "float8_e4m3fn", "float8_e4m3fn", "none", -1, "float32"),
    ("widened_f16", "float8_e5m2", "int4", "original", -1, "float16"),
    ("xla_dot", "int8", "int2", "original", 128, "bfloat16"),
])
def test_glue_applies_activation_scales(rng, monkeypatch, kernel, a_dtype, w, mode, group, out):
    """run_cuda with the activation scales (row_scale): the 8-bit kernels receive the pointer and apply them
    in their epilogue (the reference stands in for them here), the other paths after their float32 result;
    C = cast(a_scale * v + bias) within the float32 bound."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, True, M=19, N=48, K=512, a_scale="token")
    fake = _NumpyKernels(case.values)
    monkeypatch.setattr(qcuda, "_cuda_module", lambda: fake)
    monkeypatch.setattr(qcuda, "kernel_for", lambda *a: kernel)
    c = case.cfg
    A, W, s, z, b = operands(case)
    C = torch.full((19, 48), 77 if out == "int8" else float("nan"), dtype=ops.TORCH_DTYPES[out])
    qcuda.run_cuda(A, W, s, z, b, c.W_dtype, a_dtype, c.mode, c.resolved_group_size, c.out_dtype, C, 0, 0,
                   to_torch(np.asarray(case.a_scale, np.float32)))
    assert fake.calls == ([kernel] if kernel in ("decode_i8", "gemm_mma_a8", "gemm_wgmma_a8") else [])
    check_quantized(case, to_numpy(C))


@pytest.mark.parametrize("a_dtype,w,mode,out,bias", [
    ("float8_e4m3fn", "float8_e4m3fn", "none", "float32", False),
    ("float8_e5m2", "float8_e5m2", "scale", "bfloat16", True),
    ("float8_e4m3fn", "int4", "original", "float16", True),
    ("float8_e5m2", "int4", "quantized", "float32", False),
])
def test_widened_f16_glue_on_cpu_tensors(rng, monkeypatch, a_dtype, w, mode, out, bias):
    """run_cuda's widened_f16 branch on CPU tensors (its 16-bit op call then runs the CPU kernel): float8 A
    converted to float16, S over all of K in float32, the per-channel term and finish, into a NaN-poisoned
    C, within the float32 bound; no raw kernel call."""
    calls = []
    monkeypatch.setattr(qcuda, "_cuda_module", lambda: calls.append("kernel"))
    monkeypatch.setattr(qcuda, "kernel_for", lambda *a: "widened_f16")
    case = make_qcase(rng, a_dtype, w, mode, -1, out, bias, M=21, N=48, K=512)
    c = case.cfg
    A, W, s, z, b = operands(case)
    C = torch.full((21, 48), float("nan"), dtype=ops.TORCH_DTYPES[out])
    qcuda.run_cuda(A, W, s, z, b, c.W_dtype, a_dtype, c.mode, c.resolved_group_size, c.out_dtype, C, 0, 0)
    assert not calls
    check_quantized(case, to_numpy(C))


@pytest.mark.parametrize("kernel", ["decode_i8", "xla_dot"])
def test_float8_without_a_float8_kernel_takes_the_exact_path(rng, monkeypatch, kernel):
    """decode_i8_raw takes int8 A only: float8 A that a plan sends to it runs the exact torch path (no
    kernel call), so float8 is never read as int8."""
    calls = []
    monkeypatch.setattr(qcuda, "_cuda_module", lambda: calls.append("kernel"))
    monkeypatch.setattr(qcuda, "kernel_for", lambda *a: kernel)
    case = make_qcase(rng, "float8_e4m3fn", "int4", "scale", 128, "float32", True, M=20, N=48, K=512)
    A, W, s, z, b = operands(case)
    C = torch.full((20, 48), float("nan"))
    qcuda.run_cuda(A, W, s, z, b, "int4", "float8_e4m3fn", "scale", 128, ops.dtype_name(C.dtype), C, 0, 0)
    assert not calls
    check_quantized(case, to_numpy(C))


def test_op_takes_quantized_cuda_tensors():
    """The op's checks take int8 / float8 A on CUDA tensors (its fake implementation, what torch.compile
    traces, on fake CUDA tensors); what cannot run still raises naming the argument."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    layer = bbt.Linear(256, 32, A_dtype="int8", W_dtype="int4", with_scaling=True, group_size=128, bias=True)
    with FakeTensorMode():
        cuda = lambda t: torch.empty(t.shape, dtype=t.dtype, device="cuda")  # noqa: E731
        W, s, b = cuda(layer.qweight), cuda(layer.scales), cuda(layer.bias)
        for a_dtype, out in ((torch.int8, "float16"), (torch.float8_e4m3fn, "bfloat16")):
            A = torch.empty((2, 3, 256), dtype=a_dtype, device="cuda")
            accum = "int32" if a_dtype == torch.int8 else "float32"
            C = ops._matmul_fake(A, W, s, None, b, "int4", "scale", 128, accum, out)
            assert C.shape == (2, 3, 32) and C.dtype == ops.TORCH_DTYPES[out] and C.device.type == "cuda"
        with pytest.raises(ValueError, match="w_format='int2' with float8_e4m3fn A"):
            ops._matmul_fake(A, torch.empty((32, 64), dtype=torch.uint8, device="cuda"), s, None, b, "int2",
                             "scale", 128, "float32", "float16")
        with pytest.raises(ValueError, match="out_dtype='int8' with float8_e4m3fn A"):
            ops._matmul_fake(A, W, s, None, b, "int4", "scale", 128, "float32", "int8")


# ---- CUDA tensors (GPU) --------------------------------------------------------------------------------
def _gpu_cases():
    """int8 A x every int weight format, float8 A x e4m3 / e5m2 / int4; modes none, scale per channel,
    scale in groups of 128 and a zeros mode; M 1, 16, 17, 300; outputs and bias cycling."""
    i = 0
    for a_dtype, allowed in formats.QUANTIZED_A.items():
        for w in allowed["W"]:
            fmt = formats.get_format(w)
            kinds = [("none", -1), ("scale", -1), ("scale", 128)]
            if fmt.is_integer:
                kinds.append((("quantized", "original", "rescale")[i % 3] if fmt.bits > 1 else "original", 128))
            for mode, group in kinds:
                for M in (1, 16, 17, 300):
                    outs = [o for o in allowed["out"] if mode == "none" or o != "int32"]
                    out = outs[i % len(outs)]
                    bias = out != "int32" and i % 2 == 0
                    i += 1
                    yield pytest.param(a_dtype, w, mode, group, out, bias, M,
                                       id=f"{a_dtype}-{w}-{mode}-g{group}-{out}-{'bias' if bias else 'nobias'}-M{M}")


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode,group,out,bias,M", list(_gpu_cases()))
def test_cuda_every_path(rng, a_dtype, w, mode, group, out, bias, M):
    """The op on CUDA tensors (the plan's path for this GPU) through matmul.out into a poisoned output
    (NaN; integer outputs twice, with two poisons, so an unwritten element shows) and the functional op,
    against the reference; int32 outputs bit for bit; float8 activations on Hopper's float8 tensor cores
    (gemm_wgmma_a8) within their documented bound. N = 272 (a partial 128-row GEMM tile), K = 1024."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, M=M, N=272, K=1024)
    float8_tensor_cores = on_float8_tensor_cores(case)     # the shim follows JAX's plan
    args = op_args(case, "cuda")
    dt = ops.TORCH_DTYPES[out]
    poisons = (float("nan"),) if dt.is_floating_point else ((-(2**31), 2**31 - 1) if out == "int32" else (77, -77))
    results = []
    for p in poisons:
        C = torch.full((M, 272), p, dtype=dt, device="cuda")
        torch.ops.bitblas_jax.matmul.out(*args, out=C)
        results.append(to_numpy(C))
        check_quantized(case, results[-1], float8_tensor_cores)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    check_quantized(case, to_numpy(torch.ops.bitblas_jax.matmul(*args)), float8_tensor_cores)


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode,group,out,M,env", [
    ("int8", "int4", "scale", 128, "float16", 4, {}),                              # decode_i8
    ("int8", "int8", "scale", -1, "bfloat16", 300, {}),                            # gemm_wgmma_a8 (sm_90)
    ("int8", "int4", "scale", 128, "int8", 130, {"BITBLAS_JAX_GEMM_A8": "0"}),     # gemm_mma_a8
    ("float8_e4m3fn", "float8_e4m3fn", "none", -1, "float32", 100, {}),
    ("float8_e5m2", "int4", "original", -1, "float16", 8, {}),                     # widened_f16
    ("int8", "int2", "original", 128, "bfloat16", 17, {}),                         # the exact torch path
])
def test_cuda_activation_scales(rng, monkeypatch, a_dtype, w, mode, group, out, M, env):
    """The op's a_scale on CUDA tensors, per token and per tensor: the 8-bit kernels apply the scales in
    their epilogue, the other paths after their float32 result; against the reference, into a poisoned out."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    qcuda.kernel_for.cache_clear()
    for kind in ("token", "tensor"):
        case = make_qcase(rng, a_dtype, w, mode, group, out, True, M=M, N=272, K=1024, a_scale=kind)
        a_scale = torch.tensor(np.asarray(case.a_scale, np.float32), device="cuda")
        dt = ops.TORCH_DTYPES[out]
        C = torch.full((M, 272), float("nan") if dt.is_floating_point else 77, dtype=dt, device="cuda")
        torch.ops.bitblas_jax.matmul.out(*op_args(case, "cuda"), None, a_scale, out=C)
        check_quantized(case, to_numpy(C), on_float8_tensor_cores(case))
    qcuda.kernel_for.cache_clear()


@on_gpu
def test_cuda_paths_reach_the_kernels():
    """On an sm_90 GPU with the CUDA kernels the shim runs decode_i8 and gemm_wgmma_a8 where JAX does
    (on sm_80+: decode_i8), and the exact torch path for float8 elsewhere."""
    idx = torch.cuda.current_device()
    cap = torch.cuda.get_device_capability(idx)
    got = {qcuda.kernel_for(idx, 1, 1024, "int4", "int8", "scale", 128),
           qcuda.kernel_for(idx, 300, 1024, "int8", "int8", "none", 1024),
           qcuda.kernel_for(idx, 300, 1024, "float8_e4m3fn", "float8_e4m3fn", "scale", 1024)}
    want = {"decode_i8"} | ({"gemm_wgmma_a8"} if cap == (9, 0) else {"gemm_mma_a8", "widened_f16"})
    assert got == want if cap >= (8, 0) else got == {"xla_dot"}


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode,group,out,M", [
    ("int8", "int4", "scale", 128, "float16", 4),          # decode_i8
    ("int8", "int8", "none", -1, "int32", 40),             # gemm_wgmma_a8 (sm_90) / _int_mm
    ("int8", "uint4", "quantized", 64, "bfloat16", 40),    # exact torch path, torch._int_mm
    ("float8_e4m3fn", "int4", "scale", 128, "float32", 3),  # exact torch path, float32
])
def test_cuda_opcheck(rng, a_dtype, w, mode, group, out, M):
    """torch.library.opcheck on CUDA tensors for each path: the op and its out= variant. (float8 A: not
    opcheck's test_schema, whose own arithmetic on the inputs torch does not implement for float8; the
    schema is the int8 cases'.)"""
    case = make_qcase(rng, a_dtype, w, mode, group, out, True if out != "int32" else False, M=M, N=256, K=1024)
    args = op_args(case, "cuda")
    utils = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    utils = utils if a_dtype in FP8 else ("test_schema",) + utils
    torch.library.opcheck(torch.ops.bitblas_jax.matmul.default, args, test_utils=utils)
    C = torch.empty((M, 256), dtype=ops.TORCH_DTYPES[out], device="cuda")
    torch.library.opcheck(torch.ops.bitblas_jax.matmul.out, args, {"out": C}, test_utils=utils)


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode,group,out,M", [
    ("int8", "int2", "scale", 64, "float16", 8),           # decode_i8
    ("int8", "int4", "scale", 128, "bfloat16", 64),         # gemm_wgmma_a8 on sm_90
    ("int8", "uint4", "original", 128, "float32", 64),      # exact torch path (_int_mm)
    ("float8_e5m2", "float8_e4m3fn", "scale", -1, "bfloat16", 5),
])
def test_cuda_side_stream_and_graph(rng, a_dtype, w, mode, group, out, M):
    """Each path on a side stream (torch's current stream) and captured in a CUDA graph (no host sync, no
    host-to-device copy inside), replayed on new activations."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, True, M=M, N=256, K=1024)
    args = op_args(case, "cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            y = torch.ops.bitblas_jax.matmul(*args)
    torch.cuda.current_stream().wait_stream(s)
    check_quantized(case, to_numpy(y))
    static_in = args[0].clone()
    for _ in range(2):                                      # warm up the caches before capture
        torch.ops.bitblas_jax.matmul(static_in, *args[1:])
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = torch.ops.bitblas_jax.matmul(static_in, *args[1:])
    case2 = make_qcase(rng, a_dtype, w, mode, group, out, True, M=M, N=256, K=1024)
    case.A = case2.A
    static_in.copy_(to_torch(case.A, "cuda"))
    g.replay()
    torch.cuda.synchronize()
    check_quantized(case, to_numpy(static_out))


@on_gpu
@pytest.mark.parametrize("W_dtype,group,out", [("int8", -1, "float16"), ("int4", 128, "bfloat16"),
                                               ("uint2", 64, "float16"), ("int4", 128, "int8")])
@pytest.mark.parametrize("M", [1, 16, 17, 300])
def test_cuda_linear_int8_quantizes_fp16_inputs(rng, W_dtype, group, out, M):
    """Linear(A_dtype="int8") on CUDA with fp16 inputs (dynamic per-token quantization inside the layer):
    the int8 values and scales of the same quantization on CPU, the output within the float32 bound of
    the float64 reference on them; a CUDA graph of the layer replays it bit for bit, torch.compile
    (fullgraph, at M = 17) traces it (its own fused quantization may round a value differently: within 1%)."""
    case = make_qcase(rng, "int8", W_dtype, "scale", group, out, True, M=M, N=256, K=1024, a_scale="token")
    layer = bbt.Linear(1024, 256, bias=True, A_dtype="int8", W_dtype=W_dtype, group_size=group,
                       with_scaling=True, out_dtype=out, device="cuda")
    layer.load_and_transform_weight(case.values, case.scale, bias=case.bias)
    x = torch.from_numpy((rng.standard_normal((M, 1024)) * rng.uniform(0.1, 10, (M, 1))).astype(np.float16))
    qc, sc = ops.quantize_activations(x, "int8")
    qg, sg = ops.quantize_activations(x.cuda(), "int8")
    assert torch.equal(qg.cpu(), qc) and torch.equal(sg.cpu(), sc)
    case.A, case.a_scale = qc.numpy(), sc.numpy()
    with torch.no_grad():
        y = layer(x.cuda())
        assert y.dtype == ops.TORCH_DTYPES[out] and y.shape == (M, 256)
        check_quantized(case, to_numpy(y))
        static_in = x.cuda()
        layer(static_in)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static_out = layer(static_in)
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(static_out, y)
        if M != 17:             # one compile per layer kind is enough
            return
        torch._dynamo.reset()
        yc = torch.compile(layer, fullgraph=True)(x.cuda())
    assert yc.dtype == y.dtype
    scale = float(y.abs().max()) * 1e-2 + 1
    torch.testing.assert_close(yc.to(torch.float32), y.to(torch.float32), rtol=1e-2, atol=scale)


@on_gpu
@pytest.mark.parametrize("A_dtype,W_dtype,zeros_mode", [("int8", "uint4", "quantized"), ("int8", "int8", None),
                                                        ("float8_e4m3fn", "int4", "original"),
                                                        ("float8_e5m2", "float8_e5m2", None)])
def test_cuda_dequantize_quantized_layers(rng, A_dtype, W_dtype, zeros_mode):
    """Linear.dequantize (the kernel path on an identity) of an int8 / float8-activation layer on CUDA
    equals the CPU layer's: float32, the weight's values with scale / zeros applied once in float32."""
    case = make_qcase(rng, A_dtype, W_dtype, "scale" if zeros_mode is None else zeros_mode, 128, "float32",
                      M=1, N=64, K=512)
    layers = []
    for device in ("cpu", "cuda"):
        lin = bbt.Linear(512, 64, A_dtype=A_dtype, W_dtype=W_dtype, group_size=128, with_scaling=True,
                         with_zeros=zeros_mode is not None, zeros_mode=zeros_mode, out_dtype="float32",
                         device=device)
        lin.load_and_transform_weight(case.values, case.scale, case.zeros)
        layers.append(lin.dequantize())
    assert layers[1].dtype == torch.float32 and layers[1].device.type == "cuda"
    np.testing.assert_array_equal(to_numpy(layers[1]), to_numpy(layers[0]))


@on_gpu
def test_cuda_m_zero_and_errors(rng):
    """M = 0 gives an empty result; operands on two devices still raise naming the argument."""
    case = make_qcase(rng, "int8", "int4", "scale", 128, "float16", True, M=2, N=256, K=1024)
    args = list(op_args(case, "cuda"))
    args[0] = args[0][:0]
    assert torch.ops.bitblas_jax.matmul(*args).shape == (0, 256)
    args = list(op_args(case, "cuda"))
    args[1] = args[1].cpu()
    with pytest.raises(ValueError, match="W is on cpu"):
        torch.ops.bitblas_jax.matmul(*args)
