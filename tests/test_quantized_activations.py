"""int8 and float8 activations (BitBLAS's WxA8 and W_FP8A_FP8 rows): every combination on the CPU kernel
and on the XLA path the GPU runs, against the float64 / int64 reference; bad input; jit / vmap / grad."""
from __future__ import annotations

import dataclasses
import functools
import itertools
import re

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import formats, layout, primitive, quantized_dot, reference

from cases import (check_quantized, check_quantized_nonfinite, make_qcase, random_activations,
                   with_special_activations, with_special_weights)
from test_gpu import GPUS, pytestmark as GPU_MARKS

FP8 = ("float8_e4m3fn", "float8_e5m2")


def _combinations():
    for a_dtype, allowed in formats.QUANTIZED_A.items():
        for i, (w, out, bias) in enumerate(itertools.product(allowed["W"], allowed["out"], (False, True))):
            for mode in formats.allowed_modes(formats.get_format(w)):
                if out == "int32" and (mode != "none" or bias):
                    continue
                groups = (-1,) if mode == "none" else ((-1, 32, 128) if i % 2 else (64,))
                for g in groups:
                    yield pytest.param(a_dtype, w, mode, g, out, bias,
                                       id=f"{a_dtype}-{w}-{mode}-g{g}-{out}-{'bias' if bias else 'nobias'}")


COMBINATIONS = list(_combinations())


def _xla_run(case, A=None):
    """The GPU path (quantized_dot.matmul_xla) on this machine's backend."""
    f32 = lambda x: jnp.zeros((0,), jnp.float32) if x is None else jnp.asarray(x)  # noqa: E731
    return jax.jit(lambda A, W, s, z, b: quantized_dot.matmul_xla(A, W, s, z, b, case.mm.spec))(
        jnp.asarray(case.A if A is None else A), case.packed(), f32(case.scale), f32(case.zeros),
        f32(case.bias))


@pytest.mark.parametrize("a_dtype,w,mode,group,out,bias", COMBINATIONS)
def test_every_combination(rng, a_dtype, w, mode, group, out, bias):
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, M=3, N=32, K=256)
    check_quantized(case, case.run())


@pytest.mark.parametrize("a_dtype,w,mode,group,out,bias", COMBINATIONS[::3])
def test_every_combination_xla_path(rng, a_dtype, w, mode, group, out, bias):
    """The path GPUs run (exact dots in XLA, the same float32 epilogue), checked on this backend."""
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, M=3, N=32, K=256)
    check_quantized(case, _xla_run(case))


@pytest.mark.parametrize("w", formats.QUANTIZED_A["int8"]["W"])
def test_int32_bit_identical_full_range(rng, w):
    """Full-range int8 activations and weights, a long K: int32 outputs equal the int64 sums."""
    for M, N, K in ((1, 16, 4096), (5, 48, 1024), (17, 32, 2048), (16, 64, 4096)):   # the last: threads
        case = make_qcase(rng, "int8", w, "none", -1, "int32", M=M, N=N, K=K)
        check_quantized(case, case.run())
        check_quantized(case, _xla_run(case))


@pytest.mark.parametrize("path", ["kernel", "xla"])
def test_int32_no_overflow_at_k_65536(path):
    """The documented limit: K = 2^16 with every product at its largest, (-128) * (-128), sums to
    2^30 (and 127 * -128 * 2^16 = -2^30 + 2^23), inside int32."""
    K = 1 << 16
    cfg = bj.MatmulConfig(N=16, K=K, A_dtype="int8", W_dtype="int8", out_dtype="int32")
    mm = bj.Matmul(cfg)
    A = np.full((2, K), -128, np.int8)
    A[1] = 127
    values = np.full((16, K), -128, np.int8)
    W = mm.transform_weight(values)
    if path == "kernel":
        out = mm(jnp.asarray(A), W)
    else:
        out = quantized_dot.matmul_xla(jnp.asarray(A), W, *(jnp.zeros((0,), jnp.float32),) * 3, mm.spec)
    expect = reference.integer_matmul(A, values, "int8")
    assert expect[0, 0] == 2**30 and expect[1, 0] == -(2**30) + 2**23
    np.testing.assert_array_equal(np.asarray(out).astype(np.int64), expect)


def test_int8_output_rounds_half_even_and_saturates():
    """int8 output: round half to even, saturate to [-128, 127]."""
    K = 256
    cfg = bj.MatmulConfig(N=16, K=K, A_dtype="int8", W_dtype="int8", out_dtype="int8", with_scaling=True)
    mm = bj.Matmul(cfg)
    A = np.zeros((8, K), np.int8)
    A[:, 0] = [1, 3, 5, -1, -3, 100, -100, 7]       # times w = 1 and s = 0.5 -> .5, 1.5, 2.5, ..., 50, -50
    values = np.zeros((16, K), np.int8)
    values[:, 0] = 1
    scale = np.full((16, 1), 0.5, np.float32)
    scale[1] = 4.0                                   # 400 / -400 saturate
    out = np.asarray(mm(jnp.asarray(A), mm.transform_weight(values), scale=scale))
    np.testing.assert_array_equal(out[:, 0], [0, 2, 2, -0, -2, 50, -50, 4])
    np.testing.assert_array_equal(out[:, 1], [4, 12, 20, -4, -12, 127, -128, 28])


@pytest.mark.parametrize("granularity", ["tensor", "token"])
@pytest.mark.parametrize("a_dtype,w,mode,out", [("int8", "int8", "scale", "float16"),
                                               ("int8", "int4", "scale", "bfloat16"),
                                               ("int8", "uint4", "original", "int8"),
                                               ("float8_e4m3fn", "float8_e4m3fn", "scale", "bfloat16"),
                                               ("float8_e5m2", "int4", "quantized", "float32")])
def test_activation_scales(rng, a_dtype, w, mode, out, granularity):
    case = make_qcase(rng, a_dtype, w, mode, 64, out, True, M=5, N=32, K=256, a_scale=granularity)
    check_quantized(case, case.run())
    check_quantized(case, jax.jit(lambda A, W, s, z, b, a: case.mm(A, W, scale=s, zeros=z, bias=b, a_scale=a))(
        jnp.asarray(case.A), case.packed(), case.scale, case.zeros, case.bias, case.a_scale))


@pytest.mark.parametrize("M", [1, 7, 33])
def test_odd_m_and_leading_dims(rng, M):
    case = make_qcase(rng, "int8", "int4", "scale", 128, "float32", True, M=M, N=48, K=512)
    check_quantized(case, case.run())
    case = make_qcase(rng, "float8_e4m3fn", "float8_e5m2", "scale", 64, "float16", M=M, N=32, K=256,
                      a_shape=(2, M, 256))
    out = case.run()
    assert out.shape == (2, M, 32)
    check_quantized(case, out)


def test_large_groups_and_shapes(rng):
    for g in (8, 24, 256, 2048):
        case = make_qcase(rng, "int8", "uint2", "original", g, "float32", M=9, N=64, K=3072 if g == 24 else 2048)
        check_quantized(case, case.run())
        check_quantized(case, _xla_run(case))


@pytest.mark.parametrize("a_dtype,w", [("int8", "uint4"), ("float8_e5m2", "float8_e4m3fn")])
def test_threaded_cpu_kernel(rng, a_dtype, w):
    """M * N * K above 2^21: the CPU kernel splits the bands over threads (on the CPU device also where
    a GPU is JAX's default)."""
    case = make_qcase(rng, a_dtype, w, "scale", 128, "float32", True, M=33, N=128, K=1024)
    with jax.default_device(jax.devices("cpu")[0]):
        out = case.run()
    assert out.devices() == {jax.devices("cpu")[0]}
    check_quantized(case, out)


def test_m_zero(rng):
    case = make_qcase(rng, "int8", "int4", "scale", 64, "float16", M=3, N=32, K=256)
    out = case.run(A=np.zeros((0, 256), np.int8))
    assert out.shape == (0, 32) and out.dtype == jnp.float16


def test_vmap(rng):
    case = make_qcase(rng, "int8", "int4", "rescale", 64, "float32", True, a_shape=(4, 3, 256))
    W = case.packed()
    f = lambda a: case.mm(a, W, scale=case.scale, zeros=case.zeros, bias=case.bias)  # noqa: E731
    check_quantized(case, jax.vmap(f)(jnp.asarray(case.A)))
    check_quantized(case, jax.vmap(f, in_axes=1, out_axes=1)(jnp.asarray(case.A)))
    case = make_qcase(rng, "float8_e4m3fn", "int4", "scale", 64, "bfloat16", a_shape=(4, 3, 256),
                      a_scale="token")
    W = case.packed()
    out = jax.vmap(lambda a, s: case.mm(a, W, scale=case.scale, a_scale=s))(jnp.asarray(case.A), case.a_scale)
    check_quantized(case, out)


