"""GPTQ and AutoAWQ weight packing, in NumPy only (no JAX, Flax or PyTorch).

    unpack_gptq(qweight, qzeros, scales, g_idx=None, *, bits=4, version=1) -> UnpackedQuant
    unpack_awq(qweight, qzeros, scales, *, bits=4)                          -> UnpackedQuant
    pack_gptq(...), pack_awq(...)   the inverse packers (tests, exporting)

An ``UnpackedQuant`` is what a bitblas_jax matmul with
``W_dtype=f"uint{bits}", with_scaling=True, with_zeros=True, zeros_mode="quantized"``
takes (the same arrays bitblas_jax.quantize returns for that config):
``w[n, k] = (values[n, k] - zeros[n, g]) * scales[n, g]`` with ``g = k // group_size``,
after the activations are permuted with ``x[..., perm]`` when ``perm`` is not None
(GPTQ act-order).

Both front ends build on it: bitblas_jax.flax (Linear.from_gptq / from_awq and
bitblas_jax.flax.checkpoints.import_gptq / import_awq) and the PyTorch shim
(Linear.repack_from_gptq / repack_from_awq). It imports nothing from either, so the
shim does not pull in Flax.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "UnpackedQuant", "unpack_gptq", "unpack_awq", "pack_gptq", "pack_awq",
    "unpack_int32", "pack_int32", "AWQ_ORDER", "AWQ_REVERSE_ORDER",
]

# AutoAWQ (GEMM kernels) packs 8 nibbles of one int32 in this column order:
# bit field i (bits 4i..4i+3) holds column 8c + AWQ_ORDER[i].
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)   # column j lives in field AWQ_REVERSE_ORDER[j]


class UnpackedQuant(NamedTuple):
    """A GPTQ / AWQ linear layer unpacked into bitblas_jax's "quantized zeros" form.

    values: uint8 [N, K], element values 0 .. 2**bits-1 (N = out_features, K = in_features),
        columns already in ``perm`` order when perm is not None.
    zeros:  uint8 [N, G], integer zero points (the "+1" of version-1 GPTQ files already applied).
    scales: [N, G], the checkpoint's float dtype (usually float16), unchanged.
    perm:   int32 [K] or None. The layer computes ``y = x[..., perm] @ dequant(values)^T``;
        None when the groups are contiguous (no act-order, or act-order with one group).
    group_size: K // G (contiguous groups after the permutation).
    bits: 2, 4 or 8.
    """
    values: np.ndarray
    zeros: np.ndarray
    scales: np.ndarray
    perm: np.ndarray | None
    group_size: int
    bits: int

    @property
    def W_dtype(self) -> str:
        return f"uint{self.bits}"

    def dequantize(self) -> np.ndarray:
        """float64 [N, K] weight in ORIGINAL column order (the perm undone)."""
        g = self.group_size
        w = (self.values.astype(np.float64) - np.repeat(self.zeros.astype(np.float64), g, 1)) \
            * np.repeat(self.scales.astype(np.float64), g, 1)
        if self.perm is None:
            return w
        out = np.empty_like(w)
        out[:, self.perm] = w
        return out


def _check_bits(bits: int) -> int:
    if bits not in (2, 4, 8):
        raise ValueError(f"bits={bits}: only 2, 4 and 8-bit GPTQ / AWQ packing is supported "
                         "(3-bit GPTQ packs across int32 words and is not handled)")
    return bits


def unpack_int32(packed, bits: int, axis: int) -> np.ndarray:
    """int32 words -> unsigned fields, low bits first, expanding ``axis`` by 32/bits.

    Element j of a word is bits [bits*j, bits*j + bits). Returns uint8.
    """
    _check_bits(bits)
    p = np.asarray(packed)
    if p.dtype not in (np.int32, np.uint32):
        raise TypeError(f"packed tensor must be int32 (or uint32), got {p.dtype}")
    p = np.moveaxis(p.view(np.uint32), axis, -1)
    per = 32 // bits
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    fields = (p[..., None] >> shifts) & np.uint32((1 << bits) - 1)        # [..., words, per]
    out = fields.reshape(p.shape[:-1] + (p.shape[-1] * per,)).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def pack_int32(values, bits: int, axis: int) -> np.ndarray:
    """Inverse of unpack_int32: unsigned values < 2**bits -> int32 words along ``axis``."""
    _check_bits(bits)
    v = np.moveaxis(np.asarray(values).astype(np.uint32), axis, -1)
    per = 32 // bits
    if v.shape[-1] % per:
        raise ValueError(f"axis length {v.shape[-1]} is not a multiple of {per} ({bits}-bit in int32)")
    if v.size and v.max() >= (1 << bits):
        raise ValueError(f"values must be < 2**{bits}")
    v = v.reshape(v.shape[:-1] + (v.shape[-1] // per, per))
    words = np.bitwise_or.reduce(v << (np.arange(per, dtype=np.uint32) * bits), axis=-1)
    return np.moveaxis(words.astype(np.uint32).view(np.int32), -1, axis)


def _perm_from_g_idx(g_idx, K: int, G: int) -> tuple[np.ndarray | None, int]:
    """(perm, group_size) such that g_idx[perm] == arange(K) // group_size; perm None if identity."""
    if K % G:
        raise ValueError(f"in_features K={K} is not a multiple of the number of groups G={G}")
    gs = K // G
    if g_idx is None:
        return None, gs
    g = np.asarray(g_idx).astype(np.int64).reshape(-1)
    if g.shape != (K,):
        raise ValueError(f"g_idx must have shape [K]=({K},), got {np.shape(g_idx)}")
    if g.size and (g.min() < 0 or g.max() >= G):
        raise ValueError(f"g_idx values must lie in [0, {G}), got [{g.min()}, {g.max()}]")
    contiguous = np.arange(K) // gs
    if np.array_equal(g, contiguous) or G == 1:
        return None, gs
    perm = np.argsort(g, kind="stable")
    if not np.array_equal(g[perm], contiguous):
        counts = np.bincount(g, minlength=G)
        raise ValueError("g_idx groups have unequal sizes "
                         f"(min {counts.min()}, max {counts.max()}, expected {gs} each); "
                         "bitblas_jax needs equal-sized groups")
    return perm.astype(np.int32), gs


