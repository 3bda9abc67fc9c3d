"""bitblas_matmul_p: the JAX primitive over the "bitblas_jax_matmul" XLA custom call.

Operands: A [..., K], W packed uint8, scale, zeros, bias, group_terms, a_scale (absent
ones are empty arrays, so the operand list never changes shape; group_terms:
group_terms.py, read by gemm_cutlass alone; a_scale: int8 / float8 A's activation
scales, float32 A.shape[:-1], C = cast(a_scale * v + bias), applied by the 8-bit
kernels' epilogue and by XLA after the other paths). Params: `spec`, a
KernelSpec, and `k_shards`, the number of K-shards W is packed for (1: the
ordinary layout; docs/LAYOUT.md, K-shard order). Rules: abstract eval (with the
output's sharding type and varying manual axes), CPU and CUDA lowerings
(jax.ffi) wrapped in the partitioning rule (partition.py), batching (A's batch
dims fold into M), JVP (linear in A, bias, scale, a_scale; zeros in the float
modes) and the transpose in A.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from . import _ext, dequant, formats, group_terms, layout, partition, quantized_dot
from .spec import KernelSpec

bitblas_matmul_p = Primitive("bitblas_matmul")
_EXACT = jax.lax.Precision.HIGHEST   # float32 dots in full precision (no TF32 on GPU)
TARGET = "bitblas_jax_matmul"
DEQUANT_TARGET = "bitblas_jax_dequantize"  # CUDA only (the large-M path)
DECODE_I8_TARGET = "bitblas_jax_decode_i8"  # CUDA only (int8 activations, small M)
GEMM_A8_TARGET = "bitblas_jax_gemm_a8"      # CUDA only (int8 activations, larger M, sm_90)
GEMM_MMA_A8_TARGET = "bitblas_jax_gemm_mma_a8"  # CUDA only (int8 activations, larger M, sm_80+)
# The 8-bit kernels' k order of A (csrc/cuda/a8_fragment.cuh), the order in which the packed weight's lane
# fragments hold k. Within a 32-k block, k = 16 r + 8 h + 2 c + j: B register r of lanes (g, c) in an m16n8k32
# step holds, at its byte 2 h + j, k (h, j) of its c. A [M, K] viewed [M, K / 32, 2, 2, 4, 2] (r, h, c, j)
# and transposed: a transpose, not a gather, because the kernels' calls run inside custom_partitioning,
# which refuses constants (an index array) in the traced body.
A8_K_BLOCK_VIEW = (2, 2, 4, 2)
# The GEMMs (gemm_wgmma_a8, gemm_mma_a8: A's tiles staged in shared memory): each 16-k chunk with h and c
# swapped, (r, c, h, j): position 4c + 2h + j of a chunk carries k 8h + 2c + j (kSigma).
SIGMA_ORDER_AXES = (0, 1, 2, 4, 3, 5)
# decode_i8 (B registers loaded from global memory): lane order, (c, r, h, j): lane c's two registers of a k32
# step are the block's 8 bytes at 8c, one load (a8_lane_order_k).
LANE_ORDER_AXES = (0, 1, 4, 2, 3, 5)


def a8_k_order(axes) -> np.ndarray:
    """Position p of a 32-k block of A in the k order `axes` carries k = a8_k_order(axes)[p]."""
    return np.arange(32).reshape((1, 1) + A8_K_BLOCK_VIEW).transpose(axes).reshape(32)


GEMM_A8_SIGMA = a8_k_order(SIGMA_ORDER_AXES)[:16]
DECODE_I8_LANE_ORDER = a8_k_order(LANE_ORDER_AXES)


def empty(dtype) -> jax.Array:
    """The stand-in for an absent optional operand."""
    return jnp.zeros((0,), dtype)


def bind(A, W, scale, zeros, bias, terms, a_scale, spec: KernelSpec, k_shards: int = 1):
    return bitblas_matmul_p.bind(A, W, scale, zeros, bias, terms, a_scale, spec=spec, k_shards=int(k_shards))


def standard_weight(W, spec: KernelSpec, k_shards: int):
    """W in the ordinary packed layout (a copy when it is in K-shard order)."""
    return layout.from_k_shards(W, spec.N, spec.K, spec.format.bits, k_shards)


# ---- abstract eval ----------------------------------------------------------
def varying_axes(aval) -> frozenset:
    """The manual mesh axes a value varies over inside shard_map (empty elsewhere)."""
    vma = getattr(aval, "vma", None)
    if vma is None:
        mat = getattr(aval, "mat", None) or getattr(aval, "manual_axis_type", None)
        vma = getattr(mat, "varying", None)
    return frozenset(vma or ())


def _out_aval(operands, shape, dtype, sharding):
    """An aval like the operand that varies over the most manual axes (shard_map), with the
    result's shape, dtype and sharding type."""
    base = max(operands, key=lambda a: len(varying_axes(a)))
    union = frozenset().union(*map(varying_axes, operands))
    kw = dict(shape=shape, dtype=jnp.dtype(dtype), weak_type=False)
    if sharding is not None:
        kw["sharding"] = sharding
    out = base.update(**kw)
    if varying_axes(out) != union:      # operands vary over different axes: the result over all
        if hasattr(base, "vma"):
            out = out.update(vma=union)
        else:
            out = out.update(manual_axis_type=type(base.mat)(varying=union))
    return out