def test_vmap_activation_scales(rng):
    """vmap over A alone (one scale per tensor, shared), over the scales alone (A shared), and one vector A
    [K] with its scalar scale: the batch dims fold into the kernel's rows with their scales."""
    case = make_qcase(rng, "int8", "int4", "scale", 64, "float16", True, a_shape=(4, 256), a_scale="tensor")
    W = case.packed()
    f = lambda a, s: case.mm(a, W, scale=case.scale, bias=case.bias, a_scale=s)  # noqa: E731
    check_quantized(case, jax.vmap(f, in_axes=(0, None))(jnp.asarray(case.A), case.a_scale))
    scales = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    out = jax.vmap(f, in_axes=(None, 0))(jnp.asarray(case.A), scales)        # [4 scales, 4 rows, N]
    for i in range(4):
        case.a_scale = scales[i]
        check_quantized(case, out[i])
    case = make_qcase(rng, "int8", "int8", "scale", -1, "bfloat16", True, a_shape=(256,), a_scale="tensor")
    check_quantized(case, case.mm(jnp.asarray(case.A), case.packed(), scale=case.scale, bias=case.bias,
                                  a_scale=case.a_scale))


def test_vmap_over_weights(rng):
    cases = [make_qcase(rng, "int8", "int8", "scale", 64, "float32") for _ in range(2)]
    A = jnp.asarray(cases[0].A)
    out = jax.vmap(lambda w, s: cases[0].mm(A, w, scale=s))(jnp.stack([c.packed() for c in cases]),
                                                           jnp.stack([c.scale for c in cases]))
    for i, c in enumerate(cases):
        c.A = cases[0].A
        check_quantized(c, out[i])


def test_grad_wrt_integer_a_raises(rng):
    case = make_qcase(rng, "int8", "int4", "scale", 64, "float32")
    W = case.packed()
    with pytest.raises(TypeError, match="int8"):
        jax.grad(lambda A: case.mm(A, W, scale=case.scale).sum())(jnp.asarray(case.A))


def test_grad_wrt_float8_a_raises(rng):
    case = make_qcase(rng, "float8_e4m3fn", "float8_e4m3fn", "scale", 64, "float32")
    W = case.packed()
    with pytest.raises(TypeError, match="derivative with respect to A is not defined for float8_e4m3fn"):
        jax.grad(lambda A: case.mm(A, W, scale=case.scale).sum().astype(jnp.float32))(jnp.asarray(case.A))


def test_grad_wrt_scale_and_bias(rng):
    """d/ds[n, g] = sum_m a_scale[m] * S_g[m, n]; d/dbias = M (float32 output)."""
    case = make_qcase(rng, "int8", "int4", "scale", 64, "float32", True, M=4, a_scale="token")
    W = case.packed()
    gs, gb = jax.grad(lambda s, b: case.mm(jnp.asarray(case.A), W, scale=s, bias=b, a_scale=case.a_scale).sum(),
                      argnums=(0, 1))(jnp.asarray(case.scale), jnp.asarray(case.bias))
    S = np.einsum("mgk,ngk->mng", case.A.astype(np.float64).reshape(4, 4, 64),
                  case.values.astype(np.float64).reshape(32, 4, 64))
    expect = np.einsum("m,mng->ng", case.a_scale.astype(np.float64), S)
    np.testing.assert_allclose(np.asarray(gs, np.float64), expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
    np.testing.assert_allclose(np.asarray(gb), np.full(32, 4.0))


def test_grad_wrt_activation_scales(rng):
    """d/da_scale[m] of sum(C) = sum_n v[m, n] (float32 output, v the weight-scaled sums)."""
    case = make_qcase(rng, "int8", "int4", "scale", 64, "float32", True, M=4, a_scale="token")
    W = case.packed()
    g = jax.grad(lambda a: case.mm(jnp.asarray(case.A), W, scale=case.scale, bias=case.bias, a_scale=a).sum())(
        jnp.asarray(case.a_scale))
    v = case.A.astype(np.float64) @ case.wd().T
    np.testing.assert_allclose(np.asarray(g, np.float64), v.sum(1), rtol=1e-5, atol=1e-5 * np.abs(v).sum(1).max())


# ---- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,field", [
    (dict(A_dtype="int8", W_dtype="nf4"), "W_dtype"),
    (dict(A_dtype="int8", W_dtype="uint8"), "W_dtype"),
    (dict(A_dtype="int8", W_dtype="float8_e4m3fn"), "W_dtype"),
    (dict(A_dtype="int8", W_dtype="int4", accum_dtype="float32"), "accum_dtype"),
    (dict(A_dtype="int8", W_dtype="int4", out_dtype="float8_e4m3fn"), "out_dtype"),
    (dict(A_dtype="int8", W_dtype="int4", out_dtype="int32", with_scaling=True), "out_dtype"),
    (dict(A_dtype="int8", W_dtype="int4", out_dtype="int32", with_bias=True), "out_dtype"),
    (dict(A_dtype="float8_e4m3fn", W_dtype="int8"), "W_dtype"),
    (dict(A_dtype="float8_e4m3fn", W_dtype="float8_e4m3fn", accum_dtype="int32"), "accum_dtype"),
    (dict(A_dtype="e5m2_float8", W_dtype="e4m3_float8", out_dtype="int8"), "out_dtype"),
    (dict(A_dtype="float16", W_dtype="int4", out_dtype="int32"), "out_dtype"),
    (dict(A_dtype="float16", W_dtype="int4", accum_dtype="int32"), "accum_dtype"),
    (dict(A_dtype="int4", W_dtype="int4"), "A_dtype"),
    (dict(A_dtype="uint8", W_dtype="int4"), "A_dtype"),
])
def test_config_rejects(kw, field):
    with pytest.raises(ValueError, match=f"MatmulConfig.{field}="):
        bj.MatmulConfig(N=32, K=256, **kw)


def test_config_defaults_and_aliases():
    c = bj.MatmulConfig(N=32, K=256, A_dtype="int8", W_dtype="int4", out_dtype="int32")
    assert c.accum_dtype == "int32" and c.scale_dtype == "float32" and c.quantized_activations
    c = bj.MatmulConfig(N=32, K=256, A_dtype="e4m3_float8", W_dtype="e5m2_float8", out_dtype="bfloat16",
                        with_scaling=True)
    assert (c.A_dtype, c.W_dtype, c.accum_dtype) == ("float8_e4m3fn", "float8_e5m2", "float32")
    assert bj.MatmulConfig(N=32, K=256).accum_dtype == "float32"


def test_call_rejects_bad_input(rng):
    case = make_qcase(rng, "int8", "int4", "original", 64, "float16", True)
    mm, W = case.mm, case.packed()
    good = dict(scale=case.scale, zeros=case.zeros, bias=case.bias)
    with pytest.raises(TypeError, match="A must be int8.*quantize_activations"):
        mm(jnp.asarray(case.A, jnp.float16), W, **good)
    with pytest.raises(ValueError, match="A must have shape"):
        mm(jnp.asarray(case.A[:, :128]), W, **good)
    with pytest.raises(ValueError, match="scale must have shape"):
        mm(jnp.asarray(case.A), W, **{**good, "scale": case.scale[:, :1]})
    with pytest.raises(TypeError, match="zeros must be a float array"):
        mm(jnp.asarray(case.A), W, **{**good, "zeros": case.zeros.astype(np.int32)})
    with pytest.raises(ValueError, match="a_scale must be a scalar"):
        mm(jnp.asarray(case.A), W, **good, a_scale=np.ones((2,), np.float32))
    with pytest.raises(TypeError, match="a_scale must be a float"):
        mm(jnp.asarray(case.A), W, **good, a_scale=np.ones((3,), np.int32))
    f16 = bj.Matmul(bj.MatmulConfig(N=32, K=256, A_dtype="float16", W_dtype="int4"))
    with pytest.raises(ValueError, match="a_scale is for int8 / float8"):
        f16(jnp.zeros((3, 256), jnp.float16), f16.transform_weight(np.zeros((32, 256), np.int8)),
            a_scale=np.float32(1))
    i32 = bj.Matmul(bj.MatmulConfig(N=32, K=256, A_dtype="int8", W_dtype="int4", out_dtype="int32"))
    with pytest.raises(ValueError, match="a_scale needs a float or int8 output"):
        i32(jnp.asarray(case.A), W, a_scale=np.float32(1))


