"""GPU kernels vs the CPU kernel vs the float64 reference (skipped without a CUDA GPU)."""
from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitblas_jax import _ext, formats

from cases import all_format_modes, check, error_bound, make_case


def _gpus():
    try:
        return jax.devices("cuda")
    except RuntimeError:
        return []


GPUS = _gpus()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not GPUS, reason="no CUDA GPU visible to JAX"),
              pytest.mark.skipif(not _ext.has_cuda(), reason="built without the CUDA kernels")]


def test_num_sms_is_the_gpus():
    """The split-K rules count the GPU's own SMs (gpu_plan.num_sms: JAX's devices' core_count)."""
    from bitblas_jax import gpu_plan
    counts = [d.core_count for d in GPUS]
    assert all(isinstance(c, int) and c > 0 for c in counts), counts
    if not os.environ.get("BITBLAS_JAX_NUM_SMS"):
        assert gpu_plan.num_sms() == min(counts)


def run_on(case, device, A=None, held_terms=False):
    """The case's call on `device`; held_terms: with the group terms computed beforehand
    (Matmul.group_terms) and passed to the call."""
    args = [case.A if A is None else A, case.packed(), case.scale, case.zeros, case.bias]
    args = [None if a is None else jax.device_put(jnp.asarray(a), device) for a in args]
    if held_terms:
        terms = jax.jit(case.mm.group_terms)(args[2], args[3])
        f = jax.jit(lambda A, W, s, z, b, t: case.mm(A, W, scale=s, zeros=z, bias=b, group_terms=t))
        out = f(*args, terms)
    else:
        f = jax.jit(lambda A, W, s, z, b: case.mm(A, W, scale=s, zeros=z, bias=b))
        out = f(*args)
    assert next(iter(out.devices())) == device
    return np.asarray(out)


def check_held_terms(case, out):
    """The call on held group terms returns the bits of the call that writes its own."""
    np.testing.assert_array_equal(run_on(case, GPUS[0], held_terms=True), np.asarray(out))


def check_gpu_and_cpu(case, A=None):
    gpu = run_on(case, GPUS[0], A)
    check(case, gpu, A)
    cpu = run_on(case, jax.devices("cpu")[0], A)
    check(case, cpu, A)
    # the two kernels agree within the sum of their bounds
    assert np.all(np.abs(gpu.astype(np.float64) - cpu.astype(np.float64)) <= 2 * error_bound(case, A))


def _matrix():
    for i, ((fmt, mode), a_dtype, bias) in enumerate(
            itertools.product(all_format_modes(), ("float16", "bfloat16"), (False, True))):
        groups = (-1,) if mode == "none" else (-1, 32, 128)
        for j, g in enumerate(groups):
            out = ("float16", "bfloat16", "float32")[(i + j) % 3]
            accum = "float16" if a_dtype == "float16" and (i + j) % 2 else "float32"
            M = (1, 5, 16, 33, 130)[(i + j) % 5]
            yield pytest.param(fmt, mode, g, a_dtype, accum, out, bias, M,
                               id=f"{fmt}-{mode}-g{g}-{a_dtype}-acc{accum[5:]}-{out}-{'b' if bias else 'nob'}-M{M}")


@pytest.mark.parametrize("fmt,mode,group,a_dtype,accum,out,bias,M", list(_matrix()))
def test_gpu_every_combination(rng, fmt, mode, group, a_dtype, accum, out, bias, M):
    case = make_case(rng, fmt, mode, group, a_dtype, accum, out, bias, M=M, N=64, K=512)
    check_gpu_and_cpu(case)


def _gemm_matrix():
    for i, ((fmt, mode), a_dtype) in enumerate(itertools.product(all_format_modes(), ("float16", "bfloat16"))):
        g = -1 if mode == "none" else (-1, 32, 128)[i % 3]
        accum = "float16" if a_dtype == "float16" and i % 4 == 1 else "float32"
        M = (17, 33, 64, 130)[i % 4]
        yield pytest.param(fmt, mode, g, a_dtype, accum, M, id=f"{fmt}-{mode}-g{g}-{a_dtype}-acc{accum[5:]}-M{M}")


