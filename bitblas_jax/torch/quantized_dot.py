"""int8 / float8 activations in torch: the exact arithmetic of bitblas_jax/quantized_dot.py (its docstring
is the arithmetic; README, "int8 and float8 activations") on torch tensors of any device.

`matmul_exact` is quantized_dot.matmul_xla in torch: the CUDA path runs it where the plan says "xla_dot"
(quantized_cuda.py); `finish` / `epilogue` / `cast_out` are quantized_dot's, shared by the kernels' paths
and the op's activation scales where no kernel epilogue applies them (ops._run, quantized_cuda.run_cuda). No host sync and no host-to-device
copy (CUDA-graph capture works); every buffer is a fresh allocation of the call.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .. import formats, layout

__all__ = ["matmul_exact", "unpack_codes", "weight_values", "finish", "epilogue", "cast_out", "per_channel_v"]


# ---- the epilogue (quantized_dot.cast_out / epilogue / finish) -----------------------------------
def cast_out(v: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """float32 -> the output dtype: int8 rounds half to even and saturates to [-128, 127] (NaN -> 0);
    float outputs round to nearest."""
    if out_dtype == torch.int8:
        return torch.nan_to_num(v, nan=0.0).clamp(-128.0, 127.0).round().to(torch.int8)
    return v.to(out_dtype)


def epilogue(v: torch.Tensor, bias, out_dtype: torch.dtype, a_scale=None) -> torch.Tensor:
    """C = cast_out(a_scale * v + bias) in float32 (a_scale: per token, of shape v.shape[:-1], or a
    scalar tensor)."""
    if a_scale is not None:
        v = v * (a_scale[..., None] if a_scale.dim() else a_scale)
    if bias is not None and bias.numel():
        v = v + bias.to(torch.float32)
    return cast_out(v, out_dtype)


def finish(sums: torch.Tensor, bias, out_dtype: torch.dtype) -> torch.Tensor:
    """C from the int32 sums S (mode none) or the float32 v: S itself for int32 output, else
    epilogue(float32(S) or v, bias)."""
    if out_dtype == torch.int32:
        return sums
    return epilogue(sums.to(torch.float32), bias, out_dtype)


# ---- the exact path in torch (quantized_dot.matmul_xla) ---------------------------------------------
def unpack_codes(W: torch.Tensor, N: int, K: int, bits: int,
                 k_range: tuple[int, int] | None = None) -> torch.Tensor:
    """Packed uint8 [N, K * bits / 8] -> raw codes int32 [N, K] on W's device: layout.unpack in torch;
    with k_range (k0, k1), multiples of the packed tile's k, the columns k0..k1 only.

    In a packed tile (docs/LAYOUT.md, layout._lane_maps) lane l = 4 r + c holds the elements
    f = 8 s + 4 i2 + 2 i1 + i0 of tile row r + 8 i1, column 16 s + 8 i2 + 2 c + i0; element f sits in
    32-bit word f // (32 / bits) at field (e % 2) * (32 / bits / 2) + e // 2, e = f % (32 / bits). Every
    index is a digit of a power-of-two mixed-radix number, so the unpack is shifts, masks and one
    transpose (no gather tensor to copy to the device). tests/test_torch_qact.py checks it against
    layout.unpack for every bit width.
    """
    tk, per_word = layout.tile_k(bits), 32 // bits
    nt, n_frag = N // layout.TILE_N, 128 // bits
    k0, k1 = (0, K) if k_range is None else k_range
    tiles = W.reshape(nt, K // tk, layout.TILE_BYTES)[:, k0 // tk:k1 // tk]          # tiles are independent
    kt = tiles.shape[1]
    if tiles.storage_offset() % 4:
        tiles = tiles.clone()
    words = tiles.reshape(nt, kt, 32, 16).view(torch.int32)                        # [nt, kt, lane, 4]
    shifts = torch.arange(per_word, dtype=torch.int32, device=W.device) * bits
    fields = (words[..., None] >> shifts) & ((1 << bits) - 1)                     # [.., word, field]
    # field = (e % 2) * per_word / 2 + e // 2: split it and order by e
    elements = fields.reshape(nt, kt, 32, 4, 2, per_word // 2).transpose(-1, -2)
    digits = elements.reshape(nt, kt, 8, 4, n_frag // 8, 2, 2, 2)                 # r, c, s, i2, i1, i0
    return digits.permute(0, 6, 2, 1, 4, 5, 3, 7).reshape(N, kt * tk)              # (i1 r) x (s i2 c i0)


@functools.lru_cache(maxsize=None)
def _affine_decode(w_format: str) -> tuple[int, int]:
    """(value of code 0, step) of an integer format: value = code * step + offset (formats.decode_codes)."""
    v0, v1 = formats.decode_codes(formats.get_format(w_format), np.array([0, 1]))
    return int(v0), int(v1 - v0)


def weight_values(W: torch.Tensor, N: int, K: int, w_format: str, dtype: torch.dtype,
                  k_range: tuple[int, int] | None = None) -> torch.Tensor:
    """The packed weight's element values [N, K] (formats.py) in dtype, exact: integer formats (in int8
    or any float dtype) and the float8 formats (float32 / bfloat16); k_range as unpack_codes'."""
    fmt = formats.get_format(w_format)
    codes = unpack_codes(W, N, K, fmt.bits, k_range)
    if fmt.kind == "fp8":
        return codes.to(torch.uint8).view(getattr(torch, fmt.name)).to(dtype)
    if not fmt.is_integer:
        raise ValueError(f"bitblas_jax::matmul: w_format={fmt.name!r} does not take int8 / float8 activations")
    offset, step = _affine_decode(fmt.name)
    return (codes * step + offset).to(dtype)