def _abstract_eval(A, W, scale, zeros, bias, terms, a_scale, *, spec: KernelSpec, k_shards: int):
    # Matmul.__call__ checks user input with friendly messages; this guards the primitive.
    if A.ndim < 1 or A.shape[-1] != spec.K:
        raise ValueError(f"bitblas_matmul: A must be [..., K={spec.K}], got {A.shape}")
    if A.dtype != jnp.dtype(spec.a_dtype):
        raise TypeError(f"bitblas_matmul: A must be {spec.a_dtype}, got {A.dtype}")
    bits = spec.format.bits
    if W.dtype != jnp.uint8 or W.shape != (spec.N, spec.K * bits // 8):
        raise ValueError(f"bitblas_matmul: W must be uint8 {(spec.N, spec.K * bits // 8)}, "
                         f"got {W.dtype} {W.shape}")
    if terms.size and (terms.shape != group_terms.shape(spec) or terms.dtype != A.dtype):
        raise ValueError(f"bitblas_matmul: group_terms must be {A.dtype} {group_terms.shape(spec)}, "
                         f"got {terms.dtype} {terms.shape}")
    if a_scale.size and (a_scale.shape != A.shape[:-1] or a_scale.dtype != jnp.float32
                         or not formats.is_quantized_activation(spec.a_dtype) or spec.out_dtype == "int32"):
        raise ValueError(f"bitblas_matmul: a_scale must be float32 {A.shape[:-1]} (int8 / float8 A, a float or "
                         f"int8 output), got {a_scale.dtype} {a_scale.shape}")
    shape = A.shape[:-1] + (spec.N,)
    sharding = partition.output_sharding(A, W, len(shape))
    return _out_aval([A, W, scale, zeros, bias, terms, a_scale], shape, spec.out_dtype, sharding)


bitblas_matmul_p.def_abstract_eval(_abstract_eval)


def _impl(*args, spec, k_shards):
    return jax.jit(functools.partial(bind, spec=spec, k_shards=k_shards))(*args)


bitblas_matmul_p.def_impl(_impl)


# ---- lowering ---------------------------------------------------------------
def _as_2d(A, spec):
    return A.reshape(-1, spec.K)


def _terms_operand(terms, spec: KernelSpec):
    """The matmul custom call's group_terms operand: the held terms, or an empty array."""
    return empty(jnp.dtype(spec.a_dtype)) if terms is None else terms


def _scaled_after(call, A, W, scale, zeros, bias, a_scale, *, spec: KernelSpec):
    """C = cast(a_scale * v + bias) on a path whose kernel takes no activation scales (the CPU kernel, XLA's
    dots, widened_f16): `call` returns v in float32, then one elementwise op that XLA fuses."""
    v = call(A, W, scale, zeros, empty(bias.dtype), spec=dataclasses.replace(spec, out_dtype="float32"))
    return quantized_dot.epilogue(v, bias, spec.out_dtype, a_scale[..., None])


def _cpu_call(A, W, scale, zeros, bias, *, spec: KernelSpec, terms=None, a_scale=None):
    """The CPU kernel (it checks group_terms and reads scale and zeros; a_scale applied after it)."""
    if a_scale is not None:
        return _scaled_after(_cpu_call, A, W, scale, zeros, bias, a_scale, spec=spec)
    A2 = _as_2d(A, spec)
    out = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((A2.shape[0], spec.N), jnp.dtype(spec.out_dtype)))(
        A2, W, scale, zeros, bias, _terms_operand(terms, spec), **spec.ffi_attrs())
    return out.reshape(A.shape[:-1] + (spec.N,))