@pytest.mark.parametrize("fmt,mode,group,a_dtype,accum,M", list(_gemm_matrix()))
def test_gpu_gemm_mma(rng, monkeypatch, fmt, mode, group, a_dtype, accum, M):
    """gemm_mma (with split-K) through JAX on every format and mode: forced for every M here
    (BITBLAS_JAX_GEMM_MAX_M, BITBLAS_JAX_HOPPER=0), since on an H100 / H200 JAX picks gemm_wgmma or
    dequantize_then_dot."""
    from bitblas_jax import gpu_plan
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "4096")
    monkeypatch.setenv("BITBLAS_JAX_HOPPER", "0")
    assert gpu_plan.plan_cuda(M, 272, 1024, fmt, a_dtype, accum, a_dtype, mode,
                              1024 if group == -1 else group).kernel == "gemm_mma"
    case = make_case(rng, fmt, mode, group, a_dtype, accum, a_dtype, True, M=M, N=272, K=1024)
    check_gpu_and_cpu(case)


def _wgmma_matrix():
    for i, ((fmt, mode), a_dtype) in enumerate(itertools.product(all_format_modes(), ("float16", "bfloat16"))):
        tile_k = 256 // formats.get_format(fmt).bits   # groups of whole packed tiles
        g = -1 if mode == "none" else (-1, max(128, tile_k), 512)[i % 3]
        M = (17, 33, 64, 130, 300)[i % 5]
        yield pytest.param(fmt, mode, g, a_dtype, M, id=f"{fmt}-{mode}-g{g}-{a_dtype}-M{M}")


def _needs_sm90():
    import jax
    if not any(getattr(d, "compute_capability", None) == "9.0" for d in jax.devices("gpu")):
        pytest.skip("gemm_wgmma runs on sm_90 GPUs only")


@pytest.mark.parametrize("fmt,mode,group,a_dtype,M", list(_wgmma_matrix()))
def test_gpu_gemm_wgmma(rng, monkeypatch, fmt, mode, group, a_dtype, M):
    """gemm_wgmma (split-K, partial tiles of up to 128 rows) through JAX on every format and mode,
    forced for every M (BITBLAS_JAX_GEMM_MAX_M)."""
    from bitblas_jax import gpu_plan
    _needs_sm90()
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "4096")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS", "0")   # 4- and 8-bit ints above decode sizes: gemm_cutlass's
    assert gpu_plan.plan_cuda(M, 272, 1024, fmt, a_dtype, "float32", a_dtype, mode,
                              1024 if group == -1 else group).kernel == "gemm_wgmma"
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, True, M=M, N=272, K=1024)
    check_gpu_and_cpu(case)


@pytest.mark.parametrize("fmt", ["int4", "uint8"])
def test_gpu_gemm_wgmma_tall_tile(rng, monkeypatch, fmt):
    """gemm_wgmma's tall tile (256 activation rows per CTA) where its tiles fill the GPU: 28672 weight
    rows, M = 257."""
    from bitblas_jax import gpu_plan
    _needs_sm90()
    monkeypatch.setenv("BITBLAS_JAX_GEMM_MAX_M", "4096")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS", "0")
    p = gpu_plan.plan_cuda(257, 28672, 512, fmt, "float16", "float32", "float16", "scale", 128)
    assert p.kernel == "gemm_wgmma" and gpu_plan.tile_dims(p) == (128, 256)
    case = make_case(rng, fmt, "scale", 128, "float16", "float32", "float16", False, M=257, N=28672, K=512)
    check_gpu_and_cpu(case)


