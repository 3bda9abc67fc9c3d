"""Low-bit-weight linear layers for Flax: `Linear` (NNX) and `Dense` (Linen).

Both compute ``y = x @ dequant(W)^T + bias`` with bitblas_jax's matmul, where W is
[out_features, in_features] (BitBLAS's "nt" layout; nnx.Linear's kernel is the transpose).

State of an NNX `Linear` (all ordinary NNX variables, so nnx.split / merge / state /
jit / eval_shape and Orbax work):

    qweight  QuantizedWeight  uint8 [N, K*bits/8]   packed (Matmul.transform_weight)
    scales   nnx.Param        [N, K/group] A_dtype  (with_scaling)
    zeros    nnx.Param        [N, K/group] A_dtype  (zeros_mode original / rescale)
             QuantizedWeight  int8/uint8 [N, K/group] (zeros_mode quantized)
    bias     nnx.Param        [N] A_dtype            (use_bias)
    perm     QuantizedWeight  int32 [K]              (permute_inputs: GPTQ act-order)

`QuantizedWeight` is not an `nnx.Param`, so `nnx.Optimizer(model, tx, wrt=nnx.Param)`
and `nnx.grad` leave the integer arrays alone; the scales, float zeros and bias stay
trainable (the matmul is differentiable in them).
"""
from __future__ import annotations

import contextlib
from types import MappingProxyType
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

from .. import formats, layout
from ..config import MatmulConfig
from ..gptq_awq import UnpackedQuant, unpack_awq, unpack_gptq
from ..matmul import Matmul
from ..quantize import quantize

__all__ = ["QuantizedWeight", "Linear", "Dense", "make_config", "quantize_dense_params",
           "QUANT_COLLECTION", "array_nbytes", "variable_value"]

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()

# Linen collection that holds the integer arrays of `Dense` (not "params": they are not trained).
QUANT_COLLECTION = "quantized"

_SHARDING_KEYS = ("sharding", "sharding_names", "out_sharding")


class QuantizedWeight(nnx.Variable):
    """Integer state of a quantized layer (packed weight, integer zero points, input
    permutation). Deliberately not an `nnx.Param`: optimizers and `nnx.grad` skip it."""


def _dtype_name(d) -> str | None:
    if d is None:
        return None
    return jnp.dtype(d).name


def make_config(in_features: int, out_features: int, *, use_bias: bool = True,
                W_dtype: str = "int4", group_size: int | None = -1,
                with_scaling: bool | None = None, with_zeros: bool = False,
                zeros_mode: str = "original", A_dtype=None, dtype=None,
                accum_dtype: str = "float32", out_dtype=None) -> MatmulConfig:
    """The MatmulConfig of a layer, with the Flax layer's defaults resolved.

    A_dtype (BitBLAS's name) and dtype (Flax's name) both mean the activation dtype;
    give either (they must agree if both are given); default bfloat16. out_dtype
    defaults to A_dtype. with_scaling=None means True for every quantized format
    (False for float16 / bfloat16 weights, which take no scale).
    """
    a, d = _dtype_name(A_dtype), _dtype_name(dtype)
    if a is not None and d is not None and a != d:
        raise ValueError(f"A_dtype={a!r} and dtype={d!r} disagree (both name the activation dtype)")
    a = a or d or "bfloat16"
    fmt = formats.get_format(W_dtype)
    if with_scaling is None:
        with_scaling = fmt.kind != "dense"
    return MatmulConfig(N=int(out_features), K=int(in_features), A_dtype=a, W_dtype=fmt.name,
                        accum_dtype=accum_dtype, out_dtype=_dtype_name(out_dtype) or a,
                        with_bias=bool(use_bias), group_size=-1 if group_size is None else group_size,
                        with_scaling=bool(with_scaling), with_zeros=bool(with_zeros),
                        zeros_mode=zeros_mode)


