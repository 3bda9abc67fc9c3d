"""fp8 special codes (e4m3fn NaN 0x7f / 0xff; e5m2 +-inf 0x7c / 0xfc and NaN 0x7d..0x7f, 0xfd..0xff)
give the IEEE result of the float64 reference on every path: the CPU kernel, `Matmul.dequantize`
(jax.numpy), the torch shim, and on a GPU the CUDA dequantize kernel and every matmul kernel, each
forced through the plan's environment overrides or the M that selects it (checked with
gpu_plan.plan_cuda, so a test cannot silently run another kernel).

A weight row holding a special code must give exactly the reference's NaN / +-inf in its output
column (NaN times a scale stays NaN; +inf and -inf in one row sum to NaN); the other columns are
checked against the usual error bound (tests/cases.py)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import _ext, formats, gpu_plan, primitive

from cases import FP8_SPECIAL_CODES as SPECIAL_CODES, check_nonfinite, make_case
from test_gpu import GPUS, run_on   # a fresh jit per call: each trace reads the plan's environment

N, K = 64, 512


def special_case(rng, fmt, mode, A_dtype, M, accum="float32", out=None, group=-1, bias=True):
    """A case whose first rows each hold one special code at a different k (every position of the
    packed tiles' pairs and lanes is reached over the rows), plus, for e5m2, a row with +inf and
    -inf (NaN); the other rows are finite."""
    case = make_case(rng, fmt, mode, group, A_dtype, accum, out or A_dtype, bias, M=M, N=N, K=K)
    codes = case.values.view(np.uint8).copy()
    specials = SPECIAL_CODES[fmt]
    n_special = 24
    for n in range(n_special):
        k = (37 * n + 5 * (n // 8)) % K
        codes[n, k] = specials[n % len(specials)]
    if fmt == "float8_e5m2":
        codes[n_special, 3], codes[n_special, K - 2] = 0x7C, 0xFC
    case.values = codes.view(formats.FP8_NUMPY[fmt])
    return case


def check_specials(case, out, A=None):
    """NaN / inf exactly where the float64 reference has them; the finite outputs within the bound."""
    with np.errstate(invalid="ignore"):
        ref = case.ref(A)
    assert np.isnan(ref).any(), "the case has no special value (a test that cannot fail)"
    assert np.isfinite(ref).all(axis=tuple(range(ref.ndim - 1))).sum() >= N // 2
    check_nonfinite(case, out, A)


FMT_MODE_DTYPE = [(f, m, a) for f in SPECIAL_CODES for m in ("none", "scale") for a in ("float16", "bfloat16")]


# ---- CPU ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,mode,a_dtype", FMT_MODE_DTYPE)
@pytest.mark.parametrize("accum", ["float32", "float16"])
def test_cpu_kernel(rng, fmt, mode, a_dtype, accum):
    if accum == "float16" and a_dtype != "float16":
        pytest.skip("float16 accumulation needs float16 activations")
    case = special_case(rng, fmt, mode, a_dtype, M=5, accum=accum, out="float32",
                        group=-1 if mode == "none" else 128)
    check_specials(case, run_on(case, jax.devices("cpu")[0]))


@pytest.mark.parametrize("fmt,mode,a_dtype", FMT_MODE_DTYPE)
def test_dequantize_jnp(rng, fmt, mode, a_dtype):
    case = special_case(rng, fmt, mode, a_dtype, M=1, group=-1 if mode == "none" else 64)
    got = np.asarray(case.mm.dequantize(case.packed(), case.scale)).astype(np.float64)
    want = case.wd()
    assert np.isnan(want).any()
    np.testing.assert_array_equal(got, want)     # NaN == NaN here, inf == inf


@pytest.mark.parametrize("fmt,a_dtype", [(f, a) for f in SPECIAL_CODES for a in ("float16", "bfloat16", "float32")])
def test_torch_cpu(rng, fmt, a_dtype):
    torch = pytest.importorskip("torch")
    from test_torch import linear_for, to_numpy, to_torch
    case = special_case(rng, fmt, "scale", a_dtype, M=3, group=128)
    with torch.no_grad():
        check_specials(case, to_numpy(linear_for(case)(to_torch(case.A))))


# ---- GPU ----------------------------------------------------------------------------------------------

def needs_gpu(f):
    f = pytest.mark.skipif(not _ext.has_cuda(), reason="built without the CUDA kernels")(f)
    f = pytest.mark.skipif(not GPUS, reason="no CUDA GPU visible to JAX")(f)
    return pytest.mark.gpu(f)

# (kernel, M, accum, group, environment): the M and overrides that select each kernel under JAX
GPU_PLANS = [
    ("decode", 1, "float32", 128, {}),
    ("decode", 16, "float32", -1, {}),
    ("decode_splitk", 3, "float16", 128, {}),
    ("decode_splitk", 8, "float32", 8, {}),                         # groups inside a packed tile
    ("gemm_mma", 33, "float32", 128, {"BITBLAS_JAX_HOPPER": "0"}),
    ("gemm_mma", 40, "float16", 8, {"BITBLAS_JAX_HOPPER": "0", "BITBLAS_JAX_GEMM_MAX_M": "4096"}),
    ("gemm_wgmma", 33, "float32", 128, {"BITBLAS_JAX_GEMM_MAX_M": "4096"}),
    ("gemm_wgmma", 130, "float32", -1, {"BITBLAS_JAX_GEMM_MAX_M": "4096"}),
    ("dequantize_then_dot", 130, "float32", 128, {"BITBLAS_JAX_GEMM_MAX_M": "16"}),
]


def _sm90():
    return any(getattr(d, "compute_capability", None) == "9.0" for d in GPUS)


@pytest.mark.parametrize("fmt,mode,a_dtype", FMT_MODE_DTYPE)
@pytest.mark.parametrize("kernel,M,accum,group,env", GPU_PLANS,
                         ids=[f"{p[0]}-M{p[1]}-acc{p[2][5:]}-g{p[3]}" for p in GPU_PLANS])
@needs_gpu
def test_gpu_every_kernel(rng, monkeypatch, fmt, mode, a_dtype, kernel, M, accum, group, env):
    if kernel == "gemm_wgmma" and not _sm90():
        pytest.skip("gemm_wgmma runs on sm_90 GPUs only")
    if accum == "float16" and a_dtype != "float16":
        pytest.skip("float16 accumulation needs float16 activations")
    if mode == "none" and group != -1:
        pytest.skip("mode none has no groups (the entry's group size selects its kernel)")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    g = K if group == -1 else group
    plan = gpu_plan.plan_cuda(M, N, K, fmt, a_dtype, accum, a_dtype, mode, g)
    assert plan.kernel == kernel, f"the plan picked {plan.kernel}, not {kernel}"
    case = special_case(rng, fmt, mode, a_dtype, M=M, accum=accum, group=group)
    check_specials(case, run_on(case, GPUS[0]))


@pytest.mark.parametrize("fmt,mode,a_dtype", FMT_MODE_DTYPE)
@needs_gpu
def test_gpu_dequantize_kernel(rng, fmt, mode, a_dtype):
    """The CUDA dequantize kernel's weight itself (the custom call dequantize_then_dot runs)."""
    case = special_case(rng, fmt, mode, a_dtype, M=1, group=-1 if mode == "none" else 64)
    spec = case.mm.spec
    attrs = spec.ffi_attrs()
    del attrs["accum_dtype"]
    adt = jnp.dtype(a_dtype)
    args = [case.packed(), primitive.empty(adt) if case.scale is None else jnp.asarray(case.scale),
            primitive.empty(adt)]
    args = [jax.device_put(a, GPUS[0]) for a in args]
    f = jax.jit(lambda W, s, z: jax.ffi.ffi_call(primitive.DEQUANT_TARGET, jax.ShapeDtypeStruct((N, K), adt))(
        W, s, z, **attrs))
    got = np.asarray(f(*args)).astype(np.float64)
    np.testing.assert_array_equal(got, case.wd())


@pytest.mark.parametrize("fmt,a_dtype", [(f, a) for f in SPECIAL_CODES for a in ("float16", "bfloat16")])
@pytest.mark.parametrize("M,hopper", [(1, None), (24, None), (40, None), (40, "0"), (200, None)])
@pytest.mark.gpu
def test_gpu_torch(rng, monkeypatch, fmt, a_dtype, M, hopper):
    """The torch shim's kernels (decode up to 32 rows, then the GEMM; gemm_mma forced on sm_90)."""
    torch = pytest.importorskip("torch")
    import bitblas_jax.torch as bbt
    if not (torch.cuda.is_available() and bbt.has_cuda_kernels()):
        pytest.skip("needs a CUDA GPU and the CUDA kernels")
    from bitblas_jax.torch import ops
    from test_torch import linear_for, to_numpy, to_torch
    if hopper is not None:
        monkeypatch.setenv("BITBLAS_JAX_HOPPER", hopper)
    ops._plan.cache_clear()
    try:
        case = special_case(rng, fmt, "scale", a_dtype, M=M, group=128)
        with torch.no_grad():
            check_specials(case, to_numpy(linear_for(case, "cuda")(to_torch(case.A, "cuda"))))
    finally:
        ops._plan.cache_clear()