def test_gpu_gemm_wgmma_tall_tile_at_1000_rows_by_default(rng):
    """The default rule's gemm_wgmma tall tile past 512 rows on a layer of 4096 x 8192 weights (no override; int2,
    which gemm_cutlass does not take), with a last 256-row tile that is partly empty (1000 = 3 x 256 + 232); the
    GPU only (the float64 reference)."""
    from bitblas_jax import gpu_plan
    _needs_sm90()
    M, N, K = 1000, 4096, 8192
    p = gpu_plan.plan_cuda(M, N, K, "int2", "bfloat16", "float32", "bfloat16", "scale", 128)
    assert p.kernel == "gemm_wgmma" and gpu_plan.tile_dims(p) == (128, 256)
    case = make_case(rng, "int2", "scale", 128, "bfloat16", "float32", "bfloat16", True, M=M, N=N, K=K)
    check(case, run_on(case, GPUS[0]))


def _needs_cutlass():
    from bitblas_jax import _ext
    _needs_sm90()
    if not _ext.has_cutlass():
        pytest.skip("this install was built without gemm_cutlass (no CUTLASS headers)")


def _cutlass_matrix():
    for i, (fmt, mode, a_dtype) in enumerate(itertools.product(
            ("int4", "uint4", "int8", "uint8"), ("none", "scale", "original", "rescale", "quantized"),
            ("float16", "bfloat16"))):
        for j, g in enumerate((-1, 128) if mode == "none" else (-1, 64, 128)):
            M = (65, 130, 300)[(i + j) % 3]
            yield pytest.param(fmt, mode, g, a_dtype, M, (i + j) % 2 == 0, id=f"{fmt}-{mode}-g{g}-{a_dtype}-M{M}")
    # the 4-bit table formats (a register lookup), their modes
    for i, (fmt, a_dtype) in enumerate(itertools.product(("nf4", "fp4_e2m1"), ("float16", "bfloat16"))):
        for j, (mode, g) in enumerate((("none", -1), ("scale", -1), ("scale", 64), ("scale", 128))):
            M = (65, 130, 300)[(i + j) % 3]
            yield pytest.param(fmt, mode, g, a_dtype, M, (i + j) % 2 == 0, id=f"{fmt}-{mode}-g{g}-{a_dtype}-M{M}")


@pytest.mark.parametrize("fmt,mode,group,a_dtype,M,bias", list(_cutlass_matrix()))
def test_gpu_gemm_cutlass(rng, fmt, mode, group, a_dtype, M, bias):
    """gemm_cutlass (CUTLASS's mixed-input collective on the packed weight, the mode's group terms) through
    JAX on int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1, every mode the format has, float16 / bfloat16, groups of
    64, 128 and K, with and without bias."""
    from bitblas_jax import gpu_plan
    _needs_cutlass()
    g = 1024 if group == -1 else group
    assert gpu_plan.plan_cuda(M, 272, 1024, fmt, a_dtype, "float32", a_dtype, mode, g).kernel == "gemm_cutlass"
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, bias, M=M, N=272, K=1024)
    check_gpu_and_cpu(case)
    check_held_terms(case, run_on(case, GPUS[0]))


@pytest.mark.parametrize("M", [64, 300])
def test_gpu_gemm_cutlass_reads_held_terms(rng, M):
    """The GPU's GEMM reads the held group terms, not scale: terms of twice the scale double its output (the
    CPU, which reads scale, does not change). The contract: hold the terms of the scale the call passes."""
    _needs_cutlass()
    case = make_case(rng, "int4", "scale", 128, "float16", "float32", "float16", False, M=M, N=272, K=1024)
    W, A, s = case.packed(), jnp.asarray(case.A), jnp.asarray(case.scale)
    doubled = case.mm.group_terms(2 * s)
    call = jax.jit(lambda A, W, s, t: case.mm(A, W, scale=s, group_terms=t))
    gpu = np.asarray(call(*(jax.device_put(x, GPUS[0]) for x in (A, W, s, doubled))))
    cpu = np.asarray(call(*(jax.device_put(x, jax.devices("cpu")[0]) for x in (A, W, s, doubled))))
    check(case, cpu)
    bound = error_bound(case)
    assert np.all(np.abs(gpu.astype(np.float64) / 2 - case.ref()) <= bound)   # every rounding doubled too