# ---- arrays of one layer (shared by NNX and Linen) ---------------------------------------
def _empty_arrays(cfg: MatmulConfig, permute_inputs: bool) -> dict:
    """All-zero arrays of the right shapes and dtypes (a structure to load a checkpoint into)."""
    adt = jnp.dtype(cfg.A_dtype)
    G = cfg.num_groups
    out = {"qweight": jnp.zeros(layout.packed_shape(cfg.N, cfg.K, cfg.format.bits), jnp.uint8)}
    if cfg.with_scaling:
        out["scales"] = jnp.ones((cfg.N, G), adt)
    if cfg.with_zeros:
        zdt = cfg.format.zeros_dtype if cfg.zeros_mode == "quantized" else adt
        out["zeros"] = jnp.zeros((cfg.N, G), zdt)
    if cfg.with_bias:
        out["bias"] = jnp.zeros((cfg.N,), adt)
    if permute_inputs:
        out["perm"] = jnp.arange(cfg.K, dtype=jnp.int32)
    return out


def array_nbytes(x) -> int:
    """Bytes of an array or jax.ShapeDtypeStruct (abstract models have no buffers to ask)."""
    return int(np.prod(x.shape, dtype=np.int64)) * jnp.dtype(x.dtype).itemsize


def _is_abstract(*xs) -> bool:
    return any(isinstance(x, (jax.core.Tracer, jax.ShapeDtypeStruct)) for x in xs if x is not None)


def _quantized_arrays(cfg: MatmulConfig, weight_nk, bias=None, permute_inputs: bool = False) -> dict:
    """Quantize a float weight [N, K] (round to nearest, bitblas_jax.quantize) and pack it.

    Under tracing (nnx.eval_shape, jax.jit(init)) the weight has no value: the arrays are
    zeros of the right shapes, which is all an abstract init needs.
    """
    if _is_abstract(weight_nk, bias):
        return _empty_arrays(cfg, permute_inputs)
    w = np.asarray(jax.device_get(weight_nk))
    if w.shape != (cfg.N, cfg.K):
        raise ValueError(f"weight must be [out_features, in_features] = {(cfg.N, cfg.K)}, got {w.shape}")
    values, scale, zeros = quantize(w, cfg.W_dtype, group_size=cfg.group_size,
                                    with_scaling=cfg.with_scaling, with_zeros=cfg.with_zeros,
                                    zeros_mode=cfg.zeros_mode, A_dtype=cfg.A_dtype)
    perm = np.arange(cfg.K, dtype=np.int32) if permute_inputs else None
    return _arrays_from_values(cfg, values, scale, zeros, bias, perm)


def _arrays_from_values(cfg: MatmulConfig, values, scale=None, zeros=None, bias=None, perm=None) -> dict:
    """Element values [N, K] (+ scale / zeros / bias / perm) -> the layer's arrays."""
    out = {"qweight": Matmul(cfg).transform_weight(values)}
    G = cfg.num_groups

    def floating(x, name, shape):
        x = np.asarray(jax.device_get(x))
        if x.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
        return jnp.asarray(x.astype(formats.NUMPY_DTYPES[cfg.A_dtype]))    # one rounding, in NumPy

    if cfg.with_scaling:
        if scale is None:
            raise ValueError("scale is required (with_scaling=True)")
        out["scales"] = floating(scale, "scale", (cfg.N, G))
    elif scale is not None:
        raise ValueError("scale given but with_scaling=False")
    if cfg.with_zeros:
        if zeros is None:
            raise ValueError("zeros is required (with_zeros=True)")
        if cfg.zeros_mode == "quantized":
            z = np.asarray(jax.device_get(zeros))
            if z.shape != (cfg.N, G) or z.dtype.kind not in "iu":
                raise ValueError(f"quantized zeros must be integers of shape {(cfg.N, G)}, got {z.dtype} {z.shape}")
            zdt = cfg.format.zeros_dtype
            info = np.iinfo(zdt)
            if z.size and (z.min() < info.min or z.max() > info.max):
                raise ValueError(f"quantized zeros must fit {np.dtype(zdt).name}")
            out["zeros"] = jnp.asarray(z.astype(zdt))
        else:
            out["zeros"] = floating(zeros, "zeros", (cfg.N, G))
    elif zeros is not None:
        raise ValueError("zeros given but with_zeros=False")
    if cfg.with_bias:
        out["bias"] = (jnp.zeros((cfg.N,), cfg.A_dtype) if bias is None else floating(bias, "bias", (cfg.N,)))
    elif bias is not None:
        raise ValueError("bias given but use_bias=False")
    if perm is not None:
        p = np.asarray(perm).astype(np.int64)
        if p.shape != (cfg.K,) or not np.array_equal(np.sort(p), np.arange(cfg.K)):
            raise ValueError(f"perm must be a permutation of range({cfg.K})")
        out["perm"] = jnp.asarray(p.astype(np.int32))
    return out


