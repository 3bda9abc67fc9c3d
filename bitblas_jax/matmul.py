"""Matmul: BitBLAS's operator object, on the bitblas_matmul primitive."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import dequant, formats, layout, primitive
from .config import MatmulConfig
from .spec import KernelSpec


class Matmul:
    """C = A x dequant(W)^T for one MatmulConfig. Jittable, vmappable, differentiable.

    Nothing is tuned or compiled at construction: the kernel choice is made at
    trace time from the static shapes.
    """

    def __init__(self, config: MatmulConfig, name: str = "matmul", **unused):
        if not isinstance(config, MatmulConfig):
            raise TypeError(f"config must be a bitblas_jax.MatmulConfig, got {type(config).__name__}")
        self.config = config
        self.name = name
        self.spec = KernelSpec.from_config(config)

    # ---- weights ------------------------------------------------------------
    def transform_weight(self, weight, scale=None, zeros=None, bias=None) -> jax.Array:
        """Element values [N, K] -> the packed uint8 weight (docs/LAYOUT.md).

        Values: integers for int/uint formats, codes 0..15 for nf4/fp4, a float8
        array for fp8, a float array for float16/bfloat16. scale/zeros/bias, if
        given, are only checked (as in BitBLAS, only the weight is returned).
        """
        cfg, fmt = self.config, self.config.format
        w = np.asarray(weight)
        if w.shape != (cfg.N, cfg.K):
            raise ValueError(f"transform_weight: weight must be [N, K] = {(cfg.N, cfg.K)}, got {w.shape}")
        if fmt.kind == "fp8" and w.dtype != formats.FP8_NUMPY[fmt.name]:
            if not np.issubdtype(w.dtype, np.floating):
                raise ValueError(f"transform_weight: {fmt.name} weight must be a float8 or float array, "
                                 f"got {w.dtype}")
        elif fmt.kind in ("int", "uint", "table") and not (
                np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
            raise ValueError(f"transform_weight: {fmt.name} weight must hold integers, got {w.dtype}")
        formats.check_values(fmt, w)
        self._check_aux(scale, zeros, bias, "transform_weight", required=False)
        return jnp.asarray(layout.pack(formats.values_to_codes(fmt, w), fmt.bits))

    def dequantize(self, W_packed, scale=None, zeros=None) -> jax.Array:
        """The [N, K] weight the matmul multiplies with, in A_dtype."""
        self._check_weight(W_packed, "dequantize")
        scale, zeros, _ = self._check_aux(scale, zeros, None, "dequantize", bias_required=False)
        return dequant.dequantize(W_packed, self.spec, scale, zeros)

    # ---- the op -----------------------------------------------------------------
    def __call__(self, A, W_packed, scale=None, zeros=None, bias=None) -> jax.Array:
        cfg = self.config
        A = jnp.asarray(A)
        if A.ndim < 1 or A.shape[-1] != cfg.K:
            raise ValueError(f"{self.name}: A must have shape [..., K={cfg.K}], got {A.shape}")
        if A.dtype != jnp.dtype(cfg.A_dtype):
            raise TypeError(f"{self.name}: A must be {cfg.A_dtype} (MatmulConfig.A_dtype), got {A.dtype}")
        self._check_weight(W_packed, self.name)
        scale, zeros, bias = self._check_aux(scale, zeros, bias, self.name)
        adt = jnp.dtype(cfg.A_dtype)
        return primitive.bind(
            A, W_packed,
            primitive.empty(adt) if scale is None else scale,
            primitive.empty(adt) if zeros is None else zeros,
            primitive.empty(adt) if bias is None else bias,
            self.spec)

    forward = __call__

    # ---- checks (trace time) -----------------------------------------------------
    def _check_weight(self, W, where):
        cfg = self.config
        want = layout.packed_shape(cfg.N, cfg.K, cfg.format.bits)
        shape, dtype = getattr(W, "shape", None), getattr(W, "dtype", None)
        if dtype != jnp.uint8 or tuple(shape) != want:
            raise ValueError(f"{where}: W_packed must be the uint8 {want} array from transform_weight "
                             f"for {cfg.W_dtype} N={cfg.N} K={cfg.K}, got {dtype} {shape}")

    def _check_aux(self, scale, zeros, bias, where, required=True, bias_required=True):
        """Presence, shape and dtype of scale / zeros / bias; floats are cast to A_dtype.

        required=False (transform_weight) checks only what is given.
        """
        cfg = self.config
        adt = jnp.dtype(cfg.A_dtype)
        groups = (cfg.N, cfg.num_groups)

        def floating(x, name, shape):
            x = jnp.asarray(x)
            if x.shape != shape:
                raise ValueError(f"{where}: {name} must have shape {shape}, got {x.shape}")
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise TypeError(f"{where}: {name} must be a float array ({cfg.A_dtype}), got {x.dtype}")
            return x.astype(adt)

        if cfg.with_scaling != (scale is not None) and (required or scale is not None):
            raise ValueError(f"{where}: scale is {'required' if cfg.with_scaling else 'not expected'} "
                             f"(MatmulConfig.with_scaling={cfg.with_scaling})")
        if cfg.with_zeros != (zeros is not None) and (required or zeros is not None):
            raise ValueError(f"{where}: zeros is {'required' if cfg.with_zeros else 'not expected'} "
                             f"(MatmulConfig.with_zeros={cfg.with_zeros})")
        if bias is not None and not cfg.with_bias:
            raise ValueError(f"{where}: bias given but MatmulConfig.with_bias=False")
        if scale is not None:
            scale = floating(scale, "scale", groups)
        if zeros is not None:
            if cfg.zeros_mode == "quantized":
                zeros = jnp.asarray(zeros)
                zdt = jnp.dtype(cfg.format.zeros_dtype)
                if zeros.shape != groups:
                    raise ValueError(f"{where}: zeros must have shape {groups}, got {zeros.shape}")
                if not jnp.issubdtype(zeros.dtype, jnp.integer):
                    raise TypeError(f"{where}: quantized zeros must be integers ({zdt}), got {zeros.dtype}")
                zeros = zeros.astype(zdt)
            else:
                zeros = floating(zeros, "zeros", groups)
        if bias is not None:
            bias = floating(bias, "bias", (cfg.N,))
        elif cfg.with_bias and required and bias_required:
            raise ValueError(f"{where}: bias is required (MatmulConfig.with_bias=True)")
        return scale, zeros, bias