@pytest.mark.parametrize("fmt,mode,a_dtype,M,N,K", [
    ("int4", "scale", "float16", 9, 16384, 8192),       # from 6 rows on a layer of 2^27 4-bit weights
    ("uint4", "quantized", "bfloat16", 16, 16384, 8192),
    ("uint8", "quantized", "bfloat16", 20, 4096, 4096),  # from 17 rows on any layer (K split)
    ("int8", "original", "float16", 63, 272, 1024)])
def test_gpu_gemm_cutlass_decode_sizes(rng, fmt, mode, a_dtype, M, N, K):
    """gemm_cutlass below 64 rows, where the default plan takes it (gpu_plan.gemm_cutlass_min_m), through JAX against
    float64, on written and held group terms; the GPU only."""
    from bitblas_jax import gpu_plan
    _needs_cutlass()
    assert gpu_plan.plan_cuda(M, N, K, fmt, a_dtype, "float32", a_dtype, mode, 128).kernel == "gemm_cutlass"
    case = make_case(rng, fmt, mode, 128, a_dtype, "float32", a_dtype, True, M=M, N=N, K=K)
    out = run_on(case, GPUS[0])
    check(case, out)
    check_held_terms(case, out)


@pytest.mark.parametrize("fmt,M,N,tile", [
    ("int4", 300, 272, (128, 64)), ("int4", 200, 8192, (128, 128)), ("int4", 1000, 4096, (128, 256)),
    # the 256-row weight tiles: one wave of them where the 128-row ones take two, N = 20480 + 16 a partial tile
    ("int4", 64, 20496, (256, 64)), ("uint4", 100, 20496, (256, 128)), ("int8", 128, 20496, (256, 128)),
    ("int4", 24, 20496, (256, 32)), ("uint8", 32, 20496, (256, 32))])
def test_gpu_gemm_cutlass_tiles(rng, fmt, M, N, tile, monkeypatch):
    """Each of gemm_cutlass's persistent tiles (weight rows x activation rows) where the plan's model picks it
    (plan.h gemm_cutlass_choice on 132 SMs: an H100 SXM / H200 runs that tile), with a partly filled last tile;
    the GPU only."""
    from bitblas_jax import gpu_plan
    _needs_cutlass()
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    p = gpu_plan.plan_cuda(M, N, 1024, fmt, "float16", "float32", "float16", "original", 128, sms=132)
    assert p.kernel == "gemm_cutlass" and gpu_plan.tile_dims(p) == tile and not gpu_plan.stream_k(p), p
    case = make_case(rng, fmt, "original", 128, "float16", "float32", "float16", True, M=M, N=N, K=1024)
    out = run_on(case, GPUS[0])
    check(case, out)
    check_held_terms(case, out)


@pytest.mark.parametrize("fmt,mode,group,a_dtype,M,N,K,split", [
    ("int4", "scale", 128, "float16", 128, 4096, 4096, 4),
    ("uint4", "original", 64, "bfloat16", 65, 1024, 4096, 8),
    ("int4", "quantized", 128, "bfloat16", 256, 1024, 1536, 4),
    ("int4", "none", -1, "float16", 100, 528, 3584, 7),
    ("uint4", "rescale", -1, "float16", 130, 2048, 2048, 4),
    ("int4", "scale", 1024, "bfloat16", 200, 2048, 4096, 2),
    ("int8", "scale", 128, "float16", 128, 4096, 4096, 4),
    ("uint8", "quantized", 128, "bfloat16", 96, 1024, 2048, 8),
    ("nf4", "scale", 128, "bfloat16", 128, 4096, 4096, 4),
    ("fp4_e2m1", "none", -1, "float16", 100, 1024, 2048, 2)])
