"""Limits named, not crossed: M = 0, the smallest tile, K at its maximum, more than 2^31 elements in the
weight, the activations or the output (each works, checked against the float64 reference), shapes past
the limits (a ValueError naming the argument when the MatmulConfig is made), and a handler error (an
XLA error in Python, never an abort; the process goes on).

Every test runs on the CPU kernel and, where JAX sees one, on the GPU. The tests over 2^31 elements
need several GiB of memory: they run on a device when MemAvailable allows, and on the CPU kernel only
with BITBLAS_JAX_LARGE_TESTS=1 (some 10-60 s each on a 2-core machine)."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import _ext, formats, gpu_plan, layout, primitive

from cases import bound_from, check, make_case
from test_gpu import GPUS, run_on


def _devices():
    devs = [pytest.param(jax.devices("cpu")[0], id="cpu")]
    gpus = GPUS
    mark = [pytest.mark.gpu, pytest.mark.skipif(not _ext.has_cuda(), reason="built without the CUDA kernels")]
    devs += [pytest.param(d, id="gpu", marks=mark) for d in gpus[:1]]
    if not gpus:
        devs.append(pytest.param(None, id="gpu", marks=[pytest.mark.gpu, pytest.mark.skip(
            reason="no CUDA GPU visible to JAX")]))
    return devs


DEVICES = _devices()


# ---- small limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lead", [(0,), (2, 0), (0, 3)])
def test_m_zero(rng, device, lead):
    case = make_case(rng, "int4", "original", 64, "float16", "float32", "bfloat16", True, M=1, N=32, K=256,
                     a_shape=lead + (256,))
    out = run_on(case, device)
    assert out.shape == lead + (32,) and out.dtype == formats.NUMPY_DTYPES["bfloat16"]
    g = jax.grad(lambda A: case.mm(A, case.packed(), scale=case.scale, zeros=case.zeros,
                                   bias=case.bias).astype(jnp.float32).sum())(jnp.asarray(case.A))
    assert g.shape == case.A.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["int1", "uint2", "int4", "nf4", "int8", "float8_e5m2", "bfloat16"])
@pytest.mark.parametrize("M", [1, 9, 17, 70])
def test_smallest_tile(rng, device, fmt, M):
    """N = 16 and K = one packed tile (256 / bits), with the smallest group (8) where there is one."""
    f = formats.get_format(fmt)
    K = layout.tile_k(f.bits)
    mode = formats.allowed_modes(f)[-1]
    case = make_case(rng, fmt, mode, -1 if mode == "none" else 8, "float16", "float32", "float16", True,
                     M=M, N=16, K=K)
    check(case, run_on(case, device))


def test_past_the_limits_raise_naming_the_argument():
    with pytest.raises(ValueError, match=r"K=1073741824 is above the largest supported K, 1073741568"):
        bj.MatmulConfig(N=16, K=1 << 30, W_dtype="int1")
    with pytest.raises(ValueError, match=r"N=2147483648 is above the largest supported N"):
        bj.MatmulConfig(N=1 << 31, K=256, W_dtype="int4")
    bj.MatmulConfig(N=layout.MAX_N, K=layout.MAX_K, W_dtype="int1")          # the limits themselves
    with pytest.raises(ValueError, match="N=24 must be a multiple of 16"):
        bj.MatmulConfig(N=24, K=256)
    with pytest.raises(ValueError, match="K=96 must be a multiple of 64"):
        bj.MatmulConfig(N=16, K=96, W_dtype="int4")


# ---- handler errors -----------------------------------------------------------------------------
def _raw_call(device, terms=None, **attr_changes):
    """The custom call made directly (jax.ffi.ffi_call), with attributes (or group terms) the Python layer
    never sends."""
    case = make_case(np.random.default_rng(0), "int4", "scale", 64, M=2, N=32, K=256)
    attrs = {**case.mm.spec.ffi_attrs(), **attr_changes}
    e = primitive.empty(jnp.float16)
    terms = e if terms is None else terms
    args = [jax.device_put(x, device)
            for x in (jnp.asarray(case.A), case.packed(), jnp.asarray(case.scale), e, e, terms)]
    outs = [jax.ShapeDtypeStruct((2, 32), jnp.float16)]
    if device.platform != "cpu":           # the plan's launch attributes, as primitive._cuda_call sends them
        from bitblas_jax import gpu_plan
        spec = case.mm.spec
        plan = gpu_plan.plan_cuda(2, 32, 256, "int4", "float16", "float32", "float16", "scale", 64)
        outs.append(jax.ShapeDtypeStruct((max(plan.workspace_bytes, 16),), jnp.uint8))
        attrs = {"kernel": np.int64(plan.kernel_id), "tile": np.int64(plan.tile),
                 "split_k": np.int64(plan.split_k), **spec.ffi_attrs(), **attr_changes}
    f = jax.jit(lambda *a: jax.ffi.ffi_call(primitive.TARGET, outs)(*a, **attrs))
    return jax.block_until_ready(f(*args)), case


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,message", [
    ({"w_format": np.int64(99)}, "bad w_format"),
    ({"mode": np.int64(7)}, "bad mode"),
    ({"N": np.int64(48)}, "W must be uint8 holding N"),
    ({"group_size": np.int64(48)}, "group_size must divide K"),
])
def test_handler_error_is_an_xla_error(device, change, message):
    with pytest.raises(jax.errors.JaxRuntimeError, match=message):
        _raw_call(device, **change)
    out, case = _raw_call(device)                 # the process and the device carry on
    check(case, np.asarray(out[0] if isinstance(out, (list, tuple)) else out))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("terms", [jnp.zeros((2, 3, 32), jnp.float16), jnp.zeros((2, 4, 32), jnp.bfloat16),
                                   jnp.zeros((2, 4, 16), jnp.float16)], ids=["rows", "dtype", "N"])
def test_bad_group_terms_are_an_xla_error(device, terms):
    """group_terms the handler cannot read (4 groups of N = 32 in float16 wanted): an XLA error naming them,
    on every platform (the CPU checks them as the GPU does)."""
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"group_terms must be \[2, 4, N\]"):
        _raw_call(device, terms=terms)


@pytest.mark.parametrize("device", [d for d in DEVICES if d.id == "gpu"])
@pytest.mark.parametrize("change", [
    {"kernel": np.int64(99)},                                                          # no such kernel
    {"kernel": np.int64(gpu_plan.KERNELS.index("dequantize_then_dot"))},               # not a matmul kernel
    {"kernel": np.int64(gpu_plan.KERNELS.index("decode_splitk")), "split_k": np.int64(100000)},  # split past K
    {"kernel": np.int64(gpu_plan.KERNELS.index("gemm_mma")), "tile": np.int64(99)},    # no such tile
], ids=["kernel99", "dequantize_then_dot", "split100000", "mma-tile99"])
def test_cuda_launch_error_is_an_xla_error(device, change):
    """Launch arguments the plan never gives reach the CUDA handler, which refuses them: an XLA error."""
    with pytest.raises(jax.errors.JaxRuntimeError, match="bitblas_jax"):
        _raw_call(device, **change)
    out, case = _raw_call(device)
    check(case, np.asarray(out[0]))


# ---- more than 2^31 elements, K at its maximum ---------------------------------------------------
def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _large(device, host_bytes: int, device_bytes: int = 0):
    if device.platform == "cpu" and os.environ.get("BITBLAS_JAX_LARGE_TESTS") != "1":
        pytest.skip("set BITBLAS_JAX_LARGE_TESTS=1 to run the CPU kernel on > 2^31 elements")
    if _mem_available() < host_bytes:
        pytest.skip(f"needs {host_bytes / 2**30:.0f} GiB of available host memory")
    stats = getattr(device, "memory_stats", lambda: None)() or {}
    if device_bytes and stats.get("bytes_limit", 1 << 62) - stats.get("bytes_in_use", 0) < device_bytes:
        pytest.skip(f"needs {device_bytes / 2**30:.0f} GiB of device memory")


def _force_gemm(monkeypatch, device, gemm: bool):
    """On the GPU the rule sends these M to dequantize_then_dot (XLA's dot); gemm=True runs the custom
    GEMM instead (in launches of at most 65535 tile rows)."""
    if gemm:
        if device.platform == "cpu":
            pytest.skip("the CPU kernel has no plan")
        monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", str(1 << 40))


def tile_pattern(rng, N: int, K: int, bits: int):
    """A packed weight whose every 512-byte tile repeats one code (different per band and tile: an
    index that wraps at 2^31 reads another tile's code): (packed [N, K bits/8], codes [N/16, K/tile_k])."""
    KT = K // layout.tile_k(bits)
    codes = rng.integers(0, 1 << bits, (N // 16, KT), dtype=np.uint8)
    byte = {1: codes * np.uint8(0xFF), 2: codes * np.uint8(0x55), 4: codes * np.uint8(0x11)}[bits]
    packed = np.empty((N // 16, KT, 512), np.uint8)
    packed[...] = byte[..., None]
    return packed.reshape(N, K * bits // 8), codes


def test_tile_pattern_is_the_layout(rng):
    for bits, fmt in ((1, "int1"), (2, "uint2"), (4, "int4")):
        N, K = 32, 3 * layout.tile_k(bits)
        packed, codes = tile_pattern(rng, N, K, bits)
        full = np.repeat(np.repeat(codes, 16, 0), layout.tile_k(bits), 1)
        np.testing.assert_array_equal(packed, layout.pack(full.astype(np.uint32), bits))


def _tile_reference(A_rows, vals, K, bits, out_dtype="float16"):
    """reference and bound of A_rows @ W^T for a tile_pattern weight of tile values vals [N/16, KT]."""
    tk = layout.tile_k(bits)
    A64 = np.asarray(A_rows, np.float64).reshape(len(A_rows), K // tk, tk)
    sums, abs_sums = A64.sum(-1), np.abs(A64).sum(-1)                  # [rows, KT]
    ref = np.repeat(sums @ vals.T, 16, axis=1)                          # [rows, N]
    absprod = np.repeat(abs_sums @ np.abs(vals).T, 16, axis=1)
    return ref, bound_from(absprod, ref, None, K, "float32", "float16", out_dtype)


def _values(codes, fmt):
    return formats.decode_codes(formats.get_format(fmt), codes.astype(np.uint32)).astype(np.float64)


def _run_packed(device, mm, A, packed, rows=None):
    f = jax.jit(lambda A, W: mm(A, W))
    out = f(jax.device_put(A, device), jax.device_put(packed, device))
    return np.asarray(out if rows is None else out[rows]).astype(np.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_k_at_its_maximum(rng, device):
    """K = 2^30 - 256 (int1, one band of 16 rows): the documented largest K."""
    K, N = layout.MAX_K, 16
    _large(device, host_bytes=14 << 30, device_bytes=6 << 30)
    packed, codes = tile_pattern(rng, N, K, 1)
    A = rng.standard_normal((1, K), np.float32).astype(np.float16)
    mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, W_dtype="int1", A_dtype="float16", out_dtype="float32"))
    got = _run_packed(device, mm, A, packed)
    ref, bound = _tile_reference(A, _values(codes, "int1"), K, 1, "float32")
    assert np.all(np.abs(got - ref) <= bound)


@pytest.mark.parametrize("device", DEVICES)
def test_weight_over_2_31_elements(rng, device):
    """int4, N x K = 262160 x 8192 = 2^31 + 2^17 weights; every 16-row band checked."""
    N, K = (1 << 31) // 8192 + 16, 8192
    _large(device, host_bytes=6 << 30, device_bytes=3 << 30)
    packed, codes = tile_pattern(rng, N, K, 4)
    A = rng.standard_normal((3, K), np.float32).astype(np.float16)
    mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, W_dtype="int4", A_dtype="float16", out_dtype="float16"))
    got = _run_packed(device, mm, A, packed)
    ref, bound = _tile_reference(A, _values(codes, "int4"), K, 4)
    assert np.all(np.abs(got - ref) <= bound)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gemm", [False, True], ids=["rule", "gemm-forced"])
def test_activations_over_2_31_elements(rng, monkeypatch, device, gemm):
    """A [2^25 + 16, 64] (2^31 + 1024 elements), rows that repeat with a prime period (a wrapped index
    reads another row); the first, last and random rows checked."""
    M, N, K = (1 << 25) + 16, 32, 64
    _large(device, host_bytes=18 << 30, device_bytes=8 << 30)
    _force_gemm(monkeypatch, device, gemm)
    block = rng.standard_normal((100003, K), np.float32).astype(np.float16)
    A = np.take(block, np.arange(M) % block.shape[0], axis=0)
    case = make_case(rng, "int4", "scale", 64, "float16", "float32", "float16", False, M=1, N=N, K=K)
    rows = np.concatenate([np.arange(256), np.arange(M - 256, M), rng.integers(0, M, 512)])
    f = jax.jit(lambda A, W, s: case.mm(A, W, scale=s)[rows])
    got = f(*(jax.device_put(x, device) for x in (A, case.packed(), case.scale)))
    check(case, np.asarray(got), A=A[rows])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gemm", [False, True], ids=["rule", "gemm-forced"])
def test_output_over_2_31_elements(rng, monkeypatch, device, gemm):
    """C [2^19 + 3, 4096] (2^31 + 12288 elements); the first, last and random rows checked."""
    N, K = 4096, 64
    M = (1 << 31) // N + 3
    _large(device, host_bytes=12 << 30, device_bytes=6 << 30)
    _force_gemm(monkeypatch, device, gemm)
    packed, codes = tile_pattern(rng, N, K, 4)
    A = rng.standard_normal((M, K), np.float32).astype(np.float16)
    rows = np.concatenate([np.arange(64), np.arange(M - 64, M), rng.integers(0, M, 256)])
    mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, W_dtype="int4", A_dtype="float16", out_dtype="float16"))
    got = _run_packed(device, mm, A, packed, rows)
    ref, bound = _tile_reference(A[rows], _values(codes, "int4"), K, 4)
    assert np.all(np.abs(got - ref) <= bound)
