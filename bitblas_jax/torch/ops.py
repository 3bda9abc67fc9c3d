"""The torch.library op over the compiled kernels (no JAX at run time).

    torch.ops.bitblas_jax.matmul(A, W, scale, zeros, bias, w_format, mode,
                                 group_size, accum_dtype, out_dtype, group_terms=None, a_scale=None) -> C
    torch.ops.bitblas_jax.matmul.out(A, W, scale, zeros, bias, w_format, scale_mode,
                                     group_size, accum_dtype, out_dtype, group_terms=None, a_scale=None,
                                     *, out=C)   # the same, written into C; returns nothing

C[..., N] = A[..., K] x dequant(W)[N, K]^T (+ bias), the kernel of
csrc/include/bitblas_jax/kernel_api.h run on the tensors' own memory:

- CPU tensors go to `bitblas_jax._bitblas_cpu.matmul_raw`;
- CUDA tensors go to `bitblas_jax._bitblas_cuda.matmul_raw` on torch's current
  stream of the tensors' device, with the plan of `bitblas_jax.gpu_plan.plan_cuda`
  and its split-K workspace from torch's caching allocator (cached per stream in
  eager mode, a fresh graph-pool allocation during CUDA graph capture);
- int8 / float8 A on CUDA tensors takes the path JAX takes
  (gpu_plan.quantized_activation_kernel: the decode_i8 or gemm_wgmma_a8 kernel, or exact
  dots in torch), with JAX's arithmetic: torch/quantized_cuda.py, torch/quantized_dot.py. Their
  activation scales (`a_scale`, float32, one per row of A or one for all: Matmul's `a_scale`) make
  C = cast(a_scale * v + bias): the 8-bit kernels apply them in their epilogue, every other path
  (the CPU kernel included) after a float32 call.

`out` (the out= variant) must be contiguous, on A's device, in out_dtype, and of the
result's shape [..., N]: the kernel writes it in place, with no copy.

A is made contiguous when it is not (the only copy); W, scale, zeros and bias
are made contiguous too (module buffers always are). `register_fake` gives
the output's shape and dtype, so `torch.compile(fullgraph=True)` traces
through; `register_autograd` gives the gradient in A and bias (the weight,
scale and zeros are frozen: see `_backward`).

Every argument is checked before a raw pointer reaches a kernel; errors are
ValueError / TypeError naming the argument.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from .. import dequant, formats, layout
from .. import group_terms as _terms
from ..spec import KernelSpec
from ..activations import GRANULARITIES, QMAX
from . import quantized_cuda, quantized_dot

__all__ = ["matmul", "matmul_out", "matmul_impl", "matmul_out_impl", "dequantize", "has_cuda_kernels",
           "TORCH_DTYPES", "dtype_name",
           "quantize_activations", "quantized_epilogue"]

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
                "int8": torch.int8, "int32": torch.int32,
                "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
_DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}
_FLOAT_A = ("float16", "bfloat16", "float32")
_ZEROS_TORCH = {"int": torch.int8, "uint": torch.uint8}


def dtype_name(dtype: torch.dtype) -> str | None:
    return _DTYPE_NAMES.get(dtype)


# ---- compiled kernels, loaded on first use -----------------------------------
@functools.lru_cache(maxsize=None)
def _cpu_kernel():
    from .. import _bitblas_cpu
    return _bitblas_cpu.matmul_raw


@functools.lru_cache(maxsize=None)
def _cuda_kernel():
    try:
        from .. import _bitblas_cuda
    except ImportError:
        return None
    return _bitblas_cuda.matmul_raw


def has_cuda_kernels() -> bool:
    """True when this install was built with its CUDA kernels (nvcc at install time)."""
    return _cuda_kernel() is not None


@functools.lru_cache(maxsize=8192)
def _plan(device_index, M, N, K, w_format, a_dtype, accum_dtype, out_dtype, mode, group_size, a_aligned=True):
    """(kernel id, tile, split_k, workspace bytes) of gpu_plan.plan_cuda for this device."""
    from ..gpu_plan import hopper, num_sms, plan_cuda
    sm90 = hopper(lambda: torch.cuda.get_device_capability(device_index) == (9, 0))
    sms = num_sms(lambda: torch.cuda.get_device_properties(device_index).multi_processor_count)
    with torch.cuda.device(device_index):
        p = plan_cuda(M, N, K, w_format, a_dtype, accum_dtype, out_dtype, mode, group_size,
                      allow_xla_dot=False, sm90=sm90, a_aligned=a_aligned, sms=sms)
    return p.kernel_id, int(p.tile), int(p.split_k), int(p.workspace_bytes)


def _current_device() -> int:
    return torch.cuda.current_device()


def _raw_stream(index: int) -> int:
    """cudaStream_t of torch's current stream on device `index`, as an int."""
    return torch.cuda.current_stream(index).cuda_stream


