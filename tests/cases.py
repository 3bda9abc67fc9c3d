"""Random problem instances and the error bound every kernel test checks against.

A case draws fresh random element values (every code of the format can
appear), scales, zeros, bias and activations; `check` compares a result with
the float64 reference under a bound derived from the arithmetic the kernels
do (see `error_bound`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

import bitblas_jax as bj
from bitblas_jax import formats, reference

UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24}


def all_format_modes():
    """Every (format, mode) pair the library supports."""
    return [(name, mode) for name, fmt in formats.FORMATS.items() for mode in formats.allowed_modes(fmt)]


def random_values(rng, fmt, N, K):
    """Element values as transform_weight takes them, covering the whole code range."""
    if fmt.kind == "int" and fmt.bits == 1:
        return rng.choice(np.array([-1, 1], np.int8), size=(N, K))
    if fmt.is_integer:
        lo, hi = fmt.value_range
        return rng.integers(lo, hi + 1, size=(N, K)).astype(np.int32)
    if fmt.kind == "table":
        return rng.integers(0, 16, size=(N, K)).astype(np.uint8)
    if fmt.kind == "fp8":
        # random finite bit patterns (every exponent, subnormals included), no NaN
        bits = rng.integers(0, 256, size=(N, K)).astype(np.uint8)
        vals = bits.view(formats.FP8_NUMPY[fmt.name]).astype(np.float32)
        vals = np.clip(np.where(np.isfinite(vals), vals, 1.0), -64, 64)  # keep sums in fp16 range
        return vals.astype(formats.FP8_NUMPY[fmt.name])
    return rng.standard_normal((N, K)).astype(formats.DENSE_NUMPY[fmt.name])


@dataclasses.dataclass
class Case:
    cfg: bj.MatmulConfig
    values: np.ndarray
    scale: np.ndarray | None
    zeros: np.ndarray | None
    bias: np.ndarray | None
    A: np.ndarray

    @property
    def mm(self) -> bj.Matmul:
        return bj.Matmul(self.cfg)

    def packed(self):
        return self.mm.transform_weight(self.values)

    def wd(self) -> np.ndarray:
        c = self.cfg
        return reference.dequantize_values(self.values, c.W_dtype, c.mode, self.scale, self.zeros,
                                           c.group_size, c.A_dtype)

    def ref(self, A=None) -> np.ndarray:
        return reference.matmul(self.A if A is None else A, self.wd(), self.bias)

    def run(self, A=None, **kw):
        import jax.numpy as jnp
        A = self.A if A is None else A
        return self.mm(jnp.asarray(A), self.packed(), scale=self.scale, zeros=self.zeros,
                       bias=self.bias, **kw)


def make_case(rng, W_dtype, mode="none", group_size=-1, A_dtype="float16", accum_dtype="float32",
              out_dtype="float16", with_bias=False, M=3, N=32, K=256, a_shape=None) -> Case:
    fmt = formats.get_format(W_dtype)
    cfg = bj.MatmulConfig(M=M, N=N, K=K, A_dtype=A_dtype, W_dtype=W_dtype, accum_dtype=accum_dtype,
                          out_dtype=out_dtype, with_bias=with_bias, group_size=group_size,
                          **formats.mode_flags(mode))
    adt = formats.NUMPY_DTYPES[A_dtype]
    G = cfg.num_groups
    values = random_values(rng, fmt, N, K)
    scale = zeros = bias = None
    if mode != "none":
        # keep dequantized weights O(1): scale ~ 1 / (value magnitude)
        mag = {"int": 2.0 ** (fmt.bits - 1), "uint": 2.0**fmt.bits}.get(fmt.kind, 1.0)
        if fmt.kind == "fp8":
            mag = 64.0
        scale = (rng.uniform(0.5, 1.5, (N, G)) * rng.choice([-1, 1], (N, G)) / mag).astype(adt)
    if mode in ("original", "rescale"):
        zrange = fmt.value_range[1] if mode == "original" else 1.0
        zeros = rng.uniform(-zrange, zrange, (N, G)).astype(adt)
    elif mode == "quantized":
        lo, hi = fmt.value_range
        zeros = rng.integers(lo, hi + 1, (N, G)).astype(fmt.zeros_dtype)
    if with_bias:
        bias = rng.standard_normal(N).astype(adt)
    A = rng.standard_normal(a_shape or (M, K)).astype(adt)
    return Case(cfg, values, scale, zeros, bias, A)


def error_bound(case: Case, A=None) -> np.ndarray:
    """Elementwise bound on |kernel - float64 reference|.

    - accumulation: float32 sums of exact products err by <= K * 2^-24 * sum|a*w|;
      float16 accumulation rounds the running sum every 16 products:
      <= (K/16 + 1) * 2^-11 * sum|a*w|.
    - the dequantized weight may differ from the float64 one by one rounding in
      A's dtype where the kernel's float32 decode product is inexact (table
      formats times a scale): <= u_A * sum|a*w|.
    - output rounding (and bias added after it): <= 2 * u_out * (|C| + |bias|).
    - modes original / quantized: the 16-bit kernels dequantize v * s - z * s with z * s rounded once
      to A's dtype (csrc/cuda/convert.cuh rowp_make2), which differs from the reference's
      round((v - z) * s) by up to u_A * |z s| per weight, with one sign over a whole group:
      <= u_A * |A| @ |z s|^T (zero_point_products).
    - gemm_cutlass (where it may run the call: gemm_cutlass_codes_scaled) dequantizes w = code * S + Z in
      A's dtype with Z = (offset + z) s or the mode's like term rounded once, code * S rounded, then the sum
      rounded: from the reference's once-rounded weight by <= u_A (|c s| + 2 |Z| + 2 |w|) <= 3 u_A (|c s| + |w|)
      beyond the one rounding above (|Z| <= |w| + |c s|): <= 3 u_A * |A| @ (|c s| + |w|)^T.
    """
    c = case.cfg
    A = np.asarray(case.A if A is None else A, np.float64)
    absprod = np.abs(A) @ np.abs(case.wd()).T
    bound = bound_from(absprod, case.ref(A), case.bias, c.K, c.accum_dtype, c.A_dtype, c.out_dtype)
    zs = zero_point_products(case)
    if zs is not None:
        bound = bound + UNIT_ROUNDOFF[c.A_dtype] * (np.abs(A) @ np.abs(zs).T)
    cs = gemm_cutlass_codes_scaled(case, A)
    if cs is not None:
        bound = bound + 3 * UNIT_ROUNDOFF[c.A_dtype] * (np.abs(A) @ (np.abs(cs) + np.abs(case.wd())).T)
    return bound


def gemm_cutlass_codes_scaled(case: Case, A) -> np.ndarray | None:
    """code * s per weight [N, K] (float64; s = 1 in mode none; code: gemm_cutlass's conversion's, an integer
    code's value + the value offset or a table format's value rounded to A's dtype, as its register lookup
    yields it) where gemm_cutlass may run the call: this install holds it (or BITBLAS_JAX_GEMM_CUTLASS=1), plan.h
    gemm_cutlass_takes the call, and A has at least gpu_plan.gemm_cutlass_min_m() rows. None elsewhere: the other
    kernels' bound stays as sharp as it was."""
    from bitblas_jax import _bitblas_plan, gpu_plan
    c = case.cfg
    fmt = formats.get_format(c.W_dtype)
    M = int(np.prod(np.shape(A)[:-1]))
    group = c.K if c.group_size == -1 or c.mode == "none" else c.group_size
    takes = _bitblas_plan.gemm_cutlass_takes(w_format=fmt.id, out_is_act=c.out_dtype == c.A_dtype,
                                             accum_f32=c.accum_dtype == "float32", group_size=group, N=c.N, K=c.K)
    if not (takes and M >= gpu_plan.gemm_cutlass_min_m(c.N, c.K, c.W_dtype) and gpu_plan.gemm_cutlass_runs()):
        return None
    if fmt.kind == "table":
        codes = formats.decode_codes(fmt, case.values).astype(formats.NUMPY_DTYPES[c.A_dtype]).astype(np.float64)
    else:
        codes = np.asarray(case.values, np.float64) + _bitblas_plan.gemm_cutlass_value_offset(w_format=fmt.id)
    if c.mode == "none":
        return codes
    return codes * np.repeat(np.asarray(case.scale, np.float64), group, axis=1)