def _xla_call(A, W, scale, zeros, bias, *, spec: KernelSpec):
    """XLA's own ops on the GPU (the CUDA kernels take fp16 / bf16 activations): int8 / float8
    activations run quantized_dot.py's exact path; float32 ones dequantize, then a float32 dot."""
    if formats.is_quantized_activation(spec.a_dtype):
        return quantized_dot.matmul_xla(A, W, scale, zeros, bias, spec)
    wd = dequant.dequantize(W, spec, scale, zeros).astype(jnp.float32)
    acc = jnp.einsum("...k,nk->...n", A.astype(jnp.float32), wd, precision=_EXACT)
    return _add_bias(acc.astype(spec.out_dtype), bias, spec)


def _add_bias(out, bias, spec: KernelSpec):
    """The kernels' epilogue: bias added after the cast to the output dtype, rounded once more."""
    if bias.size:
        out = (out.astype(jnp.float32) + bias.astype(jnp.float32)).astype(spec.out_dtype)
    return out


def _quantized_activation_kernel(spec: KernelSpec, M: int) -> str:
    """The GPU path of int8 / float8 activations for M rows (gpu_plan.quantized_activation_kernel)."""
    from .gpu_plan import quantized_activation_kernel
    return quantized_activation_kernel(spec.a_dtype, spec.w_format, spec.mode, spec.group_size, M, spec.K)


def _cuda_runs_xla_ops(spec: KernelSpec, M: int) -> bool:
    """Whether the GPU lowering of M rows is XLA's own ops: float32 activations (the CUDA kernels take
    fp16 / bf16), and int8 / float8 ones where the plan routes them to XLA's dots (gpu_plan)."""
    if formats.is_quantized_activation(spec.a_dtype):
        return _quantized_activation_kernel(spec, M) == "xla_dot"
    return spec.a_dtype == "float32"


def _rows(A) -> int:
    """M: A's leading dims, folded."""
    return math.prod(A.shape[:-1])


# The kernels whose epilogue applies the activation scales (the a_scale operand); the other paths of int8 /
# float8 activations get them after the call (_scaled_after).
A_SCALE_KERNELS = ("decode_i8", "gemm_wgmma_a8", "gemm_mma_a8")


