"""Float64 / int64 NumPy reference of the whole op, from element values (not the packed layout).

Used by the tests and the quick start example to check the kernels. With int8 / float8 activations
the weight is not rounded to A's dtype (the kernels scale group sums instead) and the float64 result
is exact up to float64 rounding; `integer_matmul` is the exact int64 sum that int32 outputs equal.
"""
from __future__ import annotations

import numpy as np

from . import formats


def dequantize_values(values, W_dtype: str, mode: str = "none", scale=None, zeros=None,
                      group_size: int = -1, A_dtype: str = "float16") -> np.ndarray:
    """Element values [N, K] -> the dequantized weight, float64, rounded to A_dtype (not rounded for
    int8 / float8 activations)."""
    fmt = formats.get_format(W_dtype)
    w = formats.decode_codes(fmt, formats.values_to_codes(fmt, np.asarray(values)))
    K = w.shape[1]
    g = K if group_size == -1 else group_size
    rep = lambda x: np.repeat(np.asarray(x).astype(np.float64), g, axis=1)  # noqa: E731
    if mode == "scale":
        w = w * rep(scale)
    elif mode == "rescale":
        w = w * rep(scale) - rep(zeros)
    elif mode in ("original", "quantized"):
        w = (w - rep(zeros)) * rep(scale)
    if formats.is_quantized_activation(A_dtype):
        return w
    return w.astype(formats.NUMPY_DTYPES[A_dtype]).astype(np.float64)


def matmul(A, w_dequant: np.ndarray, bias=None, a_scale=None) -> np.ndarray:
    """C = (a_scale *) A @ Wd^T (+ bias), float64, leading dims of A kept. a_scale: a scalar or
    A.shape[:-1] (int8 / float8 activations' per-tensor / per-token scales)."""
    C = np.asarray(A).astype(np.float64) @ w_dequant.T
    if a_scale is not None:
        C = C * np.asarray(a_scale, np.float64)[..., None]
    if bias is not None:
        C = C + np.asarray(bias).astype(np.float64)
    return C


def integer_matmul(A, values, W_dtype: str) -> np.ndarray:
    """The exact int64 sum A @ w^T of int8 activations and integer element values [N, K]."""
    fmt = formats.get_format(W_dtype)
    w = formats.decode_codes(fmt, formats.values_to_codes(fmt, np.asarray(values))).astype(np.int64)
    return np.asarray(A).astype(np.int64) @ w.T


def saturate_int8(v) -> np.ndarray:
    """int8 output of a float value: round half to even, saturate to [-128, 127], NaN -> 0."""
    v = np.nan_to_num(np.asarray(v, np.float64), nan=0.0)
    return np.clip(np.rint(v), -128, 127).astype(np.int8)