def unpack_gptq(qweight, qzeros, scales, g_idx=None, *, bits: int = 4,
                version: int = 1) -> UnpackedQuant:
    """Unpack one GPTQ (AutoGPTQ / GPTQModel / HF "gptq") linear layer.

    Args:
      qweight: int32 [K * bits / 32, N]; element k of column n is field k % (32/bits)
        (low bits first) of word qweight[k // (32/bits), n].
      qzeros: int32 [G, N * bits / 32], packed the same way along N.
      scales: float [G, N] (float16 in most checkpoints).
      g_idx: int [K] group of each input channel, or None (= k // (K/G)). With act-order
        (desc_act=True) the groups are not contiguous: K is sorted by g_idx (stable) and
        the permutation is returned as ``perm`` (apply it to the activations).
      bits: 2, 4 or 8.
      version: the GPTQ file format's own number (GPTQModel's checkpoint_format "gptq" = 1,
        "gptq_v2" = 2). 1 stores zero - 1, so zero = (qzeros + 1) & (2**bits - 1), as
        BitBLAS's repack_from_gptq and exllama read it; 2 stores the zero (zero = qzeros).

    Returns an UnpackedQuant: values uint8 [N, K], zeros uint8 [N, G], scales [N, G], perm,
    group_size, bits; the weight is ``(values - zeros) * scales`` per group.
    """
    _check_bits(bits)
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    per = 32 // bits
    qweight, qzeros, scales = np.asarray(qweight), np.asarray(qzeros), np.asarray(scales)
    if qweight.ndim != 2 or qzeros.ndim != 2 or scales.ndim != 2:
        raise ValueError("qweight, qzeros and scales must be 2-D")
    K, N = qweight.shape[0] * per, qweight.shape[1]
    G = scales.shape[0]
    if scales.shape != (G, N):
        raise ValueError(f"scales must be [G, N=({N})], got {scales.shape}")
    if qzeros.shape != (G, N // per) or N % per:
        raise ValueError(f"qzeros must be [G={G}, N/{per}={N // per}], got {qzeros.shape}")
    w = unpack_int32(qweight, bits, axis=0)                      # [K, N]
    z = unpack_int32(qzeros, bits, axis=1).astype(np.int32)      # [G, N]
    if version == 1:
        z = (z + 1) & ((1 << bits) - 1)
    perm, gs = _perm_from_g_idx(g_idx, K, G)
    values = w.T                                                  # [N, K]
    if perm is not None:
        values = values[:, perm]
    return UnpackedQuant(np.ascontiguousarray(values, np.uint8), np.ascontiguousarray(z.T.astype(np.uint8)),
                         np.ascontiguousarray(scales.T), perm, gs, bits)


def pack_gptq(values, zeros, scales, g_idx=None, *, bits: int = 4, version: int = 1):
    """The GPTQ packer (for tests and export): the inverse of unpack_gptq.

    values: [N, K] ints in ORIGINAL column order, zeros [N, G] ints, scales [N, G].
    Returns (qweight int32 [K*bits/32, N], qzeros int32 [G, N*bits/32], scales [G, N],
    g_idx int32 [K]). With version=1 the stored zero is (zero - 1) & mask.
    """
    values, zeros = np.asarray(values), np.asarray(zeros).astype(np.int64)
    N, K = values.shape
    G = zeros.shape[1]
    if version == 1:
        zeros = (zeros - 1) & ((1 << bits) - 1)
    qweight = pack_int32(values.T, bits, axis=0)
    qzeros = pack_int32(zeros.T, bits, axis=1)
    if g_idx is None:
        g_idx = np.arange(K, dtype=np.int32) // (K // G)
    return qweight, qzeros, np.ascontiguousarray(np.asarray(scales).T), np.asarray(g_idx, np.int32)


def _awq_cols(x: np.ndarray, order) -> np.ndarray:
    """Reorder the last axis within blocks of 8 columns: out[..., 8c + j] = x[..., 8c + order[j]]."""
    n = x.shape[-1]
    if n % 8:
        raise ValueError(f"AWQ packing needs a multiple of 8 columns, got {n}")
    idx = (np.arange(n) // 8) * 8 + np.asarray(order)[np.arange(n) % 8]
    return x[..., idx]


def unpack_awq(qweight, qzeros, scales, *, bits: int = 4) -> UnpackedQuant:
    """Unpack one AutoAWQ GEMM-format linear layer (``version="gemm"``).

    Args:
      qweight: int32 [K, N / 8]; bit field i of word [k, c] holds column
        8c + AWQ_ORDER[i] with AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7).
      qzeros: int32 [G, N / 8], same packing (zero = qzeros, no +1).
      scales: float [G, N].
      bits: 4 (AutoAWQ's only width).
    Returns an UnpackedQuant (perm None; groups are contiguous, group_size = K / G).
    """
    if bits != 4:
        raise ValueError(f"AutoAWQ packs 4-bit weights only, got bits={bits}")
    qweight, qzeros, scales = np.asarray(qweight), np.asarray(qzeros), np.asarray(scales)
    K, N = qweight.shape[0], qweight.shape[1] * 8
    G = scales.shape[0]
    if scales.shape != (G, N) or qzeros.shape != (G, N // 8):
        raise ValueError(f"AWQ shapes: qweight [K, N/8]={qweight.shape} needs scales [G, {N}] and "
                         f"qzeros [G, {N // 8}], got {scales.shape} and {qzeros.shape}")
    if K % G:
        raise ValueError(f"K={K} is not a multiple of G={G}")
    w = _awq_cols(unpack_int32(qweight, 4, axis=1), AWQ_REVERSE_ORDER)     # [K, N]
    z = _awq_cols(unpack_int32(qzeros, 4, axis=1), AWQ_REVERSE_ORDER)      # [G, N]
    return UnpackedQuant(np.ascontiguousarray(w.T), np.ascontiguousarray(z.T), np.ascontiguousarray(scales.T),
                         None, K // G, 4)


def pack_awq(values, zeros, scales):
    """The AutoAWQ GEMM packer (inverse of unpack_awq): values [N, K], zeros [N, G], scales [N, G]
    -> (qweight int32 [K, N/8], qzeros int32 [G, N/8], scales [G, N])."""
    qweight = pack_int32(_awq_cols(np.asarray(values).T, AWQ_ORDER), 4, axis=1)
    qzeros = pack_int32(_awq_cols(np.asarray(zeros).T, AWQ_ORDER), 4, axis=1)
    return qweight, qzeros, np.ascontiguousarray(np.asarray(scales).T)