def _cuda_call(A, W, scale, zeros, bias, *, spec: KernelSpec, terms=None, a_scale=None):
    if a_scale is not None and _quantized_activation_kernel(spec, _rows(A)) not in A_SCALE_KERNELS:
        return _scaled_after(_cuda_call, A, W, scale, zeros, bias, a_scale, spec=spec)
    if _cuda_runs_xla_ops(spec, _rows(A)):
        return _xla_call(A, W, scale, zeros, bias, spec=spec)
    if formats.is_quantized_activation(spec.a_dtype):
        kernel = _quantized_activation_kernel(spec, _rows(A))
        if kernel == "decode_i8":
            return _decode_i8_call(A, W, scale, zeros, bias, a_scale, spec=spec)
        if kernel == "gemm_wgmma_a8":
            return _gemm_a8_call(A, W, scale, zeros, bias, a_scale, spec=spec)
        if kernel == "widened_f16":
            return _widened_f16_call(A, W, scale, zeros, bias, spec=spec)
        if kernel == "gemm_mma_a8":
            return _gemm_mma_a8_call(A, W, scale, zeros, bias, a_scale, spec=spec)
        raise NotImplementedError(f"bitblas_jax: the plan picked {kernel!r} for {spec.a_dtype} activations, "
                                  "which primitive._cuda_call cannot launch")
    if not _ext.has_cuda():
        raise RuntimeError("bitblas_jax was built without its CUDA kernels (no nvcc at install time); "
                           "reinstall with nvcc on PATH, or run on CPU")
    return _f16_kernel_call(A, W, scale, zeros, bias, spec=spec, terms=terms)


def _f16_kernel_call(A, W, scale, zeros, bias, *, spec: KernelSpec, terms=None):
    """float16 / bfloat16 activations: the kernel plan_cuda picks (the matmul custom call, or
    dequantize_then_dot). terms: group terms held with the weight (gemm_cutlass reads them)."""
    from .gpu_plan import plan_cuda
    A2 = _as_2d(A, spec)
    M = A2.shape[0]
    plan = plan_cuda(M, spec.N, spec.K, spec.w_format, spec.a_dtype, spec.accum_dtype,
                     spec.out_dtype, spec.mode, spec.group_size)
    if plan.kernel == "dequantize_then_dot":
        return _dequant_dot_call(A, W, scale, zeros, bias, spec=spec)
    out, _ = jax.ffi.ffi_call(TARGET, (
        jax.ShapeDtypeStruct((M, spec.N), jnp.dtype(spec.out_dtype)),
        jax.ShapeDtypeStruct((max(int(plan.workspace_bytes), 16),), jnp.uint8)))(
        A2, W, scale, zeros, bias, _terms_operand(terms, spec), kernel=np.int64(plan.kernel_id),
        tile=np.int64(plan.tile),
        split_k=np.int64(plan.split_k),
        **spec.ffi_attrs())
    return out.reshape(A.shape[:-1] + (spec.N,))


def _a8_kernel_call(target: str, A, A2, W, scale, zeros, bias, a_scale, spec: KernelSpec):
    """One 8-bit kernel (`target`: decode_i8, gemm_mma_a8 or gemm_wgmma_a8) on A2, A's rows as the kernel
    takes them, with the matmul call's operands and attributes (zeros, empty, goes along so the handler
    checks the weight operands as the matmul handler does), then a_scale ([M], or empty). The kernel
    returns C itself: its sums (exact int32 group sums; float8: the tensor cores' stage sums in float32),
    group scales applied in its main loop, then its epilogue applies a per-channel scale, the activation
    scale of the row, the bias and the cast in float32 (quantized_dot.finish's arithmetic; plan.h
    a8_kernel_scales says which scales go where): no pass over the output in XLA."""
    b = bias.astype(jnp.float32) if bias.size and spec.out_dtype != "int32" else empty(jnp.float32)
    rows = empty(jnp.float32) if a_scale is None else a_scale.reshape(A2.shape[0])
    out = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct((A2.shape[0], spec.N), jnp.dtype(spec.out_dtype)))(
        A2, W, scale, zeros, b, rows, **spec.ffi_attrs())
    return out.reshape(A.shape[:-1] + (spec.N,))


def _decode_i8_call(A, W, scale, zeros, bias, a_scale=None, *, spec: KernelSpec):
    """int8 activations at decode sizes: the decode_i8 kernel (_a8_kernel_call) on A's 32-k blocks in lane
    order (in_a8_order)."""
    return _a8_kernel_call(DECODE_I8_TARGET, A, in_a8_order(_as_2d(A, spec), LANE_ORDER_AXES), W, scale, zeros,
                           bias, a_scale, spec)