def gemm_cutlass_weights(case: Case, A) -> list[np.ndarray]:
    """The weight [N, K] as gemm_cutlass dequantizes it, where it may run the call (gemm_cutlass_codes_scaled;
    [] elsewhere): w = code * S + Z in A's dtype, S = s (1 in mode none), Z the mode's group term as its
    kernel writes it (float32, then A's dtype: csrc/cuda/gemm_cutlass.cu), value = code - the value offset
    (plan::gemm_cutlass_value_offset). Two of them: the
    multiply-add fused (one rounding, as CUTLASS's conversion compiles to HFMA2) and rounded twice. A weight
    the reference holds at zero can be nonzero in both (inf * 0 becomes inf): check_nonfinite takes them."""
    codes_s = gemm_cutlass_codes_scaled(case, A)
    if codes_s is None:
        return []
    from bitblas_jax import _bitblas_plan
    c = case.cfg
    fmt = formats.get_format(c.W_dtype)
    adt = formats.NUMPY_DTYPES[c.A_dtype]
    val_off = np.float32(_bitblas_plan.gemm_cutlass_value_offset(w_format=fmt.id))
    g = c.K if c.group_size == -1 or c.mode == "none" else c.group_size
    rep = lambda x: np.repeat(np.asarray(x).astype(np.float32), g, axis=1)  # noqa: E731
    s = np.ones_like(codes_s, np.float32) if c.mode == "none" else rep(case.scale)
    if c.mode in ("original", "quantized"):
        Z = -(val_off + rep(case.zeros)) * s
    elif c.mode == "rescale":
        Z = -val_off * s - rep(case.zeros)
    else:
        Z = -val_off * s
    Z = Z.astype(adt).astype(np.float64)
    fused = (codes_s + Z).astype(adt).astype(np.float64)          # code * s exact in float64, one rounding
    twice = (codes_s.astype(adt).astype(np.float64) + Z).astype(adt).astype(np.float64)
    return [fused, twice]