def test_gpu_gemm_cutlass_split_k(rng, fmt, mode, group, a_dtype, M, N, K, split, monkeypatch):
    """gemm_cutlass with K split into CUTLASS's batch mode and the float32 partials added in order: parts of
    whole groups, one group per part (per-channel, mode none), with bias, on the GPU against float64."""
    from bitblas_jax import gpu_plan
    _needs_cutlass()
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT", str(split))
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "0")
    g = K if group == -1 else group
    p = gpu_plan.plan_cuda(M, N, K, fmt, a_dtype, "float32", a_dtype, mode, g, sms=132)
    assert p.kernel == "gemm_cutlass" and p.split_k == split, p
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, True, M=M, N=N, K=K)
    out = run_on(case, GPUS[0])
    check(case, out)
    check_held_terms(case, out)    # each part reads its rows of the held terms


@pytest.mark.parametrize("fmt,mode,group,a_dtype,M,N,K,rows,sms", [
    # a wave and a bit of 128 x 128 tiles (136 for 132 SMs), their stages dealt to every SM (at K = 2048 one wave
    # of 256 x 128 tiles is faster: tests/test_gpu_plan.py)
    ("int4", "scale", 128, "float16", 128, 17408, 3072, 128, 132),
    ("uint4", "original", 64, "bfloat16", 100, 8704, 4096, 128, 132),
    ("int8", "quantized", 128, "bfloat16", 65, 17408, 3072, 128, 132),
    # 256-row tiles: 34 x 2 for 132 SMs, each shared by about two CTAs
    ("int4", "scale", 128, "bfloat16", 400, 8704, 3072, 256, 132),
    ("uint8", "none", -1, "float16", 400, 8704, 3072, 256, 132),
    ("nf4", "scale", 128, "float16", 400, 8704, 3072, 256, 132),
    ("fp4_e2m1", "scale", 64, "bfloat16", 128, 17408, 2048, 128, 132),
    # planned for fewer SMs than the GPU has: CUTLASS shares the tiles among the GPU's (the workspace holds
    # every tile it may share)
    ("int4", "rescale", 128, "float16", 200, 2560, 4096, 256, 16)])
def test_gpu_gemm_cutlass_stream_k(rng, fmt, mode, group, a_dtype, M, N, K, rows, sms, monkeypatch):
    """gemm_cutlass on its stream-K tiles (CUTLASS's stream-K scheduler: the last waves' stages dealt evenly to
    the SMs, the CTAs that share a tile adding their partials in k order), with bias, against float64; and the
    same result every call (the deterministic reduction)."""
    from bitblas_jax import gpu_plan
    _needs_cutlass()
    monkeypatch.setenv("BITBLAS_JAX_NUM_SMS", str(sms))
    g = K if group == -1 else group
    p = gpu_plan.plan_cuda(M, N, K, fmt, a_dtype, "float32", a_dtype, mode, g)
    assert gpu_plan.stream_k(p) and gpu_plan.tile_dims(p) == (128, rows), p
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, True, M=M, N=N, K=K)
    first = run_on(case, GPUS[0])
    check(case, first)
    np.testing.assert_array_equal(np.asarray(run_on(case, GPUS[0])), np.asarray(first))
    check_held_terms(case, first)  # the flags cleared without the terms kernel


@pytest.mark.parametrize("fmt,mode,group,a_dtype,M,N,K", [
    ("int4", "scale", 128, "float16", 256, 4096, 4096),
    ("int4", "scale", 128, "bfloat16", 128, 3584, 18944),
    ("uint4", "original", 64, "bfloat16", 200, 2048, 4096),
    ("int4", "quantized", 128, "float16", 65, 1024, 1536),
    ("int8", "none", -1, "float16", 130, 1024, 2048),
    ("uint8", "rescale", 128, "bfloat16", 256, 2048, 4096),
    ("nf4", "scale", 128, "bfloat16", 128, 4096, 4096),
    ("fp4_e2m1", "none", -1, "float16", 100, 1024, 2048)])