def _transpose_metadata(md: Mapping[str, Any]) -> dict:
    """nnx.Linear's kernel metadata describes [in, out]; our arrays are [out, ...] and only
    their out (N) axis is a meaningful split (the packed weight is stored in 16-row bands),
    so a 2-element sharding annotation (in_axis, out_axis) becomes (out_axis, None)."""
    out = dict(md)
    for k in _SHARDING_KEYS:
        v = out.get(k)
        if isinstance(v, (tuple, list)) and len(v) == 2:
            out[k] = (tuple(v)[1], None)
    return out


def _apply(cfg: MatmulConfig, x, qweight, scales=None, zeros=None, bias=None, perm=None):
    """The forward pass shared by Linear and Dense."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != cfg.K:
        raise ValueError(f"inputs must have shape [..., in_features={cfg.K}], got {x.shape}")
    adt = jnp.dtype(cfg.A_dtype)
    if x.dtype != adt:
        x = x.astype(adt)
    if perm is not None:
        x = jnp.take(x, perm, axis=-1)
    return Matmul(cfg)(x, qweight, scale=scales, zeros=zeros, bias=bias)


def variable_value(v):
    """A Variable's array (None for an absent one); works for abstract values too."""
    return None if v is None else v.get_value()


# ---- NNX -------------------------------------------------------------------------------
class Linear(nnx.Module):
    """A linear layer with low-bit weights, with `nnx.Linear`'s conventions.

    Args:
      in_features, out_features: K and N.
      use_bias: add a bias [out_features] (stored in A_dtype).
      dtype / A_dtype: the activation dtype the kernel runs in (float16, bfloat16, float32
        (CPU only)); inputs of another dtype are cast. Default bfloat16.
      W_dtype: the weight format (int8/4/2/1, uint8/4/2/1, nf4, fp4_e2m1, float8_e4m3fn,
        float8_e5m2, float16, bfloat16).
      group_size: -1 (one group per row) or a divisor of in_features that is a multiple of 8.
      with_scaling: None = True for quantized formats. with_zeros, zeros_mode: "original"
        ((q - z) * s), "rescale" (q * s - z) or "quantized" (integer z).
      accum_dtype: "float32" (or "float16" with float16 activations).
      out_dtype: default A_dtype.
      permute_inputs: hold an input permutation `perm` (GPTQ act-order): y = x[..., perm] @ W^T.
      kernel_init, bias_init: initializers of a float [in, out] kernel and [out] bias, which
        are then quantized (round to nearest). rngs: nnx.Rngs; with rngs=None the layer is
        all zeros (a structure to load a checkpoint into).
      kernel_metadata, bias_metadata: Variable metadata (e.g. sharding) as for nnx.Linear;
        a 2-element sharding annotation (in_axis, out_axis) given for the [in, out] kernel
        becomes (out_axis, None) for the [out, ...] arrays here: only the out (N) axis is a
        meaningful split of the packed weight (16-row bands). The bias keeps bias_metadata.
    """

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, dtype=None,
                 W_dtype: str = "int4", group_size: int | None = -1, with_scaling: bool | None = None,
                 with_zeros: bool = False, zeros_mode: str = "original", A_dtype=None,
                 accum_dtype: str = "float32", out_dtype=None, permute_inputs: bool = False,
                 kernel_init=default_kernel_init, bias_init=default_bias_init,
                 rngs: nnx.Rngs | None = None,
                 kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
                 bias_metadata: Mapping[str, Any] = MappingProxyType({}),
                 _arrays: dict | None = None):
        cfg = make_config(in_features, out_features, use_bias=use_bias, W_dtype=W_dtype,
                          group_size=group_size, with_scaling=with_scaling, with_zeros=with_zeros,
                          zeros_mode=zeros_mode, A_dtype=A_dtype, dtype=dtype,
                          accum_dtype=accum_dtype, out_dtype=out_dtype)
        self.config = cfg
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.use_bias = bool(use_bias)
        self.dtype = jnp.dtype(cfg.A_dtype)
        self.W_dtype = cfg.W_dtype
        self.group_size = cfg.group_size
        self.with_scaling = cfg.with_scaling
        self.with_zeros = cfg.with_zeros
        self.zeros_mode = cfg.zeros_mode
        self.A_dtype = cfg.A_dtype
        self.accum_dtype = cfg.accum_dtype
        self.out_dtype = cfg.out_dtype
        self.permute_inputs = bool(permute_inputs)
        if _arrays is None:
            if rngs is not None:
                kernel = kernel_init(rngs.params(), (cfg.K, cfg.N), jnp.float32)
                bias = bias_init(rngs.params(), (cfg.N,), jnp.float32) if use_bias else None
                _arrays = _quantized_arrays(cfg, kernel.T, bias, self.permute_inputs)
            else:
                _arrays = _empty_arrays(cfg, self.permute_inputs)
        kmd = _transpose_metadata(kernel_metadata)
        self.qweight = QuantizedWeight(_arrays["qweight"], **kmd)
        self.scales = nnx.Param(_arrays["scales"], **kmd) if cfg.with_scaling else nnx.data(None)
        if cfg.with_zeros:
            var = QuantizedWeight if cfg.zeros_mode == "quantized" else nnx.Param
            self.zeros = var(_arrays["zeros"], **kmd)
        else:
            self.zeros = nnx.data(None)
        self.bias = nnx.Param(_arrays["bias"], **bias_metadata) if use_bias else nnx.data(None)
        if self.permute_inputs:
            self.perm = QuantizedWeight(_arrays["perm"])
        else:
            self.perm = nnx.data(None)

    # -- call ------------------------------------------------------------------------------
    def __call__(self, inputs, out_sharding=None) -> jax.Array:
        """y[..., N] = inputs[..., K] @ dequant(W)^T (+ bias), in out_dtype."""
        y = _apply(self.config, inputs, *(variable_value(v) for v in
                                          (self.qweight, self.scales, self.zeros, self.bias, self.perm)))
        if out_sharding is not None:
            y = jax.lax.with_sharding_constraint(y, out_sharding)
        return y

    # -- views -----------------------------------------------------------------------------
    @property
    def matmul(self) -> Matmul:
        return Matmul(self.config)

    def dequantize(self) -> jax.Array:
        """The float weight [out_features, in_features] in A_dtype, in the ORIGINAL input order."""
        w = self.matmul.dequantize(*(variable_value(v) for v in (self.qweight, self.scales, self.zeros)))
        if self.perm is not None:
            inv = jnp.argsort(variable_value(self.perm))
            w = jnp.take(w, inv, axis=1)
        return w

    @property
    def kernel(self) -> jax.Array:
        """nnx.Linear-style view [in_features, out_features] of the dequantized weight."""
        return self.dequantize().T

    def nbytes(self) -> int:
        return int(sum(array_nbytes(variable_value(v))
                       for v in (self.qweight, self.scales, self.zeros, self.bias, self.perm) if v is not None))

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_quantized(cls, values, scales=None, zeros=None, bias=None, perm=None, *,
                       W_dtype: str, group_size: int | None = -1, zeros_mode: str = "original",
                       A_dtype=None, dtype=None, accum_dtype: str = "float32", out_dtype=None,
                       kernel_metadata=MappingProxyType({}), bias_metadata=MappingProxyType({})) -> "Linear":
        """A layer from element values [N, K] (what Matmul.transform_weight takes) and their
        scale / zeros [N, K/group], bias [N] and optional input permutation perm [K]."""
        N, K = np.shape(values)
        with_scaling = scales is not None
        cfg = make_config(K, N, use_bias=bias is not None, W_dtype=W_dtype, group_size=group_size,
                          with_scaling=with_scaling, with_zeros=zeros is not None, zeros_mode=zeros_mode,
                          A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype, out_dtype=out_dtype)
        arrays = _arrays_from_values(cfg, np.asarray(jax.device_get(values)), scales, zeros, bias, perm)
        return cls(K, N, use_bias=cfg.with_bias, W_dtype=cfg.W_dtype, group_size=cfg.group_size,
                   with_scaling=cfg.with_scaling, with_zeros=cfg.with_zeros, zeros_mode=cfg.zeros_mode,
                   A_dtype=cfg.A_dtype, accum_dtype=cfg.accum_dtype, out_dtype=cfg.out_dtype,
                   permute_inputs=perm is not None, kernel_metadata=kernel_metadata,
                   bias_metadata=bias_metadata, _arrays=arrays)

    @classmethod
    def from_linear(cls, linear: nnx.Linear, W_dtype: str = "int4", group_size: int | None = -1,
                    with_scaling: bool | None = None, with_zeros: bool = False,
                    zeros_mode: str = "original", A_dtype=None, dtype=None,
                    accum_dtype: str = "float32", out_dtype=None) -> "Linear":
        """Quantize an nnx.Linear (round to nearest, bitblas_jax.quantize).

        The activation dtype defaults to the layer's `dtype`, else its kernel's dtype when
        that is float16 / bfloat16, else bfloat16. Sharding metadata of the kernel and bias
        is carried over (reversed for the [out, in] layout).
        """
        kernel_var = linear.kernel
        kernel = variable_value(kernel_var)
        if len(kernel.shape) != 2:
            raise ValueError(f"from_linear needs a 2-D kernel, got shape {kernel.shape}")
        K, N = kernel.shape
        if A_dtype is None and dtype is None:
            if linear.dtype is not None:
                dtype = linear.dtype
            elif jnp.dtype(kernel.dtype).name in ("float16", "bfloat16"):
                dtype = kernel.dtype
        use_bias = linear.bias is not None
        cfg = make_config(K, N, use_bias=use_bias, W_dtype=W_dtype, group_size=group_size,
                          with_scaling=with_scaling, with_zeros=with_zeros, zeros_mode=zeros_mode,
                          A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype, out_dtype=out_dtype)
        bias = variable_value(linear.bias) if use_bias else None
        if _is_abstract(kernel, bias):
            arrays = _empty_arrays(cfg, False)
        else:
            arrays = _quantized_arrays(cfg, np.asarray(jax.device_get(kernel), np.float32).T,
                                       None if bias is None else np.asarray(jax.device_get(bias)))
        kmd = _variable_metadata(kernel_var)
        sharding = getattr(kernel, "sharding", None)
        ctx = contextlib.nullcontext()
        if isinstance(sharding, jax.sharding.NamedSharding) and any(k in kmd for k in _SHARDING_KEYS):
            ctx = jax.set_mesh(sharding.mesh)   # eager sharding of the new variables needs the mesh
        with ctx:
            return cls(K, N, use_bias=use_bias, W_dtype=cfg.W_dtype, group_size=cfg.group_size,
                       with_scaling=cfg.with_scaling, with_zeros=cfg.with_zeros, zeros_mode=cfg.zeros_mode,
                       A_dtype=cfg.A_dtype, accum_dtype=cfg.accum_dtype, out_dtype=cfg.out_dtype,
                       kernel_metadata=kmd,
                       bias_metadata=_variable_metadata(linear.bias) if use_bias else {}, _arrays=arrays)

    @classmethod
    def from_unpacked(cls, unpacked: UnpackedQuant, bias=None, *, A_dtype=None, dtype=None,
                      accum_dtype: str = "float32", out_dtype=None) -> "Linear":
        """A layer from a gptq_awq.UnpackedQuant (GPTQ / AWQ): uint{bits} weights,
        zeros_mode="quantized", the act-order permutation (if any) applied to the inputs.
        The activation dtype defaults to the scales' dtype when float16 / bfloat16."""
        if A_dtype is None and dtype is None:
            sd = np.asarray(unpacked.scales).dtype
            dtype = sd.name if sd.name in ("float16", "bfloat16") else "float16"
        return cls.from_quantized(unpacked.values, unpacked.scales, unpacked.zeros, bias, unpacked.perm,
                                  W_dtype=unpacked.W_dtype, group_size=unpacked.group_size,
                                  zeros_mode="quantized", A_dtype=A_dtype, dtype=dtype,
                                  accum_dtype=accum_dtype, out_dtype=out_dtype)

    @classmethod
    def from_gptq(cls, qweight, qzeros, scales, g_idx=None, bias=None, *, bits: int = 4,
                  version: int = 1, **kwargs) -> "Linear":
        """A layer from one GPTQ module's tensors (see gptq_awq.unpack_gptq)."""
        return cls.from_unpacked(unpack_gptq(qweight, qzeros, scales, g_idx, bits=bits, version=version),
                                 bias, **kwargs)

    @classmethod
    def from_awq(cls, qweight, qzeros, scales, bias=None, **kwargs) -> "Linear":
        """A layer from one AutoAWQ (GEMM) module's tensors (see gptq_awq.unpack_awq)."""
        return cls.from_unpacked(unpack_awq(qweight, qzeros, scales), bias, **kwargs)

    def layout_metadata(self) -> dict:
        """The static description of this layer (what a checkpoint needs to rebuild it)."""
        return {"in_features": self.in_features, "out_features": self.out_features,
                "use_bias": self.use_bias, "W_dtype": self.W_dtype, "group_size": self.group_size,
                "with_scaling": self.with_scaling, "with_zeros": self.with_zeros,
                "zeros_mode": self.zeros_mode, "A_dtype": self.A_dtype,
                "accum_dtype": self.accum_dtype, "out_dtype": self.out_dtype,
                "permute_inputs": self.permute_inputs}

    @classmethod
    def from_layout_metadata(cls, meta: Mapping[str, Any]) -> "Linear":
        """An all-zero layer described by layout_metadata() (to load a checkpoint into)."""
        m = dict(meta)
        return cls(m.pop("in_features"), m.pop("out_features"), rngs=None, **m)


