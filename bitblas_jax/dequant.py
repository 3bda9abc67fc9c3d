"""Dequantization in jax.numpy: the packed weight -> the [N, K] weight the kernels use.

Serves `Matmul.dequantize`, the backward pass (dA = dC @ Wd) and the
derivative with respect to scale / zeros. Jittable; runs on any backend.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import formats, layout
from .spec import KernelSpec


@functools.lru_cache(maxsize=None)
def _tile_gather(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """word index, bit shift per lane element, and the tile-order gather."""
    rows, cols, word, field = layout._lane_maps(bits)
    tk = layout.tile_k(bits)
    n_frag = 128 // bits
    # tile position (r, c) <- lane element (l, f): invert the scatter.
    inv = np.empty(layout.TILE_N * tk, np.int32)
    inv[(rows * tk + cols).ravel()] = np.arange(32 * n_frag)
    return (np.ascontiguousarray(word), np.ascontiguousarray(field * bits).astype(np.uint32), inv)


def unpack_codes(w_packed: jax.Array, N: int, K: int, bits: int) -> jax.Array:
    """Packed uint8 [N, K*bits/8] -> raw codes uint32 [N, K]."""
    tk = layout.tile_k(bits)
    word, shift, inv = _tile_gather(bits)
    words = jax.lax.bitcast_convert_type(
        w_packed.reshape(N // layout.TILE_N, K // tk, 32, 4, 4), jnp.uint32)   # [nt, kt, 32, 4]
    lane = jnp.take_along_axis(words, jnp.asarray(word)[None, None], axis=-1)   # [nt, kt, 32, nf]
    codes = (lane >> jnp.asarray(shift)) & jnp.uint32((1 << bits) - 1)         # [nt, kt, 32, nf]
    tiles = codes.reshape(N // layout.TILE_N, K // tk, -1)[..., jnp.asarray(inv)]
    return tiles.reshape(N // layout.TILE_N, K // tk, layout.TILE_N, tk).transpose(0, 2, 1, 3).reshape(N, K)


def decode(codes: jax.Array, fmt: formats.WeightFormat) -> jax.Array:
    """Raw codes -> element values, float32 (exact for every format)."""
    if fmt.kind == "int":
        c = codes.astype(jnp.int32)
        v = 2 * c - 1 if fmt.bits == 1 else c - 2 ** (fmt.bits - 1)
        return v.astype(jnp.float32)
    if fmt.kind == "uint":
        return codes.astype(jnp.float32)
    if fmt.kind == "table":
        table = formats.NF4_VALUES if fmt.name == "nf4" else formats.FP4_E2M1_VALUES
        return jnp.asarray(table, jnp.float32)[codes.astype(jnp.int32)]
    if fmt.kind == "fp8":
        return jax.lax.bitcast_convert_type(codes.astype(jnp.uint8),
                                            formats.FP8_NUMPY[fmt.name]).astype(jnp.float32)
    return jax.lax.bitcast_convert_type(codes.astype(jnp.uint16),
                                        formats.DENSE_NUMPY[fmt.name]).astype(jnp.float32)


def _per_k(x: jax.Array, group_size: int) -> jax.Array:
    """[N, G] -> [N, K] by repeating each group's value."""
    return jnp.repeat(x, group_size, axis=1)


def mode_rule(w: jax.Array, mode: str, s=None, z=None) -> jax.Array:
    """The mode's dequantization of element values w with their scale s and zero z (float32, broadcast
    to w; not yet rounded): none w, scale w s, rescale w s - z, original and quantized (w - z) s."""
    if mode == "none":
        return w
    if mode == "scale":
        return w * s
    if mode == "rescale":
        return w * s - z
    return (w - z) * s           # original, quantized


def apply_mode(w: jax.Array, spec: KernelSpec, scale, zeros) -> jax.Array:
    """Element values (float32) -> dequantized weight (float32, not yet rounded)."""
    if spec.mode == "none":
        return w
    rep = lambda x: _per_k(x.astype(jnp.float32), spec.group_size)  # noqa: E731
    return mode_rule(w, spec.mode, rep(scale), None if spec.mode == "scale" else rep(zeros))


def dequantize(w_packed: jax.Array, spec: KernelSpec, scale=None, zeros=None) -> jax.Array:
    """The weight the kernels multiply with: [N, K] in A's dtype; float32 for int8 / float8
    activations, which apply scale and zeros to group sums instead (quantized_dot.py): C is
    A times this weight up to float32 rounding."""
    fmt = formats.get_format(spec.w_format)
    w = decode(unpack_codes(w_packed, spec.N, spec.K, fmt.bits), fmt)
    return apply_mode(w, spec, scale, zeros).astype(formats.scale_dtype(spec.a_dtype))