def test_gpu_gemm_cutlass_in_kernel_split(rng, fmt, mode, group, a_dtype, M, N, K, monkeypatch):
    """gemm_cutlass's stream-K tiles with K split in the kernel (CUTLASS's split-K decomposition: each tile's k
    range in parts, the parts adding their partials in k order, the last writing C): every format family, modes
    with zeros, parts across groups, with bias, against float64; the same result every call; on held terms."""
    from bitblas_jax import gpu_plan
    _needs_cutlass()
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K", "2")
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT", "1")
    monkeypatch.setenv("BITBLAS_JAX_NUM_SMS", "132")
    g = K if group == -1 else group
    p = gpu_plan.plan_cuda(M, N, K, fmt, a_dtype, "float32", a_dtype, mode, g)
    assert p.kernel == "gemm_cutlass" and gpu_plan.stream_k(p) and p.split_k > 1, p
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", a_dtype, True, M=M, N=N, K=K)
    first = run_on(case, GPUS[0])
    check(case, first)
    np.testing.assert_array_equal(np.asarray(run_on(case, GPUS[0])), np.asarray(first))
    check_held_terms(case, first)


@pytest.mark.parametrize("fmt,mode,group,a_dtype,out,M,N,K", [
    ("int4", "scale", 128, "float16", "float16", 1, 4096, 4096),         # paired group scales staged with the weights
    ("int4", "scale", 128, "bfloat16", "bfloat16", 16, 1024, 4096),
    ("uint4", "original", 64, "bfloat16", "float32", 5, 1024, 8192),
    ("int4", "quantized", 128, "float16", "float16", 9, 512, 4096),
    ("int8", "rescale", 128, "float16", "float32", 2, 1024, 4096),
    ("int2", "scale", 128, "float16", "float16", 4, 1024, 8192),          # one tile per warp chunk
    ("nf4", "scale", -1, "bfloat16", "bfloat16", 1, 1024, 4096),         # one group per row: parts inside it
    ("fp4_e2m1", "none", -1, "float16", "float16", 3, 2048, 4096),
    ("float8_e4m3fn", "scale", 128, "float16", "float16", 16, 1024, 4096),
    ("float16", "none", -1, "bfloat16", "float32", 1, 1024, 2048),
    ("int4", "scale", 64, "float16", "float16", 7, 1040, 4160)])          # a one-band CTA; a short last part
def test_gpu_decode_cluster_split(rng, fmt, mode, group, a_dtype, out, M, N, K, monkeypatch):
    """decode with K split over a cluster of CTAs, their sums added through distributed shared memory
    (BITBLAS_JAX_DECODE_CLUSTER_SPLIT=1): every format family, modes with zeros, groups the parts cut, one-band
    CTAs, bias, against float64; the same bits on every call."""
    from bitblas_jax import gpu_plan
    _needs_sm90()
    monkeypatch.setenv("BITBLAS_JAX_DECODE_CLUSTER_SPLIT", "1")
    monkeypatch.setenv("BITBLAS_JAX_NUM_SMS", "132")
    g = K if group == -1 else group
    p = gpu_plan.plan_cuda(M, N, K, fmt, a_dtype, "float32", out, mode, g)
    assert p.kernel == "decode" and p.split_k > 1, p
    case = make_case(rng, fmt, mode, group, a_dtype, "float32", out, True, M=M, N=N, K=K)
    first = run_on(case, GPUS[0])
    check(case, first)
    np.testing.assert_array_equal(run_on(case, GPUS[0]), first)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 64, 100, 128, 256, 1000])
@pytest.mark.parametrize("a_dtype", ["float16", "bfloat16"])
def test_gpu_m_sweep(rng, M, a_dtype):
    case = make_case(rng, "int4", "scale", 128, a_dtype, "float32", a_dtype, True, M=M, N=256, K=1024)
    check_gpu_and_cpu(case)


LAYERS = [(4096, 4096), (6144, 4096), (11008, 4096), (4096, 11008), (5120, 13824), (14336, 4096),
          (4096, 14336), (18944, 3584), (28672, 1024), (1024, 28672)]


