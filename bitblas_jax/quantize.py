"""Round-to-nearest quantization of a float weight into what transform_weight takes.

BitBLAS's quick start leaves "TODO(process weight to int4)"; this fills it:
    values, scale, zeros = quantize(weight, "int4", group_size=128)
    packed = matmul.transform_weight(values)
    C = matmul(A, packed, scale=scale)

One algorithm, two executors. `_rtn` is written against an array namespace: NumPy
runs it for NumPy inputs (the reference), jax.numpy runs it, jitted, for JAX arrays
and inside traces (nnx.jit, vmap, eval_shape, jax.jit(init)), on the default device.
The arithmetic is one IEEE operation at a time in the working precision (float64 for
a float64 weight, else float32), so both give the same bits for the same input:
  * a weight narrower than float32 (bf16, fp16) is widened to float32 first;
  * every division is array / array of the same shape. XLA rewrites `x / constant`
    and `x / broadcast(s)` into a multiplication by the reciprocal (not correctly
    rounded), so the jax side materializes those divisors behind an
    optimization_barrier, which XLA cannot see through;
  * XLA:GPU divides float32 with PTX's div.full.f32 (within 2 ulp, not IEEE), so the
    jax side corrects each float32 quotient to the IEEE one (`_ieee_quotient`: exact
    residuals by Dekker's product, one ulp at a time; a no-op where the division was
    already exact, as on the CPU);
  * a product followed by a sum is split by a barrier too (a GPU would fuse it into
    one FMA with a different rounding);
  * the one sum (int1's mean |w|) is a fixed pairwise tree of elementwise adds,
    not a reduction whose order the compiler picks;
  * a value rounded to A_dtype and widened again (scales, zeros) passes a barrier in
    between: XLA may otherwise drop the pair of converts and keep the excess
    precision (its default xla_allow_excess_precision);
  * float8 values are rounded to the format's grid in float32 first (bit operations,
    round to nearest even), so the cast itself is exact, whichever way a backend
    converts (through float16, say, which would round twice).

Unsigned formats (uint8/4/2/1) with a scale are quantized only with zeros (min..max onto
0..2^b-1): a symmetric scale would put every negative weight of a zero-mean weight at 0, so
that combination raises ValueError (check_rtn_options), for every caller that quantizes a
float weight (Flax Linear / Dense / quantize_model, the torch shim), before any work.

Non-finite weights: the NumPy path and the JAX path on concrete arrays raise
ValueError. Under a trace the values are unknown, so a group holding NaN or inf
gets a NaN scale (its outputs are NaN, never a finite guess); fp8 / 16-bit values
carry NaN themselves; integer formats without a scale (with_scaling=False) have
nowhere to put a NaN, so a run-time check raises when the traced computation runs.
"""
from __future__ import annotations

import functools

import numpy as np

from . import formats

_FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}