def test_dequantize_is_float32(rng):
    case = make_qcase(rng, "int8", "uint4", "original", 64, "float32")
    wd = case.mm.dequantize(case.packed(), case.scale, case.zeros)
    assert wd.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(wd, np.float64), case.wd(), rtol=1e-6, atol=1e-6)


def test_random_activations_cover_range(rng):
    a = random_activations(rng, "int8", (64, 256))
    assert a.min() == -128 and a.max() == 127
    primitive.empty(jnp.float32)  # the stand-in operand dtype of quantized activations


# ---- the GPU path, lowered for CUDA on any machine ------------------------------------------------------
def _cuda_text(cfg, M, a_scale=False):
    """The StableHLO of a jitted call of cfg's Matmul (with its scale; a_scale: with activation scales per
    row) on M rows, lowered for CUDA."""
    from bitblas_jax.export import export
    mm = bj.Matmul(cfg)
    args = [jax.ShapeDtypeStruct((M, cfg.K), jnp.dtype(cfg.A_dtype)),
            jax.ShapeDtypeStruct(layout.packed_shape(cfg.N, cfg.K, cfg.format.bits), jnp.uint8)]
    if cfg.with_scaling:
        args.append(jax.ShapeDtypeStruct((cfg.N, cfg.num_groups), jnp.float32))
    if cfg.with_zeros:
        zdt = cfg.format.zeros_dtype if cfg.zeros_mode == "quantized" else jnp.float32
        args.append(jax.ShapeDtypeStruct((cfg.N, cfg.num_groups), jnp.dtype(zdt)))
    names = ["A", "W"] + ["scale"] * cfg.with_scaling + ["zeros"] * cfg.with_zeros
    _assert_partitionable(mm.spec, dict(zip(names, args)))
    if a_scale:
        args.append(jax.ShapeDtypeStruct((M,), jnp.float32))
        names.append("a_scale")
    f = jax.jit(lambda *xs: mm(xs[0], xs[1], **dict(zip(names[2:], xs[2:]))))
    return export(f, platforms=["cuda"])(*args).mlir_module()


def _assert_partitionable(spec, args):
    """The whole op's CUDA body, where it goes through custom_partitioning (every kernel call; XLA's own
    ops are partitioned by XLA), holds no constant: custom_partitioning refuses a body that captures
    one (an index array, a table), and an export (as _cuda_text lowers) never meets that check."""
    if primitive._cuda_runs_xla_ops(spec, args["A"].shape[0]):
        return
    absent = jax.ShapeDtypeStruct((0,), formats.scale_dtype(spec.a_dtype))
    operands = [args["A"], args["W"], args.get("scale", absent), args.get("zeros", absent), absent]
    body = jax.make_jaxpr(functools.partial(primitive._cuda_call, spec=spec))(*operands)
    assert not body.consts, f"the CUDA body captures constants {[np.shape(c) for c in body.consts]}"


@pytest.mark.parametrize("a_dtype,w,dot", [("int8", "int4", "(tensor<8x128xi8>, tensor<64x128xi8>) -> tensor<8x64xi32>"),
                                           ("int8", "int8", "(tensor<8x256xi8>, tensor<64x256xi8>) -> tensor<8x64xi32>"),
                                           ("float8_e4m3fn", "float8_e5m2",
                                            "(tensor<8x256xbf16>, tensor<64x256xbf16>) -> tensor<8x64xf32>")])
def test_cuda_lowering_is_exact_xla_dot(monkeypatch, a_dtype, w, dot):
    """Where the plan routes int8 / float8 activations to "xla_dot" (here: decode_i8 and widened_f16 off),
    they lower to XLA's own exact dots: no custom call, an int8 x int8 -> int32 dot per group, or a
    bfloat16 -> float32 one."""
    from bitblas_jax import gpu_plan
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "0")
    monkeypatch.setenv("BITBLAS_JAX_WIDENED_F16", "0")
    group = 128 if w == "int4" else -1
    cfg = bj.MatmulConfig(N=64, K=256, A_dtype=a_dtype, W_dtype=w, out_dtype="float16", group_size=group,
                          with_scaling=True)
    assert gpu_plan.quantized_activation_kernel(a_dtype, cfg.W_dtype, cfg.mode, cfg.resolved_group_size, 8,
                                                256) == "xla_dot"
    assert primitive._cuda_runs_xla_ops(bj.Matmul(cfg).spec, 8)
    text = _cuda_text(cfg, 8)
    assert "bitblas_jax_" not in text and "custom_call" not in text
    assert dot in text, [line for line in text.splitlines() if "dot_general" in line]


@pytest.mark.parametrize("w,mode,group,out,M,kernel", [
    ("int4", "scale", 128, "float16", 8, "decode_i8"),
    ("int8", "none", -1, "int32", 16, "decode_i8"),
    ("uint1", "scale", 32, "float32", 1, "decode_i8"),
    ("int2", "scale", -1, "int8", 3, "decode_i8"),
    ("int4", "scale", 128, "float16", 17, "xla_dot"),       # above the decode regime (the GEMMs off)
    ("int4", "original", 128, "float16", 8, "xla_dot"),     # zeros modes: XLA's dots
    ("uint4", "quantized", 64, "float32", 1, "xla_dot"),
    ("int4", "scale", 8, "float32", 4, "xla_dot"),          # groups inside an mma step (32 k)
])
def test_cuda_lowering_picks_decode_i8(monkeypatch, w, mode, group, out, M, kernel):
    """On an sm_80+ GPU (forced here: BITBLAS_JAX_DECODE_I8=1), int8 activations at M <= 16 lower to the
    decode_i8 custom call, which returns the output itself (_assert_a8_kernel_call); what it does not
    compute lowers to XLA's dots (and so does M > 16 with the GEMMs off)."""
    from bitblas_jax import gpu_plan
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "1")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "0")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "0")
    cfg = bj.MatmulConfig(N=64, K=256, A_dtype="int8", W_dtype=w, out_dtype=out, group_size=group,
                          **formats.mode_flags(mode))
    assert gpu_plan.quantized_activation_kernel("int8", w, mode, cfg.resolved_group_size, M, 256) == kernel
    text = _cuda_text(cfg, M)
    if kernel == "xla_dot":
        assert "custom_call" not in text
        return
    calls = [line for line in text.splitlines() if "bitblas_jax_decode_i8" in line]
    assert len(calls) == 1 and "bitblas_jax_matmul" not in text, calls
    _assert_a8_kernel_call(calls[0], mode, M, 64, out)
    _assert_a_in_k_order(text, primitive.LANE_ORDER_AXES)
    assert "dot_general" not in text


def _assert_a_in_k_order(text, axes):
    """The kernel's A is A with each 32-k block in the k order `axes` (primitive.in_a8_order: one transpose of
    the [M, K / 32, 2, 2, 4, 2] view, and no transpose in another order)."""
    dims = [line.split("dims = ")[1].split("]")[0] + "]" for line in text.splitlines()
            if "stablehlo.transpose" in line and "dims = " in line]
    assert dims == [str(list(axes))], (dims, axes)


def _assert_a8_kernel_call(call, mode, M, N, out, a_type="i8", a_scale=False):
    """An 8-bit kernel's custom call: A (a_type), W, scale (present in mode scale: group scales in the
    kernel's main loop, a per-channel one in its epilogue), zeros, bias, a_scale (float32 [M] with
    activation scales); it returns the output itself (the epilogue applies the scales, the bias and the
    cast)."""
    mlir_out = {"int32": "i32", "float32": "f32", "float16": "f16", "bfloat16": "bf16", "int8": "i8"}[out]
    operand_types = call.split(" : (")[1].split(")")[0].split(", ")   # A, W, scale, zeros, bias, a_scale
    assert len(operand_types) == 6 and f"x{a_type}>" in operand_types[0], call
    assert (operand_types[2] != "tensor<0xf32>") == (mode == "scale"), call
    assert operand_types[5] == (f"tensor<{M}xf32>" if a_scale else "tensor<0xf32>"), call
    assert f"mode = {formats.MODE_IDS[mode]} : i64" in call, call
    assert f"-> tensor<{M}x{N}x{mlir_out}>" in call, call