def zero_point_products(case: Case) -> np.ndarray | None:
    """z * s per weight [N, K] (float64) in the modes whose 16-bit kernels round it to A's dtype before
    the subtraction (original, quantized; rescale adds z as given); None in the others."""
    c = case.cfg
    if c.mode not in ("original", "quantized"):
        return None
    g = c.K if c.group_size == -1 else c.group_size
    rep = lambda x: np.repeat(np.asarray(x, np.float64), g, axis=1)  # noqa: E731
    return rep(case.zeros) * rep(case.scale)


def kernel_weight(case: Case) -> np.ndarray:
    """The weight as the 16-bit kernels round it: the reference's (case.wd()) except in the modes of
    zero_point_products, where it is round(v * s - round(z * s)) in A's dtype. Where the two differ a
    weight the reference holds at exactly zero may not be, so inf * 0 (NaN in the reference) can
    come out as inf: check_nonfinite accepts either weight's non-finite outputs."""
    zs = zero_point_products(case)
    if zs is None:
        return case.wd()
    c = case.cfg
    fmt = formats.get_format(c.W_dtype)
    v = formats.decode_codes(fmt, formats.values_to_codes(fmt, np.asarray(case.values)))
    g = c.K if c.group_size == -1 else c.group_size
    s = np.repeat(np.asarray(case.scale, np.float64), g, axis=1)
    adt = formats.NUMPY_DTYPES[c.A_dtype]
    return (v * s - zs.astype(adt).astype(np.float64)).astype(adt).astype(np.float64)


def bound_from(absprod, ref, bias, K, accum_dtype, A_dtype, out_dtype) -> np.ndarray:
    """error_bound from its parts: absprod = |A| @ |Wd|^T and the reference, both float64 (for
    problems too large to hold as a Case)."""
    if accum_dtype == "float16":
        acc = (K / 16 + 1) * 2.0**-11
    else:
        acc = K * 2.0**-24
    acc += UNIT_ROUNDOFF[A_dtype]
    b = 0 if bias is None else np.abs(np.asarray(bias).astype(np.float64))
    return acc * absprod + 2 * UNIT_ROUNDOFF[out_dtype] * (np.abs(ref) + b) + 1e-30


