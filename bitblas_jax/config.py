"""MatmulConfig: BitBLAS's fields and meanings, checked at construction."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from . import formats, layout

A_DTYPES = ("float16", "bfloat16", "float32", "int8", "float8_e4m3fn", "float8_e5m2")
ACCUM_DTYPES = ("float16", "float32")
OUT_DTYPES = ("float16", "bfloat16", "float32")

def _bad(field, value, allowed):
    return ValueError(f"MatmulConfig.{field}={value!r} is not supported; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class MatmulConfig:
    """C[M, N] = A[M, K] x dequant(W)[N, K]^T, as bitblas.MatmulConfig.

    M is an int or a sequence of ints (the M values a dynamic-M caller uses);
    any M works at call time, it is only a hint. `bias=` is accepted as the
    quick start's spelling of `with_bias`.
    """
    M: int | tuple[int, ...] | None = None
    N: int | None = None
    K: int | None = None
    A_dtype: str = "float16"
    W_dtype: str = "int4"
    accum_dtype: str | None = None     # None: "int32" for int8 activations, else "float32"
    out_dtype: str = "float16"
    layout: str = "nt"
    with_bias: bool = False
    group_size: int | None = None
    with_scaling: bool | None = None
    with_zeros: bool | None = None
    zeros_mode: str | None = None
    bias: dataclasses.InitVar[object] = None

    def __post_init__(self, bias):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if bias is not None:              # the quick start's spelling: bias=None/False/True
            set_("with_bias", bool(bias) or self.with_bias)
        M = self.M
        if M is not None:
            if isinstance(M, Sequence) and not isinstance(M, str):
                M = tuple(M)
                if not M or not all(isinstance(m, int) and m >= 1 for m in M):
                    raise _bad("M", self.M, "a positive int or a non-empty list of positive ints")
            elif not (isinstance(M, int) and M >= 1):
                raise _bad("M", self.M, "a positive int or a non-empty list of positive ints")
            set_("M", M)
        for f in ("N", "K"):
            v = getattr(self, f)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise _bad(f, v, "a positive int (required)")
        a_dtype = formats.canonical_dtype(self.A_dtype)
        if a_dtype not in A_DTYPES:
            raise _bad("A_dtype", self.A_dtype, A_DTYPES)
        set_("A_dtype", a_dtype)
        try:
            fmt = formats.get_format(self.W_dtype)
        except ValueError:
            raise _bad("W_dtype", self.W_dtype, sorted(formats.FORMATS)) from None
        set_("W_dtype", fmt.name)
        if self.accum_dtype is None:
            set_("accum_dtype", formats.QUANTIZED_A[a_dtype]["accum"] if a_dtype in formats.QUANTIZED_A else "float32")
        set_("accum_dtype", formats.canonical_dtype(self.accum_dtype))
        set_("out_dtype", formats.canonical_dtype(self.out_dtype))
        if a_dtype in formats.QUANTIZED_A:
            self._check_quantized_activation(formats.QUANTIZED_A[a_dtype])
        else:
            if self.accum_dtype not in ACCUM_DTYPES:
                raise _bad("accum_dtype", self.accum_dtype, ACCUM_DTYPES)
            if self.accum_dtype == "float16" and self.A_dtype != "float16":
                raise _bad("accum_dtype", self.accum_dtype,
                           f"'float32' with A_dtype={self.A_dtype!r} ('float16' needs float16 activations)")
            if self.out_dtype not in OUT_DTYPES:
                raise _bad("out_dtype", self.out_dtype, OUT_DTYPES)
        if self.layout != "nt":
            raise _bad("layout", self.layout, "'nt' (A [M, K] row-major, W [N, K])")
        if not isinstance(self.with_bias, bool):
            raise _bad("with_bias", self.with_bias, "True or False")
        set_("with_scaling", bool(self.with_scaling))
        set_("with_zeros", bool(self.with_zeros))
        zm = "original" if self.zeros_mode is None else self.zeros_mode
        if zm not in formats.ZEROS_MODES:
            raise _bad("zeros_mode", self.zeros_mode, formats.ZEROS_MODES)
        set_("zeros_mode", zm)
        if self.with_zeros and not self.with_scaling:
            raise _bad("with_zeros", True, "True only together with with_scaling=True")
        gs = -1 if self.group_size is None else self.group_size
        if not isinstance(gs, int) or isinstance(gs, bool):
            raise _bad("group_size", self.group_size, "-1 or a divisor of K that is a multiple of 8")
        if gs != -1 and (gs <= 0 or gs % 8 or self.K % gs):
            raise _bad("group_size", gs, f"-1 or a divisor of K={self.K} that is a multiple of 8")
        set_("group_size", gs)
        if self.mode not in formats.allowed_modes(fmt):
            raise ValueError(
                f"MatmulConfig: W_dtype={fmt.name!r} does not support "
                f"with_scaling={self.with_scaling}, with_zeros={self.with_zeros}, "
                f"zeros_mode={zm!r} (mode {self.mode!r}); allowed modes for {fmt.name}: "
                f"{formats.allowed_modes(fmt)} (zero points need an integer format)")
        try:
            layout.check_shape(self.N, self.K, fmt.bits)
        except ValueError as e:
            raise ValueError(f"MatmulConfig: {e}") from None

    def _check_quantized_activation(self, allowed: dict) -> None:
        a = self.A_dtype
        if self.W_dtype not in allowed["W"]:
            raise _bad("W_dtype", self.W_dtype, f"{allowed['W']} with A_dtype={a!r}")
        if self.accum_dtype != allowed["accum"]:
            raise _bad("accum_dtype", self.accum_dtype, f"{allowed['accum']!r} with A_dtype={a!r}")
        if self.out_dtype not in allowed["out"]:
            raise _bad("out_dtype", self.out_dtype, f"{allowed['out']} with A_dtype={a!r}")
        if self.out_dtype == "int32" and (self.with_scaling or self.with_bias):
            # int32 is the exact integer sum; a scale or a bias makes the result non-integer
            raise _bad("out_dtype", "int32", "'int32' only without scale, zeros and bias "
                       "(with_scaling=False, with_bias=False); use 'float32' or 'int8' for scaled outputs")

    # ---- derived, read by the rest of the package --------------------------
    @property
    def format(self) -> formats.WeightFormat:
        return formats.get_format(self.W_dtype)

    @property
    def mode(self) -> str:
        if not self.with_scaling:
            return "none"
        return self.zeros_mode if self.with_zeros else "scale"

    @property
    def quantized_activations(self) -> bool:
        """int8 / float8 activations: group sums first, scales in a float32 epilogue."""
        return formats.is_quantized_activation(self.A_dtype)

    @property
    def scale_dtype(self) -> str:
        """dtype of scale, float zeros and bias (formats.scale_dtype)."""
        return formats.scale_dtype(self.A_dtype)

    @property
    def resolved_group_size(self) -> int:
        return self.K if self.group_size == -1 else self.group_size

    @property
    def num_groups(self) -> int:
        return self.K // self.resolved_group_size
