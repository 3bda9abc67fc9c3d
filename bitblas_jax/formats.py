"""The one definition of the weight formats: names, bits, value ranges, decode.

Every other module (config checks, packing, quantization, the NumPy reference,
the README table) reads from here; so does the C++ / CUDA side, through
csrc/include/bitblas_jax/formats_generated.h, which tools/gen_formats_header.py
writes from this file (ids, bits, kinds, names, allowed modes, the value tables).
After changing anything here, run `python3 tools/gen_formats_header.py`.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

# QLoRA's NF4 code book (Dettmers et al. 2023), code 0..15.
NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
    0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
)

# OCP FP4 E2M1: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa.
FP4_E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                   -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


@dataclasses.dataclass(frozen=True)
class WeightFormat:
    name: str
    id: int             # WFormat in formats_generated.h
    bits: int           # stored bits per element
    kind: str           # "int", "uint", "table", "fp8", "dense"
    doc: str            # one line for the README table

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def value_range(self) -> tuple[int, int] | None:
        """Inclusive range of the integer element values (None for non-integers)."""
        if self.kind == "uint":
            return 0, 2**self.bits - 1
        if self.kind == "int":
            if self.bits == 1:
                return -1, 1
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return None

    @property
    def zeros_dtype(self):
        """dtype of integer zero points in zeros_mode="quantized"."""
        return np.int8 if self.kind == "int" else np.uint8


def _f(name, id, bits, kind, doc):
    return WeightFormat(name, id, bits, kind, doc)


FORMATS: dict[str, WeightFormat] = {f.name: f for f in (
    _f("int8", 0, 8, "int", "integers -128..127"),
    _f("int4", 1, 4, "int", "integers -8..7"),
    _f("int2", 2, 2, "int", "integers -2..1"),
    _f("int1", 3, 1, "int", "-1 or +1"),
    _f("uint8", 4, 8, "uint", "integers 0..255"),
    _f("uint4", 5, 4, "uint", "integers 0..15"),
    _f("uint2", 6, 2, "uint", "integers 0..3"),
    _f("uint1", 7, 1, "uint", "0 or 1"),
    _f("nf4", 8, 4, "table", "codes 0..15 into the QLoRA NF4 table (-1 .. 1)"),
    _f("fp4_e2m1", 9, 4, "table", "codes 0..15, OCP E2M1: +-{0, .5, 1, 1.5, 2, 3, 4, 6}"),
    _f("float8_e4m3fn", 10, 8, "fp8", "float8 E4M3FN (max 448, no inf)"),
    _f("float8_e5m2", 11, 8, "fp8", "float8 E5M2 (max 57344)"),
    _f("float16", 12, 16, "dense", "IEEE half, no decode"),
    _f("bfloat16", 13, 16, "dense", "bfloat16, no decode"),
)}

# BitBLAS spellings accepted as aliases.
ALIASES = {
    "e4m3_float8": "float8_e4m3fn", "float8_e4m3": "float8_e4m3fn", "fp8_e4m3": "float8_e4m3fn",
    "e5m2_float8": "float8_e5m2", "fp8_e5m2": "float8_e5m2",
    "fp4": "fp4_e2m1", "fp16": "float16", "bf16": "bfloat16",
}

# Activation / accumulation / output dtypes. int8 and the float8 kinds are quantized activations
# (QUANTIZED_A); int32 accumulates and outputs the exact integer sum.
DTYPE_IDS = {"float16": 0, "bfloat16": 1, "float32": 2, "int8": 3, "int32": 4,
             "float8_e4m3fn": 5, "float8_e5m2": 6}
# Quantized activations (README, "int8 and float8 activations"): the weights, accumulator and
# outputs each activation dtype pairs with. int8 x int8..int1 is BitBLAS's WxA8 row; bfloat16
# output of int8 and int4 weights under float8 go beyond BitBLAS's table. The C++ handlers read
# this table from formats_generated.h.
QUANTIZED_A = {
    "int8": dict(W=("int8", "uint4", "int4", "uint2", "int2", "uint1", "int1"), accum="int32",
                 out=("int32", "float32", "float16", "bfloat16", "int8")),
    "float8_e4m3fn": dict(W=("float8_e4m3fn", "float8_e5m2", "int4"), accum="float32",
                          out=("float32", "float16", "bfloat16")),
    "float8_e5m2": dict(W=("float8_e4m3fn", "float8_e5m2", "int4"), accum="float32",
                        out=("float32", "float16", "bfloat16")),
}
QUANTIZED_ACTIVATIONS = tuple(QUANTIZED_A)
MODE_IDS = {"none": 0, "scale": 1, "original": 2, "rescale": 3, "quantized": 4}
ZEROS_MODES = ("original", "rescale", "quantized")

# The NumPy dtype that carries a weight format's element values into transform_weight.
FP8_NUMPY = {"float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}
DENSE_NUMPY = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
NUMPY_DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
                "float32": np.dtype(np.float32), "int8": np.dtype(np.int8), "int32": np.dtype(np.int32),
                "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
                "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2)}


def canonical_dtype(name) -> str:
    """A dtype name with BitBLAS's spellings (e4m3_float8, fp16, ...) mapped to ours."""
    key = str(name)
    return ALIASES.get(key, key)