@pytest.mark.parametrize("a_dtype,w,mode,group,out,M,kernel", [
    ("int8", "int8", "none", -1, "int32", 17, "gemm_wgmma_a8"),
    ("int8", "int4", "scale", -1, "float16", 64, "gemm_wgmma_a8"),       # per-channel scales
    ("int8", "uint4", "none", -1, "float32", 300, "gemm_wgmma_a8"),
    ("int8", "int8", "none", -1, "int32", 16, "decode_i8"),              # the decode regime first
    ("int8", "int4", "scale", 128, "float16", 64, "gemm_wgmma_a8"),      # groups of 128: scaled in the kernel
    ("int8", "int8", "scale", 64, "float16", 64, "xla_dot"),             # other groups: XLA's dots
    ("int8", "int2", "none", -1, "int32", 64, "xla_dot"),                # 2-bit weights: XLA's dots
    ("float8_e4m3fn", "float8_e4m3fn", "none", -1, "float32", 17, "gemm_wgmma_a8"),
    ("float8_e5m2", "float8_e4m3fn", "scale", -1, "bfloat16", 64, "gemm_wgmma_a8"),
    ("float8_e4m3fn", "int4", "scale", 128, "float16", 200, "gemm_wgmma_a8"),
    ("float8_e5m2", "float8_e5m2", "scale", 256, "float32", 129, "gemm_wgmma_a8"),   # two stages a group
    ("float8_e4m3fn", "int4", "scale", 64, "float16", 64, "xla_dot"),    # groups inside a stage
    ("float8_e4m3fn", "int4", "original", 128, "float32", 64, "xla_dot"),         # zeros modes: XLA's dots
])
def test_cuda_lowering_picks_gemm_wgmma_a8(monkeypatch, a_dtype, w, mode, group, out, M, kernel):
    """On an sm_90 GPU (forced here: BITBLAS_JAX_GEMM_A8=1 and BITBLAS_JAX_DECODE_I8=1), int8 / float8
    activations above the decode regime lower to the gemm_wgmma_a8 custom call on the activations in its
    k order (a transpose) where it computes the mode, returning the output itself (its epilogue applies
    per-channel scales, the bias and the cast: no XLA op after it); the rest to XLA's dots with
    gemm_mma_a8 turned off (test_cuda_lowering_picks_gemm_mma_a8 has it on)."""
    from bitblas_jax import gpu_plan
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "1")
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "1")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "0")
    cfg = bj.MatmulConfig(N=64, K=512, A_dtype=a_dtype, W_dtype=w, out_dtype=out, group_size=group,
                          **formats.mode_flags(mode))
    assert gpu_plan.quantized_activation_kernel(a_dtype, w, mode, cfg.resolved_group_size, M, 512) == kernel
    text = _cuda_text(cfg, M)
    calls = [line for line in text.splitlines() if "bitblas_jax_gemm_a8" in line]
    if kernel != "gemm_wgmma_a8":
        assert not calls
        return
    assert len(calls) == 1 and "bitblas_jax_matmul" not in text, calls
    act = {"int8": "i8", "float8_e4m3fn": "f8E4M3FN", "float8_e5m2": "f8E5M2"}[a_dtype]
    assert f"tensor<{M}x512x{act}>" in calls[0], calls[0]
    _assert_a8_kernel_call(calls[0], mode, M, 64, out, act)
    _assert_a_in_k_order(text, primitive.SIGMA_ORDER_AXES)
    assert "dot_general" not in text


@pytest.mark.parametrize("w,mode,group,out,M,sm90,kernel", [
    ("int8", "none", -1, "int32", 17, False, "gemm_mma_a8"),
    ("int4", "scale", -1, "float16", 64, False, "gemm_mma_a8"),      # per-channel scales, in the kernel
    ("uint4", "scale", 128, "bfloat16", 300, False, "gemm_mma_a8"),
    ("int2", "scale", 32, "int8", 65, True, "gemm_mma_a8"),          # 2-bit weights: not gemm_wgmma_a8's
    ("uint1", "none", -1, "float32", 100, True, "gemm_mma_a8"),
    ("int8", "scale", 64, "float32", 33, True, "gemm_mma_a8"),       # groups of 64: not gemm_wgmma_a8's
    ("int4", "scale", 128, "float16", 64, True, "gemm_wgmma_a8"),    # gemm_wgmma_a8 first on sm_90
    ("int8", "none", -1, "int32", 16, False, "decode_i8"),           # the decode regime first
    ("int4", "original", 128, "float16", 64, False, "xla_dot"),      # zeros modes: XLA's dots
    ("int4", "scale", 16, "float32", 64, False, "xla_dot"),          # groups inside an mma step (32 k)
])
def test_cuda_lowering_picks_gemm_mma_a8(monkeypatch, w, mode, group, out, M, sm90, kernel):
    """On an sm_80+ GPU (forced here: BITBLAS_JAX_GEMM_MMA_A8=1), int8 activations above the decode regime
    lower to the gemm_mma_a8 custom call where gemm_wgmma_a8 does not take them (sm90: whether it runs,
    BITBLAS_JAX_GEMM_A8), on the activations in the 8-bit kernels' k order (a transpose), returning the
    output itself (_assert_a8_kernel_call)."""
    from bitblas_jax import gpu_plan
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "1")
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "1")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "1" if sm90 else "0")
    cfg = bj.MatmulConfig(N=64, K=512, A_dtype="int8", W_dtype=w, out_dtype=out, group_size=group,
                          **formats.mode_flags(mode))
    assert gpu_plan.quantized_activation_kernel("int8", w, mode, cfg.resolved_group_size, M, 512) == kernel
    text = _cuda_text(cfg, M)
    calls = [line for line in text.splitlines() if "bitblas_jax_gemm_mma_a8" in line]
    if kernel != "gemm_mma_a8":
        assert not calls
        return
    assert len(calls) == 1 and "bitblas_jax_matmul" not in text and "bitblas_jax_gemm_a8" not in text, calls
    assert f"(tensor<{M}x512xi8>, tensor<64x{512 * formats.get_format(w).bits // 8}xui8>" in calls[0], calls[0]
    _assert_a8_kernel_call(calls[0], mode, M, 64, out)
    _assert_a_in_k_order(text, primitive.SIGMA_ORDER_AXES)
    assert "dot_general" not in text


@pytest.mark.parametrize("target,env,w,mode,group,out,M", [
    ("bitblas_jax_decode_i8", {}, "int4", "scale", 128, "float16", 8),
    ("bitblas_jax_decode_i8", {}, "int8", "scale", -1, "int8", 1),
    ("bitblas_jax_gemm_mma_a8", {"BITBLAS_JAX_GEMM_A8": "0"}, "int8", "scale", -1, "bfloat16", 100),
    ("bitblas_jax_gemm_a8", {"BITBLAS_JAX_GEMM_A8": "1"}, "int8", "scale", -1, "float16", 300),
    ("bitblas_jax_gemm_a8", {"BITBLAS_JAX_GEMM_A8": "1"}, "int4", "scale", 128, "float32", 64),
])
def test_cuda_lowering_fuses_activation_scales(monkeypatch, target, env, w, mode, group, out, M):
    """Activation scales (Matmul's a_scale) go to the 8-bit kernels as their sixth operand, one float32 per
    row, and the kernel writes the output in its own dtype: no float32 intermediate, no XLA op after it."""
    monkeypatch.setenv("BITBLAS_JAX_DECODE_I8", "1")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "1")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = bj.MatmulConfig(N=64, K=512, A_dtype="int8", W_dtype=w, out_dtype=out, group_size=group,
                          **formats.mode_flags(mode))
    text = _cuda_text(cfg, M, a_scale=True)
    calls = [line for line in text.splitlines() if "stablehlo.custom_call" in line]
    assert len(calls) == 1 and target in calls[0], calls
    _assert_a8_kernel_call(calls[0], mode, M, 64, out, a_scale=True)
    assert "stablehlo.multiply" not in text and "stablehlo.add" not in text and "dot_general" not in text


# ---- decode_i8 on a CUDA GPU (skipped elsewhere) ---------------------------------------------------------
def on_gpu(test):
    """Marks a test as a GPU test (tests/test_gpu.py's marks): skipped without a CUDA GPU or kernels."""
    for mark in GPU_MARKS:
        test = mark(test)
    return test

DECODE_I8_K = 1536      # whole packed tiles of every format (1-bit: 256 k) and whole groups of 32, 96, 128
DECODE_I8_KINDS = (("none", -1), ("scale", -1), ("scale", 32), ("scale", 96), ("scale", 128))


def _decode_i8_cases():
    """Every int8-activation weight format at every M of the decode regime (1..16), the mode / group
    cycling with M so each format meets each of DECODE_I8_KINDS several times."""
    for i, w in enumerate(formats.QUANTIZED_A["int8"]["W"]):
        for M in range(1, 17):
            mode, group = DECODE_I8_KINDS[(M + i) % len(DECODE_I8_KINDS)]
            yield pytest.param(w, M, mode, group, id=f"{w}-M{M}-{mode}-g{group}")


