"""Dynamic activation quantization: float activations -> int8 / float8 values and their scales.

    values, scales = quantize_activations(x, "int8", "per_token")    # x ~ values * scales[..., None]
    y = Matmul(int8 config)(values, W, scale=w_scale, a_scale=scales)

The SmoothQuant W8A8 / W4A8 and FP8 recipes quantize each token's row (or the whole tensor) with
one absmax scale; the matmul applies that scale in its float32 epilogue (quantized_dot.epilogue).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import formats
from .quantize import ieee_divide

# The largest magnitude each dtype takes: int8 uses the symmetric range [-127, 127] (SmoothQuant's),
# so that -x quantizes to -q.
QMAX = {"int8": 127.0, "float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}
GRANULARITIES = ("per_token", "per_tensor")


def quantize_activations(A, dtype: str = "int8", granularity: str = "per_token"):
    """(values, scales) with A ~ values * scales: absmax scales in float32, computed in float32.

    A: float16 / bfloat16 / float32 [..., K]. dtype: "int8" (values round half to even, in
    [-127, 127]), "float8_e4m3fn" or "float8_e5m2" (values rounded to the nearest float8; BitBLAS's
    e4m3_float8 / e5m2_float8 are accepted). granularity: "per_token" (one scale per row of the
    last axis: scales have shape A.shape[:-1]) or "per_tensor" (a scalar). scale = absmax *
    float32(1 / QMAX[dtype]) (1 for an all-zero row); values = A * float32(1 / scale) (the
    reciprocal correctly rounded; within 1.5 float32 ulps of A / scale), clipped to +-QMAX, rounded. Jittable; XLA fuses the reduction and the
    rounding. The values carry no gradient (rounding has none); the scales do.
    """
    dtype = formats.canonical_dtype(dtype)
    if dtype not in QMAX:
        raise ValueError(f"quantize_activations: dtype={dtype!r} is not supported; allowed: {tuple(QMAX)}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"quantize_activations: granularity={granularity!r} is not supported; "
                         f"allowed: {GRANULARITIES}")
    A = jnp.asarray(A)
    if not jnp.issubdtype(A.dtype, jnp.floating) or A.dtype.itemsize < 2:
        raise TypeError(f"quantize_activations: A must be float16, bfloat16 or float32, got {A.dtype}")
    if A.ndim < 1:
        raise ValueError(f"quantize_activations: A must have at least one dimension [..., K], got {A.shape}")
    x = A.astype(jnp.float32)
    axes = -1 if granularity == "per_token" else None
    amax = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
    qmax = QMAX[dtype]
    # Products with float32 reciprocals, the reciprocal correctly rounded: XLA turns a division by a
    # constant or a broadcast into such a product on some backends and divides inexactly on GPUs,
    # so this is the form that every backend (and the torch shim) computes alike, bit for bit.
    scale = amax * jnp.float32(1.0 / qmax)
    scale = jnp.where(scale > 0, scale, 1.0)     # all-zero rows (or an underflowing amax)
    recip = ieee_divide(jnp.ones_like(scale), jax.lax.stop_gradient(scale))
    q = jnp.clip(x * recip, -qmax, qmax)
    values = jnp.round(q).astype(jnp.int8) if dtype == "int8" else q.astype(dtype)
    scales = scale[..., 0] if granularity == "per_token" else scale.reshape(())
    return jax.lax.stop_gradient(values), scales
