"""The packed weight layout (docs/LAYOUT.md), in NumPy.

A weight [N, K] of `bits`-bit codes is cut into tiles of 16 rows x tile_k
columns (tile_k = 256 / bits: 16 for 16-bit, 32 for 8-bit, 64 for 4-bit, 128
for 2-bit, 256 for 1-bit). Each tile is 512 bytes: 32 lanes x 16 bytes, where
lane l holds, in order, its fragments of the m16n8k16 tensor-core A operand
for the tile's k-steps, so one 128-bit load feeds dequant and mma directly.
Tiles are stored row band by row band ([N/16][K/tile_k][512 bytes]) so a warp
streaming a band reads contiguous memory. Inside each 32-bit word even
elements fill the low half and odd ones the high half (the magic-number
dequant then yields half2 pairs with one mask).

The packed array is uint8 with shape [N, K * bits / 8]: the byte count of a
plain packed matrix, but its rows are NOT weight rows. Always go through
Matmul.transform_weight / Matmul.dequantize.

K-shard order (row-parallel sharding): a column block of the packed array is not
the packing of a K block (a row's bytes are a run of its band's tiles). The weight
packed for `k_shards` shards is the packing of each K block placed side by side,
[N, K_1 bytes | K_2 bytes | ...], so sharding its columns k_shards ways hands each
device the packing of its K block. It is a fixed permutation of the packed bytes
(to_k_shards / from_k_shards), no repacking.
"""
from __future__ import annotations

import functools

import numpy as np

TILE_N = 16
TILE_BYTES = 512


def tile_k(bits: int) -> int:
    return 256 // bits