def _run_decode_i8(case, target="bitblas_jax_decode_i8", **kw):
    """case on the GPU through a jit whose output buffer is a donated poisoned array (int32 min / NaN),
    checking that the lowering holds the `target` custom call; returns (output, whether the result was
    written into the poisoned buffer)."""
    dev = GPUS[0]
    c = case.cfg
    put = lambda x: None if x is None else jax.device_put(jnp.asarray(x), dev)  # noqa: E731
    args = [put(case.A), put(case.packed()), put(case.scale), put(case.zeros), put(case.bias),
            put(kw.get("a_scale"))]
    poison_value = np.iinfo(np.int32).min if c.out_dtype == "int32" else np.nan
    poison = put(jnp.full(case.A.shape[:-1] + (c.N,), poison_value, formats.NUMPY_DTYPES[c.out_dtype]))
    ptr = poison.unsafe_buffer_pointer()
    f = jax.jit(lambda p, A, W, s, z, b, a: case.mm(A, W, scale=s, zeros=z, bias=b, a_scale=a),
                donate_argnums=0, keep_unused=True)
    lowered = f.lower(poison, *args)
    assert target in lowered.as_text(), f"the plan did not pick {target}"
    out = lowered.compile()(poison, *args)
    return np.asarray(out), out.unsafe_buffer_pointer() == ptr


@on_gpu
@pytest.mark.parametrize("w,M,mode,group", list(_decode_i8_cases()))
def test_gpu_decode_i8_exact(rng, w, M, mode, group):
    """decode_i8 against the int64 / float64 reference on full-range random int8 activations and weights:
    int32 sums (mode none) bit for bit, float32 v (mode scale) within the float32 bound; the output is
    the kernel's own buffer here, poisoned beforehand, so an unwritten element shows."""
    from bitblas_jax import gpu_plan
    out_dtype = "int32" if mode == "none" else "float32"
    case = make_qcase(rng, "int8", w, mode, group, out_dtype, M=M, N=48, K=DECODE_I8_K)
    assert gpu_plan.quantized_activation_kernel("int8", w, mode, case.cfg.resolved_group_size, M,
                                                DECODE_I8_K) == "decode_i8"
    out, written = _run_decode_i8(case)
    assert written, "XLA did not hand the poisoned buffer to the kernel (the check would not see unwritten outputs)"
    check_quantized(case, out)


@on_gpu
@pytest.mark.parametrize("w,mode,group,out,bias,a_scale,M", [
    ("int4", "scale", 128, "float16", True, "token", 7),      # SmoothQuant W4A8
    ("int8", "scale", -1, "bfloat16", False, "token", 16),    # W8A8, per-channel weight scales
    ("int8", "none", -1, "float32", True, "tensor", 1),
    ("uint2", "scale", 64, "int8", True, None, 9),
    ("int1", "scale", 256, "float16", False, "token", 12),
])
def test_gpu_decode_i8_epilogues(rng, w, mode, group, out, bias, a_scale, M):
    """decode_i8's sums through the fused epilogue: activation scales, bias, every output cast."""
    case = make_qcase(rng, "int8", w, mode, group, out, bias, M=M, N=64, K=2048, a_scale=a_scale)
    got, _ = _run_decode_i8(case, a_scale=case.a_scale)
    check_quantized(case, got)


def _gemm_mma_a8_cases():
    """Every int8-activation weight format at M = 17, 64 (the 64-row tile), 100, 300 (the 128-row tile,
    partly filled), two of DECODE_I8_KINDS at each, cycling so each format meets every kind."""
    for i, w in enumerate(formats.QUANTIZED_A["int8"]["W"]):
        for j, M in enumerate((17, 64, 100, 300)):
            for d in (0, 2):
                mode, group = DECODE_I8_KINDS[(i + j + d) % len(DECODE_I8_KINDS)]
                yield pytest.param(w, M, mode, group, id=f"{w}-M{M}-{mode}-g{group}")


def _force_gemm_mma_a8(monkeypatch):
    """Route int8 activations above the decode regime to gemm_mma_a8, also on an sm_90 GPU (where
    gemm_wgmma_a8 would take some of them); skips where the GPU cannot run it."""
    from bitblas_jax import gpu_plan
    if not gpu_plan.gemm_mma_a8_runs():
        pytest.skip("gemm_mma_a8 needs an sm_80+ GPU and the CUDA kernels")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MMA_A8", "1")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "0")


@on_gpu
@pytest.mark.parametrize("w,M,mode,group", list(_gemm_mma_a8_cases()))
def test_gpu_gemm_mma_a8_exact(monkeypatch, rng, w, M, mode, group):
    """gemm_mma_a8 against the int64 / float64 reference on full-range random int8 activations and weights:
    int32 sums (mode none) bit for bit, float32 v (mode scale) within the float32 bound; N = 272 (a
    partial 128-row CTA), K = 1536 (12 stages; 6 for 1-bit weights); the output buffer poisoned."""
    from bitblas_jax import gpu_plan
    _force_gemm_mma_a8(monkeypatch)
    out_dtype = "int32" if mode == "none" else "float32"
    case = make_qcase(rng, "int8", w, mode, group, out_dtype, M=M, N=272, K=DECODE_I8_K)
    assert gpu_plan.quantized_activation_kernel("int8", w, mode, case.cfg.resolved_group_size, M,
                                                DECODE_I8_K) == "gemm_mma_a8"
    out, written = _run_decode_i8(case, target="bitblas_jax_gemm_mma_a8")
    assert written, "XLA did not hand the poisoned buffer to the kernel (the check would not see unwritten outputs)"
    check_quantized(case, out)


@on_gpu
@pytest.mark.parametrize("w,mode,group,out,bias,a_scale,M,K", [
    ("int8", "none", -1, "int32", False, None, 40, 1056),        # a last stage of one 32-k tile
    ("int4", "scale", 32, "float32", False, None, 129, 1088),    # ... of one 64-k tile
    ("int4", "scale", 128, "float16", True, "token", 77, 2048),  # SmoothQuant W4A8
    ("int8", "scale", -1, "bfloat16", False, "token", 256, 2048),  # W8A8, per-channel weight scales
    ("uint2", "scale", 64, "int8", True, None, 33, 2048),
    ("int1", "none", -1, "float16", True, "tensor", 500, 2048),
])
def test_gpu_gemm_mma_a8_stages_and_epilogues(monkeypatch, rng, w, mode, group, out, bias, a_scale, M, K):
    """gemm_mma_a8 where K ends inside a stage, and its sums through the fused epilogue: activation
    scales, bias, every output cast."""
    _force_gemm_mma_a8(monkeypatch)
    case = make_qcase(rng, "int8", w, mode, group, out, bias, M=M, N=144, K=K, a_scale=a_scale)
    got, _ = _run_decode_i8(case, target="bitblas_jax_gemm_mma_a8", a_scale=case.a_scale)
    check_quantized(case, got)


def _gemm_a8_cases():
    kinds = [("none", -1, "int32"), ("scale", -1, "float32"), ("scale", 128, "float32"), ("scale", 128, "float16")]
    for w in ("int8", "int4", "uint4"):
        for i, M in enumerate((17, 64, 100, 257)):
            mode, group, out = kinds[(i + len(w)) % len(kinds)]
            yield pytest.param(w, M, mode, group, out, id=f"{w}-M{M}-{mode}-g{group}-{out}")


