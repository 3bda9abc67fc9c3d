"""Round-to-nearest quantization of a float weight into what transform_weight takes.

BitBLAS's quick start leaves "TODO(process weight to int4)"; this fills it:
    values, scale, zeros = quantize(weight, "int4", group_size=128)
    packed = matmul.transform_weight(values)
    C = matmul(A, packed, scale=scale)
"""
from __future__ import annotations

import numpy as np

from . import formats

_FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}


def _nearest_code(x: np.ndarray, table) -> np.ndarray:
    """Index of the nearest table entry (ties to the lower index)."""
    t = np.asarray(table, np.float64)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    idx = np.clip(np.searchsorted(ts, x), 1, len(ts) - 1)
    left, right = ts[idx - 1], ts[idx]
    pick = np.where(np.abs(x - left) <= np.abs(right - x), idx - 1, idx)
    return order[pick]


def quantize(weight, W_dtype: str, group_size: int = -1, with_scaling: bool = True,
             with_zeros: bool = False, zeros_mode: str = "original", A_dtype: str = "float16"):
    """Quantize a float weight [N, K] to (values, scale, zeros).

    values: element values ([N, K] ints for int/uint, codes for nf4/fp4, a float8
    array for fp8, the cast weight for float16/bfloat16); scale: [N, K/group]
    in A_dtype or None; zeros: [N, K/group] in A_dtype (original, rescale), an
    integer array (quantized), or None. Scales are computed per group from the
    group's range: symmetric (absmax) without zeros, asymmetric (min..max) with.
    """
    fmt = formats.get_format(W_dtype)
    w = np.asarray(weight, np.float64)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D [N, K], got shape {w.shape}")
    N, K = w.shape
    if fmt.kind == "dense":
        return w.astype(formats.DENSE_NUMPY[fmt.name]), None, None
    if with_zeros and not with_scaling:
        raise ValueError("with_zeros=True needs with_scaling=True")
    mode = (zeros_mode if with_zeros else "scale") if with_scaling else "none"
    if mode not in formats.allowed_modes(fmt):
        raise ValueError(f"W_dtype={fmt.name!r} does not support mode {mode!r}; "
                         f"allowed: {formats.allowed_modes(fmt)}")
    if not with_scaling:
        return _round_values(fmt, w), None, None
    g = K if group_size in (-1, None) else group_size
    if g <= 0 or K % g:
        raise ValueError(f"group_size={group_size} must be -1 or divide K={K}")
    adt = formats.NUMPY_DTYPES[A_dtype]
    wg = w.reshape(N, K // g, g)
    if not with_zeros:
        scale = _symmetric_scale(fmt, wg, adt)
        vals = _round_values(fmt, wg / scale.astype(np.float64)[..., None])
        return vals.reshape(N, K), scale, None
    return _asymmetric(fmt, wg, zeros_mode, adt)


def _safe(s: np.ndarray) -> np.ndarray:
    return np.where(s > 0, s, 1.0)


def _symmetric_scale(fmt, wg, adt) -> np.ndarray:
    amax = np.abs(wg).max(-1)
    if fmt.kind == "int":
        top = 1.0 if fmt.bits == 1 else 2 ** (fmt.bits - 1) - 1
        if fmt.bits == 1:
            amax = np.abs(wg).mean(-1)            # {-1, +1} * mean |w| minimizes the L2 error
        s = amax / top
    elif fmt.kind == "uint":
        s = amax / (2 ** fmt.bits - 1)
    elif fmt.kind == "table":
        s = amax / (1.0 if fmt.name == "nf4" else 6.0)
    else:
        s = amax / _FP8_MAX[fmt.name]
    s = _safe(s).astype(adt)
    return np.where(s.astype(np.float64) > 0, s, np.ones((), adt))


def _round_values(fmt, x: np.ndarray) -> np.ndarray:
    if fmt.kind == "int":
        if fmt.bits == 1:
            return np.where(x >= 0, 1, -1).astype(np.int8)
        lo, hi = fmt.value_range
        return np.clip(np.rint(x), lo, hi).astype(np.int8 if fmt.bits <= 8 else np.int32)
    if fmt.kind == "uint":
        lo, hi = fmt.value_range
        return np.clip(np.rint(x), lo, hi).astype(np.uint8)
    if fmt.kind == "table":
        table = formats.NF4_VALUES if fmt.name == "nf4" else formats.FP4_E2M1_VALUES
        return _nearest_code(x, table).astype(np.uint8)
    m = _FP8_MAX[fmt.name]
    return np.clip(x, -m, m).astype(formats.FP8_NUMPY[fmt.name])


def _asymmetric(fmt, wg, zeros_mode, adt):
    """min..max of each group onto the integer grid [lo, hi]."""
    N, G, g = wg.shape
    lo, hi = fmt.value_range
    wmin, wmax = wg.min(-1), wg.max(-1)
    scale = _safe((wmax - wmin) / (hi - lo)).astype(adt)
    s = scale.astype(np.float64)
    if zeros_mode == "quantized":
        zeros = np.clip(np.rint(lo - wmin / s), lo, hi).astype(fmt.zeros_dtype)
        z = zeros.astype(np.float64)
        vals = np.clip(np.rint(wg / s[..., None] + z[..., None]), lo, hi)
    elif zeros_mode == "original":          # w = (q - z) * s
        zeros = (lo - wmin / s).astype(adt)
        z = zeros.astype(np.float64)
        vals = np.clip(np.rint(wg / s[..., None] + z[..., None]), lo, hi)
    else:                                   # rescale: w = q * s - z
        zeros = (lo * s - wmin).astype(adt)
        z = zeros.astype(np.float64)
        vals = np.clip(np.rint((wg + z[..., None]) / s[..., None]), lo, hi)
    if fmt.bits == 1:                       # int1's grid is {-1, +1}
        vals = np.where(vals >= 0, 1, -1)
    dtype = np.uint8 if fmt.kind == "uint" else np.int8
    return vals.reshape(N, G * g).astype(dtype), scale, zeros