def quantize(weight, W_dtype: str, group_size: int = -1, with_scaling: bool = True,
             with_zeros: bool = False, zeros_mode: str = "original", A_dtype: str = "float16"):
    """Quantize a float weight [N, K] to (values, scale, zeros).

    values: element values ([N, K] ints for int/uint, codes for nf4/fp4, a float8
    array for fp8, the cast weight for float16/bfloat16); scale: [N, K/group]
    in A_dtype or None; zeros: [N, K/group] in A_dtype (original, rescale), an
    integer array (quantized), or None. For int8 / float8 A_dtype, scale and
    float zeros are float32 (formats.scale_dtype). Scales are computed per group from the
    group's range: symmetric (absmax) without zeros, asymmetric (min..max) with.

    A NumPy weight (or anything not a JAX array) gives NumPy arrays (the
    reference); a JAX array, concrete or traced, gives JAX arrays computed by the
    same arithmetic on its device, bit for bit the same. NaN / inf in the
    weight raise ValueError (under a trace: see the module docstring).
    """
    fmt = formats.get_format(W_dtype)
    ndim = len(getattr(weight, "shape", np.shape(weight)))
    if ndim != 2:
        raise ValueError(f"weight must be 2-D [N, K], got shape {tuple(np.shape(weight))}")
    N, K = (int(d) for d in np.shape(weight))
    if with_zeros and not with_scaling:
        raise ValueError("with_zeros=True needs with_scaling=True")
    check_rtn_options(fmt.name, with_scaling, with_zeros)
    mode = (zeros_mode if with_zeros else "scale") if with_scaling else "none"
    if fmt.kind == "dense":
        mode = "none"
    elif mode not in formats.allowed_modes(fmt):
        raise ValueError(f"W_dtype={fmt.name!r} does not support mode {mode!r}; "
                         f"allowed: {formats.allowed_modes(fmt)}")
    g = K if group_size in (-1, None) or mode == "none" else int(group_size)
    if g <= 0 or K % g:
        raise ValueError(f"group_size={group_size} must be -1 or divide K={K}")
    allowed = ("float16", "bfloat16", "float32") + formats.QUANTIZED_ACTIVATIONS
    A_dtype = formats.canonical_dtype(A_dtype)
    if A_dtype not in allowed:
        raise ValueError(f"A_dtype={A_dtype!r} is not supported; allowed: {allowed}")
    A_dtype = formats.scale_dtype(A_dtype)     # the dtype scale and zeros are rounded to
    if _is_jax(weight):
        return _quantize_jax(weight, fmt.name, mode, g, A_dtype)
    w = np.asarray(weight)
    w = w.astype(np.float64 if w.dtype == np.float64 else np.float32)
    _refuse_non_finite(np.isfinite(w))
    return _rtn(_NUMPY, w, fmt, mode, g, formats.NUMPY_DTYPES[A_dtype])


def check_rtn_options(W_dtype: str, with_scaling, with_zeros, where: str = "quantize") -> None:
    """ValueError for an unsigned format with a scale but without zeros (with_scaling None
    counts as True, the front ends' default for quantized formats). Round to nearest has
    only a symmetric (absmax) scale there, and the grid 0..2^b-1 has no negative values: a
    zero-mean weight would lose its whole negative half to 0, silently. GPTQ and AWQ store
    unsigned codes with zero points for this reason."""
    fmt = formats.get_format(W_dtype)
    if fmt.kind == "uint" and with_scaling is not False and not with_zeros:
        lo, hi = fmt.value_range
        raise ValueError(
            f"{where}: W_dtype={fmt.name!r} with a scale but with_zeros=False would clip every "
            f"negative weight to 0 (its values are {lo}..{hi}, times a positive scale). Pass "
            f"with_zeros=True (zeros_mode 'original', 'rescale' or 'quantized'; min..max per group, "
            f"as GPTQ / AWQ do) or a signed format ('int{fmt.bits}')")


def _refuse_non_finite(finite) -> None:
    """ValueError naming the argument and the first bad entry (finite: bool [N, K], concrete)."""
    finite = np.asarray(finite)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise ValueError(f"quantize: weight holds NaN or inf ({len(bad)} entries, the first at "
                         f"[{bad[0][0]}, {bad[0][1]}]); quantization would silently hide them")


# ---- the two executors ---------------------------------------------------------------------------
class _Ops:
    """The array namespace `_rtn` runs on, plus the two things NumPy does not need."""

    def __init__(self, xp, barrier, traced: bool):
        self.xp, self.barrier, self.traced = xp, barrier, traced

    def divide(self, x, d):
        """x / d, correctly rounded: d broadcast to x's shape behind a barrier (see module doc)."""
        xp = self.xp
        d = xp.asarray(d, x.dtype)
        if d.shape != x.shape:
            d = self.barrier(xp.broadcast_to(d, x.shape))
        q = x / d
        if self.traced and x.dtype == np.float32:
            q = _ieee_quotient(self, x, d, q)
        return q

    def round_to(self, x, dtype):
        """x rounded to dtype, kept there: a later widening cannot cancel the rounding."""
        return self.barrier(x.astype(dtype))


_NUMPY = _Ops(np, lambda x: x, traced=False)