@pytest.mark.parametrize("N,K", LAYERS)
@pytest.mark.parametrize("M", [1, 16, 77])
def test_gpu_layer_shapes(rng, N, K, M):
    case = make_case(rng, "uint4", "original", 128, "bfloat16", "float32", "bfloat16", False, M=M, N=N, K=K)
    check_gpu_and_cpu(case)


@pytest.mark.parametrize("fmt,mode", [("int8", "scale"), ("int2", "scale"), ("nf4", "scale"),
                                      ("fp4_e2m1", "scale"), ("float8_e4m3fn", "scale"), ("float16", "none")])
@pytest.mark.parametrize("M", [1, 16, 256])
def test_gpu_formats_large_k(rng, fmt, mode, M):
    case = make_case(rng, fmt, mode, 128 if mode != "none" else -1, "float16", "float32", "float16",
                     True, M=M, N=512, K=8192)
    check_gpu_and_cpu(case)


@pytest.mark.parametrize("fmt", ["int4", "fp4_e2m1"])
def test_gpu_back_to_back_dependent_calls(rng, fmt):
    """A chain where each call reads the previous call's output and a weight picked by the kernel just
    before it: the decode kernel starts early (programmatic dependent launch) and must wait for both."""
    N = K = 1024
    layers = [make_case(rng, fmt, "scale", 128, "float16", "float32", "float16", False, M=4, N=N, K=K)
              for _ in range(6)]
    other = make_case(rng, fmt, "scale", 128, "float16", M=4, N=N, K=K).packed()
    dev = GPUS[0]
    Ws = [jax.device_put(c.packed(), dev) for c in layers]
    Ss = [jax.device_put(jnp.asarray(c.scale), dev) for c in layers]
    pick = jax.device_put(jnp.asarray(True), dev)
    A0 = jnp.asarray(layers[0].A) * 0.5
    shrink = {"int4": 2.0**-5, "fp4_e2m1": 2.0**-7}[fmt]   # keeps the chain's magnitudes in fp16 range (exact)

    @jax.jit
    def chain(a, Ws, Ss, pick):
        outs = []
        for c, W, S in zip(layers, Ws, Ss):
            W = jnp.where(pick, W, other)   # a fresh weight buffer, written by the kernel right before
            a = c.mm(a, W, scale=S)
            outs.append(a)
            a = a * shrink
        return outs

    for _ in range(3):
        outs = chain(jax.device_put(A0, dev), Ws, Ss, pick)
        a = np.asarray(A0)
        for c, o in zip(layers, outs):
            check(c, np.asarray(o), a)
            a = np.asarray(o) * np.float16(shrink)


def test_gpu_under_vmap_and_grad(rng):
    case = make_case(rng, "int4", "scale", 64, "bfloat16", "float32", "float32", True, M=6, N=64, K=512)
    W = jax.device_put(case.packed(), GPUS[0])
    A = jax.device_put(jnp.asarray(case.A).reshape(2, 3, 512), GPUS[0])
    out = jax.jit(jax.vmap(lambda a: case.mm(a, W, scale=case.scale, bias=case.bias)))(A)
    check(case, np.asarray(out).reshape(6, 64))
    g = jax.grad(lambda a: jnp.sum(case.mm(a, W, scale=case.scale, bias=case.bias)))(A)
    np.testing.assert_allclose(np.asarray(g, np.float64).reshape(6, 512),
                               np.broadcast_to(case.wd().sum(0), (6, 512)), rtol=2e-2, atol=2e-2)


def test_gpu_float32_activations_use_xla_fallback(rng):
    case = make_case(rng, "int4", "original", 64, "float32", "float32", "float32", True)
    check_gpu_and_cpu(case)


def test_gpu_from_several_threads(rng):
    """Concurrent host threads share the handlers (no global state)."""
    import concurrent.futures as cf
    cases = [make_case(rng, "int4", "scale", 128, "float16", M=m, N=128, K=1024) for m in (1, 8, 40, 3)]
    with cf.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda c: run_on(c, GPUS[0]), cases))
    for c, o in zip(cases, outs):
        check(c, o)