# Elements of a weight slice [N, k] and of a chunk's group sums [groups, M, N] held at once (the float64
# ones: 128 MB): the exact path walks K in slices of whole groups and whole packed tiles.
_CHUNK_ELEMENTS = 1 << 24


def _k_slice(M: int, N: int, K: int, unit: int, group_size: int | None) -> int:
    """How many k the exact path takes at once: a multiple of `unit` (whole groups and packed tiles)
    within _CHUNK_ELEMENTS of weight and, with groups, of group sums."""
    units = max(1, _CHUNK_ELEMENTS // (N * unit))
    if group_size is not None:
        units = min(units, max(1, _CHUNK_ELEMENTS // max(1, M * N) * group_size // unit))
    return min(K, units * unit)


def _int32_wrapped(S: torch.Tensor) -> torch.Tensor:
    """Exact integer sums (int64, or integer-valued float64) -> int32, wrapping mod 2^32 as an int32 GEMM
    does."""
    x = S.to(torch.int64)
    return (((x + (1 << 31)) & ((1 << 32) - 1)) - (1 << 31)).to(torch.int32)


def _group_term(S, asum, s, z, mode: str):
    """quantized_dot._group_term for a chunk of groups: S [c, M, N], asum [c, M], s / z [c, N]."""
    f32 = torch.float32
    if mode == "none":
        return S.to(f32)
    s = s.to(f32)[:, None, :]
    if mode == "scale":
        return s * S.to(f32)
    if mode == "quantized":
        return s * (S - z.to(S.dtype)[:, None, :] * asum[:, :, None]).to(f32)
    zf, af = z.to(f32)[:, None, :], asum.to(f32)[:, :, None]
    if mode == "original":
        return s * (S.to(f32) - zf * af)
    return s * S.to(f32) - zf * af          # rescale


def per_channel_v(S: torch.Tensor, A2: torch.Tensor, scale, zeros, mode: str) -> torch.Tensor:
    """quantized_dot.per_channel_v: v [M, N] from S [M, N], the float32 sums over all of K, for a mode
    with one group per row (or none); Asum summed from A2 [M, K] in float32 where the mode has zeros."""
    if mode == "none":
        return S.to(torch.float32)
    M, N = S.shape
    asum = (A2.to(torch.float32).sum(-1) if mode in formats.ZEROS_MODES
            else torch.zeros((M,), dtype=torch.float32, device=S.device))
    z = zeros.reshape(1, N) if zeros is not None and zeros.numel() else torch.zeros((1, N), dtype=torch.float32,
                                                                                   device=S.device)
    return _group_term(S[None], asum[None], scale.reshape(1, N), z, mode)[0]


def matmul_exact(A2, W, scale, zeros, bias, w_format: str, a_dtype: str, mode: str, group_size: int,
                 out_dtype: torch.dtype, int_mm: bool | None = None) -> torch.Tensor:
    """C [M, N] in out_dtype for int8 / float8 A2 [M, K] and the packed W [N, K * bits / 8], on the
    tensors' device: quantized_dot.matmul_xla in torch (its docstring is the arithmetic).

    K is walked in slices of whole groups and whole packed tiles (_k_slice: bounded memory on any layer);
    each slice's weight is unpacked on the device (weight_values). Group sums S:
    - int8 A: exact int32. With int_mm (default: CUDA tensors with M > 16, what torch._int_mm's shape
      rules take) torch._int_mm (int8 tensor cores, int32 sums); else a float64 matmul, exact because
      every product is an integer of at most 2^14 in magnitude and K <= 2^30 keeps |S| <= 2^44 < 2^53,
      then wrapped to int32 as an int32 GEMM wraps (exact while |S| < 2^31);
    - float8 A: both operands widened to float32 (exact: every float8 and int4 value is one, and a
      bfloat16 / TF32 one, so torch's reduced-precision float32 matmul settings change nothing), products
      exact, float32 accumulation.
    Then the float32 group terms (quantized_dot._group_term) summed over the groups, and finish. Mode none
    is one group: its slices' sums add up exactly (int64, wrapped at the end) or in float32.
    """
    M, K = A2.shape
    N = W.shape[0]
    fmt = formats.get_format(w_format)
    int8 = a_dtype == "int8"
    if int8:
        acc, w_dtype = torch.int32, torch.int8
        if int_mm is None:
            int_mm = A2.is_cuda and M > 16
    else:
        acc, w_dtype, int_mm = torch.float32, torch.float32, False
    tk = layout.tile_k(fmt.bits)
    grouped = mode != "none"
    unit = math.lcm(group_size, tk) if grouped else tk
    kc = _k_slice(M, N, K, unit, group_size if grouped else None)
    zeros_mode = mode in formats.ZEROS_MODES
    s = scale.t() if scale is not None else None                                     # [G, N]
    z = zeros.t() if zeros is not None else None

    def sums(a, w):
        """S [..., M, N] of a [..., M, k] and w [..., N, k]: int32 (or int64 for mode none) / float32."""
        if int_mm:
            if a.dim() == 2:
                return torch._int_mm(a.contiguous(), w.t())
            return torch.stack([torch._int_mm(a[i].contiguous(), w[i].contiguous().t())
                                for i in range(a.shape[0])])
        if int8:
            S = torch.matmul(a.to(torch.float64), w.to(torch.float64).transpose(-1, -2))
            return S.to(torch.int64) if a.dim() == 2 else _int32_wrapped(S)
        return torch.matmul(a, w.transpose(-1, -2))

    total = None
    for k0 in range(0, K, kc):
        k1 = min(K, k0 + kc)
        w = weight_values(W, N, K, fmt.name, w_dtype, (k0, k1))                     # [N, k]
        a = A2[:, k0:k1] if int8 else A2[:, k0:k1].to(torch.float32)                # [M, k]
        if not grouped:
            S = sums(a, w)
            S = S.to(torch.int64) if int8 else S
            total = S if total is None else total + S
            continue
        G, g0 = (k1 - k0) // group_size, k0 // group_size
        ag = a.reshape(M, G, group_size).transpose(0, 1)                            # [G, M, g]
        wg = w.reshape(N, G, group_size).transpose(0, 1)                            # [G, N, g]
        asum = ag.sum(-1, dtype=acc) if zeros_mode else None                         # [G, M]
        term = _group_term(sums(ag, wg), asum, s[g0:g0 + G], None if z is None else z[g0:g0 + G], mode).sum(0)
        total = term if total is None else total + term
    if not grouped and int8:
        total = _int32_wrapped(total)
    return finish(total, bias, out_dtype)