def check(case: Case, out, A=None) -> None:
    checker(case, A)(out)


def checker(case: Case, A=None):
    """`check` with the reference and the bound computed once: a function of the result (for many
    results of one case)."""
    ref = case.ref(A)
    bound = error_bound(case, A)
    dtype = formats.NUMPY_DTYPES[case.cfg.out_dtype]

    def check_out(out) -> None:
        out = np.asarray(out)
        assert out.shape == ref.shape, (out.shape, ref.shape)
        assert out.dtype == dtype, out.dtype
        got = out.astype(np.float64)
        assert np.all(np.isfinite(got)), "non-finite output (unwritten or overflowed elements)"
        err = np.abs(got - ref)
        bad = err > bound
        assert not bad.any(), (
            f"{bad.sum()} of {bad.size} elements over the bound; worst err {err.max():.3g} "
            f"(bound there {bound.flat[np.argmax(err - bound)]:.3g}), |ref| max {np.abs(ref).max():.3g}")
    return check_out


def check_nonfinite(case: Case, out, A=None, inf_may_be_nan: bool = False) -> None:
    """For inputs holding NaN / inf: NaN exactly where the float64 reference has NaN, the reference's
    +-inf where it has inf (or NaN there with inf_may_be_nan: zero points applied through activation
    sums turn inf - inf into NaN), and the output columns the reference keeps finite within the
    bound of `check`. Where a kernel's own weight rounding (kernel_weight; gemm_cutlass_weights where
    gemm_cutlass may run) makes a weight the reference holds at zero nonzero or the reverse, the
    non-finite output of any of those weights is taken."""
    out = np.asarray(out)
    assert out.dtype == formats.NUMPY_DTYPES[case.cfg.out_dtype], out.dtype
    got = out.astype(np.float64)
    A_ = case.A if A is None else A
    with np.errstate(invalid="ignore"):     # inf - inf in the reference is the point
        ref = case.ref(A)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        # the non-finite outputs of the kernels' own weight roundings are as good
        alts = [reference.matmul(A_, w, case.bias) for w in [kernel_weight(case)] + gemm_cutlass_weights(case, A_)]
        nan_ref, nan_alts = np.isnan(ref), [np.isnan(a) for a in alts]
        all_nan = nan_ref & np.logical_and.reduce(nan_alts)
        some_nan = (nan_ref | np.logical_or.reduce(nan_alts)) & ~all_nan
        assert np.all(np.isnan(got[all_nan])), f"{np.sum(~np.isnan(got[all_nan]))} NaN outputs missing"
        # inf * 0 under one weight, inf under another: NaN or one of their infinities
        given = np.logical_or.reduce([got == r for r in [ref] + alts])
        some_ok = np.isnan(got[some_nan]) | given[some_nan]
        assert some_ok.all(), f"{np.sum(~some_ok)} outputs no weight rounding gives"
        finite = np.isfinite(ref) & np.logical_and.reduce([np.isfinite(a) for a in alts])
        assert not np.isnan(got[finite]).any(), "NaN where the reference is finite"
        inf_ref = np.isinf(ref) & ~np.logical_or.reduce(nan_alts)
        same_inf = got[inf_ref] == ref[inf_ref]
        if inf_may_be_nan:
            same_inf |= np.isnan(got[inf_ref])
        assert same_inf.all(), f"{np.sum(~same_inf)} of {inf_ref.sum()} infinite outputs differ"
        bound = error_bound(case, A)
        err = np.abs(got - ref)
        bad = finite & ~(err <= bound)
        assert not bad.any(), (f"{bad.sum()} of {finite.sum()} finite elements over the bound; worst err "
                               f"{err[bad].max():.3g}")