@on_gpu
@pytest.mark.parametrize("w,M,mode,group,out", list(_gemm_a8_cases()))
def test_gpu_gemm_wgmma_a8_exact(rng, w, M, mode, group, out):
    """gemm_wgmma_a8 (sm_90) against the int64 / float64 reference on full-range random int8 activations
    and weights: int32 sums bit for bit, per-channel and group-128 scaled outputs (with per-token
    activation scales, which the kernel's epilogue applies) within the float32 bound; N = 272 (a partial
    128-row CTA), K = 1024 (8 groups); the output buffer poisoned beforehand."""
    from bitblas_jax import gpu_plan
    if not gpu_plan.gemm_a8_runs():
        pytest.skip("gemm_wgmma_a8 needs an sm_90 GPU")
    case = make_qcase(rng, "int8", w, mode, group, out, M=M, N=272, K=1024,
                      a_scale=None if out == "int32" else "token")
    assert gpu_plan.quantized_activation_kernel("int8", w, mode, case.cfg.resolved_group_size, M,
                                                1024) == "gemm_wgmma_a8"
    got, written = _run_decode_i8(case, target="bitblas_jax_gemm_a8", a_scale=case.a_scale)
    assert written, "XLA did not hand the poisoned buffer to the kernel's epilogue"
    check_quantized(case, got)


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode,group,out,M", [
    ("int8", "int8", "none", -1, "int32", 300),
    ("int8", "int8", "scale", -1, "float16", 100),
    ("int8", "int4", "scale", 128, "bfloat16", 257),
    ("float8_e4m3fn", "float8_e4m3fn", "scale", -1, "float32", 64),
])
def test_gpu_gemm_wgmma_a8_activation_tiles_first(rng, a_dtype, w, mode, group, out, M):
    """gemm_wgmma_a8 with more 128-row weight tiles than half the GPU's SMs (N = 136 x 128 + 16: a partial last
    tile), where the grid takes each weight tile's activation tiles first (plan.h gemm_a8_act_tiles_along_x):
    against the reference as test_gpu_gemm_wgmma_a8_exact, so a CTA that took another's rows shows."""
    from bitblas_jax import _bitblas_plan, gpu_plan
    if not gpu_plan.gemm_a8_runs():
        pytest.skip("gemm_wgmma_a8 needs an sm_90 GPU")
    N, K = 136 * 128 + 16, 256
    assert _bitblas_plan.gemm_a8_act_tiles_along_x(N, gpu_plan.num_sms())
    case = make_qcase(rng, a_dtype, w, mode, group, out, M=M, N=N, K=K,
                      a_scale=None if out == "int32" else "token")
    assert gpu_plan.quantized_activation_kernel(a_dtype, w, mode, case.cfg.resolved_group_size, M, K) == "gemm_wgmma_a8"
    exact = _integer_valued(case, rng)
    got, written = _run_decode_i8(exact, target="bitblas_jax_gemm_a8", a_scale=exact.a_scale)
    assert written, "XLA did not hand the poisoned buffer to the kernel's epilogue"
    check_quantized(exact, got)


def _gemm_a8_float8_cases():
    kinds = [("none", -1, "float32"), ("scale", -1, "bfloat16"), ("scale", 128, "float32"), ("scale", 256, "float16")]
    for a_dtype in FP8:
        for i, w in enumerate(formats.QUANTIZED_A[a_dtype]["W"]):
            for j, M in enumerate((17, 64, 100, 257)):
                mode, group, out = kinds[(i + j) % len(kinds)]
                yield pytest.param(a_dtype, w, M, mode, group, out, id=f"{a_dtype}-{w}-M{M}-{mode}-g{group}-{out}")


def _integer_valued(case, rng):
    """case with integer activations in [-8, 8] and weights in [-8, 7]: every product (|p| <= 64) and
    every 128-k stage's sum (< 2^14) is exact in Hopper's float8 tensor cores (13 fraction bits), so
    their result is held to the float32 bound, and without scales (sums < 2^24) it is exact."""
    import dataclasses
    c = case.cfg
    A = rng.integers(-8, 9, case.A.shape).astype(np.float32).astype(case.A.dtype)
    values = rng.integers(-8, 8, case.values.shape).astype(np.float32).astype(case.values.dtype)
    return dataclasses.replace(case, A=A, values=values) if c.A_dtype != "int8" else case


@on_gpu
@pytest.mark.parametrize("a_dtype,w,M,mode,group,out", list(_gemm_a8_float8_cases()))
def test_gpu_gemm_wgmma_a8_float8(rng, a_dtype, w, M, mode, group, out):
    """gemm_wgmma_a8 (sm_90) with float8 activations: on integer-valued operands (_integer_valued) within
    the float32 bound (exact without scales), so a wrong k order, weight decode or stage shows; on
    random full-range float8 operands within the documented bound of the float8 tensor cores' sums
    (cases.FLOAT8_WGMMA_STAGE_REL). N = 272 (a partial 128-row CTA), K = 1024. The output buffer is
    poisoned and is the kernel's own (its epilogue writes the output), so an unwritten element shows as
    NaN."""
    from bitblas_jax import gpu_plan
    if not gpu_plan.gemm_a8_runs():
        pytest.skip("gemm_wgmma_a8 needs an sm_90 GPU")
    case = make_qcase(rng, a_dtype, w, mode, group, out, M=M, N=272, K=1024)
    assert gpu_plan.quantized_activation_kernel(a_dtype, w, mode, case.cfg.resolved_group_size, M,
                                                1024) == "gemm_wgmma_a8"
    exact = _integer_valued(case, rng)
    got, written = _run_decode_i8(exact, target="bitblas_jax_gemm_a8")
    assert written, "XLA did not hand the poisoned buffer to the kernel's epilogue"
    check_quantized(exact, got)
    if mode == "none" and out == "float32":
        np.testing.assert_array_equal(got, exact.value())
    got, _ = _run_decode_i8(case, target="bitblas_jax_gemm_a8")
    check_quantized(case, got, float8_tensor_cores=True)


@on_gpu
@pytest.mark.parametrize("a_dtype,w", [(a, w) for a in FP8 for w in FP8])
@pytest.mark.parametrize("mode,group,specials", [("none", -1, "activations"), ("scale", 128, "activations"),
                                                 ("scale", -1, "weights"), ("none", -1, "weights")])
def test_gpu_gemm_wgmma_a8_float8_specials(rng, a_dtype, w, mode, group, specials):
    """NaN (and e5m2's +-inf) in float8 activations or weights through gemm_wgmma_a8 (sm_90, chosen by the
    plan): the float64 reference's NaN / inf, the other outputs (integer-valued operands: exact tensor-core
    sums) within the float32 bound."""
    from bitblas_jax import gpu_plan
    if not gpu_plan.gemm_a8_runs():
        pytest.skip("gemm_wgmma_a8 needs an sm_90 GPU")
    case = _integer_valued(make_qcase(rng, a_dtype, w, mode, group, "float32", M=40, N=272, K=1024), rng)
    case = with_special_activations(case) if specials == "activations" else with_special_weights(case)
    assert gpu_plan.quantized_activation_kernel(a_dtype, w, mode, case.cfg.resolved_group_size, 40,
                                                1024) == "gemm_wgmma_a8"
    got, _ = _run_decode_i8(case, target="bitblas_jax_gemm_a8")
    check_quantized_nonfinite(case, got)


@on_gpu
@pytest.mark.parametrize("a_dtype", FP8)
def test_gpu_gemm_wgmma_a8_float8_nan_rows(rng, a_dtype):
    """A NaN activation turns its output row into NaN and leaves the other rows as on CPU."""
    from bitblas_jax import gpu_plan
    if not gpu_plan.gemm_a8_runs():
        pytest.skip("gemm_wgmma_a8 needs an sm_90 GPU")
    case = _integer_valued(make_qcase(rng, a_dtype, "float8_e4m3fn", "none", -1, "float32", M=40, N=128, K=512), rng)
    A = case.A.copy()
    A[3, 77] = np.nan
    got = np.asarray(jax.jit(lambda A, W: case.mm(A, W))(jax.device_put(A, GPUS[0]), case.packed()))
    assert np.isnan(got[3]).all()
    rows = np.arange(40) != 3
    np.testing.assert_array_equal(got[rows], case.value()[rows])


@on_gpu
@pytest.mark.parametrize("M", [1, 16])
def test_gpu_decode_i8_k_65536_full_range(M):
    """K = 2^16 with every product at its largest: |S| = 2^30, inside int32 (the documented limit)."""
    K = 1 << 16
    mm = bj.Matmul(bj.MatmulConfig(N=32, K=K, A_dtype="int8", W_dtype="int8", out_dtype="int32"))
    A = np.full((M, K), -128, np.int8)
    A[-1] = 127
    values = np.full((32, K), -128, np.int8)
    values[1::2] = 127
    dev = GPUS[0]
    out = jax.jit(lambda A, W: mm(A, W))(jax.device_put(A, dev), jax.device_put(mm.transform_weight(values), dev))
    np.testing.assert_array_equal(np.asarray(out).astype(np.int64), reference.integer_matmul(A, values, "int8"))


# ---- float8 activations on the 16-bit kernels (widened_f16) ----------------------------------------------
FP8_W = formats.QUANTIZED_A["float8_e4m3fn"]["W"]


def _widened_kinds():
    """(W, mode) widened_f16 computes: every float8-activation weight format, mode none and every mode
    with one group per row (per-channel scales; int4's zeros modes)."""
    for w in FP8_W:
        for mode in formats.allowed_modes(formats.get_format(w)):
            yield w, mode


WIDENED_CASES = [pytest.param(a, w, mode, out, id=f"{a}-{w}-{mode}-{out}")
                 for a in FP8 for w, mode in _widened_kinds() for out in formats.QUANTIZED_A[a]["out"]]


