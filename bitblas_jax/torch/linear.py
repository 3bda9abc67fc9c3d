"""bitblas_jax.torch.Linear (BitBLAS's Linear, on this library's kernels) and quantize_model."""
from __future__ import annotations

import re
import warnings
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .. import formats, gptq_awq, group_terms, layout
from ..activations import GRANULARITIES
from ..config import MatmulConfig
from ..progress import ProgressBar
from ..quantize import check_rtn_options
from ..quantize import quantize as _quantize
from ..spec import KernelSpec
from . import ops

__all__ = ["Linear", "quantize_model"]

_ZEROS_TORCH = {np.dtype(np.int8): torch.int8, np.dtype(np.uint8): torch.uint8}


# ---- numpy <-> torch ------------------------------------------------------------
def _to_numpy(x, what: str) -> np.ndarray:
    """A torch tensor or array-like -> numpy (bfloat16 / float8 through ml_dtypes), no grad."""
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    t = x.detach().cpu()
    import ml_dtypes
    special = {torch.bfloat16: (torch.int16, ml_dtypes.bfloat16)}
    for name, ml in (("float8_e4m3fn", ml_dtypes.float8_e4m3fn), ("float8_e5m2", ml_dtypes.float8_e5m2)):
        if hasattr(torch, name):
            special[getattr(torch, name)] = (torch.uint8, ml)
    if t.dtype in special:
        view, ml = special[t.dtype]
        return t.contiguous().view(view).numpy().view(ml)
    try:
        return t.numpy()
    except TypeError as e:
        raise TypeError(f"{what}: unsupported tensor dtype {x.dtype}") from e


