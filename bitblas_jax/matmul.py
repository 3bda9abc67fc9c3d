"""Matmul: BitBLAS's operator object, on the bitblas_matmul primitive."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import activations, dequant, formats, group_terms, layout, partition, primitive
from .config import MatmulConfig
from .spec import KernelSpec


class Matmul:
    """C = A x dequant(W)^T for one MatmulConfig. Jittable, vmappable, differentiable,
    shardable (README, Sharding).

    Nothing is tuned or compiled at construction: the kernel choice is made at
    trace time from the static shapes.

    k_shards: the number of K-shards the packed weight is laid out for (row-parallel
    sharding: transform_weight then packs each K block on its own, docs/LAYOUT.md).
    1 (default) is the ordinary layout. K must split into k_shards blocks of whole
    packed tiles and of whole groups.
    """

    def __init__(self, config: MatmulConfig, name: str = "matmul", *, k_shards: int = 1, **unused):
        if not isinstance(config, MatmulConfig):
            raise TypeError(f"config must be a bitblas_jax.MatmulConfig, got {type(config).__name__}")
        self.config = config
        self.name = name
        self.spec = KernelSpec.from_config(config)
        self.k_shards = check_k_shards(config, k_shards)

    # ---- weights ------------------------------------------------------------
    def transform_weight(self, weight, scale=None, zeros=None, bias=None) -> jax.Array:
        """Element values [N, K] -> the packed uint8 weight (docs/LAYOUT.md).

        Values: integers for int/uint formats, codes 0..15 for nf4/fp4, a float8
        array for fp8, a float array for float16/bfloat16. scale/zeros/bias, if
        given, are only checked (as in BitBLAS, only the weight is returned).
        A JAX array is packed on its device (jittable); under a trace its values
        cannot be checked, and values outside the format are masked to its bits.
        """
        cfg, fmt = self.config, self.config.format
        if isinstance(weight, (jax.Array, jax.core.Tracer)):
            return self._transform_on_device(weight, scale, zeros, bias)
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
        packed = layout.pack(formats.values_to_codes(fmt, w), fmt.bits)
        return jnp.asarray(layout.to_k_shards(packed, cfg.N, cfg.K, fmt.bits, self.k_shards))

    def _transform_on_device(self, weight, scale, zeros, bias) -> jax.Array:
        cfg, fmt = self.config, self.config.format
        if tuple(weight.shape) != (cfg.N, cfg.K):
            raise ValueError(f"transform_weight: weight must be [N, K] = {(cfg.N, cfg.K)}, got {weight.shape}")
        self._check_aux(scale, zeros, bias, "transform_weight", required=False)
        if not isinstance(weight, jax.core.Tracer) and fmt.kind in ("int", "uint", "table"):
            lo, hi = fmt.value_range if fmt.is_integer else (0, 15)
            w = weight.astype(jnp.float32)
            bad = ~((w >= lo) & (w <= hi) & (w == jnp.round(w)))
            if fmt.kind == "int" and fmt.bits == 1:
                bad = bad | (w == 0)
            if bool(jnp.any(bad)):
                raise ValueError(f"transform_weight: {fmt.name} element values must be integers in "
                                 f"[{lo}, {hi}]" + (" (-1 or +1)" if fmt.bits == 1 and fmt.kind == "int" else ""))
        return _pack_on_device(partition.unsharded_type(weight), fmt.name, cfg.N, cfg.K, self.k_shards)

    def dequantize(self, W_packed, scale=None, zeros=None) -> jax.Array:
        """The [N, K] weight the matmul multiplies with, in A_dtype (float32 for int8 / float8
        activations, whose scales apply to group sums: C equals A times it up to float32 rounding)."""
        self._check_weight(W_packed, "dequantize")
        scale, zeros, _ = self._check_aux(scale, zeros, None, "dequantize", bias_required=False)
        return dequant.dequantize(primitive.standard_weight(W_packed, self.spec, self.k_shards),
                                  self.spec, scale, zeros)

    @property
    def holds_group_terms(self) -> bool:
        """Whether calls of this config can run gemm_cutlass, the Hopper GEMM that reads group terms
        (group_terms.py): float16 / bfloat16 A and output, float32 accumulation, 4- / 8-bit integer, nf4
        or fp4_e2m1 weights, groups of whole 64-k stages or one per row."""
        return group_terms.takes(self.spec)

    def group_terms(self, scale=None, zeros=None) -> jax.Array:
        """gemm_cutlass's group terms of this scale and zeros, [2, rows, N] in A_dtype, to hold with
        the weight and pass to every call (`__call__(..., group_terms=)`): such a call skips the small
        kernel that writes them before each Hopper GEMM (M >= 64). Jittable; sharded as scale is.
        Recompute them whenever scale or zeros change. ValueError where holds_group_terms is False."""
        scale, zeros, _ = self._check_aux(scale, zeros, None, "group_terms", bias_required=False)
        return group_terms.compute(self.spec, scale, zeros)

    # ---- the op -----------------------------------------------------------------
    def __call__(self, A, W_packed, scale=None, zeros=None, bias=None, *, a_scale=None,
                 k_block: bool = False, group_terms=None) -> jax.Array:
        """C = A @ dequant(W)^T (+ bias). Inside shard_map, an A and W that vary over the same
        mesh axis are a K block (row-parallel by hand): W must then be the packing of this
        device's K block (Matmul(full_config, k_shards=n).transform_weight, sharded on its
        columns), which the call cannot see, so it raises unless k_block=True says so.

        int8 / float8 A is taken as given (no conversion). a_scale (int8 / float8 A only): the
        activation scales of bitblas_jax.quantize_activations, a scalar (per tensor) or
        A.shape[:-1] (per token); then C = cast(a_scale * v + bias) with v the float32 sum of the
        weight-scaled group sums (README, "int8 and float8 activations").

        group_terms: Matmul.group_terms(scale, zeros) of the same scale and zeros, held with the weight;
        the Hopper GEMM then reads them instead of writing its own (the other kernels read scale and
        zeros). The same result, bit for bit."""
        cfg = self.config
        A = jnp.asarray(A)
        if A.ndim < 1 or A.shape[-1] != cfg.K:
            raise ValueError(f"{self.name}: A must have shape [..., K={cfg.K}], got {A.shape}")
        if A.dtype != jnp.dtype(cfg.A_dtype):
            hint = (" (quantize float activations with bitblas_jax.quantize_activations)"
                    if cfg.quantized_activations else "")
            raise TypeError(f"{self.name}: A must be {cfg.A_dtype} (MatmulConfig.A_dtype), got {A.dtype}{hint}")
        self._check_weight(W_packed, self.name)
        scale, zeros, bias = self._check_aux(scale, zeros, bias, self.name)
        if not k_block:
            shared = primitive.varying_axes(jax.typeof(A)) & primitive.varying_axes(jax.typeof(W_packed))
            if shared:
                raise ValueError(
                    f"{self.name}: inside shard_map, A and W_packed both vary over mesh axes "
                    f"{sorted(shared)}: a K block (row-parallel). A column block of a packed weight is "
                    "not the packing of a K block (docs/LAYOUT.md): pack the full weight with "
                    "Matmul(config, k_shards=n).transform_weight(values), shard its columns, and pass "
                    "k_block=True here; or leave the partitioning to jax.jit (README, Sharding)")
        partition.check_weight_sharding(W_packed, self.k_shards)
        sdt = jnp.dtype(cfg.scale_dtype)
        absent = lambda x: primitive.empty(sdt) if x is None else x  # noqa: E731
        if a_scale is None:
            return primitive.bind(A, W_packed, absent(scale), absent(zeros), absent(bias),
                                  self._check_group_terms(group_terms), primitive.empty(jnp.float32),
                                  self.spec, self.k_shards)
        if group_terms is not None:
            raise ValueError(f"{self.name}: group_terms serve float16 / bfloat16 activations only")
        # one scale per row of A (a scalar broadcast): the 8-bit kernels' epilogue applies it with the
        # per-channel scale, the bias and the cast (primitive.py; XLA after the other paths)
        a_scale = self._check_a_scale(a_scale, A.shape)
        rows = A if A.ndim > 1 else A[None]        # a scale per row needs a row axis
        C = primitive.bind(rows, W_packed, absent(scale), absent(zeros), absent(bias),
                           self._check_group_terms(None), jnp.broadcast_to(a_scale, rows.shape[:-1]),
                           self.spec, self.k_shards)
        return C if A.ndim > 1 else C[0]

    def quantize_and_call(self, x, W_packed, scale=None, zeros=None, bias=None, *,
                          granularity: str = "per_token", k_block: bool = False) -> jax.Array:
        """Float activations x [..., K] through an int8 / float8 config: quantize_activations(x,
        A_dtype, granularity), then the call with those activation scales (SmoothQuant W8A8 / W4A8,
        FP8 per tensor / per token): C = cast(a_scale * v + bias)."""
        cfg = self.config
        if not cfg.quantized_activations:
            raise ValueError(f"{self.name}: quantize_and_call needs an int8 / float8 MatmulConfig.A_dtype, "
                             f"got {cfg.A_dtype!r}")
        values, a_scale = activations.quantize_activations(x, cfg.A_dtype, granularity)
        return self(values, W_packed, scale, zeros, bias, a_scale=a_scale, k_block=k_block)

    def _check_a_scale(self, a_scale, a_shape) -> jax.Array:
        cfg = self.config
        if not cfg.quantized_activations:
            raise ValueError(f"{self.name}: a_scale is for int8 / float8 activations; "
                             f"MatmulConfig.A_dtype={cfg.A_dtype!r}")
        if cfg.out_dtype == "int32":
            raise ValueError(f"{self.name}: a_scale needs a float or int8 output "
                             "(MatmulConfig.out_dtype='int32' is the exact integer sum)")
        a_scale = jnp.asarray(a_scale)
        if not jnp.issubdtype(a_scale.dtype, jnp.floating):
            raise TypeError(f"{self.name}: a_scale must be a float array, got {a_scale.dtype}")
        lead = tuple(a_shape[:-1])
        if a_scale.shape in ((), (1,)):
            return a_scale.reshape(()).astype(jnp.float32)
        if a_scale.shape in (lead, lead + (1,)):
            return a_scale.reshape(lead).astype(jnp.float32)
        raise ValueError(f"{self.name}: a_scale must be a scalar (per tensor) or A.shape[:-1] = {lead} "
                         f"(per token), got shape {a_scale.shape}")

    forward = __call__

    # ---- checks (trace time) -----------------------------------------------------
    def _check_group_terms(self, terms) -> jax.Array:
        """The primitive's group_terms operand: the held terms, checked, or an empty array."""
        if terms is None:
            return primitive.empty(jnp.dtype(self.config.A_dtype))
        if not self.holds_group_terms:
            raise ValueError(f"{self.name}: group_terms given, but this config never runs the GEMM that reads "
                             "them (Matmul.holds_group_terms is False)")
        want = group_terms.shape(self.spec)
        if tuple(terms.shape) != want or terms.dtype != jnp.dtype(self.config.A_dtype):
            raise ValueError(f"{self.name}: group_terms must be {self.config.A_dtype} {want} "
                             f"(Matmul.group_terms(scale, zeros)), got {terms.dtype} {tuple(terms.shape)}")
        return terms

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
        adt = jnp.dtype(cfg.scale_dtype)      # A's dtype, float32 for int8 / float8 A
        groups = (cfg.N, cfg.num_groups)

        def floating(x, name, shape):
            x = jnp.asarray(x)
            if x.shape != shape:
                raise ValueError(f"{where}: {name} must have shape {shape}, got {x.shape}")
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise TypeError(f"{where}: {name} must be a float array ({cfg.scale_dtype}), got {x.dtype}")
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