# The same answers without building Python Stream objects (what inductor's generated code calls).
if hasattr(torch._C, "_cuda_getCurrentRawStream") and hasattr(torch._C, "_cuda_getDevice"):
    _raw_stream = torch._C._cuda_getCurrentRawStream      # noqa: F811
    _current_device = torch._C._cuda_getDevice            # noqa: F811


def _workspace(nbytes: int, device) -> torch.Tensor:
    """The split-K workspace (partial sums and counters; the kernel initializes what it reads).

    A fresh torch.empty every call: torch's caching allocator makes it cheap, and a buffer
    cached across calls would leak into (or out of) CUDA-graph memory pools.
    """
    return torch.empty((nbytes,), dtype=torch.uint8, device=device)


# ---- argument checks -----------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _static_check(w_format: str, mode: str, group_size: int, a_dtype: str, accum_dtype: str,
                  out_dtype: str, N: int, K: int) -> tuple:
    """Checks of the static parameters (cached); returns (format name, bits, resolved group size)."""
    try:
        fmt = formats.get_format(w_format)
    except ValueError as e:
        raise ValueError(f"bitblas_jax::matmul: w_format: {e}") from None
    if mode not in formats.MODE_IDS:
        raise ValueError(f"bitblas_jax::matmul: mode={mode!r} is not one of {tuple(formats.MODE_IDS)}")
    if mode not in formats.allowed_modes(fmt):
        raise ValueError(f"bitblas_jax::matmul: mode={mode!r} is not supported by w_format={fmt.name!r}; "
                         f"allowed: {formats.allowed_modes(fmt)}")
    if formats.is_quantized_activation(a_dtype):
        allowed = formats.QUANTIZED_A[a_dtype]
        for name, value, ok in (("w_format", fmt.name, allowed["W"]), ("accum_dtype", accum_dtype, (allowed["accum"],)),
                                ("out_dtype", out_dtype, allowed["out"])):
            if value not in ok:
                raise ValueError(f"bitblas_jax::matmul: {name}={value!r} with {a_dtype} A; allowed: {ok}")
        if out_dtype == "int32" and mode != "none":
            raise ValueError("bitblas_jax::matmul: out_dtype='int32' (the exact integer sum) takes no scale / zeros")
    else:
        if a_dtype not in _FLOAT_A:
            raise TypeError(f"bitblas_jax::matmul: A must be float16, bfloat16, float32, int8 or float8, got {a_dtype}")
        if accum_dtype not in ("float16", "float32"):
            raise ValueError(f"bitblas_jax::matmul: accum_dtype={accum_dtype!r}; allowed: 'float16', 'float32'")
        if accum_dtype == "float16" and a_dtype != "float16":
            raise ValueError(f"bitblas_jax::matmul: accum_dtype='float16' needs float16 A, got A {a_dtype}")
        if out_dtype not in _FLOAT_A:
            raise ValueError(f"bitblas_jax::matmul: out_dtype={out_dtype!r}; allowed: {_FLOAT_A}")
    try:
        layout.check_shape(N, K, fmt.bits)
    except ValueError as e:
        raise ValueError(f"bitblas_jax::matmul: {e}") from None
    g = K if group_size == -1 else group_size
    if g <= 0 or K % g or (group_size != -1 and g % 8):
        raise ValueError(f"bitblas_jax::matmul: group_size={group_size} must be -1 or a divisor of "
                         f"K={K} that is a multiple of 8")
    return fmt.name, fmt.bits, g