# ---- int8 / float8 activations ---------------------------------------------------------------------
def random_activations(rng, a_dtype, shape, amax=None):
    """int8: integers over the whole range (or [-amax, amax]); float8: random finite bit patterns
    (every exponent, subnormals included), clipped to [-64, 64] (or amax) so float16 sums stay finite."""
    if a_dtype == "int8":
        lo, hi = (-128, 127) if amax is None else (-amax, amax)
        return rng.integers(lo, hi + 1, size=shape).astype(np.int8)
    f8 = formats.NUMPY_DTYPES[a_dtype]
    v = rng.integers(0, 256, size=shape).astype(np.uint8).view(f8).astype(np.float32)
    lim = 64.0 if amax is None else float(amax)
    return np.clip(np.where(np.isfinite(v), v, 1.0), -lim, lim).astype(f8)


@dataclasses.dataclass
class QCase(Case):
    """A case with int8 / float8 activations: scale, float zeros and bias float32; a_scale optional.
    wd() is the unrounded float64 weight (reference.dequantize_values with a quantized A_dtype)."""
    a_scale: np.ndarray | None = None

    def value(self) -> np.ndarray:
        """The float64 result before the output cast."""
        return reference.matmul(self.A, self.wd(), self.bias, self.a_scale)

    def run(self, A=None, **kw):
        import jax.numpy as jnp
        A = self.A if A is None else A
        if self.a_scale is not None:
            kw.setdefault("a_scale", self.a_scale)
        return self.mm(jnp.asarray(A), self.packed(), scale=self.scale, zeros=self.zeros,
                       bias=self.bias, **kw)


def make_qcase(rng, A_dtype, W_dtype, mode="none", group_size=-1, out_dtype="float32", with_bias=False,
               M=3, N=32, K=256, a_shape=None, amax=None, a_scale=None) -> QCase:
    """a_scale: None, "tensor" or "token" (random positive activation scales)."""
    fmt = formats.get_format(W_dtype)
    cfg = bj.MatmulConfig(M=M, N=N, K=K, A_dtype=A_dtype, W_dtype=W_dtype, out_dtype=out_dtype,
                          with_bias=with_bias, group_size=group_size, **formats.mode_flags(mode))
    G = cfg.num_groups
    values = random_values(rng, fmt, N, K)
    a_shape = a_shape or (M, K)
    if amax is None and mode == "none" and out_dtype == "float16":
        amax = 1 if A_dtype == "int8" else 2     # |sum| <= K * 128 (int8) or K * 2 * 64 stays in float16
    A = random_activations(rng, A_dtype, a_shape, amax)
    # scales put outputs at O(10..100): int8 outputs then round and saturate
    a_mag = 64.0 if A_dtype == "int8" else 16.0
    w_mag = {"int": 2.0 ** (fmt.bits - 1), "uint": 2.0 ** fmt.bits}.get(fmt.kind, 16.0)
    scale = zeros = bias = None
    if mode != "none":
        unit = 8.0 / (a_mag * w_mag * np.sqrt(K))
        scale = (rng.uniform(0.5, 1.5, (N, G)) * rng.choice([-1, 1], (N, G)) * unit).astype(np.float32)
    if mode in ("original", "rescale"):
        zrange = fmt.value_range[1] if mode == "original" else float(np.abs(scale).max()) * w_mag
        zeros = rng.uniform(-zrange, zrange, (N, G)).astype(np.float32)
    elif mode == "quantized":
        lo, hi = fmt.value_range
        zeros = rng.integers(lo, hi + 1, (N, G)).astype(fmt.zeros_dtype)
    if with_bias:
        bias = (rng.standard_normal(N) * 4).astype(np.float32)
    s = None
    if a_scale == "tensor":
        s = np.float32(rng.uniform(0.25, 4))
    elif a_scale == "token":
        s = rng.uniform(0.25, 4, a_shape[:-1]).astype(np.float32)
    return QCase(cfg, values, scale, zeros, bias, A, s)


