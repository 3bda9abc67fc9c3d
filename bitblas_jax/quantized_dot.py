"""int8 / float8 activations in jax.numpy: the exact group sums by XLA's dot, then the float32 epilogue.

The op's semantics for quantized activations (README, "int8 and float8 activations"), for output
(m, n) and weight group g (one group = K when the mode has no scale):

    S    = sum_{k in g} A[m, k] * w[n, k]   int32 for int8 A (wraps mod 2^32 like every int32 GEMM;
                                            exact while |S| < 2^31), float32 for float8 A (the
                                            products are exact)
    Asum = sum_{k in g} A[m, k]             same type, zeros modes only
    term = none: S; scale: s*S; original: s*(S - z*Asum); rescale: s*S - z*Asum;
           quantized: s*(S - qz*Asum), the bracket in S's type
    v    = float32 sum of the terms in group order
    C    = cast_out(v + bias)               int32 output (mode none, no bias): S itself

w are the weight's element values (formats.py), s / z / bias float32, qz the integer zero points.
The CPU kernel (csrc/cpu/matmul_cpu_qact.cc) does this arithmetic in C++. On the GPU,
gpu_plan.quantized_activation_kernel picks the path: "decode_i8" or "gemm_mma_a8" (the CUDA kernels
compute S for mode none, v for mode scale; `finish` here applies the rest), "gemm_wgmma_a8",
"widened_f16" (float8 A widened to float16, the 16-bit kernels compute S over all of K in float32;
`per_channel_v` and `finish` here the rest) or "xla_dot", matmul_xla here, exact too: int8 x int8 ->
int32 is XLA's integer dot, and float8 operands are widened exactly to bfloat16 (every float8 and int4
value is a bfloat16) for a dot with float32 accumulation. float8 dots with float8
operands are avoided on purpose: Hopper's fp8 tensor cores accumulate in fewer than 32 bits.

float8 A is widened through its bits (`widen`), never by a float convert: XLA's GPU compiler folds a
chain of float converts (SimplifyFPConversions, on under xla_allow_excess_precision, the default), so
where A was rounded to float8 in the same jit (quantize_activations) convert(convert(x, f8), f16)
would become convert(x, f16) and the sums would see x instead of its float8 values.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import dequant
from .spec import KernelSpec


def widen(A: jax.Array, dtype) -> jax.Array:
    """A's values in `dtype` (a float type holding them all; int32 for int8 A), exactly. float8 goes through
    its bit pattern (module docstring: a float convert from float8 may be folded away): e5m2 is the top
    byte of a float16; e4m3fn's sign, exponent and mantissa moved into a float16's exponent and mantissa
    are its value times 2^-8 (subnormals included), rescaled by an exact multiply, 0x7f / 0xff NaN."""
    if A.dtype == jnp.float8_e5m2:
        bits = jax.lax.bitcast_convert_type(A, jnp.uint8).astype(jnp.uint16)
        return jax.lax.bitcast_convert_type(bits << 8, jnp.float16).astype(dtype)
    if A.dtype == jnp.float8_e4m3fn:
        bits = jax.lax.bitcast_convert_type(A, jnp.uint8).astype(jnp.uint16)
        mag = bits & 0x7F
        h = jax.lax.bitcast_convert_type(((bits & 0x80) << 8) | (mag << 7), jnp.float16)
        h = jnp.where(mag == 0x7F, jnp.nan, h * 256.0)     # weak-typed scalars: float16 arithmetic
        return h.astype(dtype)
    return A.astype(dtype)


def cast_out(v: jax.Array, out_dtype: str) -> jax.Array:
    """float32 -> the output dtype: int8 rounds half to even and saturates to [-128, 127] (NaN -> 0);
    float outputs round to nearest."""
    if out_dtype == "int8":
        v = jnp.where(jnp.isnan(v), 0.0, v)
        return jnp.round(jnp.clip(v, -128.0, 127.0)).astype(jnp.int8)
    return v.astype(out_dtype)


def epilogue(v: jax.Array, bias, out_dtype: str, a_scale=None) -> jax.Array:
    """C = cast_out(a_scale * v + bias) in float32 (a_scale: per-token [..., 1] or a scalar)."""
    if a_scale is not None:
        v = v * a_scale.astype(jnp.float32)
    if bias is not None and bias.size:
        v = v + bias.astype(jnp.float32)
    return cast_out(v, out_dtype)


def finish(sums: jax.Array, bias, spec: KernelSpec) -> jax.Array:
    """C [M, N] from the int32 sums S (mode none) or the float32 v (module docstring): S itself for
    int32 output, else epilogue(float32(S) or v, bias)."""
    if spec.out_dtype == "int32":
        return sums
    return epilogue(sums.astype(jnp.float32), bias, spec.out_dtype)


def _group_term(S, asum, s, z, mode: str):
    """The float32 term of one group: S [M, N], asum [M], s / z [N] (module docstring)."""
    f32 = jnp.float32
    if mode == "none":
        return S.astype(f32)
    s = s.astype(f32)[None, :]
    if mode == "scale":
        return s * S.astype(f32)
    if mode == "quantized":
        return s * (S - z.astype(S.dtype)[None, :] * asum[:, None]).astype(f32)
    zf, af = z.astype(f32)[None, :], asum.astype(f32)[:, None]
    if mode == "original":
        return s * (S.astype(f32) - zf * af)
    return s * S.astype(f32) - zf * af          # rescale


def per_channel_v(S: jax.Array, A2: jax.Array, scale, zeros, mode: str) -> jax.Array:
    """v [M, N] from S [M, N], the float32 sums over all of K, for a mode with one group per row (or
    none): the group's term (module docstring), Asum summed from A2 [M, K] in float32 where the mode
    has zeros."""
    if mode == "none":
        return S.astype(jnp.float32)
    asum = (jnp.sum(widen(A2, jnp.float32), axis=-1) if mode in ("original", "rescale", "quantized")
            else jnp.zeros((S.shape[0],), jnp.float32))
    z = zeros.reshape(-1) if zeros.size else jnp.zeros((S.shape[1],), jnp.float32)
    return _group_term(S.astype(jnp.float32), asum, scale.reshape(-1), z, mode)


def matmul_xla(A, W, scale, zeros, bias, spec: KernelSpec) -> jax.Array:
    """C[..., N] for int8 / float8 A and the ordinary packed W (module docstring), jittable."""
    K, N = spec.K, spec.N
    A2 = A.reshape(-1, K)
    M = A2.shape[0]
    fmt = spec.format
    values = dequant.decode(dequant.unpack_codes(W, N, K, fmt.bits), fmt)     # float32, exact
    if spec.a_dtype == "int8":
        acc_t, a, w = jnp.int32, A2, values.astype(jnp.int8)
    else:
        acc_t, a, w = jnp.float32, widen(A2, jnp.bfloat16), values.astype(jnp.bfloat16)

    def dot(x, y):
        return jax.lax.dot_general(x, y, (((1,), (1,)), ((), ())), preferred_element_type=acc_t)

    if spec.mode == "none":
        return finish(dot(a, w), bias, spec).reshape(A.shape[:-1] + (N,))
    gs = spec.group_size
    G = K // gs
    ag, wg = a.reshape(M, G, gs), w.reshape(N, G, gs)
    asum = (jnp.sum(widen(A2.reshape(M, G, gs), acc_t), axis=-1) if spec.mode in
            ("original", "rescale", "quantized") else jnp.zeros((M, G), acc_t))
    z_all = zeros if zeros.size else jnp.zeros((N, G), jnp.float32)

    def body(g, acc):
        S = dot(jax.lax.dynamic_index_in_dim(ag, g, 1, keepdims=False),
                jax.lax.dynamic_index_in_dim(wg, g, 1, keepdims=False))
        col = lambda x: jax.lax.dynamic_index_in_dim(x, g, 1, keepdims=False)  # noqa: E731
        return acc + _group_term(S, col(asum), col(scale), col(z_all), spec.mode)

    v = jax.lax.fori_loop(0, G, body, jnp.zeros((M, N), jnp.float32))
    return finish(v, bias, spec).reshape(A.shape[:-1] + (N,))