def _check(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype, group_terms=None,
           a_scale=None):
    """All checks that guard the raw pointers. Returns (fmt name, a_dtype name, N, K, group)."""
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"bitblas_jax::matmul: A must be a torch.Tensor, got {type(A).__name__}")
    a_dtype = _DTYPE_NAMES.get(A.dtype)
    if a_dtype is None or a_dtype == "int32":
        raise TypeError(f"bitblas_jax::matmul: A must be float16, bfloat16, float32, int8 or float8, got {A.dtype}")
    if A.dim() < 1:
        raise ValueError("bitblas_jax::matmul: A must have at least one dimension [..., K]")
    if W.dtype != torch.uint8 or W.dim() != 2:
        raise TypeError(f"bitblas_jax::matmul: W must be the packed uint8 [N, K*bits/8] weight, "
                        f"got {W.dtype} {tuple(W.shape)}")
    N, K = int(W.shape[0]), int(A.shape[-1])
    fmt, bits, g = _static_check(w_format, mode, int(group_size), a_dtype, accum_dtype, out_dtype, N, K)
    if int(W.shape[1]) * 8 != K * bits:
        raise ValueError(f"bitblas_jax::matmul: W has shape {tuple(W.shape)} but A's last dim K={K} needs "
                         f"[N, {K * bits // 8}] for {fmt} (A must be [..., K])")
    dev = A.device
    if W.device != dev:
        raise ValueError(f"bitblas_jax::matmul: W is on {W.device} but A is on {dev}; move the module "
                         f"(.to(device)) or the input")
    G = K // g
    wants_scale = mode != "none"
    wants_zeros = mode in ("original", "rescale", "quantized")
    for name, t, want in (("scale", scale, wants_scale), ("zeros", zeros, wants_zeros)):
        if want and t is None:
            raise ValueError(f"bitblas_jax::matmul: {name} is required for mode={mode!r}")
        if not want and t is not None:
            raise ValueError(f"bitblas_jax::matmul: {name} given but mode={mode!r} does not use it")
    sdt = TORCH_DTYPES[formats.scale_dtype(a_dtype)]     # A's dtype; float32 for int8 / float8 A
    if scale is not None:
        _check_tensor("scale", scale, (N, G), sdt, dev)
    if zeros is not None:
        zdt = _ZEROS_TORCH[formats.get_format(fmt).kind] if mode == "quantized" else sdt
        _check_tensor("zeros", zeros, (N, G), zdt, dev)
    if bias is not None:
        if out_dtype == "int32":
            raise ValueError("bitblas_jax::matmul: out_dtype='int32' (the exact integer sum) takes no bias")
        _check_tensor("bias", bias, (N,), sdt, dev)
    if dev.type == "cuda" and a_dtype == "float32":
        raise TypeError("bitblas_jax::matmul: float32 A runs on CPU only; on CUDA use float16 or bfloat16")
    if group_terms is not None:
        spec = KernelSpec(fmt, mode, g, a_dtype, accum_dtype, out_dtype, N, K)
        if not _terms.takes(spec):
            raise ValueError("bitblas_jax::matmul: group_terms given, but this call never runs the GEMM that "
                             "reads them (bitblas_jax.group_terms.takes)")
        _check_tensor("group_terms", group_terms, _terms.shape(spec), A.dtype, dev)
    if a_scale is not None:
        if not formats.is_quantized_activation(a_dtype):
            raise ValueError(f"bitblas_jax::matmul: a_scale scales int8 / float8 A; A is {a_dtype}")
        if out_dtype == "int32":
            raise ValueError("bitblas_jax::matmul: out_dtype='int32' (the exact integer sum) takes no a_scale")
        per_tensor = isinstance(a_scale, torch.Tensor) and a_scale.dim() == 0
        _check_tensor("a_scale", a_scale, () if per_tensor else tuple(A.shape[:-1]), torch.float32, dev)
    return fmt, a_dtype, N, K, g