def _gemm_mma_a8_call(A, W, scale, zeros, bias, a_scale=None, *, spec: KernelSpec):
    """int8 activations above decode sizes on sm_80+: the gemm_mma_a8 kernel (_a8_kernel_call) on A's
    16-k chunks in its k order (in_a8_order)."""
    return _a8_kernel_call(GEMM_MMA_A8_TARGET, A, in_a8_order(_as_2d(A, spec), SIGMA_ORDER_AXES), W, scale, zeros,
                           bias, a_scale, spec)


def _gemm_a8_call(A, W, scale, zeros, bias, a_scale=None, *, spec: KernelSpec):
    """int8 / float8 activations above decode sizes on sm_90: the gemm_wgmma_a8 kernel (_a8_kernel_call)
    on A's 16-k chunks in its k order (in_a8_order)."""
    return _a8_kernel_call(GEMM_A8_TARGET, A, in_a8_order(_as_2d(A, spec), SIGMA_ORDER_AXES), W, scale, zeros,
                           bias, a_scale, spec)


def in_a8_order(A2, axes):
    """[M, K] with each 32-k block in an 8-bit kernel's k order (SIGMA_ORDER_AXES, LANE_ORDER_AXES): one
    transpose, a copy of A (which XLA may fuse into the op that made A). The kernels take K a multiple of 32
    (of their packed tile's k)."""
    M, K = A2.shape
    return A2.reshape((M, K // 32) + A8_K_BLOCK_VIEW).transpose(axes).reshape(M, K)


def widened_f16_spec(spec: KernelSpec) -> KernelSpec:
    """The 16-bit call widened_f16 makes for float8 activations: float16 A, mode none (the weight's
    element values, no scales: the packed weight is the same for every mode), float32 accumulation
    and float32 output (S, the sums over all of K)."""
    return dataclasses.replace(spec, a_dtype="float16", mode="none", group_size=spec.K,
                               accum_dtype="float32", out_dtype="float32")


def _widened_f16_call(A, W, scale, zeros, bias, *, spec: KernelSpec, call16=None):
    """float8 activations on the 16-bit kernels (gpu_plan: widened_f16): A widened to float16
    (quantized_dot.widen: exact, every e4m3fn / e5m2 value is a float16), the 16-bit kernel plan_cuda picks returns S in float32
    (exact products, float32 sums), then quantized_dot's per-channel term in float32, bias and the
    cast (quantized_dot.per_channel_v, finish), fused by XLA. (The plan took widened_f16 only where
    the CUDA kernels are built, or under BITBLAS_JAX_WIDENED_F16=1 for lowering tests.) call16: the
    16-bit call (tests pass _cpu_call to run this arithmetic on the CPU kernel)."""
    A2 = _as_2d(A, spec)
    none = empty(jnp.float16)
    S = (call16 or _f16_kernel_call)(quantized_dot.widen(A2, jnp.float16), W, none, none, none,
                                     spec=widened_f16_spec(spec))
    v = quantized_dot.per_channel_v(S, A2, scale, zeros, spec.mode)
    return quantized_dot.finish(v, bias, spec).reshape(A.shape[:-1] + (spec.N,))


def _dequant_dot_call(A, W, scale, zeros, bias, *, spec: KernelSpec):
    """Large M on GPU: the dequantize kernel writes the weight in A's dtype, XLA's dot (cuBLAS) multiplies."""
    attrs = spec.ffi_attrs()
    del attrs["accum_dtype"]
    wd = jax.ffi.ffi_call(DEQUANT_TARGET, jax.ShapeDtypeStruct((spec.N, spec.K), jnp.dtype(spec.a_dtype)))(
        W, scale, zeros, **attrs)
    # float32 accumulation (at least as accurate as accum_dtype float16), output rounded once
    same = spec.out_dtype == spec.a_dtype
    out = jax.lax.dot_general(_as_2d(A, spec), wd, (((1,), (1,)), ((), ())),
                              preferred_element_type=None if same else jnp.float32)
    return _add_bias(out.astype(spec.out_dtype), bias, spec).reshape(A.shape[:-1] + (spec.N,))


def _lowering(call):
    """The platform's call on the ordinary layout, inside the partitioning rule."""
    def whole_op(A, W, scale, zeros, bias, terms, a_scale, *, spec, k_shards):
        if A.size == 0:       # M == 0 needs no kernel
            return jnp.zeros(A.shape[:-1] + (spec.N,), spec.out_dtype)
        kw = dict(terms=terms) if terms.size else {}
        if a_scale.size:
            kw["a_scale"] = a_scale
        return call(A, standard_weight(W, spec, k_shards), scale, zeros, bias, spec=spec, **kw)

    def rule(ctx, A, W, scale, zeros, bias, terms, a_scale, *, spec, k_shards):
        # float32 activations on the GPU lower to XLA's own ops (dequantize, then dot), which XLA
        # partitions itself; custom_partitioning would also refuse their constants (the tables).
        # int8 / float8 ones too where the whole op's M goes to XLA's dots; where it goes to a
        # kernel, each device's call picks again for its own rows.
        xla_ops = call is _cuda_call and _cuda_runs_xla_ops(spec, _rows(ctx.avals_in[0]))
        if partition.wants_rule(ctx) and not xla_ops:
            body = functools.partial(whole_op, spec=spec, k_shards=k_shards)
            f = functools.partial(partition.call, body, bind, spec, k_shards)
        else:
            f = functools.partial(whole_op, spec=spec, k_shards=k_shards)
        return mlir.lower_fun(f, multiple_results=False)(ctx, A, W, scale, zeros, bias, terms, a_scale)
    return rule


mlir.register_lowering(bitblas_matmul_p, _lowering(_cpu_call), platform="cpu")
mlir.register_lowering(bitblas_matmul_p, _lowering(_cuda_call), platform="cuda")
try:   # the partitioning rule needs the devices at lowering time, as custom_partitioning does
    from jax._src import dispatch as _dispatch
    _dispatch.prim_requires_devices_during_lowering.add(bitblas_matmul_p)
except (ImportError, AttributeError):  # pragma: no cover - jax internals moved
    pass


# ---- batching ----------------------------------------------------------------
def _batch(args, dims, *, spec: KernelSpec, k_shards: int):
    A, W, scale, zeros, bias, terms, a_scale = args
    dA, d_scale = dims[0], dims[6]
    if all(d is None for d in dims[1:6]):
        # Only A (and its activation scales, one per row) batched: the batch dim is one more leading dim,
        # folded into M.
        size = A.shape[dA] if dA is not None else a_scale.shape[d_scale]
        A = jnp.moveaxis(A, dA, 0) if dA is not None else jnp.broadcast_to(A, (size,) + A.shape)
        if a_scale.size or d_scale is not None:
            a_scale = (jnp.moveaxis(a_scale, d_scale, 0) if d_scale is not None
                       else jnp.broadcast_to(a_scale, A.shape[:-1]))
        return bind(A, W, scale, zeros, bias, terms, a_scale, spec, k_shards), 0
    # Batched weights (rare): one kernel call per batch element.
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [a if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims)]
    mapped = [d is not None for d in dims]

    def one(xs):
        it = iter(xs)
        full = [next(it) if m else a for a, m in zip(moved, mapped)]
        return bind(*full, spec, k_shards)

    out = jax.lax.map(one, [a for a, m in zip(moved, mapped) if m])
    assert out.shape[0] == size
    return out, 0


batching.primitive_batchers[bitblas_matmul_p] = _batch


# ---- differentiation ---------------------------------------------------------
def _zero(t) -> bool:
    return type(t) is ad.Zero


def _dweight_tangent(W, scale, zeros, dscale, dzeros, spec: KernelSpec):
    """d(dequantized weight) from scale / zeros tangents, float32 [N, K]."""
    fmt = spec.format
    w = dequant.decode(dequant.unpack_codes(W, spec.N, spec.K, fmt.bits), fmt)
    rep = lambda x: dequant._per_k(x.astype(jnp.float32), spec.group_size)  # noqa: E731
    dw = jnp.zeros((spec.N, spec.K), jnp.float32)
    if not _zero(dscale):
        factor = w if spec.mode in ("scale", "rescale") else w - rep(zeros)
        dw = dw + factor * rep(dscale)
    if not _zero(dzeros) and spec.mode in ("original", "rescale"):
        dw = dw - (rep(dzeros) * rep(scale) if spec.mode == "original" else rep(dzeros))
    return dw


def _jvp(primals, tangents, *, spec: KernelSpec, k_shards: int):
    # group_terms are scale and zeros in gemm_cutlass's form: the derivative flows through scale and zeros,
    # which every path reads (a tangent of the terms themselves is dropped)
    A, W, scale, zeros, bias, terms, a_scale = primals
    dA, _, dscale, dzeros, dbias, _, da_scale = tangents
    out = bind(A, W, scale, zeros, bias, terms, a_scale, spec, k_shards)
    if formats.is_quantized_activation(spec.a_dtype):
        if not _zero(dA):   # int8 A has no tangent (JAX's float0); float8 A reaches here
            raise TypeError(
                f"bitblas_matmul: the derivative with respect to A is not defined for {spec.a_dtype} "
                "activations (quantized values; rounding has no useful derivative). Differentiate with "
                "respect to scale, zeros or bias, or stop the gradient at the activations "
                "(bitblas_jax.quantize_activations does)")
        if spec.out_dtype in ("int8", "int32"):   # integer outputs carry no tangent
            return out, ad.Zero.from_primal_value(out)
    t = None
    if not _zero(dA):
        t = bind(dA, W, scale, zeros, empty(bias.dtype), terms, a_scale, spec, k_shards)
    if not (_zero(dscale) and _zero(dzeros)):
        dw = _dweight_tangent(standard_weight(W, spec, k_shards), scale, zeros, dscale, dzeros, spec)
        ts = jnp.einsum("...k,nk->...n", A.astype(jnp.float32), dw, precision=_EXACT)
        if a_scale.size:
            ts = ts * a_scale[..., None]
        ts = ts.astype(spec.out_dtype)
        t = ts if t is None else t + ts
    if not _zero(da_scale) and a_scale.size:   # C = cast(a_scale * v + bias): dC = da_scale * v
        v = bind(A, W, scale, zeros, empty(bias.dtype), terms, empty(a_scale.dtype),
                 dataclasses.replace(spec, out_dtype="float32"), k_shards)
        tr = (v * da_scale[..., None]).astype(spec.out_dtype)
        t = tr if t is None else t + tr
    if not _zero(dbias) and bias.size:
        tb = jnp.broadcast_to(dbias.astype(spec.out_dtype), out.shape)
        t = tb if t is None else t + tb
    return out, (ad.Zero.from_primal_value(out) if t is None else t)


def _transpose(ct, A, W, scale, zeros, bias, terms, a_scale, *, spec: KernelSpec, k_shards: int):
    # Linear only in A (the JVP binds with an empty bias), of 16-bit activations (no a_scale): dA = dC @ Wd.
    assert ad.is_undefined_primal(A) and not ad.is_undefined_primal(W)
    if _zero(ct):
        return (None,) * 7
    wd = dequant.dequantize(standard_weight(W, spec, k_shards), spec, scale, zeros).astype(jnp.float32)
    dA = jnp.einsum("...n,nk->...k", ct.astype(jnp.float32), wd, precision=_EXACT).astype(A.aval.dtype)
    return dA, None, None, None, None, None, None


ad.primitive_jvps[bitblas_matmul_p] = _jvp
ad.primitive_transposes[bitblas_matmul_p] = _transpose