def _variable_metadata(var) -> dict:
    """User metadata of a Variable (sharding etc.), minus flax's internal entries."""
    try:
        md = dict(var.get_metadata())
    except Exception:  # pragma: no cover - older flax
        md = dict(getattr(var, "_var_metadata", {}))
    for k in ("value", "raw_value", "hijax", "ref", "is_hijax", "has_ref", "is_mutable", "mutable"):
        md.pop(k, None)
    return {k: v for k, v in md.items() if not k.startswith("_") and not callable(v)}


# ---- Linen -------------------------------------------------------------------------------
class Dense(nn.Module):
    """`nn.Dense` with low-bit weights. Same options as `Linear`.

    Variables: "params": scales, zeros (float modes), bias; "quantized" (QUANT_COLLECTION):
    qweight, zeros (quantized mode), perm. `init` quantizes a `kernel_init` kernel;
    `quantize_dense_params(kernel, bias, ...)` converts a trained nn.Dense's params:

        variables = quantize_dense_params(params["kernel"], params["bias"], W_dtype="int4", group_size=128)
        y = Dense(features, W_dtype="int4", group_size=128).apply(variables, x)
    """
    features: int
    use_bias: bool = True
    dtype: Any = None
    W_dtype: str = "int4"
    group_size: int | None = -1
    with_scaling: bool | None = None
    with_zeros: bool = False
    zeros_mode: str = "original"
    A_dtype: Any = None
    accum_dtype: str = "float32"
    out_dtype: Any = None
    permute_inputs: bool = False
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    def config(self, in_features: int) -> MatmulConfig:
        return make_config(in_features, self.features, use_bias=self.use_bias, W_dtype=self.W_dtype,
                           group_size=self.group_size, with_scaling=self.with_scaling,
                           with_zeros=self.with_zeros, zeros_mode=self.zeros_mode, A_dtype=self.A_dtype,
                           dtype=self.dtype, accum_dtype=self.accum_dtype, out_dtype=self.out_dtype)

    @nn.compact
    def __call__(self, inputs):
        cfg = self.config(jnp.shape(inputs)[-1])
        cache = {}

        def arrays(rng=None):
            # One quantization feeds every variable of the layer at init. Linen also calls
            # param init functions under jax.eval_shape (a shape check, with a traced key):
            # those get abstract arrays and are not cached.
            if cache and not _is_abstract(rng):
                return cache
            rng = self.make_rng("params") if rng is None else rng
            k_rng, b_rng = jax.random.split(rng)
            kernel = self.kernel_init(k_rng, (cfg.K, cfg.N), jnp.float32)
            bias = self.bias_init(b_rng, (cfg.N,), jnp.float32) if cfg.with_bias else None
            out = _quantized_arrays(cfg, kernel.T, bias, self.permute_inputs)
            if not _is_abstract(rng):
                cache.update(out)
            return out

        qweight = self.variable(QUANT_COLLECTION, "qweight", lambda: arrays()["qweight"]).value
        scales = self.param("scales", lambda r: arrays(r)["scales"]) if cfg.with_scaling else None
        zeros = None
        if cfg.with_zeros:
            if cfg.zeros_mode == "quantized":
                zeros = self.variable(QUANT_COLLECTION, "zeros", lambda: arrays()["zeros"]).value
            else:
                zeros = self.param("zeros", lambda r: arrays(r)["zeros"])
        bias = self.param("bias", lambda r: arrays(r)["bias"]) if cfg.with_bias else None
        perm = (self.variable(QUANT_COLLECTION, "perm", lambda: arrays()["perm"]).value
                if self.permute_inputs else None)
        return _apply(cfg, inputs, qweight, scales, zeros, bias, perm)