def _widened_on_cpu(case, A=None):
    """primitive._widened_f16_call with the CPU kernel as its 16-bit call: A widened to float16, the
    16-bit kernel in mode none with float32 output, the per-channel term, bias and cast in XLA (and the
    activation scale after, as Matmul.__call__ applies it), the arithmetic widened_f16 does on the GPU."""
    with jax.default_device(jax.devices("cpu")[0]):   # the CPU kernel's custom call: CPU buffers only
        return _widened_on_cpu_device(case, A)


def _widened_on_cpu_device(case, A=None):
    spec = case.mm.spec
    f32 = lambda x: jnp.zeros((0,), jnp.float32) if x is None else jnp.asarray(x)  # noqa: E731
    A = jnp.asarray(case.A if A is None else A)
    W, s, z, b = case.packed(), f32(case.scale), f32(case.zeros), f32(case.bias)

    def widened(A, W, s, z, b, spec):
        return primitive._widened_f16_call(A, W, s, z, b, spec=spec, call16=primitive._cpu_call)
    if case.a_scale is None:
        return jax.jit(functools.partial(widened, spec=spec))(A, W, s, z, b)
    a_scale = jnp.asarray(case.a_scale, jnp.float32)
    a_scale = a_scale.reshape(a_scale.shape + (1,)) if a_scale.ndim else a_scale
    v = jax.jit(functools.partial(widened, spec=dataclasses.replace(spec, out_dtype="float32")))(
        A, W, s, z, f32(None))
    return quantized_dot.epilogue(v, b, spec.out_dtype, a_scale)


@pytest.mark.parametrize("a_dtype,w,mode,out", WIDENED_CASES)
def test_widened_f16_arithmetic_on_cpu(rng, a_dtype, w, mode, out):
    """widened_f16's decomposition (float16 A, mode-none float32 sums over all of K, then the one group's
    term s * S, s * (S - z * Asum), s * S - z * Asum or s * (S - qz * Asum) in float32) against the
    float64 reference within the quantized-activation bound, with bias and activation scales."""
    for i, M in enumerate((1, 7, 17)):
        case = make_qcase(rng, a_dtype, w, mode, -1, out, with_bias=bool(i % 2), M=M, N=48, K=512,
                          a_scale=(None, "token", "tensor")[i])
        check_quantized(case, _widened_on_cpu(case))


@pytest.mark.parametrize("a_dtype", FP8)
def test_widened_f16_full_range_e5m2(rng, a_dtype):
    """The largest float8 values (e5m2 57344 weights, e5m2 / e4m3 activations at their maximum) stay
    exact through the float16 widening: products up to 57344^2 in float32, per-channel scale applied
    in float32 after the sum (never folded into a float16 weight)."""
    K, N = 512, 32
    amax = float(ml_dtypes.finfo(formats.NUMPY_DTYPES[a_dtype]).max)
    case = make_qcase(rng, a_dtype, "float8_e5m2", "scale", -1, "float32", M=4, N=N, K=K)
    signs = rng.choice([-1.0, 1.0], (N, K))
    case.values = (signs * np.where(rng.random((N, K)) < 0.5, 57344.0, 2.0 ** -16)).astype(
        formats.FP8_NUMPY["float8_e5m2"])
    case.A = (rng.choice([-1.0, 1.0], (4, K)) * np.where(rng.random((4, K)) < 0.5, amax, 1.0)).astype(
        formats.NUMPY_DTYPES[a_dtype])
    case.scale = np.ones((N, 1), np.float32)
    smax = np.abs(case.value()).max()     # |S| far past float16's range (57344 x 448 or 57344 products)
    assert smax > 2.0**24
    case.scale = (rng.uniform(0.5, 1.5, (N, 1)) * 100 / smax).astype(np.float32)   # outputs O(100)
    check_quantized(case, _widened_on_cpu(case))
    check_quantized(case, case.run())


@pytest.mark.parametrize("a_dtype,w,mode", [(a, w, m) for a in FP8 for w in FP8_W for m in ("none", "scale")]
                         + [(a, "int4", m) for a in FP8 for m in ("original", "quantized")])
def test_fp8_activation_specials_on_cpu(rng, a_dtype, w, mode):
    """NaN (and e5m2's +-inf) in float8 activations give the float64 reference's NaN / inf on every
    path: the CPU kernel, XLA's dots (the GPU's xla_dot) and widened_f16's arithmetic; zero points
    applied through Asum may turn inf into NaN (inf - inf)."""
    case = with_special_activations(make_qcase(rng, a_dtype, w, mode, -1, "float32", True, M=7, N=48, K=512))
    zeros = mode in formats.ZEROS_MODES
    check_quantized_nonfinite(case, case.run(), inf_may_be_nan=zeros)
    check_quantized_nonfinite(case, _xla_run(case), inf_may_be_nan=zeros)
    check_quantized_nonfinite(case, _widened_on_cpu(case), inf_may_be_nan=zeros)


@pytest.mark.parametrize("a_dtype,w", [(a, w) for a in FP8 for w in FP8[:2]])
def test_fp8_weight_specials_on_cpu(rng, a_dtype, w):
    case = with_special_weights(make_qcase(rng, a_dtype, w, "scale", -1, "float16", True, M=5, N=64, K=512))
    check_quantized_nonfinite(case, case.run())
    check_quantized_nonfinite(case, _xla_run(case))
    check_quantized_nonfinite(case, _widened_on_cpu(case))


@pytest.mark.parametrize("a_dtype,w,mode,group,M,hopper", [
    ("float8_e4m3fn", "float8_e4m3fn", "scale", -1, 1, "1"),       # decode
    ("float8_e5m2", "float8_e5m2", "none", -1, 16, "1"),
    ("float8_e4m3fn", "int4", "quantized", -1, 7, "1"),
    ("float8_e5m2", "int4", "original", -1, 17, "0"),              # gemm_mma
    ("float8_e4m3fn", "float8_e5m2", "scale", -1, 64, "1"),        # gemm_wgmma
    ("float8_e5m2", "int4", "rescale", -1, 257, "1"),              # dequantize_then_dot
    ("float8_e4m3fn", "int4", "scale", 128, 7, "1"),               # groups: XLA's dots
    ("float8_e5m2", "float8_e4m3fn", "scale", 64, 100, "1"),
])
def test_cuda_lowering_picks_widened_f16(monkeypatch, a_dtype, w, mode, group, M, hopper):
    """On an sm_80+ GPU (forced here: BITBLAS_JAX_WIDENED_F16=1), float8 activations in mode none or with
    one group per row lower to A widened to float16 through its bits (quantized_dot.widen) and the 16-bit kernel plan_cuda picks for mode
    none, float32 accumulation and float32 output (the matmul custom call, or the dequantize one and
    a float16 dot into float32); grouped scales lower to XLA's dots."""
    from bitblas_jax import gpu_plan
    monkeypatch.setenv("BITBLAS_JAX_WIDENED_F16", "1")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_A8", "0")      # tried first on sm_90 (its own lowering tests)
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", hopper)
    K, N = 256, 64
    cfg = bj.MatmulConfig(N=N, K=K, A_dtype=a_dtype, W_dtype=w, out_dtype="bfloat16", group_size=group,
                          **formats.mode_flags(mode))
    kernel = gpu_plan.quantized_activation_kernel(a_dtype, cfg.W_dtype, mode, cfg.resolved_group_size, M, K)
    assert kernel == ("widened_f16" if group == -1 else "xla_dot")
    text = _cuda_text(cfg, M)
    _assert_float8_widened_by_bits(text)
    if kernel == "xla_dot":
        assert "custom_call" not in text
        return
    a_type = {"float8_e4m3fn": "f8E4M3FN", "float8_e5m2": "f8E5M2"}[a_dtype]
    assert f"(tensor<{M}x{K}x{a_type}>) -> tensor<{M}x{K}xui8>" in text           # the widening's bits
    assert "bf16>, tensor" not in text                                           # no bfloat16 dot
    plan = gpu_plan.plan_cuda(M, N, K, cfg.W_dtype, "float16", "float32", "float32", "none", K)
    calls = [line for line in text.splitlines() if "stablehlo.custom_call" in line]
    assert len(calls) == 1, calls
    if plan.kernel == "dequantize_then_dot":
        assert "@bitblas_jax_dequantize" in calls[0] and "mode = 0" in calls[0], calls[0]
        dots = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
        assert len(dots) == 1 and f"(tensor<{M}x{K}xf16>, tensor<{N}x{K}xf16>) -> tensor<{M}x{N}xf32>" in dots[0]
        return
    assert "@bitblas_jax_matmul" in calls[0] and "dot_general" not in text
    for attr in ("mode = 0 ", f"accum_dtype = {formats.DTYPE_IDS['float32']} ", f"kernel = {plan.kernel_id} "):
        assert attr in calls[0], (attr, calls[0])
    assert f": (tensor<{M}x{K}xf16>, " in calls[0] and f"-> (tensor<{M}x{N}xf32>, " in calls[0], calls[0]