# Hopper's float8 tensor cores (gemm_wgmma_a8): a k32 wgmma adds its 32 exact products and the running
# sum aligned to the largest of them with 13 fraction bits, truncating, so each of the 33 terms loses
# less than 2^-13 of the largest; a 128-k stage (4 wgmmas, then promoted to float32) errs by at most
# 4 * 33 * 2^-13 of its sum of |products|.
FLOAT8_WGMMA_STAGE_REL = 4 * 33 * 2.0**-13


def qerror_bound(case: QCase, float8_tensor_cores: bool = False) -> np.ndarray:
    """Bound on |v_kernel - v_reference| before the output cast (the v of quantized_dot.py).

    Every float32 operation on the way rounds once (relative 2^-24) a quantity bounded by
    mag = |a_scale| * |A| @ (|w s| + |z s| + |z|)^T: the group sum (float8 only: up to group_size
    additions of exact products; int8 group sums are exact), the zero term, the scale product, the
    G additions across groups, then the activation scale and the bias. float8_tensor_cores: the sums
    of Hopper's float8 wgmma (FLOAT8_WGMMA_STAGE_REL of mag more).
    """
    c = case.cfg
    fmt = c.format
    w = formats.decode_codes(fmt, formats.values_to_codes(fmt, np.asarray(case.values)))
    g = c.K if c.mode == "none" else c.resolved_group_size
    rep = lambda x: np.repeat(np.asarray(x, np.float64), g, axis=1)  # noqa: E731
    s = np.ones_like(w) if case.scale is None else rep(case.scale)
    z = np.zeros_like(w) if case.zeros is None else rep(case.zeros)
    mag = np.abs(np.asarray(case.A, np.float64)) @ (np.abs(w * s) + np.abs(z * s) + np.abs(z)).T
    if case.a_scale is not None:
        mag = mag * np.abs(np.asarray(case.a_scale, np.float64))[..., None]
    steps = c.K // g + 6 + (g if c.A_dtype != "int8" else 0)
    b = 0 if case.bias is None else np.abs(case.bias.astype(np.float64))
    tensor_cores = FLOAT8_WGMMA_STAGE_REL * mag if float8_tensor_cores else 0
    return steps * 2.0**-24 * (mag + b) + tensor_cores + 1e-30


def on_float8_tensor_cores(case: QCase) -> bool:
    """Whether case's call on JAX's default device runs on Hopper's float8 tensor cores (gemm_wgmma_a8
    with float8 activations: the one path check_quantized holds to their own, wider bound)."""
    import jax
    from bitblas_jax import gpu_plan
    c = case.cfg
    if c.A_dtype == "int8" or jax.default_backend() != "gpu":
        return False
    M = int(np.prod(np.shape(case.A)[:-1]))
    return gpu_plan.quantized_activation_kernel(c.A_dtype, c.W_dtype, c.mode, c.resolved_group_size, M,
                                                c.K) == "gemm_wgmma_a8"


def check_quantized(case: QCase, out, float8_tensor_cores: bool = False) -> None:
    """int32: equal to the int64 sum; int8: between the saturated roundings of value -+ bound;
    float outputs: within bound + the output's rounding (qerror_bound; float8_tensor_cores: Hopper's
    float8 wgmma sums)."""
    out = np.asarray(out)
    c = case.cfg
    v = case.value()
    assert out.shape == v.shape, (out.shape, v.shape)
    assert out.dtype == formats.NUMPY_DTYPES[c.out_dtype], out.dtype
    if c.out_dtype == "int32":
        exact = reference.integer_matmul(case.A, case.values, c.W_dtype)
        np.testing.assert_array_equal(out.astype(np.int64), exact)
        return
    bound = qerror_bound(case, float8_tensor_cores)
    if c.out_dtype == "int8":
        lo, hi = reference.saturate_int8(v - bound), reference.saturate_int8(v + bound)
        bad = (out < lo) | (out > hi)
        assert not bad.any(), f"{bad.sum()} of {bad.size} int8 outputs off; e.g. got {out[bad][:4]}, " \
                              f"value {v[bad][:4]}"
        return
    got = out.astype(np.float64)
    assert np.all(np.isfinite(got)), "non-finite output (unwritten or overflowed elements)"
    err = np.abs(got - v)
    bound = qout_bound(c.out_dtype, v, bound)
    bad = err > bound
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} elements over the bound; worst err {err.max():.3g} "
        f"(bound there {bound.flat[np.argmax(err - bound)]:.3g}), |value| max {np.abs(v).max():.3g}")