def _two_product(ops: _Ops, a, b):
    """(p, e) with p = fl(a b) and p + e = a b exactly (Dekker; float32, no over- or underflow).
    Every product sits behind a barrier, so no compiler fuses it with the following sum into an
    FMA, which would round differently."""
    bar = ops.barrier

    def split(v):   # v = hi + lo, each with at most 12 significant bits
        c = bar(v * np.float32(4097.0))
        hi = c - (c - v)
        return hi, v - hi
    ahi, alo = split(a)
    bhi, blo = split(b)
    p = bar(a * b)
    e = ((bar(ahi * bhi) - p) + bar(ahi * blo) + bar(alo * bhi)) + bar(alo * blo)
    return p, e


def _ieee_quotient(ops: _Ops, x, d, q, steps: int = 3):
    """The IEEE (round to nearest even) float32 quotient x / d from an approximate q within a few
    ulp: each step compares the exact residual x - q d with the half-ulp gaps to q's neighbours
    times d (powers of two times d: exact) and moves q one ulp where the quotient lies past one;
    on a tie it keeps the even one. x - p is exact (Sterbenz: p is within a factor 2 of x), so the
    residual's sign is always right and its value exact when q is a neighbour of the quotient."""
    import jax
    xp = ops.xp
    neg = d < 0
    x, d = xp.where(neg, -x, x), xp.abs(d)
    q = xp.where(neg, -q, q)
    ok = xp.isfinite(q) & (q != 0) & xp.isfinite(d) & (d != 0)
    for _ in range(steps):
        p, e = _two_product(ops, q, d)
        r = ops.barrier(x - p) - e                       # x - q d
        up, dn = xp.nextafter(q, xp.float32(np.inf)), xp.nextafter(q, xp.float32(-np.inf))
        gap_up = ops.barrier((up - q) * np.float32(0.5)) * d   # half the gap above q, times d
        gap_dn = ops.barrier((q - dn) * np.float32(0.5)) * d
        q_odd = (jax.lax.bitcast_convert_type(q, np.int32) & 1) == 1
        go_up = (r > gap_up) | ((r == gap_up) & q_odd)
        go_dn = (r < -gap_dn) | ((r == -gap_dn) & q_odd)
        q = xp.where(ok & go_up, up, xp.where(ok & go_dn, dn, q))
    return xp.where(neg, -q, q)


def ieee_divide(x, d):
    """x / d in float32 jax.numpy, correctly rounded on every backend (XLA:GPU's division is not,
    and XLA may turn a division by a broadcast into a product with a reciprocal)."""
    import jax.numpy as jnp
    return _jax_ops().divide(jnp.asarray(x, jnp.float32), d)


def _is_jax(x) -> bool:
    import jax
    return isinstance(x, (jax.Array, jax.core.Tracer))


@functools.lru_cache(maxsize=None)
def _jax_ops() -> _Ops:
    import jax
    import jax.numpy as jnp
    return _Ops(jnp, jax.lax.optimization_barrier, traced=True)


@functools.lru_cache(maxsize=None)
def _jitted():
    import jax

    @functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
    def run(w, fmt_name, mode, g, A_dtype):
        w = w.astype(np.float64 if w.dtype == np.float64 else np.float32)
        return _rtn(_jax_ops(), w, formats.get_format(fmt_name), mode, g,
                    formats.NUMPY_DTYPES[A_dtype])
    return run


def _quantize_jax(weight, fmt_name: str, mode: str, g: int, A_dtype: str):
    import jax
    import jax.numpy as jnp
    if not jnp.issubdtype(weight.dtype, jnp.floating) and not jnp.issubdtype(weight.dtype, jnp.integer):
        raise TypeError(f"weight must be a float array, got {weight.dtype}")
    from .partition import unsharded_type
    weight = unsharded_type(weight)
    if not isinstance(weight, jax.core.Tracer):
        finite = jnp.isfinite(weight)
        if not bool(jnp.all(finite)):
            _refuse_non_finite(jax.device_get(finite))
    return _jitted()(weight, fmt_name, mode, g, A_dtype)


