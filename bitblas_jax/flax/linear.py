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
    group_terms GroupTerms   [2, rows, N] A_dtype   (after hold_group_terms(): the Hopper GEMM's
                                                     form of scales / zeros, held for inference)

`QuantizedWeight` is not an `nnx.Param`, so `nnx.Optimizer(model, tx, wrt=nnx.Param)`
and `nnx.grad` leave the integer arrays alone; the scales, float zeros and bias stay
trainable (the matmul is differentiable in them).

Quantization runs in jax.numpy (bitblas_jax.quantize), so a layer created under any
trace (nnx.jit, nnx.vmap, nnx.eval_shape, jax.jit(Dense.init), nn.scan) holds the
same weights as one created eagerly. A Linear whose arrays have leading axes
(Linear.from_linear of an nnx.vmap-stacked nnx.Linear) is a stack of layers, to be
called inside nnx.scan / nnx.vmap.
"""
from __future__ import annotations

import contextlib
import functools
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
from ..activations import GRANULARITIES
from ..group_terms import shape as group_terms_shape
from ..matmul import Matmul, check_k_shards
from ..quantize import quantize

__all__ = ["QuantizedWeight", "GroupTerms", "Linear", "Dense", "make_config", "quantize_dense_params",
           "QUANT_COLLECTION", "array_nbytes", "variable_value"]

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()

# Linen collection that holds the integer arrays of `Dense` (not "params": they are not trained).
QUANT_COLLECTION = "quantized"

_SHARDING_KEYS = ("sharding", "sharding_names", "out_sharding")


class QuantizedWeight(nnx.Variable):
    """Integer state of a quantized layer (packed weight, integer zero points, input
    permutation). Deliberately not an `nnx.Param`: optimizers and `nnx.grad` skip it."""


class GroupTerms(nnx.Variable):
    """The group terms a Linear holds for inference (Linear.hold_group_terms; group_terms.py):
    scales and zeros in the Hopper GEMM's form, derived from them, so never trained
    (optimizers and nnx.grad skip it) and never checkpointed (the loaders derive it again)."""


def _dtype_name(d) -> str | None:
    if d is None:
        return None
    return jnp.dtype(d).name


def make_config(in_features: int, out_features: int, *, use_bias: bool = True,
                W_dtype: str = "int4", group_size: int | None = -1,
                with_scaling: bool | None = None, with_zeros: bool = False,
                zeros_mode: str = "original", A_dtype=None, dtype=None,
                accum_dtype: str | None = None, out_dtype=None) -> MatmulConfig:
    """The MatmulConfig of a layer, with the Flax layer's defaults resolved.

    A_dtype (BitBLAS's name) and dtype (Flax's name) both mean the activation dtype;
    give either (they must agree if both are given); default bfloat16. out_dtype
    defaults to A_dtype. with_scaling=None means True for every quantized format
    (False for float16 / bfloat16 weights, which take no scale).

    An int8 / float8 A_dtype is the layer's quantized-activation mode: float inputs are
    quantized inside the layer (quantize_activations); dtype then names the float dtype
    of the outputs (out_dtype's default; bfloat16 if not given).
    """
    a, d = _dtype_name(A_dtype), _dtype_name(dtype)
    a = None if a is None else formats.canonical_dtype(a)
    if a is not None and formats.is_quantized_activation(a):
        float_dtype = d if d is not None and not formats.is_quantized_activation(d) else "bfloat16"
    else:
        if a is not None and d is not None and a != d:
            raise ValueError(f"A_dtype={a!r} and dtype={d!r} disagree (both name the activation dtype)")
        a = a or d or "bfloat16"
        float_dtype = "bfloat16" if formats.is_quantized_activation(a) else a
    fmt = formats.get_format(W_dtype)
    if with_scaling is None:
        with_scaling = fmt.kind != "dense"
    return MatmulConfig(N=int(out_features), K=int(in_features), A_dtype=a, W_dtype=fmt.name,
                        accum_dtype=accum_dtype, out_dtype=_dtype_name(out_dtype) or float_dtype,
                        with_bias=bool(use_bias), group_size=-1 if group_size is None else group_size,
                        with_scaling=bool(with_scaling), with_zeros=bool(with_zeros),
                        zeros_mode=zeros_mode)


# ---- arrays of one layer (shared by NNX and Linen) ---------------------------------------
def _empty_arrays(cfg: MatmulConfig, permute_inputs: bool) -> dict:
    """All-zero arrays of the right shapes and dtypes (a structure to load a checkpoint into)."""
    adt = jnp.dtype(cfg.scale_dtype)
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


def _quantized_arrays(cfg: MatmulConfig, weight_nk, bias=None, permute_inputs: bool = False,
                      k_shards: int = 1) -> dict:
    """Quantize a float weight [N, K] (round to nearest, bitblas_jax.quantize) and pack it,
    in jax.numpy: on the weight's device, and under any trace (jit, vmap, eval_shape, scan)
    with the same result as eagerly. Abstract inputs (jax.ShapeDtypeStruct) give abstract
    arrays."""
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in (weight_nk, bias)):
        return jax.eval_shape(lambda w, b: _quantized_arrays(cfg, w, b, permute_inputs, k_shards),
                              weight_nk, bias)
    as_jax = lambda x: x if isinstance(x, (jax.Array, jax.core.Tracer)) else jnp.asarray(np.asarray(x))  # noqa: E731
    w = as_jax(weight_nk)
    if tuple(w.shape) != (cfg.N, cfg.K):
        raise ValueError(f"weight must be [out_features, in_features] = {(cfg.N, cfg.K)}, got {w.shape}")
    values, scale, zeros = quantize(w, cfg.W_dtype, group_size=cfg.group_size,
                                    with_scaling=cfg.with_scaling, with_zeros=cfg.with_zeros,
                                    zeros_mode=cfg.zeros_mode, A_dtype=cfg.A_dtype)
    adt = jnp.dtype(cfg.scale_dtype)
    out = {"qweight": Matmul(cfg, k_shards=k_shards).transform_weight(values)}
    if scale is not None:
        out["scales"] = scale
    if zeros is not None:
        out["zeros"] = zeros
    if cfg.with_bias:
        b = jnp.zeros((cfg.N,), adt) if bias is None else as_jax(bias)
        if tuple(b.shape) != (cfg.N,):
            raise ValueError(f"bias must have shape {(cfg.N,)}, got {b.shape}")
        out["bias"] = b.astype(adt)
    elif bias is not None:
        raise ValueError("bias given but use_bias=False")
    if permute_inputs:
        out["perm"] = jnp.arange(cfg.K, dtype=jnp.int32)
    return out


def _arrays_from_values(cfg: MatmulConfig, values, scale=None, zeros=None, bias=None, perm=None,
                        k_shards: int = 1) -> dict:
    """Element values [N, K] (+ scale / zeros / bias / perm) -> the layer's arrays."""
    out = {"qweight": Matmul(cfg, k_shards=k_shards).transform_weight(values)}
    G = cfg.num_groups

    def floating(x, name, shape):
        x = np.asarray(jax.device_get(x))
        if x.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
        return jnp.asarray(x.astype(formats.NUMPY_DTYPES[cfg.scale_dtype]))    # one rounding, in NumPy

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
        out["bias"] = (jnp.zeros((cfg.N,), cfg.scale_dtype) if bias is None else floating(bias, "bias", (cfg.N,)))
    elif bias is not None:
        raise ValueError("bias given but use_bias=False")
    if perm is not None:
        p = np.asarray(perm).astype(np.int64)
        if p.shape != (cfg.K,) or not np.array_equal(np.sort(p), np.arange(cfg.K)):
            raise ValueError(f"perm must be a permutation of range({cfg.K})")
        out["perm"] = jnp.asarray(p.astype(np.int32))
    return out


def _sharding_names(md: Mapping[str, Any]):
    """The 2-element sharding annotation (in_axis, out_axis) of a kernel's metadata, or None."""
    for k in _SHARDING_KEYS:
        v = md.get(k)
        if isinstance(v, (tuple, list)) and len(v) == 2:
            return tuple(v)
    return None


def _mesh_axes(entry) -> tuple:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def _resolve_k_shards(cfg: MatmulConfig, k_shards, md: Mapping[str, Any], mesh=None) -> int:
    """A kernel sharded along its input axis (row-parallel) is packed per K-shard: k_shards
    is then the size of those mesh axes, read from the mesh the layer is created under."""
    names = _sharding_names(md)
    in_axes = _mesh_axes(names[0]) if names else ()
    if in_axes:
        mesh = mesh if mesh is not None else md.get("mesh")
        if mesh is None or mesh.empty:
            mesh = jax.sharding.get_abstract_mesh()
        if mesh is None or mesh.empty:
            if k_shards is None:
                raise ValueError(
                    f"the kernel is sharded along its input axis {names[0]!r} (row-parallel): its "
                    "packed weight is laid out per K-shard, so the layer needs the shard count: "
                    "create it under `with jax.set_mesh(mesh):` or pass k_shards=")
        else:
            missing = [a for a in in_axes if a not in mesh.shape]
            if missing:
                raise ValueError(f"sharding axes {missing} are not axes of the mesh {dict(mesh.shape)}")
            S = int(np.prod([mesh.shape[a] for a in in_axes]))
            if k_shards is None:
                k_shards = S
            elif k_shards % S:
                raise ValueError(f"k_shards={k_shards} is not a multiple of the {S} shards of mesh "
                                 f"axes {in_axes} the kernel's input axis is sharded over")
    return check_k_shards(cfg, 1 if k_shards is None else k_shards)


def _transpose_metadata(md: Mapping[str, Any], k_shards: int, groups: int) -> tuple[dict, dict]:
    """nnx.Linear's kernel metadata describes [in, out]; our arrays are [out, ...], so a
    sharding annotation (in_axis, out_axis) becomes (out_axis, in_axis) for the packed
    weight when it is packed per K-shard (row-parallel), else (out_axis, None): a column
    block of the ordinary packed weight is not a K block. Returns (weight's, scales')."""
    w_md, g_md = dict(md), dict(md)
    for k in _SHARDING_KEYS:
        v = md.get(k)
        if isinstance(v, (tuple, list)) and len(v) == 2:
            in_axis, out_axis = tuple(v)
            row = k_shards > 1 and in_axis is not None
            w_md[k] = (out_axis, in_axis if row else None)
            g_md[k] = (out_axis, in_axis if row and groups > 1 else None)
    return w_md, g_md


def _unbox(x, md: Mapping[str, Any]):
    """An initializer's result, unwrapped from nnx.with_partitioning's VariableMetadata
    (its metadata merged under the explicitly given one)."""
    if isinstance(x, nnx.VariableMetadata):
        return x.raw_value, {**x.metadata, **md}
    return x, dict(md)


def _terms_metadata(source_md: Mapping[str, Any], mm: Matmul) -> dict:
    """The group terms' Variable metadata from the scales' (or, without scales, the packed weight's; see
    _transpose_metadata): a sharding annotation (out_axis, groups_axis) of [N, groups] becomes (None,
    groups_axis, out_axis) of [2, rows, N]; one row repeated (group_terms.one_per_row) is never split."""
    from .. import group_terms
    md = dict(source_md)
    for k in _SHARDING_KEYS:
        v = md.get(k)
        if isinstance(v, (tuple, list)) and len(v) >= 2:
            lead, (n_axis, g_axis) = tuple(v[:-2]), tuple(v[-2:])
            md[k] = lead + (None, None if group_terms.one_per_row(mm.spec) else g_axis, n_axis)
    return md


def _apply(cfg: MatmulConfig, x, qweight, scales=None, zeros=None, bias=None, perm=None, k_shards: int = 1,
           activation_granularity: str = "per_token", group_terms=None):
    """The forward pass shared by Linear and Dense. With int8 / float8 A_dtype, float inputs are
    quantized here (per token or per tensor) and their scales applied in the matmul's epilogue;
    inputs already in A_dtype are taken as given."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != cfg.K:
        raise ValueError(f"inputs must have shape [..., in_features={cfg.K}], got {x.shape}")
    if perm is not None:
        x = jnp.take(x, perm, axis=-1)
    mm = Matmul(cfg, k_shards=k_shards)
    adt = jnp.dtype(cfg.A_dtype)
    if cfg.quantized_activations and x.dtype != adt:
        return mm.quantize_and_call(x, qweight, scales, zeros, bias, granularity=activation_granularity)
    if x.dtype != adt:
        x = x.astype(adt)
    return mm(x, qweight, scale=scales, zeros=zeros, bias=bias, group_terms=group_terms)


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
      accum_dtype: default "float32" ("float16" with float16 activations; "int32" for int8).
      out_dtype: default A_dtype.
      permute_inputs: hold an input permutation `perm` (GPTQ act-order): y = x[..., perm] @ W^T.
      A_dtype="int8" / "float8_e4m3fn" / "float8_e5m2": quantized activations (SmoothQuant W8A8 /
        W4A8, FP8): float inputs are quantized inside the layer (bitblas_jax.quantize_activations,
        absmax per token or per tensor), the matmul sums exactly and applies the activation and
        weight scales in its float32 epilogue; scales and bias are float32; dtype (or out_dtype)
        names the output dtype (default bfloat16). Inputs already in A_dtype are taken as given.
      activation_granularity: "per_token" (default) or "per_tensor", for that mode.
      kernel_init, bias_init: initializers of a float [in, out] kernel and [out] bias, which
        are then quantized (round to nearest). rngs: nnx.Rngs; with rngs=None the layer is
        all zeros (a structure to load a checkpoint into).
      kernel_metadata, bias_metadata: Variable metadata (e.g. sharding) as for nnx.Linear,
        also as returned by nnx.with_partitioning(kernel_init, ...). The annotation
        (in_axis, out_axis) of the [in, out] kernel becomes (out_axis, in_axis) for the
        [out, ...] arrays here: out_axis splits N (column-parallel); in_axis splits K
        (row-parallel), and then the weight is packed per K-shard (k_shards). The bias
        keeps bias_metadata.
      k_shards: the number of K-shards the packed weight is laid out for (docs/LAYOUT.md);
        default: the size of the mesh axes of in_axis (row-parallel) under the current
        mesh, else 1.
    """

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, dtype=None,
                 W_dtype: str = "int4", group_size: int | None = -1, with_scaling: bool | None = None,
                 with_zeros: bool = False, zeros_mode: str = "original", A_dtype=None,
                 accum_dtype: str | None = None, out_dtype=None, permute_inputs: bool = False,
                 activation_granularity: str = "per_token", kernel_init=default_kernel_init, bias_init=default_bias_init,
                 rngs: nnx.Rngs | None = None,
                 kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
                 bias_metadata: Mapping[str, Any] = MappingProxyType({}),
                 k_shards: int | None = None, _arrays: dict | None = None):
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
        if activation_granularity not in GRANULARITIES:
            raise ValueError(f"activation_granularity={activation_granularity!r}; allowed: {GRANULARITIES}")
        self.activation_granularity = activation_granularity
        kernel = bias = None
        kernel_metadata, bias_metadata = dict(kernel_metadata), dict(bias_metadata)
        if _arrays is None and rngs is not None:
            kernel, kernel_metadata = _unbox(kernel_init(rngs.params(), (cfg.K, cfg.N), jnp.float32),
                                             kernel_metadata)
            if use_bias:
                bias, bias_metadata = _unbox(bias_init(rngs.params(), (cfg.N,), jnp.float32), bias_metadata)
        self.k_shards = _resolve_k_shards(cfg, k_shards, kernel_metadata)
        if _arrays is None:
            if rngs is not None:
                _arrays = _quantized_arrays(cfg, kernel.T, bias, self.permute_inputs, self.k_shards)
            else:
                _arrays = _empty_arrays(cfg, self.permute_inputs)
        wmd, gmd = _transpose_metadata(kernel_metadata, self.k_shards, cfg.num_groups)
        self.qweight = QuantizedWeight(_arrays["qweight"], **wmd)
        self.scales = nnx.Param(_arrays["scales"], **gmd) if cfg.with_scaling else nnx.data(None)
        if cfg.with_zeros:
            var = QuantizedWeight if cfg.zeros_mode == "quantized" else nnx.Param
            self.zeros = var(_arrays["zeros"], **gmd)
        else:
            self.zeros = nnx.data(None)
        self.bias = nnx.Param(_arrays["bias"], **bias_metadata) if use_bias else nnx.data(None)
        if self.permute_inputs:
            self.perm = QuantizedWeight(_arrays["perm"])
        else:
            self.perm = nnx.data(None)
        self.group_terms = nnx.data(None)

    # -- call ------------------------------------------------------------------------------
    def __call__(self, inputs, out_sharding=None) -> jax.Array:
        """y[..., N] = inputs[..., K] @ dequant(W)^T (+ bias), in out_dtype."""
        arrays = [variable_value(v) for v in (self.qweight, self.scales, self.zeros, self.bias, self.perm)]
        if len(arrays[0].shape) > 2:
            raise ValueError(f"this Linear is a stack of {arrays[0].shape[:-2]} layers (arrays with leading "
                             "layer axes): call it inside nnx.scan / nnx.vmap over those axes")
        y = _apply(self.config, inputs, *arrays, k_shards=self.k_shards,
                   activation_granularity=self.activation_granularity,
                   group_terms=variable_value(self.group_terms))
        if out_sharding is not None:
            y = jax.lax.with_sharding_constraint(y, out_sharding)
        return y

    # -- held group terms ----------------------------------------------------------------
    def hold_group_terms(self) -> bool:
        """Derive the group terms of the current scales / zeros (Matmul.group_terms) and hold them, so
        each call on the Hopper GEMM (M >= 64) skips the kernel that writes them (a few microseconds a
        call; 1/16 of an int4 g128 weight's bytes held). For inference: call it again after changing
        scales or zeros yourself (the checkpoint loaders do). Returns False, holding nothing, where the
        config never runs that GEMM (Matmul.holds_group_terms). A stack of layers derives one per layer."""
        mm = self.matmul
        if not mm.holds_group_terms:
            self.group_terms = nnx.data(None)
            return False
        scales, zeros = variable_value(self.scales), variable_value(self.zeros)
        lead = tuple(variable_value(self.qweight).shape[:-2])              # leading layer axes
        f = mm.group_terms
        if scales is None:      # mode none: the same terms for every layer of a stack
            terms = jnp.broadcast_to(f(), lead + group_terms_shape(mm.spec))
        else:
            for _ in lead:
                f = jax.vmap(f)
            terms = jax.eval_shape(f, scales, zeros) if isinstance(scales, jax.ShapeDtypeStruct) else f(scales, zeros)
        source = self.scales if self.scales is not None else self.qweight   # [N, groups] or [N, ...]
        md = _terms_metadata(_variable_metadata(source), mm)
        sharding = getattr(variable_value(source), "sharding", None)
        ctx = contextlib.nullcontext()
        if isinstance(sharding, jax.sharding.NamedSharding) and any(k in md for k in _SHARDING_KEYS):
            ctx = jax.set_mesh(sharding.mesh)     # eager sharding of the new variable needs the mesh
        with ctx:
            self.group_terms = GroupTerms(terms, **md)
        return True

    # -- views -----------------------------------------------------------------------------
    @property
    def matmul(self) -> Matmul:
        return Matmul(self.config, k_shards=self.k_shards)

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
                       for v in (self.qweight, self.scales, self.zeros, self.bias, self.perm, self.group_terms)
                       if v is not None))

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_quantized(cls, values, scales=None, zeros=None, bias=None, perm=None, *,
                       W_dtype: str, group_size: int | None = -1, zeros_mode: str = "original",
                       A_dtype=None, dtype=None, accum_dtype: str | None = None, out_dtype=None,
                       kernel_metadata=MappingProxyType({}), bias_metadata=MappingProxyType({}),
                       k_shards: int | None = None, activation_granularity: str = "per_token") -> "Linear":
        """A layer from element values [N, K] (what Matmul.transform_weight takes) and their
        scale / zeros [N, K/group], bias [N] and optional input permutation perm [K]
        (host data: they are checked there)."""
        N, K = np.shape(values)
        with_scaling = scales is not None
        cfg = make_config(K, N, use_bias=bias is not None, W_dtype=W_dtype, group_size=group_size,
                          with_scaling=with_scaling, with_zeros=zeros is not None, zeros_mode=zeros_mode,
                          A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype, out_dtype=out_dtype)
        k = _resolve_k_shards(cfg, k_shards, kernel_metadata)
        arrays = _arrays_from_values(cfg, np.asarray(jax.device_get(values)), scales, zeros, bias, perm, k)
        return cls(K, N, use_bias=cfg.with_bias, W_dtype=cfg.W_dtype, group_size=cfg.group_size,
                   with_scaling=cfg.with_scaling, with_zeros=cfg.with_zeros, zeros_mode=cfg.zeros_mode,
                   A_dtype=cfg.A_dtype, accum_dtype=cfg.accum_dtype, out_dtype=cfg.out_dtype,
                   permute_inputs=perm is not None, kernel_metadata=kernel_metadata,
                   bias_metadata=bias_metadata, k_shards=k, activation_granularity=activation_granularity,
                   _arrays=arrays)

    @classmethod
    def from_linear(cls, linear: nnx.Linear, W_dtype: str = "int4", group_size: int | None = -1,
                    with_scaling: bool | None = None, with_zeros: bool = False,
                    zeros_mode: str = "original", A_dtype=None, dtype=None,
                    accum_dtype: str | None = None, out_dtype=None,
                    activation_granularity: str = "per_token") -> "Linear":
        """Quantize an nnx.Linear (round to nearest, bitblas_jax.quantize, on the kernel's device).

        The activation dtype defaults to the layer's `dtype`, else its kernel's dtype when
        that is float16 / bfloat16, else bfloat16. Sharding metadata of the kernel and bias
        is carried over (reversed for the [out, in] layout; an input-axis sharding packs the
        weight per K-shard). A stacked nnx.Linear (kernel [*layers, in, out], as nnx.vmap
        makes) gives a stacked Linear, quantized under nnx.vmap.
        """
        opts = dict(W_dtype=W_dtype, group_size=group_size, with_scaling=with_scaling,
                    with_zeros=with_zeros, zeros_mode=zeros_mode, A_dtype=A_dtype, dtype=dtype,
                    accum_dtype=accum_dtype, out_dtype=out_dtype,
                    activation_granularity=activation_granularity)
        kernel_var = linear.kernel
        kernel = variable_value(kernel_var)
        kmd = _variable_metadata(kernel_var)
        sharding = getattr(kernel, "sharding", None)
        mesh = sharding.mesh if isinstance(sharding, jax.sharding.NamedSharding) else None
        ctx = contextlib.nullcontext()
        if mesh is not None and any(k in kmd for k in _SHARDING_KEYS):
            ctx = jax.set_mesh(mesh)   # eager sharding of the new variables needs the mesh
        if len(kernel.shape) > 2:
            with ctx:
                return cls._from_stacked_linear(linear, kmd, opts)
        if len(kernel.shape) != 2:
            raise ValueError(f"from_linear needs a 2-D kernel (or a stack of them), got shape {kernel.shape}")
        K, N = kernel.shape
        quantized_a = A_dtype is not None and formats.is_quantized_activation(
            formats.canonical_dtype(_dtype_name(A_dtype)))
        if dtype is None and (A_dtype is None or quantized_a):     # the (output) float dtype
            if linear.dtype is not None:
                dtype = linear.dtype
            elif jnp.dtype(kernel.dtype).name in ("float16", "bfloat16"):
                dtype = kernel.dtype
        use_bias = linear.bias is not None
        cfg = make_config(K, N, use_bias=use_bias, W_dtype=W_dtype, group_size=group_size,
                          with_scaling=with_scaling, with_zeros=with_zeros, zeros_mode=zeros_mode,
                          A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype, out_dtype=out_dtype)
        bias = variable_value(linear.bias) if use_bias else None
        with ctx:
            k = _resolve_k_shards(cfg, None, kmd, mesh)
            kernel_t = (jax.ShapeDtypeStruct((N, K), kernel.dtype) if isinstance(kernel, jax.ShapeDtypeStruct)
                        else kernel.T)
            arrays = _quantized_arrays(cfg, kernel_t, bias, False, k)
            return cls(K, N, use_bias=use_bias, W_dtype=cfg.W_dtype, group_size=cfg.group_size,
                       with_scaling=cfg.with_scaling, with_zeros=cfg.with_zeros, zeros_mode=cfg.zeros_mode,
                       A_dtype=cfg.A_dtype, accum_dtype=cfg.accum_dtype, out_dtype=cfg.out_dtype,
                       kernel_metadata=kmd, bias_metadata=_variable_metadata(linear.bias) if use_bias else {},
                       k_shards=k, activation_granularity=activation_granularity, _arrays=arrays)

    @classmethod
    def _from_stacked_linear(cls, linear, kmd, opts) -> "Linear":
        """from_linear under one nnx.vmap per leading axis; the leading sharding names of the
        kernel (nnx.vmap's transform_metadata) name the layer axes of the result too."""
        lead = len(variable_value(linear.kernel).shape) - 2
        names = next((tuple(kmd[k]) for k in _SHARDING_KEYS
                      if isinstance(kmd.get(k), (tuple, list)) and len(kmd[k]) == lead + 2), None)
        f = functools.partial(cls.from_linear, **opts)
        for i in reversed(range(lead)):
            tm = {nnx.PARTITION_NAME: names[i]} if names else {}
            f = nnx.vmap(f, in_axes=0, out_axes=0, transform_metadata=tm)
        return f(linear)

    @classmethod
    def from_unpacked(cls, unpacked: UnpackedQuant, bias=None, *, A_dtype=None, dtype=None,
                      accum_dtype: str | None = None, out_dtype=None) -> "Linear":
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
        meta = {"in_features": self.in_features, "out_features": self.out_features,
                "use_bias": self.use_bias, "W_dtype": self.W_dtype, "group_size": self.group_size,
                "with_scaling": self.with_scaling, "with_zeros": self.with_zeros,
                "zeros_mode": self.zeros_mode, "A_dtype": self.A_dtype,
                "accum_dtype": self.accum_dtype, "out_dtype": self.out_dtype,
                "permute_inputs": self.permute_inputs}
        if self.k_shards != 1:
            meta["k_shards"] = self.k_shards
        if self.config.quantized_activations:
            meta["activation_granularity"] = self.activation_granularity
        layers = tuple(variable_value(self.qweight).shape[:-2])
        if layers:
            meta["layers"] = list(layers)
        return meta

    @classmethod
    def from_layout_metadata(cls, meta: Mapping[str, Any]) -> "Linear":
        """An all-zero layer described by layout_metadata() (to load a checkpoint into)."""
        m = dict(meta)
        layers = tuple(m.pop("layers", ()))
        in_features, out_features = m.pop("in_features"), m.pop("out_features")
        make = lambda *_: cls(in_features, out_features, rngs=None, **m)  # noqa: E731
        if not layers:
            return make()
        f = make
        for _ in layers:
            f = nnx.vmap(f, in_axes=0, out_axes=0)
        return f(jnp.zeros(layers))


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
    qweight, zeros (quantized mode), perm. `init` quantizes a `kernel_init` kernel, once,
    from one "params" key, in jax.numpy (so jax.jit(init), nn.scan and nn.vmap give the
    weights an eager init gives); `quantize_dense_params(kernel, bias, ...)` converts a
    trained nn.Dense's params:

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
    accum_dtype: str | None = None
    out_dtype: Any = None
    permute_inputs: bool = False
    activation_granularity: str = "per_token"
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
        if self.has_variable(QUANT_COLLECTION, "qweight"):
            # apply (or a second call at init): the init functions below serve only Linen's
            # shape checks, which zeros of the right shapes pass
            arrays = _empty_arrays(cfg, self.permute_inputs)
        else:
            # one key, one quantization for every variable of the layer
            k_rng, b_rng = jax.random.split(self.make_rng("params"))
            kernel = self.kernel_init(k_rng, (cfg.K, cfg.N), jnp.float32)
            bias = self.bias_init(b_rng, (cfg.N,), jnp.float32) if cfg.with_bias else None
            arrays = _quantized_arrays(cfg, nn.meta.unbox(kernel).T, nn.meta.unbox(bias),
                                       self.permute_inputs)

        qweight = self.variable(QUANT_COLLECTION, "qweight", lambda: arrays["qweight"]).value
        scales = self.param("scales", lambda _: arrays["scales"]) if cfg.with_scaling else None
        zeros = None
        if cfg.with_zeros:
            if cfg.zeros_mode == "quantized":
                zeros = self.variable(QUANT_COLLECTION, "zeros", lambda: arrays["zeros"]).value
            else:
                zeros = self.param("zeros", lambda _: arrays["zeros"])
        bias = self.param("bias", lambda _: arrays["bias"]) if cfg.with_bias else None
        perm = (self.variable(QUANT_COLLECTION, "perm", lambda: arrays["perm"]).value
                if self.permute_inputs else None)
        return _apply(cfg, inputs, qweight, scales, zeros, bias, perm,
                      activation_granularity=self.activation_granularity)


def quantize_dense_params(kernel, bias=None, *, W_dtype: str = "int4", group_size: int | None = -1,
                          with_scaling: bool | None = None, with_zeros: bool = False,
                          zeros_mode: str = "original", A_dtype=None, dtype=None,
                          accum_dtype: str | None = None, out_dtype=None) -> dict:
    """nn.Dense params (kernel [in, features], bias [features]) -> the variables of a `Dense`
    with the same options: {"params": {...}, "quantized": {...}}."""
    K, N = np.shape(kernel)
    cfg = make_config(K, N, use_bias=bias is not None, W_dtype=W_dtype, group_size=group_size,
                      with_scaling=with_scaling, with_zeros=with_zeros, zeros_mode=zeros_mode,
                      A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype, out_dtype=out_dtype)
    arrays = _quantized_arrays(cfg, jnp.asarray(kernel).T, None if bias is None else jnp.asarray(bias))
    params = {k: arrays[k] for k in ("scales", "bias") if k in arrays}
    quant = {"qweight": arrays["qweight"]}
    if "zeros" in arrays:
        (quant if cfg.zeros_mode == "quantized" else params)["zeros"] = arrays["zeros"]
    return {"params": params, QUANT_COLLECTION: quant}