_FLOAT8_CONVERT = re.compile(
    r"(%\S+) = stablehlo\.convert (%\S+) : \(tensor<[^>]*x(f8E4M3FN|f8E5M2)>\) -> tensor<[^>]*x(f16|bf16|f32)>")


def _assert_float8_widened_by_bits(text):
    """No float convert out of a float8 activation in the lowered op: XLA's GPU compiler may fold it into
    the convert that made A (quantized_dot.widen), and the sums would see the unrounded activations.
    (The weight's float8 values are a bitcast of its codes, which nothing can fold.)"""
    defs = {}
    for line in text.splitlines():
        name = line.strip().split(" = ")[0]
        if name.startswith("%"):
            defs[name] = line
    hits = [m.group(0) for line in text.splitlines() if (m := _FLOAT8_CONVERT.search(line))
            and "stablehlo.bitcast_convert" not in defs.get(m.group(2), "")]
    assert not hits, hits


@pytest.mark.parametrize("a_dtype", FP8)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_widen_is_exact_on_every_float8_code(a_dtype, dtype):
    """quantized_dot.widen, jitted, on all 256 codes: the float8 value in dtype (NaN where it is NaN, e5m2's
    +-inf kept, subnormals exact), without a float convert out of float8 (the lowering)."""
    codes = np.arange(256, dtype=np.uint8).view(formats.NUMPY_DTYPES[a_dtype])
    f = jax.jit(lambda a: quantized_dot.widen(a, jnp.dtype(dtype)))
    got = np.asarray(f(jnp.asarray(codes)))
    assert got.dtype == jnp.dtype(dtype)
    got, want = got.astype(np.float64), codes.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])
    assert np.isinf(want).any() == (a_dtype == "float8_e5m2")
    _assert_float8_widened_by_bits(f.lower(jnp.asarray(codes)).as_text())


# ---- widened_f16 on a CUDA GPU (skipped elsewhere) --------------------------------------------------------
WIDENED_GPU_KINDS = (("none", -1), ("scale", -1), ("scale", 128), ("scale", 64))
WIDENED_GPU_ZEROS = (("original", -1), ("rescale", -1), ("quantized", -1), ("original", 128))
# the plan's own choice (gemm_wgmma_a8 above M = 16 on sm_90 where it runs), and the overrides that reach
# each 16-bit kernel under widened_f16: decode and, on this small layer, gemm_wgmma up to M = 64 and
# dequantize_then_dot above ("widened"); gemm_wgmma at every M ("widened_gemm"); gemm_mma ("widened_mma")
WIDENED_GPU_ENVS = {
    "plan": {},
    "widened": {"BITBLAS_JAX_GEMM_A8": "0"},
    "widened_gemm": {"BITBLAS_JAX_GEMM_A8": "0", "BITBLAS_JAX_GEMM_MAX_M": "4096"},
    "widened_mma": {"BITBLAS_JAX_GEMM_A8": "0", "BITBLAS_JAX_HOPPER": "0", "BITBLAS_JAX_GEMM_MAX_M": "4096"},
}


def _widened_gpu_cases():
    """Every float8 activation x weight format x mode / group, at M = 1, 7, 16, 17, 100, 257, the
    output dtype, bias, activation scale and plan overrides cycling with them."""
    i = 0
    for a in FP8:
        for w in FP8_W:
            kinds = WIDENED_GPU_KINDS + (WIDENED_GPU_ZEROS if w == "int4" else ())
            for mode, group in kinds:
                for M in (1, 7, 16, 17, 100, 257):
                    out = formats.QUANTIZED_A[a]["out"][i % 3]
                    bias, a_scale = bool(i % 2), (None, "token", "tensor")[i % 3]
                    env = list(WIDENED_GPU_ENVS)[(i // 5) % len(WIDENED_GPU_ENVS)]
                    yield pytest.param(a, w, mode, group, M, out, bias, a_scale, env,
                                       id=f"{a}-{w}-{mode}-g{group}-M{M}-{out}-{'bias' if bias else 'nobias'}"
                                          f"-{a_scale}-{env}")
                    i += 1


def _set_env(monkeypatch, env: dict):
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def _widened_target(case, M) -> str:
    """What the lowering of case at M rows must hold: the custom call of the 16-bit kernel plan_cuda
    picks (widened_f16), gemm_wgmma_a8's (on sm_90 above M = 16, where it runs), or XLA's dot."""
    from bitblas_jax import gpu_plan
    c = case.cfg
    kernel = gpu_plan.quantized_activation_kernel(c.A_dtype, c.W_dtype, c.mode, c.resolved_group_size, M, c.K)
    if kernel == "gemm_wgmma_a8":
        return "bitblas_jax_gemm_a8"
    assert kernel == ("widened_f16" if c.mode == "none" or c.group_size == -1 else "xla_dot"), kernel
    if kernel == "xla_dot":
        return "dot_general"
    plan = gpu_plan.plan_cuda(M, c.N, c.K, c.W_dtype, "float16", "float32", "float32", "none", c.K)
    return "bitblas_jax_dequantize" if plan.kernel == "dequantize_then_dot" else "bitblas_jax_matmul"


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode,group,M,out,bias,a_scale,env", list(_widened_gpu_cases()))
def test_gpu_widened_f16(rng, monkeypatch, a_dtype, w, mode, group, M, out, bias, a_scale, env):
    """float8 activations on the GPU against the float64 reference within the quantized-activation
    bound: widened_f16 (mode none and one group per row) on every 16-bit kernel, XLA's dots for groups,
    and in the plan's own choice (env 0) gemm_wgmma_a8 where it runs (its bound: test_gpu_gemm_wgmma_a8);
    N = 272 (a partial 128- / 256-row tile), K = 1024. The output buffer is poisoned (NaN) beforehand;
    where the 16-bit kernel's float32 output is the result (mode none, float32, no bias or activation
    scale) it must be that buffer, so an element the kernel leaves unwritten shows."""
    _set_env(monkeypatch, WIDENED_GPU_ENVS[env])
    case = make_qcase(rng, a_dtype, w, mode, group, out, bias, M=M, N=272, K=1024, a_scale=a_scale)
    target = _widened_target(case, M)
    got, written = _run_decode_i8(case, target=target, a_scale=case.a_scale)
    if target == "bitblas_jax_matmul" and (mode, out, bias, a_scale) == ("none", "float32", False, None):
        assert written, "XLA did not hand the poisoned buffer to the kernel (unwritten outputs would not show)"
    check_quantized(case, got, float8_tensor_cores=target == "bitblas_jax_gemm_a8")


@on_gpu
@pytest.mark.parametrize("a_dtype,w,mode", [(a, w, m) for a in FP8 for w in FP8_W for m in ("none", "scale")]
                         + [(a, "int4", "original") for a in FP8])
@pytest.mark.parametrize("M,env", [(5, "widened"), (33, "widened_gemm"), (40, "widened_mma"), (130, "widened")])
def test_gpu_widened_f16_activation_specials(rng, monkeypatch, a_dtype, w, mode, M, env):
    """NaN (and e5m2's +-inf) in float8 activations through widened_f16 on each 16-bit kernel: the
    float64 reference's NaN / inf, as on the CPU (zero points through Asum may turn inf into NaN)."""
    _set_env(monkeypatch, WIDENED_GPU_ENVS[env])
    case = with_special_activations(make_qcase(rng, a_dtype, w, mode, -1, "float32", True, M=M, N=272, K=1024))
    got, _ = _run_decode_i8(case, target=_widened_target(case, M))
    check_quantized_nonfinite(case, got, inf_may_be_nan=mode in formats.ZEROS_MODES)


@on_gpu
@pytest.mark.parametrize("a_dtype,w", [(a, w) for a in FP8 for w in FP8])
@pytest.mark.parametrize("M,env", [(5, "widened"), (33, "widened_gemm"), (40, "widened_mma"), (130, "widened")])
def test_gpu_widened_f16_weight_specials(rng, monkeypatch, a_dtype, w, M, env):
    """fp8 weight special codes through widened_f16: the 16-bit kernels' exact float16 decode (NaN
    stays NaN, e5m2 +-inf stays inf) and the float32 per-channel scale."""
    _set_env(monkeypatch, WIDENED_GPU_ENVS[env])
    case = with_special_weights(make_qcase(rng, a_dtype, w, "scale", -1, "float16", True, M=M, N=272, K=1024))
    got, _ = _run_decode_i8(case, target=_widened_target(case, M))
    check_quantized_nonfinite(case, got)
