"""Float64 NumPy reference of the whole op, from element values (not the packed layout).

Used by the tests and the quick start example to check the kernels.
"""
from __future__ import annotations

import numpy as np

from . import formats


def dequantize_values(values, W_dtype: str, mode: str = "none", scale=None, zeros=None,
                      group_size: int = -1, A_dtype: str = "float16") -> np.ndarray:
    """Element values [N, K] -> the dequantized weight, float64, rounded to A_dtype."""
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
    return w.astype(formats.NUMPY_DTYPES[A_dtype]).astype(np.float64)


def matmul(A, w_dequant: np.ndarray, bias=None) -> np.ndarray:
    """C = A @ Wd^T (+ bias), float64, leading dims of A kept."""
    C = np.asarray(A).astype(np.float64) @ w_dequant.T
    if bias is not None:
        C = C + np.asarray(bias).astype(np.float64)
    return C