def qout_bound(out_dtype: str, v, bound) -> np.ndarray:
    """A float output's bound: qerror_bound (before the cast) + the output's rounding (+ float16
    subnormals)."""
    return bound + UNIT_ROUNDOFF[out_dtype] * (np.abs(v) + bound) + 2.0**-25


def check_quantized_nonfinite(case: QCase, out, inf_may_be_nan: bool = False) -> None:
    """For float8 activations or weights holding NaN / inf: NaN exactly where the float64 value has NaN,
    its +-inf where it is infinite (or NaN there with inf_may_be_nan: zero points applied through
    activation sums turn inf - inf into NaN), the outputs it keeps finite within check_quantized's
    bound."""
    out = np.asarray(out)
    c = case.cfg
    assert out.dtype == formats.NUMPY_DTYPES[c.out_dtype], out.dtype
    got = out.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):     # inf - inf, inf * 0 in the reference are the point
        v = case.value()
        bound = qout_bound(c.out_dtype, v, qerror_bound(case))
        assert got.shape == v.shape, (got.shape, v.shape)
        nan_ref, inf_ref, finite = np.isnan(v), np.isinf(v), np.isfinite(v)
        assert (nan_ref | inf_ref).any(), "the case has no special value (a test that cannot fail)"
        assert finite.any(), "the case has no finite output (the bound is not checked)"
        assert np.all(np.isnan(got[nan_ref])), f"{np.sum(~np.isnan(got[nan_ref]))} NaN outputs missing"
        assert not np.isnan(got[finite]).any(), "NaN where the reference is finite"
        same_inf = got[inf_ref] == v[inf_ref]
        if inf_may_be_nan:
            same_inf |= np.isnan(got[inf_ref])
        assert same_inf.all(), f"{np.sum(~same_inf)} of {inf_ref.sum()} infinite outputs differ"
        err = np.abs(got - v)
        bad = finite & ~(err <= bound)
    assert not bad.any(), f"{bad.sum()} of {finite.sum()} finite elements over the bound; worst err {err[bad].max():.3g}"


# fp8 special codes: e4m3fn NaN; e5m2 +-inf and NaN
FP8_SPECIAL_CODES = {"float8_e4m3fn": [0x7F, 0xFF],
                     "float8_e5m2": [0x7C, 0xFC, 0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF]}


def with_special_activations(case: QCase) -> QCase:
    """case with one special code in every third activation row (first row included), at k spread over
    the packed tiles' positions, each row another code; for e5m2 one more row (if M > 1) with +inf and
    -inf (NaN). The other rows stay finite."""
    a_dtype = case.cfg.A_dtype
    codes = case.A.view(np.uint8).copy()
    lead, K = codes.shape[:-1], codes.shape[-1]
    flat = codes.reshape(-1, K)
    specials = FP8_SPECIAL_CODES[a_dtype]
    for i, m in enumerate(range(0, flat.shape[0], 3)):
        flat[m, (37 * i + 5) % K] = specials[i % len(specials)]
    if a_dtype == "float8_e5m2" and flat.shape[0] > 1:
        flat[1, 3], flat[1, K - 2] = 0x7C, 0xFC
    case.A = flat.reshape(lead + (K,)).view(formats.NUMPY_DTYPES[a_dtype])
    return case


def with_special_weights(case: QCase) -> QCase:
    """case (float8 weights) with one special code in each of the first N / 4 weight rows, at k spread
    over the packed tiles' positions (tests/test_fp8_specials.py's pattern)."""
    fmt = case.cfg.W_dtype
    codes = np.asarray(case.values).view(np.uint8).copy()
    specials = FP8_SPECIAL_CODES[fmt]
    N, K = codes.shape
    for n in range(N // 4):
        codes[n, (37 * n + 5 * (n // 8)) % K] = specials[n % len(specials)]
    case.values = codes.view(formats.FP8_NUMPY[fmt])
    return case