def _check_tensor(name, t, shape, dtype, dev):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"bitblas_jax::matmul: {name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"bitblas_jax::matmul: {name} must have shape {shape}, got {tuple(t.shape)}")
    if t.dtype != dtype:
        raise TypeError(f"bitblas_jax::matmul: {name} must be {dtype}, got {t.dtype}")
    if t.device != dev:
        raise ValueError(f"bitblas_jax::matmul: {name} is on {t.device} but A is on {dev}")


def _ptr(t) -> int:
    return 0 if t is None else t.data_ptr()


def _contig(t):
    return None if t is None else t.contiguous()


# ---- the implementation -------------------------------------------------------
def matmul_impl(A: torch.Tensor, W: torch.Tensor, scale: Optional[torch.Tensor],
                zeros: Optional[torch.Tensor], bias: Optional[torch.Tensor], w_format: str, mode: str,
                group_size: int, accum_dtype: str, out_dtype: str,
                group_terms: Optional[torch.Tensor] = None, a_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The op's body: checks, then one kernel call on the tensors' memory.

    Linear calls this directly in eager mode when no gradient is needed (it
    skips the dispatcher and its Python autograd layer); everything else goes through
    torch.ops.bitblas_jax.matmul.
    """
    checked = _check(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype, group_terms,
                     a_scale)
    N = checked[2]
    C = torch.empty((*A.shape[:-1], N), dtype=TORCH_DTYPES[out_dtype], device=A.device)
    return _run(checked, A, W, scale, zeros, bias, mode, accum_dtype, out_dtype, C, group_terms, a_scale)


def matmul_out_impl(A: torch.Tensor, W: torch.Tensor, scale: Optional[torch.Tensor],
                    zeros: Optional[torch.Tensor], bias: Optional[torch.Tensor], w_format: str, mode: str,
                    group_size: int, accum_dtype: str, out_dtype: str,
                    group_terms: Optional[torch.Tensor] = None, a_scale: Optional[torch.Tensor] = None, *,
                    out: torch.Tensor) -> torch.Tensor:
    """The out= variant's body: the same checks and kernel call, the result written into `out`."""
    checked = _check(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype, group_terms,
                     a_scale)
    _check_out(out, (*A.shape[:-1], checked[2]), TORCH_DTYPES[out_dtype], A.device)
    for name, t in (("A", A), ("W", W), ("scale", scale), ("zeros", zeros), ("bias", bias),
                    ("group_terms", group_terms), ("a_scale", a_scale)):
        if shares_memory(out, t):   # the kernel would read what it is overwriting
            raise ValueError(f"bitblas_jax::matmul: out shares memory with {name}")
    return _run(checked, A, W, scale, zeros, bias, mode, accum_dtype, out_dtype, out, group_terms, a_scale)


def shares_memory(a: torch.Tensor, b: Optional[torch.Tensor]) -> bool:
    """Whether the storage byte ranges of a and b intersect (b None: no)."""
    if b is None or a.numel() == 0 or b.numel() == 0:
        return False
    sa, sb = a.untyped_storage(), b.untyped_storage()
    a0, b0 = sa.data_ptr(), sb.data_ptr()
    return a0 < b0 + sb.nbytes() and b0 < a0 + sa.nbytes()


def _check_out(out, shape, dtype, dev):
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"bitblas_jax::matmul: out must be a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"bitblas_jax::matmul: out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise TypeError(f"bitblas_jax::matmul: out must be {dtype} (out_dtype), got {out.dtype}")
    if out.device != dev:
        raise ValueError(f"bitblas_jax::matmul: out is on {out.device} but A is on {dev}")
    if not out.is_contiguous():
        raise ValueError("bitblas_jax::matmul: out must be contiguous (the kernel writes rows of N in place)")


def _run(checked, A, W, scale, zeros, bias, mode, accum_dtype, out_dtype, C, group_terms=None, a_scale=None):
    """One kernel call writing C ([..., N], contiguous, checked) from the checked operands (group_terms: read
    by gemm_cutlass alone; the CPU and the other kernels read scale and zeros; a_scale: the activation scales
    of int8 / float8 A, one per row or one for all)."""
    fmt, a_dtype, N, K, g = checked
    A2 = A if A.dim() == 2 else A.reshape(-1, K)
    if not A2.is_contiguous():
        A2 = A2.contiguous()
    M = A2.shape[0]
    if M == 0:
        return C
    W, scale, zeros, bias = W.contiguous(), _contig(scale), _contig(zeros), _contig(bias)
    # the activation scales as a float32 [M] (a scale for all rows broadcast to each)
    row_scale = None if a_scale is None else (a_scale.reshape(M) if a_scale.dim() else a_scale.expand(M)).contiguous()
    if row_scale is not None and A.device.type == "cpu":
        # the CPU kernel takes none: its float32 sums, then cast(a_scale * v + bias) (as primitive._scaled_after)
        v = torch.empty((M, N), dtype=torch.float32)
        _run(checked, A2, W, scale, zeros, None, mode, accum_dtype, "float32", v)
        C.view(M, N).copy_(quantized_dot.epilogue(v, bias, C.dtype, row_scale))
        return C
    ids = (formats.FORMATS[fmt].id, formats.DTYPE_IDS[a_dtype], formats.DTYPE_IDS[accum_dtype],
           formats.DTYPE_IDS[out_dtype], formats.MODE_IDS[mode], g)
    ptrs = (A2.data_ptr(), W.data_ptr(), _ptr(scale), _ptr(zeros), _ptr(bias), C.data_ptr())
    if A.device.type == "cpu":
        _cpu_kernel()(M, N, K, *ids, *ptrs)
    elif A.device.type == "cuda":
        current = _current_device()
        index = A.device.index if A.device.index is not None else current
        if formats.is_quantized_activation(a_dtype):
            _on_device(index, current, quantized_cuda.run_cuda, A2, W, scale, zeros, bias, fmt, a_dtype, mode, g,
                       out_dtype, C.view(M, N), index, _raw_stream(index), row_scale)
            return C
        kernel = _cuda_kernel()
        if kernel is None:
            raise RuntimeError("bitblas_jax was built without its CUDA kernels (no nvcc at install "
                               "time); reinstall with nvcc on PATH, or run on CPU")
        # a slice of a tensor may start off the 16-byte grid that gemm_wgmma's copies of A and gemm_cutlass's
        # TMA loads and stores (A, C, bias) need
        aligned = all(p % 16 == 0 for p in (A2.data_ptr(), C.data_ptr(), _ptr(bias)))
        kid, tile, split_k, ws_bytes = _plan(index, M, N, K, fmt, a_dtype, accum_dtype, out_dtype, mode, g, aligned)
        stream = _raw_stream(index)
        ws = _workspace(ws_bytes, A.device) if ws_bytes else None
        _on_device(index, current, kernel, M, N, K, *ids, *ptrs, kid, tile, split_k, _ptr(ws), ws_bytes, stream,
                   _ptr(_contig(group_terms)))
    else:
        raise ValueError(f"bitblas_jax::matmul: A is on {A.device}; only cpu and cuda tensors are supported")
    return C


def _on_device(index: int, current: int, fn, *args) -> None:
    """fn(*args) with device `index` current (the launchers launch on the current device)."""
    if index == current:
        fn(*args)
    else:
        with torch.cuda.device(index):
            fn(*args)


# ---- registration -------------------------------------------------------------------
# A plain torch.library.Library definition rather than @torch.library.custom_op: the
# same schema, fake and autograd registrations, but about 3x less dispatcher overhead
# per call (custom_op wraps every call in extra Python layers).
_lib = torch.library.Library("bitblas_jax", "DEF")
_lib.define("matmul(Tensor A, Tensor W, Tensor? scale, Tensor? zeros, Tensor? bias, str w_format, "
            "str mode, int group_size, str accum_dtype, str out_dtype, Tensor? group_terms=None, "
            "Tensor? a_scale=None) -> Tensor")
_lib.impl("matmul", matmul_impl, "CPU")
_lib.impl("matmul", matmul_impl, "CUDA")
# The out= variant returns nothing (a mutating custom op that returned its `out` could not be
# functionalized by torch.compile; matmul_out below returns `out`), and names the mode `scale_mode`:
# torch.compile passes a mutating op's arguments by name to a function of its own that has a `mode`.
_lib.define("matmul.out(Tensor A, Tensor W, Tensor? scale, Tensor? zeros, Tensor? bias, str w_format, "
            "str scale_mode, int group_size, str accum_dtype, str out_dtype, Tensor? group_terms=None, "
            "Tensor? a_scale=None, *, Tensor(a!) out) -> ()")


def _matmul_out_op(A, W, scale, zeros, bias, w_format, scale_mode, group_size, accum_dtype, out_dtype,
                   group_terms=None, a_scale=None, *, out):
    matmul_out_impl(A, W, scale, zeros, bias, w_format, scale_mode, group_size, accum_dtype, out_dtype,
                    group_terms, a_scale, out=out)


_lib.impl("matmul.out", _matmul_out_op, "CPU")
_lib.impl("matmul.out", _matmul_out_op, "CUDA")

matmul = torch.ops.bitblas_jax.matmul.default
"""torch.ops.bitblas_jax.matmul: C[..., N] = A[..., K] x dequant(W)^T (+ bias). See the module docstring."""


def matmul_out(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype, group_terms=None,
               a_scale=None, *, out):
    """torch.ops.bitblas_jax.matmul.out (the result written into `out`), returning `out`."""
    torch.ops.bitblas_jax.matmul.out(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype,
                                     out_dtype, group_terms, a_scale, out=out)
    return out


def _matmul_fake(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype, group_terms=None,
                 a_scale=None):
    _check(A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype, group_terms, a_scale)
    return A.new_empty((*A.shape[:-1], W.shape[0]), dtype=TORCH_DTYPES[out_dtype])


torch.library.register_fake("bitblas_jax::matmul", _matmul_fake, lib=_lib)


def _matmul_out_fake(A, W, scale, zeros, bias, w_format, scale_mode, group_size, accum_dtype, out_dtype,
                     group_terms=None, a_scale=None, *, out):
    _, _, N, _, _ = _check(A, W, scale, zeros, bias, w_format, scale_mode, group_size, accum_dtype, out_dtype,
                           group_terms, a_scale)
    _check_out(out, (*A.shape[:-1], N), TORCH_DTYPES[out_dtype], A.device)


torch.library.register_fake("bitblas_jax::matmul.out", _matmul_out_fake, lib=_lib)


# ---- held group terms ------------------------------------------------------------
def group_terms(W: torch.Tensor, scale: Optional[torch.Tensor], zeros: Optional[torch.Tensor], w_format: str,
                mode: str, group_size: int, a_dtype: torch.dtype) -> torch.Tensor:
    """gemm_cutlass's group terms of this scale and zeros, [2, rows, N] in a_dtype on W's device: the torch
    counterpart of Matmul.group_terms (bitblas_jax/group_terms.py), the same float32 operations in torch, so
    the op on them (group_terms=) returns the bits of the op without them. ValueError where no call of these
    parameters reads them."""
    N = int(W.shape[0])
    fmt = formats.get_format(w_format)
    K = int(W.shape[1]) * 8 // fmt.bits
    g = K if group_size == -1 else int(group_size)
    a_name = _DTYPE_NAMES.get(a_dtype)
    spec = KernelSpec(fmt.name, mode, g, a_name, "float32", a_name, N, K)
    _terms.check_takes(spec)
    if mode == "none":
        s, z = torch.ones((N, 1), dtype=torch.float32, device=W.device), None
    else:
        s = scale.to(torch.float32)
        z = None if mode == "scale" else zeros.to(torch.float32)
    Z = dequant.mode_rule(torch.full_like(s, float(_terms.zero_code_value(spec))), mode, s, z)
    terms = torch.stack([s.to(a_dtype).t(), Z.to(a_dtype).t()])         # [2, groups, N]
    return terms.expand(_terms.shape(spec)).contiguous()              # one per row: a copy for each part


# ---- autograd: gradient in A and bias ------------------------------------------
def dequantize(W, scale, zeros, w_format: str, mode: str, group_size: int, a_dtype: torch.dtype,
               K: int) -> torch.Tensor:
    """The dequantized weight [N, K] in A's dtype (float32 for int8 / float8 A), computed by the
    kernel itself.

    C = I_K x dequant(W)^T is dequant(W)^T exactly: every output is one product
    1 * w, summed in float32 and cast to A's dtype, in which w already is.
    Costs a K x K x N matmul (a K x K identity is materialized in chunks of 1024
    rows), so it is for backward passes and debugging, not for inference.
    """
    name = _DTYPE_NAMES[a_dtype]
    accum, out, eye_dtype = "float32", name, a_dtype
    if formats.is_quantized_activation(name):     # 1 * w exactly, then scale / zeros in float32
        # (the identity made in float32, then cast: float8 support in torch's eye / pad varies by device)
        accum, out, eye_dtype = formats.QUANTIZED_A[name]["accum"], "float32", torch.float32
    parts = []
    for k0 in range(0, K, 1024):
        rows = min(1024, K - k0)
        eye = torch.nn.functional.pad(torch.eye(rows, K - k0, dtype=eye_dtype, device=W.device), (k0, 0))
        eye = eye.to(a_dtype)
        parts.append(matmul(eye, W, scale, zeros, None, w_format, mode, group_size, accum, out))
    return torch.cat(parts, 0).t()


def _setup_context(ctx, inputs, output):
    A, W, scale, zeros, bias, w_format, mode, group_size, accum_dtype, out_dtype = inputs[:10]
    ctx.save_for_backward(W, scale, zeros)
    ctx.params = (w_format, mode, group_size, A.dtype, A.shape[-1],
                  None if bias is None else bias.dtype)


def _backward(ctx, grad):
    """dA = dC x Wd (float32, cast to A's dtype); dbias = sum of dC over the leading dims.

    scale and zeros get no gradient (None): the quantized weight is frozen, as
    in QLoRA-style fine-tuning of adapters on top of this layer.
    """
    W, scale, zeros = ctx.saved_tensors
    w_format, mode, group_size, a_dtype, K, b_dtype = ctx.params
    dA = dbias = None
    if ctx.needs_input_grad[0]:
        wd = dequantize(W, scale, zeros, w_format, mode, group_size, a_dtype, K)
        dA = (grad.to(torch.float32) @ wd.to(torch.float32)).to(a_dtype)
    if b_dtype is not None and ctx.needs_input_grad[4]:
        dbias = grad.reshape(-1, grad.shape[-1]).to(torch.float32).sum(0).to(b_dtype)
    return dA, None, None, None, dbias, None, None, None, None, None, None, None


torch.library.register_autograd("bitblas_jax::matmul", _backward, setup_context=_setup_context, lib=_lib)


# ---- int8 / float8 activations --------------------------------------------------------------
def quantize_activations(A: torch.Tensor, dtype: str = "int8", granularity: str = "per_token"):
    """bitblas_jax.quantize_activations in torch, the same float32 arithmetic: (values, scales)
    with scales float32 of shape A.shape[:-1] (per_token) or () (per_tensor)."""
    dtype = formats.canonical_dtype(dtype)
    if dtype not in QMAX:
        raise ValueError(f"quantize_activations: dtype={dtype!r} is not supported; allowed: {tuple(QMAX)}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"quantize_activations: granularity={granularity!r}; allowed: {GRANULARITIES}")
    if _DTYPE_NAMES.get(A.dtype) not in _FLOAT_A:
        raise TypeError(f"quantize_activations: A must be float16, bfloat16 or float32, got {A.dtype}")
    x = A.detach().to(torch.float32)
    amax = x.abs().amax(dim=-1, keepdim=True) if granularity == "per_token" else x.abs().amax().reshape(
        (1,) * x.dim())
    qmax = QMAX[dtype]
    scale = amax * torch.tensor(1.0 / qmax, dtype=torch.float32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (x * (1.0 / scale)).clamp(-qmax, qmax)
    values = q.round().to(torch.int8) if dtype == "int8" else q.to(TORCH_DTYPES[dtype])
    return values, (scale[..., 0] if granularity == "per_token" else scale.reshape(()))


def quantized_epilogue(v: torch.Tensor, a_scale: Optional[torch.Tensor], bias, out_dtype: str) -> torch.Tensor:
    """quantized_dot.epilogue in torch: cast(a_scale * v + bias), v float32 [..., N]."""
    return quantized_dot.epilogue(v, bias, TORCH_DTYPES[out_dtype], a_scale)