def is_quantized_activation(a_dtype: str) -> bool:
    return a_dtype in QUANTIZED_ACTIVATIONS


def scale_dtype(a_dtype: str) -> str:
    """The dtype of scale, float zeros and bias for activations of a_dtype.

    16/32-bit float activations keep them in A's dtype (as BitBLAS); quantized
    activations (int8, float8) cannot hold a scale, so theirs are float32, the
    precision of the epilogue that applies them.
    """
    return "float32" if is_quantized_activation(a_dtype) else a_dtype


def get_format(name: str) -> WeightFormat:
    key = ALIASES.get(str(name), str(name))
    if key not in FORMATS:
        raise ValueError(f"W_dtype={name!r} is not supported; allowed: {sorted(FORMATS)}")
    return FORMATS[key]


def values_to_codes(fmt: WeightFormat, values: np.ndarray) -> np.ndarray:
    """Element values (as transform_weight takes them) -> raw storage codes (uint32)."""
    if fmt.kind == "int":
        v = values.astype(np.int64)
        if fmt.bits == 1:
            return ((v + 1) // 2).astype(np.uint32)
        return (v + 2 ** (fmt.bits - 1)).astype(np.uint32)
    if fmt.kind in ("uint", "table"):
        return values.astype(np.uint32)
    if fmt.kind == "fp8":
        return np.asarray(values).astype(FP8_NUMPY[fmt.name]).view(np.uint8).astype(np.uint32)
    return np.asarray(values).astype(DENSE_NUMPY[fmt.name]).view(np.uint16).astype(np.uint32)


def decode_codes(fmt: WeightFormat, codes: np.ndarray) -> np.ndarray:
    """Raw storage codes -> element values as float64 (the decode table)."""
    c = np.asarray(codes).astype(np.int64)
    if fmt.kind == "int":
        if fmt.bits == 1:
            return (2 * c - 1).astype(np.float64)
        return (c - 2 ** (fmt.bits - 1)).astype(np.float64)
    if fmt.kind == "uint":
        return c.astype(np.float64)
    if fmt.kind == "table":
        table = NF4_VALUES if fmt.name == "nf4" else FP4_E2M1_VALUES
        return np.asarray(table, np.float64)[c]
    if fmt.kind == "fp8":
        return c.astype(np.uint8).view(FP8_NUMPY[fmt.name]).astype(np.float64)
    return c.astype(np.uint16).view(DENSE_NUMPY[fmt.name]).astype(np.float64)


def check_values(fmt: WeightFormat, values: np.ndarray, arg: str = "weight") -> None:
    """Raise ValueError if element values are outside the format (transform_weight input)."""
    if fmt.kind in ("fp8", "dense"):
        return
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.integer):
        if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
            raise ValueError(f"{arg}: {fmt.name} element values must be integers, got dtype {v.dtype} "
                             "with non-integer entries")
    if fmt.kind == "int" and fmt.bits == 1:
        if not np.all((v == 1) | (v == -1)):
            raise ValueError(f"{arg}: int1 element values must be -1 or +1")
        return
    lo, hi = fmt.value_range if fmt.is_integer else (0, 15)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{arg}: {fmt.name} element values must lie in [{lo}, {hi}], "
                         f"got [{v.min()}, {v.max()}]")


def mode_flags(mode: str) -> dict:
    """MatmulConfig's with_scaling / with_zeros / zeros_mode for a mode name (the inverse of config.mode)."""
    if mode == "none":
        return dict(with_scaling=False, with_zeros=False)
    if mode == "scale":
        return dict(with_scaling=True, with_zeros=False)
    return dict(with_scaling=True, with_zeros=True, zeros_mode=mode)


def allowed_modes(fmt: WeightFormat) -> tuple[str, ...]:
    """Scale / zeros modes a format supports (zero points belong to integer grids)."""
    if fmt.kind == "dense":
        return ("none",)
    if fmt.kind == "int" and fmt.bits == 1:
        return ("none", "scale", "original", "rescale")
    if fmt.is_integer:
        return ("none", "scale", "original", "rescale", "quantized")
    return ("none", "scale")