# ---- the algorithm ---------------------------------------------------------------------------------
def _rtn(ops: _Ops, w, fmt: formats.WeightFormat, mode: str, g: int, adt):
    """Round to nearest on a float32 / float64 weight [N, K]: (values, scale or None, zeros or None)."""
    xp = ops.xp
    N, K = w.shape
    if fmt.kind == "dense":
        return w.astype(formats.DENSE_NUMPY[fmt.name]), None, None
    if mode == "none":
        if ops.traced and fmt.kind != "fp8":
            _check_finite_at_run_time(w)
        return _round_values(ops, fmt, w), None, None
    wg = w.reshape(N, K // g, g)
    if mode == "scale":
        scale = _symmetric_scale(ops, fmt, wg, adt)
        vals = _round_values(ops, fmt, ops.divide(wg, scale.astype(w.dtype)[..., None]))
        zeros = None
    else:
        vals, scale, zeros = _asymmetric(ops, fmt, wg, mode, adt)
    if ops.traced:          # a group with NaN / inf: NaN scale (and float zeros), so its outputs are NaN
        finite = xp.all(xp.isfinite(wg), axis=-1)
        scale = xp.where(finite, scale, xp.asarray(np.nan, adt))
        if zeros is not None and mode != "quantized":
            zeros = xp.where(finite, zeros, xp.asarray(np.nan, adt))
    return vals.reshape(N, K), scale, zeros


def _check_finite_at_run_time(w) -> None:
    """Integer codes without a scale cannot carry NaN: raise when the traced computation runs."""
    import jax
    import jax.numpy as jnp

    def check(all_finite):
        if not np.all(all_finite):          # an array of flags under vmap
            raise ValueError("quantize: weight holds NaN or inf, and with_scaling=False leaves no "
                             "scale to carry it into the output")
    jax.debug.callback(check, jnp.all(jnp.isfinite(w)))


def _tree_sum(ops: _Ops, x):
    """Sum over the last axis by a fixed pairwise tree of elementwise adds (same order everywhere)."""
    xp = ops.xp
    n = x.shape[-1]
    p = 1 << max(n - 1, 0).bit_length()
    if p != n:
        x = xp.concatenate([x, xp.zeros(x.shape[:-1] + (p - n,), x.dtype)], axis=-1)
    while x.shape[-1] > 1:
        h = x.shape[-1] // 2
        x = x[..., :h] + x[..., h:]
    return x[..., 0]


def _nonzero(ops: _Ops, s, adt):
    """A scale of 0 (all-zero group, or underflow in A_dtype) becomes 1: the values are 0 anyway."""
    xp = ops.xp
    return xp.where(s.astype(np.float32) > 0, s, xp.asarray(1, adt))


def _symmetric_scale(ops: _Ops, fmt, wg, adt):
    xp = ops.xp
    if fmt.kind == "int" and fmt.bits == 1:
        # {-1, +1} * mean |w| minimizes the L2 error
        g = wg.shape[-1]
        return _nonzero(ops, ops.round_to(ops.divide(_tree_sum(ops, xp.abs(wg)), g), adt), adt)
    amax = xp.abs(wg).max(-1)
    if fmt.kind == "int":
        top = 2 ** (fmt.bits - 1) - 1
    elif fmt.kind == "uint":
        top = 2 ** fmt.bits - 1
    elif fmt.kind == "table":
        top = 1.0 if fmt.name == "nf4" else 6.0
    else:
        top = _FP8_MAX[fmt.name]
    return _nonzero(ops, ops.round_to(ops.divide(amax, top), adt), adt)


@functools.lru_cache(maxsize=None)
def _sorted_table(name: str):
    t = np.asarray(formats.NF4_VALUES if name == "nf4" else formats.FP4_E2M1_VALUES, np.float32)
    order = np.argsort(t, kind="stable")
    return t[order], order.astype(np.uint8)


def _round_values(ops: _Ops, fmt, x):
    """Element values of x = w / scale in the format's dtype."""
    xp = ops.xp
    if fmt.kind == "int":
        if fmt.bits == 1:
            return xp.where(x >= 0, 1, -1).astype(np.int8)
        lo, hi = fmt.value_range
        return xp.clip(xp.rint(x), lo, hi).astype(np.int8)
    if fmt.kind == "uint":
        lo, hi = fmt.value_range
        return xp.clip(xp.rint(x), lo, hi).astype(np.uint8)
    if fmt.kind == "table":
        # nearest entry, ties to the lower sorted index
        ts, order = _sorted_table(fmt.name)
        ts_, order_ = xp.asarray(ts, x.dtype), xp.asarray(order)
        idx = xp.clip(xp.searchsorted(ts_, x), 1, len(ts) - 1)
        left, right = ts_[idx - 1], ts_[idx]
        return order_[xp.where(xp.abs(x - left) <= xp.abs(right - x), idx - 1, idx)]
    m = _FP8_MAX[fmt.name]
    # inf would clip to the largest finite value: make it NaN (no float8 format here keeps inf)
    x = xp.where(xp.isfinite(x), xp.clip(x, -m, m), xp.asarray(np.nan, x.dtype))
    if ops.traced and x.dtype == np.float32:
        x = _fp8_grid(ops, x, fmt.name)
    return x.astype(formats.FP8_NUMPY[fmt.name])


# (mantissa bits, smallest normal exponent) of the float8 formats
_FP8_GRID = {"float8_e4m3fn": (3, -6), "float8_e5m2": (2, -14)}


def _fp8_grid(ops: _Ops, x, name: str):
    """float32 x (finite values within the format's range) rounded to the float8 format's values,
    to nearest even: normal numbers by dropping mantissa bits, subnormal ones as multiples of the
    subnormal spacing (a power of two, so the scaling is exact); NaN kept."""
    import jax
    xp = ops.xp
    m, emin = _FP8_GRID[name]
    drop = 23 - m
    bits = jax.lax.bitcast_convert_type(x, np.uint32)
    lsb = (bits >> drop) & np.uint32(1)
    bits = (bits + np.uint32((1 << (drop - 1)) - 1) + lsb) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    normal = jax.lax.bitcast_convert_type(bits, np.float32)
    step = np.float32(2.0 ** (emin - m))
    sub = ops.barrier(xp.rint(ops.barrier(x * np.float32(1.0 / step)))) * step
    out = xp.where(xp.abs(x) >= np.float32(2.0 ** emin), normal, sub)
    return xp.where(xp.isfinite(x), out, x)


def _asymmetric(ops: _Ops, fmt, wg, zeros_mode, adt):
    """min..max of each group onto the integer grid [lo, hi]."""
    xp = ops.xp
    lo, hi = fmt.value_range
    wmin, wmax = wg.min(-1), wg.max(-1)
    scale = _nonzero(ops, ops.round_to(ops.divide(wmax - wmin, hi - lo), adt), adt)
    s = scale.astype(wg.dtype)
    lo32 = wg.dtype.type(lo)
    if zeros_mode == "quantized":
        zeros = xp.clip(xp.rint(lo32 - ops.divide(wmin, s)), lo, hi).astype(fmt.zeros_dtype)
        z = zeros.astype(wg.dtype)[..., None]
        vals = xp.clip(xp.rint(ops.divide(wg, s[..., None]) + z), lo, hi)
    elif zeros_mode == "original":          # w = (q - z) * s
        zeros = ops.round_to(lo32 - ops.divide(wmin, s), adt)
        z = zeros.astype(wg.dtype)[..., None]
        vals = xp.clip(xp.rint(ops.divide(wg, s[..., None]) + z), lo, hi)
    else:                                   # rescale: w = q * s - z
        zeros = ops.round_to(ops.barrier(lo32 * s) - wmin, adt)
        z = zeros.astype(wg.dtype)[..., None]
        vals = xp.clip(xp.rint(ops.divide(wg + z, s[..., None])), lo, hi)
    if fmt.kind == "int" and fmt.bits == 1:  # int1's grid is {-1, +1}; uint1's is {0, 1}
        vals = xp.where(vals >= 0, 1, -1)
    dtype = np.uint8 if fmt.kind == "uint" else np.int8
    return vals.astype(dtype), scale, zeros