@functools.lru_cache(maxsize=None)
def _lane_maps(bits: int):
    """(rows, cols, word, field) of every (lane, fragment element) of one tile."""
    n_frag = 128 // bits                        # elements per lane
    lane = np.arange(32)[:, None]
    f = np.arange(n_frag)[None, :]
    s, i = f // 8, f % 8
    rows = lane // 4 + 8 * ((i // 2) % 2)
    cols = 16 * s + 2 * (lane % 4) + (i % 2) + 8 * (i // 4)
    per_word = 32 // bits
    e = f % per_word
    field = (e % 2) * (per_word // 2) + e // 2
    return (np.broadcast_to(rows, (32, n_frag)), np.broadcast_to(cols, (32, n_frag)),
            np.broadcast_to(f // per_word, (32, n_frag)), np.broadcast_to(field, (32, n_frag)))


MAX_K = (1 << 30) - 256      # the CUDA handler refuses K >= 2^30 (csrc/cuda/matmul_cuda.cu weight_params)
MAX_N = (1 << 31) - TILE_N   # ... and N >= 2^31


def check_shape(N: int, K: int, bits: int) -> None:
    """The tiling rule; raises ValueError naming the dimension."""
    if N % TILE_N:
        raise ValueError(f"N={N} must be a multiple of {TILE_N} (the packed layout's tile rows)")
    tk = tile_k(bits)
    if K % tk:
        raise ValueError(f"K={K} must be a multiple of {tk} for {bits}-bit weights "
                         f"(the packed layout's tile columns, 256/bits)")
    if K > MAX_K:
        raise ValueError(f"K={K} is above the largest supported K, {MAX_K} (2^30 - 256: the GPU "
                         f"kernels count packed tiles along K in 32 bits)")
    if N > MAX_N:
        raise ValueError(f"N={N} is above the largest supported N, {MAX_N} (2^31 - 16: the GPU "
                         f"kernels' grid counts weight rows in 32 bits)")


def packed_shape(N: int, K: int, bits: int) -> tuple[int, int]:
    return N, K * bits // 8


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Raw codes [N, K] (unsigned ints < 2**bits) -> packed uint8 [N, K*bits/8]."""
    codes = np.asarray(codes).astype(np.uint32)
    N, K = codes.shape
    check_shape(N, K, bits)
    tk = tile_k(bits)
    rows, cols, word, field = _lane_maps(bits)
    tiles = codes.reshape(N // TILE_N, TILE_N, K // tk, tk).transpose(0, 2, 1, 3)
    lane_vals = tiles[:, :, rows, cols]                       # [nt, kt, 32, n_frag]
    shifted = lane_vals << (field * bits).astype(np.uint32)
    words = np.zeros(lane_vals.shape[:3] + (4,), np.uint32)
    for w in range(4):
        words[..., w] = np.bitwise_or.reduce(np.where(word == w, shifted, 0), axis=-1)
    return words.astype("<u4").view(np.uint8).reshape(packed_shape(N, K, bits))


def pack_traced(codes, bits: int):
    """`pack` in jax.numpy (jittable, for weights quantized on the device or under a trace)."""
    import jax
    import jax.numpy as jnp
    N, K = codes.shape
    check_shape(N, K, bits)
    tk = tile_k(bits)
    rows, cols, _, field = _lane_maps(bits)
    n_frag = rows.shape[1]
    gather = (rows * tk + cols).reshape(-1)
    tiles = codes.astype(jnp.uint32).reshape(N // TILE_N, TILE_N, K // tk, tk).transpose(0, 2, 1, 3)
    lane_vals = tiles.reshape(N // TILE_N, K // tk, TILE_N * tk)[..., gather]
    shifted = lane_vals.reshape(N // TILE_N, K // tk, 32, n_frag) << jnp.asarray(field * bits, jnp.uint32)
    # the fields of one word are disjoint bit ranges: their sum is their bitwise or
    words = shifted.reshape(N // TILE_N, K // tk, 32, 4, n_frag // 4).sum(-1, dtype=jnp.uint32)
    return jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(packed_shape(N, K, bits))


def check_k_shards(N: int, K: int, bits: int, k_shards: int) -> None:
    """K must split into k_shards blocks of whole tiles; raises ValueError naming the numbers."""
    tk = tile_k(bits)
    if k_shards < 1 or K % (k_shards * tk):
        raise ValueError(f"k_shards={k_shards}: K={K} must split into {k_shards} blocks of whole "
                         f"packed tiles ({tk} columns for {bits}-bit weights)")


def to_k_shards(packed, N: int, K: int, bits: int, k_shards: int):
    """The packed weight (NumPy or JAX) -> its K-shard order for k_shards shards."""
    if k_shards == 1:
        return packed
    check_k_shards(N, K, bits, k_shards)
    Kb = packed_shape(N, K, bits)[1]
    return packed.reshape(N // TILE_N, k_shards, TILE_N, Kb // k_shards).transpose(0, 2, 1, 3).reshape(N, Kb)


def from_k_shards(packed, N: int, K: int, bits: int, k_shards: int):
    """Inverse of to_k_shards: the ordinary packed weight."""
    if k_shards == 1:
        return packed
    check_k_shards(N, K, bits, k_shards)
    Kb = packed_shape(N, K, bits)[1]
    return packed.reshape(N // TILE_N, TILE_N, k_shards, Kb // k_shards).transpose(0, 2, 1, 3).reshape(N, Kb)


def unpack(packed: np.ndarray, N: int, K: int, bits: int) -> np.ndarray:
    """Packed uint8 [N, K*bits/8] -> raw codes [N, K] (uint32)."""
    packed = np.ascontiguousarray(np.asarray(packed, np.uint8))
    if packed.shape != packed_shape(N, K, bits):
        raise ValueError(f"packed weight has shape {packed.shape}, expected {packed_shape(N, K, bits)}")
    tk = tile_k(bits)
    rows, cols, word, field = _lane_maps(bits)
    words = packed.reshape(N // TILE_N, K // tk, 32, 4 * 4).view("<u4")  # [nt, kt, 32, 4]
    mask = np.uint32((1 << bits) - 1)
    lane_vals = (np.take_along_axis(words, np.broadcast_to(word, words.shape[:2] + word.shape), -1)
                 >> (field * bits).astype(np.uint32)) & mask
    tiles = np.empty((N // TILE_N, K // tk, TILE_N, tk), np.uint32)
    tiles[:, :, rows, cols] = lane_vals
    return tiles.transpose(0, 2, 1, 3).reshape(N, K)