def check_k_shards(config: MatmulConfig, k_shards) -> int:
    """k_shards must split K into blocks of whole packed tiles and whole groups."""
    if not isinstance(k_shards, (int, np.integer)) or isinstance(k_shards, bool) or k_shards < 1:
        raise ValueError(f"k_shards={k_shards!r} must be a positive int")
    k_shards = int(k_shards)
    if k_shards > 1:
        layout.check_k_shards(config.N, config.K, config.format.bits, k_shards)
        g = config.resolved_group_size
        if g != config.K and (config.K // k_shards) % g:
            raise ValueError(f"k_shards={k_shards}: each K block ({config.K // k_shards}) must hold "
                             f"whole groups (group_size={g})")
    return k_shards


def _codes_on_device(fmt: formats.WeightFormat, values) -> jax.Array:
    """formats.values_to_codes in jax.numpy, masked to the format's bits."""
    if fmt.kind == "int":
        v = values.astype(jnp.int32)
        c = (v + 1) // 2 if fmt.bits == 1 else v + 2 ** (fmt.bits - 1)
    elif fmt.kind in ("uint", "table"):
        c = values.astype(jnp.int32)
    elif fmt.kind == "fp8":
        c = jax.lax.bitcast_convert_type(values.astype(formats.FP8_NUMPY[fmt.name]), jnp.uint8)
    else:
        c = jax.lax.bitcast_convert_type(values.astype(formats.DENSE_NUMPY[fmt.name]), jnp.uint16)
    return c.astype(jnp.uint32) & jnp.uint32((1 << fmt.bits) - 1)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _pack_on_device(values, fmt_name: str, N: int, K: int, k_shards: int) -> jax.Array:
    fmt = formats.get_format(fmt_name)
    packed = layout.pack_traced(_codes_on_device(fmt, values), fmt.bits)
    return layout.to_k_shards(packed, N, K, fmt.bits, k_shards)