def quantize_dense_params(kernel, bias=None, *, W_dtype: str = "int4", group_size: int | None = -1,
                          with_scaling: bool | None = None, with_zeros: bool = False,
                          zeros_mode: str = "original", A_dtype=None, dtype=None,
                          accum_dtype: str = "float32", out_dtype=None) -> dict:
    """nn.Dense params (kernel [in, features], bias [features]) -> the variables of a `Dense`
    with the same options: {"params": {...}, "quantized": {...}}."""
    K, N = np.shape(kernel)
    cfg = make_config(K, N, use_bias=bias is not None, W_dtype=W_dtype, group_size=group_size,
                      with_scaling=with_scaling, with_zeros=with_zeros, zeros_mode=zeros_mode,
                      A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype, out_dtype=out_dtype)
    arrays = _quantized_arrays(cfg, np.asarray(jax.device_get(kernel), np.float32).T,
                               None if bias is None else np.asarray(jax.device_get(bias)))
    params = {k: arrays[k] for k in ("scales", "bias") if k in arrays}
    quant = {"qweight": arrays["qweight"]}
    if "zeros" in arrays:
        (quant if cfg.zeros_mode == "quantized" else params)["zeros"] = arrays["zeros"]
    return {"params": params, QUANT_COLLECTION: quant}