def _from_numpy(a: np.ndarray, dtype: torch.dtype, device) -> torch.Tensor:
    """numpy -> a torch tensor of `dtype` on `device` (bfloat16 goes through float32)."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "V" or a.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        a = a.astype(np.float32)
    return torch.from_numpy(a).to(device=device, dtype=dtype)


# ---- Linear -------------------------------------------------------------------------
class Linear(nn.Module):
    """y = x @ dequant(W)^T (+ bias) with a low-bit weight; bitblas.Linear's constructor.

    Buffers (all in the state_dict):
      qweight  uint8 [out, in * bits / 8]: the packed layout (docs/LAYOUT.md), every W_dtype;
      scales   [out, in / group] in A_dtype (with_scaling);
      zeros    [out, in / group]: A_dtype for zeros_mode "original" / "rescale", int8 (int
               formats) or uint8 (uint formats) for "quantized" (with_zeros);
      bias     [out] in A_dtype (bias=True, or set by a load / repack);
      perm     int64 [in] (only after repacking an act-order GPTQ layer): x[..., perm] is
               what multiplies the stored columns.
    Not in the state_dict: group_terms [2, rows, out] in A_dtype, after hold_group_terms() (the
    Hopper GEMM's form of scales / zeros, derived from them again whenever the layer loads them).

    Defaults differ from BitBLAS where this library's MatmulConfig does: W_dtype "int4",
    accum_dtype "float32", out_dtype = A_dtype. opt_M, enable_tuning, fast_decoding and
    propagate_b are accepted and ignored (no tuning exists; one layout serves every M).
    A_dtype is fixed at construction: `.half()` / `.to(dtype)` move devices but keep
    the float buffers in A_dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, A_dtype: str = "float16",
                 W_dtype: str = "int4", accum_dtype: str | None = None, out_dtype: str | None = None,
                 group_size: int | None = -1, with_scaling: bool | None = None, with_zeros: bool | None = False,
                 zeros_mode: str | None = None, opt_M=None, enable_tuning: bool = False,
                 fast_decoding=None, propagate_b=None, device=None, activation_granularity: str = "per_token"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        quantized_a = formats.is_quantized_activation(formats.canonical_dtype(A_dtype))
        if out_dtype is None:
            out_dtype = "float16" if quantized_a else A_dtype     # BitBLAS's default for int8 / fp8 A
        self.config = MatmulConfig(
            M=opt_M, N=self.out_features, K=self.in_features, A_dtype=A_dtype, W_dtype=W_dtype,
            accum_dtype=accum_dtype, out_dtype=out_dtype, with_bias=bool(bias),
            group_size=group_size, with_scaling=with_scaling, with_zeros=with_zeros, zeros_mode=zeros_mode)
        cfg = self.config
        if activation_granularity not in GRANULARITIES:
            raise ValueError(f"activation_granularity={activation_granularity!r}; allowed: {GRANULARITIES}")
        self.activation_granularity = activation_granularity
        self.A_dtype, self.W_dtype = cfg.A_dtype, cfg.W_dtype
        self.accum_dtype, self.out_dtype = cfg.accum_dtype, cfg.out_dtype
        self.group_size = cfg.group_size
        self.bits = cfg.format.bits
        self._a_torch = ops.TORCH_DTYPES[cfg.A_dtype]
        self._s_torch = ops.TORCH_DTYPES[cfg.scale_dtype]     # scales, float zeros, bias
        self._mode = cfg.mode
        self._gs = cfg.resolved_group_size
        N, G = cfg.N, cfg.num_groups
        self.register_buffer("qweight", torch.zeros(layout.packed_shape(N, cfg.K, self.bits),
                                                    dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones((N, G), dtype=self._s_torch, device=device)
                             if cfg.with_scaling else None)
        self.register_buffer("zeros", torch.zeros((N, G), dtype=self._zeros_dtype(), device=device)
                             if cfg.with_zeros else None)
        self.register_buffer("bias", torch.zeros(N, dtype=self._s_torch, device=device) if bias else None)
        self.register_buffer("perm", None)
        self.register_buffer("group_terms", None, persistent=False)

    # ---- held group terms ------------------------------------------------------------
    def hold_group_terms(self) -> bool:
        """Derive gemm_cutlass's group terms of the current scales / zeros (ops.group_terms) and keep them
        (a buffer outside the state_dict), so each call on the Hopper GEMM (M >= 64) skips the kernel that
        writes them. The layer's loaders derive them again; after changing scales or zeros yourself, call
        this again. Returns False, holding nothing, where the layer never runs that GEMM."""
        cfg = self.config
        spec = KernelSpec.from_config(cfg)
        if not group_terms.takes(spec):
            self._buffers["group_terms"] = None
            return False
        with torch.no_grad():
            self._buffers["group_terms"] = ops.group_terms(self.qweight, self.scales, self.zeros, cfg.W_dtype,
                                                           self._mode, self._gs, self._a_torch)
        return True

    def _derive_held_terms(self) -> None:
        """The held group terms of scales / zeros just loaded (nothing where none are held)."""
        if self._buffers.get("group_terms") is not None:
            self.hold_group_terms()

    # ---- construction from other forms -------------------------------------------
    @classmethod
    def from_float(cls, linear: nn.Module | None = None, *, weight=None, bias=None, W_dtype: str = "int4",
                   group_size: int | None = 128, with_scaling: bool | None = None, with_zeros: bool = False,
                   zeros_mode: str | None = None, A_dtype: str | None = None, accum_dtype: str | None = None,
                   out_dtype: str | None = None, device=None,
                   activation_granularity: str = "per_token") -> "Linear":
        """Quantize a float nn.Linear (or weight [out, in] + bias) with bitblas_jax.quantize (RTN).

        A_dtype defaults to the weight's dtype (float16 / bfloat16 / float32); with_scaling
        defaults to True for every format but float16 / bfloat16 (which are stored as is).
        With an int8 / float8 A_dtype (quantized activations), out_dtype defaults to the
        weight's dtype.
        """
        if linear is not None:
            weight, bias = linear.weight, getattr(linear, "bias", None)
        if weight is None:
            raise ValueError("from_float: pass an nn.Linear or weight=")
        if weight.dim() != 2:
            raise ValueError(f"from_float: weight must be [out_features, in_features], got {tuple(weight.shape)}")
        if A_dtype is None:
            A_dtype = ops.dtype_name(weight.dtype)
            if A_dtype is None:
                raise TypeError(f"from_float: cannot infer A_dtype from weight dtype {weight.dtype}; pass A_dtype=")
        if out_dtype is None and formats.is_quantized_activation(formats.canonical_dtype(A_dtype)):
            out_dtype = ops.dtype_name(weight.dtype) or "float16"
        target = torch.device(weight.device if device is None else device)
        if A_dtype == "float32" and target.type == "cuda":
            raise TypeError("from_float: float32 activations run on CPU only; on CUDA pass "
                            "A_dtype='float16' or 'bfloat16' (and feed the layer that dtype)")
        fmt = formats.get_format(W_dtype)
        if fmt.kind == "dense":
            with_scaling, with_zeros, group_size = False, False, -1
        elif with_scaling is None:
            with_scaling = True
        if not with_scaling:
            group_size = -1
        out_features, in_features = weight.shape
        mod = cls(in_features, out_features, bias=bias is not None, A_dtype=A_dtype, W_dtype=W_dtype,
                  accum_dtype=accum_dtype, out_dtype=out_dtype, group_size=group_size,
                  with_scaling=with_scaling, with_zeros=with_zeros, zeros_mode=zeros_mode,
                  device=weight.device if device is None else device,
                  activation_granularity=activation_granularity)
        mod.load_float_weight(weight, bias)
        return mod

    @classmethod
    def from_gptq(cls, gptq_module: nn.Module, *, A_dtype: str = "float16", zeros_mode: str = "quantized",
                  version: int = 1, accum_dtype: str | None = None, out_dtype: str | None = None,
                  device=None) -> "Linear":
        """A Linear for an AutoGPTQ / GPTQModel layer (W_dtype uint{bits}), repacked from it."""
        uq = cls._unpack_gptq(gptq_module, version, None)
        N, K = uq.values.shape
        has_bias = getattr(gptq_module, "bias", None) is not None
        mod = cls(K, N, bias=has_bias, A_dtype=A_dtype, W_dtype=uq.W_dtype, accum_dtype=accum_dtype,
                  out_dtype=out_dtype, group_size=uq.group_size, with_scaling=True, with_zeros=True,
                  zeros_mode=zeros_mode, device=gptq_module.qweight.device if device is None else device)
        mod._load_unpacked(uq, getattr(gptq_module, "bias", None), "from_gptq")
        return mod

    # ---- loading -------------------------------------------------------------------
    def load_and_transform_weight(self, weight, scales=None, zeros=None, bias=None) -> None:
        """Load element values [out, in] (as BitBLAS takes them) and optional scales / zeros / bias.

        weight: ints for int/uint formats (int4: -8..7, uint4: 0..15, int1: -1/+1), codes 0..15
        for nf4 / fp4_e2m1, a float8 (or float) tensor for fp8 formats, a float tensor for
        float16 / bfloat16. A torch tensor (any device) or a NumPy array. Only the given
        arguments are loaded, as in BitBLAS.
        """
        cfg, fmt = self.config, self.config.format
        w = _to_numpy(weight, "load_and_transform_weight: weight")
        if w.shape != (cfg.N, cfg.K):
            raise ValueError(f"load_and_transform_weight: weight must be [out_features, in_features] = "
                             f"{(cfg.N, cfg.K)}, got {w.shape}")
        if fmt.kind in ("int", "uint", "table") and not (
                np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
            raise TypeError(f"load_and_transform_weight: weight for {fmt.name} must hold integers, got {w.dtype}")
        try:
            formats.check_values(fmt, w, "load_and_transform_weight: weight")
        except ValueError as e:
            raise ValueError(str(e)) from None
        packed = layout.pack(formats.values_to_codes(fmt, w), fmt.bits)
        with torch.no_grad():
            self.qweight.copy_(torch.from_numpy(packed))
        self._set_aux(scales, zeros, bias, "load_and_transform_weight")

    def load_float_weight(self, weight, bias=None) -> None:
        """Quantize a float weight [out, in] (round to nearest, bitblas_jax.quantize) and load it."""
        cfg = self.config
        w = _to_numpy(weight, "load_float_weight: weight").astype(np.float64)
        values, scale, zeros = _quantize(w, cfg.W_dtype, cfg.group_size, cfg.with_scaling, cfg.with_zeros,
                                         cfg.zeros_mode, cfg.A_dtype)
        self.load_and_transform_weight(values, scale, zeros, bias)

    def _set_aux(self, scales, zeros, bias, where):
        cfg, fmt = self.config, self.config.format
        G = cfg.num_groups
        dev = self.qweight.device
        if scales is not None:
            if not cfg.with_scaling:
                raise ValueError(f"{where}: scales given but the layer has with_scaling=False")
            s = _to_numpy(scales, f"{where}: scales")
            if s.shape != (cfg.N, G):
                raise ValueError(f"{where}: scales must be [out_features, in_features / group_size] = "
                                 f"{(cfg.N, G)}, got {s.shape}")
            if not np.issubdtype(s.dtype, np.floating) and s.dtype.kind != "V":
                raise TypeError(f"{where}: scales must be floats, got {s.dtype}")
            with torch.no_grad():
                self.scales.copy_(self._float_tensor(scales, s))
        if zeros is not None:
            if not cfg.with_zeros:
                raise ValueError(f"{where}: zeros given but the layer has with_zeros=False")
            z = _to_numpy(zeros, f"{where}: zeros")
            if z.shape != (cfg.N, G):
                raise ValueError(f"{where}: zeros must be [out_features, in_features / group_size] = "
                                 f"{(cfg.N, G)}, got {z.shape}")
            if cfg.zeros_mode == "quantized":
                if not np.issubdtype(z.dtype, np.integer):
                    raise TypeError(f"{where}: zeros_mode='quantized' zeros must be integers, got {z.dtype}")
                lo, hi = fmt.value_range
                if z.size and (z.min() < lo or z.max() > hi):
                    raise ValueError(f"{where}: quantized zeros for {fmt.name} must lie in [{lo}, {hi}], "
                                     f"got [{z.min()}, {z.max()}]")
                with torch.no_grad():
                    self.zeros.copy_(torch.from_numpy(z.astype(fmt.zeros_dtype)))
            else:
                with torch.no_grad():
                    self.zeros.copy_(self._float_tensor(zeros, z))
        if bias is not None:
            b = _to_numpy(bias, f"{where}: bias")
            if b.shape != (cfg.N,):
                raise ValueError(f"{where}: bias must be [out_features] = ({cfg.N},), got {b.shape}")
            t = self._float_tensor(bias, b)
            if self.bias is None:
                self.bias = t.to(dev)
            else:
                with torch.no_grad():
                    self.bias.copy_(t)
        if scales is not None or zeros is not None:
            self._derive_held_terms()

    def _float_tensor(self, orig, arr):
        if isinstance(orig, torch.Tensor):
            return orig.detach().to(dtype=self._s_torch, device=self.qweight.device)
        return _from_numpy(arr, self._s_torch, self.qweight.device)

    def _zeros_dtype(self):
        if self.config.zeros_mode == "quantized":
            return _ZEROS_TORCH[np.dtype(self.config.format.zeros_dtype)]
        return self._s_torch

    # ---- GPTQ / AWQ --------------------------------------------------------------------
    @staticmethod
    def _unpack_gptq(module, version, bits):
        for name in ("qweight", "qzeros", "scales"):
            if getattr(module, name, None) is None:
                raise ValueError(f"repack_from_gptq: the module has no {name!r} tensor "
                                 "(expected an AutoGPTQ / GPTQModel QuantLinear)")
        bits = int(getattr(module, "bits", 0) or bits or 4)
        g_idx = getattr(module, "g_idx", None)
        return gptq_awq.unpack_gptq(
            _to_numpy(module.qweight, "qweight"), _to_numpy(module.qzeros, "qzeros"),
            _to_numpy(module.scales, "scales"), None if g_idx is None else _to_numpy(g_idx, "g_idx"),
            bits=bits, version=version)

    def repack_from_gptq(self, gptq_module: nn.Module, device=None, version: int = 1) -> None:
        """Load an AutoGPTQ / GPTQModel QuantLinear (qweight, qzeros, scales, g_idx, bias).

        version: the GPTQ file format's number (gptq_awq.unpack_gptq). 1: the stored zero is
        zero - 1, so zero = (qzeros + 1) & mask (as BitBLAS's repack_from_gptq); 2: "gptq_v2"
        files (zero = qzeros). Act-order (a g_idx that is
        not k // group_size) is kept as the `perm` buffer applied to the input.
        The layer must have been built with W_dtype uint{bits} or int{bits}, with_scaling=True
        and the checkpoint's group size; with_zeros=True in any zeros_mode ("quantized"
        is exact; "rescale" rounds zero*scale to A_dtype), or with_zeros=False when every
        zero point is the format's own (2**(bits-1) for int, 0 for uint).
        """
        uq = self._unpack_gptq(gptq_module, version, self.bits)
        if device is not None:
            self.to(device)
        self._load_unpacked(uq, getattr(gptq_module, "bias", None), "repack_from_gptq")

    def repack_from_gptq_v2(self, gptq_module: nn.Module, device=None) -> None:
        """repack_from_gptq for "gptq_v2" files (zero = qzeros, no +1)."""
        self.repack_from_gptq(gptq_module, device=device, version=2)

    def repack_from_awq(self, awq_module: nn.Module, device=None) -> None:
        """Load an AutoAWQ GEMM-format WQLinear (qweight [in, out/8], qzeros, scales, bias)."""
        for name in ("qweight", "qzeros", "scales"):
            if getattr(awq_module, name, None) is None:
                raise ValueError(f"repack_from_awq: the module has no {name!r} tensor")
        uq = gptq_awq.unpack_awq(_to_numpy(awq_module.qweight, "qweight"), _to_numpy(awq_module.qzeros, "qzeros"),
                                 _to_numpy(awq_module.scales, "scales"), bits=4)
        if device is not None:
            self.to(device)
        self._load_unpacked(uq, getattr(awq_module, "bias", None), "repack_from_awq")

    def _load_unpacked(self, uq, bias, where) -> None:
        """values / zeros (uint) / scales / perm of gptq_awq.UnpackedQuant -> this layer's config."""
        cfg, fmt = self.config, self.config.format
        N, K = uq.values.shape
        if (N, K) != (cfg.N, cfg.K):
            raise ValueError(f"{where}: checkpoint layer is [out={N}, in={K}], this Linear is "
                             f"[out={cfg.N}, in={cfg.K}]")
        if not fmt.is_integer or fmt.bits != uq.bits:
            raise ValueError(f"{where}: the checkpoint holds {uq.bits}-bit integers; build the Linear with "
                             f"W_dtype='uint{uq.bits}' (or 'int{uq.bits}'), not {cfg.W_dtype!r}")
        if not cfg.with_scaling:
            raise ValueError(f"{where}: the checkpoint has scales; build the Linear with with_scaling=True")
        if cfg.resolved_group_size != uq.group_size:
            raise ValueError(f"{where}: the checkpoint's group size is {uq.group_size}, this Linear has "
                             f"group_size={cfg.group_size}")
        offset = 2 ** (uq.bits - 1) if fmt.kind == "int" else 0
        values = uq.values.astype(np.int32) - offset
        zv = uq.zeros.astype(np.int32) - offset                       # zero point in value units
        s64 = uq.scales.astype(np.float64)
        if not cfg.with_zeros:
            if np.any(zv != 0):
                raise ValueError(f"{where}: the checkpoint has zero points other than {offset} "
                                 f"(asymmetric); build the Linear with with_zeros=True")
            zeros = None
        elif cfg.zeros_mode == "quantized":
            zeros = zv
        elif cfg.zeros_mode == "original":
            zeros = zv.astype(np.float64)
        else:                                                          # rescale: w = v*s - z*s
            zeros = zv * s64
        self.load_and_transform_weight(values, s64.astype(np.float32), zeros, None)
        if bias is not None:
            self._set_aux(None, None, bias, where)
        perm = None if uq.perm is None else torch.from_numpy(uq.perm.astype(np.int64)).to(self.qweight.device)
        self.perm = perm

    # ---- forward ---------------------------------------------------------------------
    def forward(self, A: torch.Tensor, output: torch.Tensor | None = None) -> torch.Tensor:
        """C[..., out] = A[..., in] x dequant(W)^T (+ bias); A in A_dtype, on the buffers' device.

        int8 / float8 A_dtype: A in that dtype is taken as given; float16 / bfloat16 / float32 A
        is quantized here (ops.quantize_activations, per token or per tensor) and its scales go to
        the op with it (a_scale: C = cast(a_scale * v + bias)).
        """
        quantizing = self.config.quantized_activations and A.dtype != self._a_torch and A.is_floating_point()
        if A.dtype != self._a_torch and not quantizing:
            raise TypeError(f"bitblas_jax.torch.Linear: A must be {self._a_torch} (A_dtype={self.A_dtype!r}), "
                            f"got {A.dtype}")
        if A.dim() < 1 or A.shape[-1] != self.in_features:
            raise ValueError(f"bitblas_jax.torch.Linear: A must be [..., in_features={self.in_features}], "
                             f"got {tuple(A.shape)}")
        if self._buffers["perm"] is not None:
            A = A.index_select(-1, self._buffers["perm"])
        if quantizing:   # the values carry no gradient; the bias gets its own through the op
            values, a_scale = ops.quantize_activations(A, self.A_dtype, self.activation_granularity)
            return self._call_op(values, a_scale, output)
        return self._call_op(A, None, output)

    def _call_op(self, A, a_scale, output):
        """The op on A (in A_dtype, in the weight's input order) and the layer's buffers: through the dispatcher
        where torch.compile traces or a gradient is needed, else its body directly (into `output` where the
        kernel can write it in place)."""
        b = self._buffers
        bias = b["bias"]
        args = (A, b["qweight"], b["scales"], b["zeros"], bias, self.W_dtype, self._mode, self._gs,
                self.accum_dtype, self.out_dtype, b["group_terms"], a_scale)
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and (
                A.requires_grad or (bias is not None and bias.requires_grad))):
            C = torch.ops.bitblas_jax.matmul(*args)
        elif output is not None and self._fits_in_place(A, output):
            return ops.matmul_out_impl(*args, out=output)   # the kernel writes `output`: no copy
        else:
            C = ops.matmul_impl(*args)         # eager, no autograd: skip the dispatcher
        if output is not None:
            output.copy_(C)
            return output
        return C

    def _fits_in_place(self, A, output) -> bool:
        """Whether the kernel can write `output` as it is (else the result is copied into it): right
        shape, dtype and device, contiguous, and no memory shared with the operands."""
        return (output.is_contiguous() and output.dtype == ops.TORCH_DTYPES[self.out_dtype]
                and output.device == A.device and tuple(output.shape) == (*A.shape[:-1], self.out_features)
                and not any(ops.shares_memory(output, t) for t in (A, *self._buffers.values())))

    def dequantize(self) -> torch.Tensor:
        """The [out, in] weight the layer multiplies with (A_dtype, input order, perm undone;
        float32 for int8 / float8 A_dtype)."""
        wd = ops.dequantize(self.qweight, self.scales, self.zeros, self.W_dtype, self._mode, self._gs,
                            self._a_torch, self.in_features)
        if self.perm is not None:
            out = torch.empty_like(wd)
            out[:, self.perm] = wd
            return out
        return wd

    def warmup(self, topk: int = 20) -> None:
        """BitBLAS compatibility: nothing to tune."""

    def extra_repr(self) -> str:
        c = self.config
        s = (f"in_features={c.K}, out_features={c.N}, bias={self.bias is not None}, A_dtype={c.A_dtype}, "
             f"W_dtype={c.W_dtype}, accum_dtype={c.accum_dtype}, out_dtype={c.out_dtype}, "
             f"group_size={c.group_size}, mode={c.mode}")
        return s + (", act_order=True" if self.perm is not None else "")

    # ---- module plumbing -------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # keep the float buffers in A_dtype (the kernel's contract) through .half() / .to(dtype)
        for name, dt in (("scales", self._s_torch), ("zeros", self._zeros_dtype()), ("bias", self._s_torch),
                         ("qweight", torch.uint8), ("perm", torch.int64), ("group_terms", self._a_torch)):
            t = self._buffers.get(name)
            if t is not None and t.dtype != dt:
                self._buffers[name] = t.to(dt)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # optional buffers that a repack may have added (bias from a checkpoint, act-order perm)
        dev = self.qweight.device
        for name, dt in (("bias", self._s_torch), ("perm", torch.int64)):
            key = prefix + name
            if key in state_dict and self._buffers.get(name) is None:
                self._buffers[name] = torch.empty(state_dict[key].shape, dtype=dt, device=dev)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._derive_held_terms()


# ---- quantize_model ------------------------------------------------------------------------
def _matches(patterns, name: str) -> bool:
    if patterns is None:
        return False
    if isinstance(patterns, str):
        patterns = (patterns,)
    return any(re.search(p, name) for p in patterns)


_LAYER_KEYS = ("W_dtype", "group_size", "with_scaling", "with_zeros", "zeros_mode", "A_dtype",
               "accum_dtype", "out_dtype", "activation_granularity")


def quantize_model(model: nn.Module, W_dtype: str = "int4", group_size: int | None = 128,
                   with_scaling: bool | None = None, with_zeros: bool = False, zeros_mode: str | None = None,
                   A_dtype: str | None = None, accum_dtype: str | None = None, out_dtype: str | None = None,
                   rules: Mapping[str, Mapping | None] | None = None, include: Iterable[str] | str | None = None,
                   exclude: Iterable[str] | str | None = ("lm_head",),
                   filter_fn: Callable[[str, nn.Module], bool] | None = None,
                   progress: bool = True, activation_granularity: str = "per_token") -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by a quantized bitblas_jax.torch.Linear.

    Settings apply to every layer; names are the qualified names of model.named_modules():
      include:  regexes; if given, only layers whose name matches one (re.search) are quantized;
      exclude:  regexes of layers to keep in float (default: lm_head);
      rules:    {regex: overrides} per layer, first match wins; overrides is a dict of any of
                W_dtype, group_size, with_scaling, with_zeros, zeros_mode, A_dtype, accum_dtype,
                out_dtype, activation_granularity, or None to keep that layer in float;
      filter_fn(name, module) -> bool: a last say.
    A_dtype defaults to each layer's weight dtype; A_dtype="int8" (with W_dtype="int8": SmoothQuant's
    W8A8) or a float8 one quantizes each layer's activations inside it (Linear.forward). Layers whose shapes the format cannot
    tile (out % 16, in % (256/bits), in % group_size) stay in float, with one warning listing
    them. nn.MultiheadAttention's out_proj (read as a raw weight by torch) is left alone.
    Returns `model` (or the replacement if `model` itself is an nn.Linear). Shows a progress
    bar (tqdm if installed) unless progress=False.
    """
    base = dict(W_dtype=W_dtype, group_size=group_size, with_scaling=with_scaling, with_zeros=with_zeros,
                zeros_mode=zeros_mode, A_dtype=A_dtype, accum_dtype=accum_dtype, out_dtype=out_dtype,
                activation_granularity=activation_granularity)
    if include is not None and isinstance(include, str):
        include = (include,)
    for pat, ov in (rules or {}).items():
        bad = set(ov or {}) - set(_LAYER_KEYS)
        if bad:
            raise ValueError(f"quantize_model: rules[{pat!r}] has unknown keys {sorted(bad)}; "
                             f"allowed: {_LAYER_KEYS}")
    mha_linear = getattr(nn.modules.linear, "NonDynamicallyQuantizableLinear", ())
    targets = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or (mha_linear and isinstance(mod, mha_linear)):
            continue
        if include is not None and not _matches(include, name):
            continue
        if _matches(exclude, name):
            continue
        kw = dict(base)
        skip = False
        for pat, ov in (rules or {}).items():
            if re.search(pat, name):
                if ov is None:
                    skip = True
                else:
                    kw.update(ov)
                break
        if skip or (filter_fn is not None and not filter_fn(name, mod)):
            continue
        # a configuration error, not a shape the format cannot tile: raised before any layer changes
        check_rtn_options(kw["W_dtype"], kw["with_scaling"], kw["with_zeros"],
                          where=f"quantize_model: layer {name or '<model>'!r}")
        targets.append((name, kw))

    # Replace layer by layer so each float weight can be freed as soon as its layer is done.
    skipped = []
    root = model
    bar = ProgressBar(len(targets), progress, "bitblas_jax quantize_model")
    try:
        for name, kw in targets:
            mod = model.get_submodule(name) if name else model
            try:
                new = Linear.from_float(mod, **kw)
            except ValueError as e:
                skipped.append(f"{name or '<model>'} ({e})")
                bar.update(name)
                continue
            new.train(mod.training)
            if name:
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
            else:
                root = new
            del mod
            bar.update(name)
    finally:
        bar.close()
    if skipped:
        warnings.warn("quantize_model: kept in float (shape or group size does not fit the format): "
                      + "; ".join(skipped), stacklevel=2)
    return root
