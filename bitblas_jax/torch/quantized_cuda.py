"""int8 / float8 activations on CUDA tensors for the torch op (ops.py): the GPU path JAX takes.

`run_cuda` asks the plan JAX asks, gpu_plan.quantized_activation_kernel, for the tensors' GPU
(`kernel_for`):

- "decode_i8", "gemm_mma_a8", "gemm_wgmma_a8" (int8 A; gemm_wgmma_a8 also float8 A), as
  primitive._a8_kernel_call: the CUDA kernel (`_bitblas_cuda.<kernel>_raw`, on the activations in its k
  order, `in_a8_order`) writes C itself, its epilogue applying per-channel scales, the
  activation scales, the bias and the cast;
- "widened_f16" (float8 A, mode none or one group per row): A converted to float16 (exact), the op's
  own 16-bit CUDA path (mode none, float32 accumulation and output) returns S, then the per-channel
  term (quantized_dot.per_channel_v) and the epilogue, as primitive._widened_f16_call;
- "xla_dot" (under JAX: XLA's exact dots) and anything else: quantized_dot.matmul_exact, the same exact
  dots in torch.
The paths without a kernel epilogue apply the activation scales after their float32 result, with the bias
and the cast (quantized_dot.epilogue), as primitive._scaled_after.

No host sync and no host-to-device copy on the way (CUDA-graph capture works); every buffer is a fresh
allocation of the call (none is kept across calls). CPU tensors run the C++ CPU kernel (ops.py).
"""
from __future__ import annotations

import functools

import torch

from .. import formats, gpu_plan
from .quantized_dot import epilogue, matmul_exact, per_channel_v

__all__ = ["run_cuda", "kernel_for", "in_a8_order"]


# ---- the plan ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _cuda_module():
    try:
        from .. import _bitblas_cuda
    except ImportError:
        return None
    return _bitblas_cuda


@functools.lru_cache(maxsize=64)
def _capability(index: int) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(index))


@functools.lru_cache(maxsize=8192)
def kernel_for(index: int, M: int, K: int, w_format: str, a_dtype: str, mode: str, group_size: int) -> str:
    """gpu_plan.quantized_activation_kernel for the GPU `index` (torch's view of it: decode_i8 needs
    sm_80+, gemm_wgmma_a8 sm_90, gemm_mma_a8 and widened_f16 sm_80+, all the CUDA kernels;
    BITBLAS_JAX_DECODE_I8 / BITBLAS_JAX_GEMM_A8 / BITBLAS_JAX_GEMM_MMA_A8 / BITBLAS_JAX_WIDENED_F16 override
    as under JAX, read at the first call of a shape: the answer is cached, as ops._plan's).
    group_size resolved (K for per channel)."""
    if _cuda_module() is None:       # the CUDA kernels were not built: the exact torch path runs
        decode_i8 = sm90 = gemm_mma_a8 = widened_f16 = False
    else:
        decode_i8 = gpu_plan.decode_i8_runs(lambda: _capability(index) >= (8, 0))
        gemm_mma_a8 = gpu_plan.gemm_mma_a8_runs(lambda: _capability(index) >= (8, 0))
        sm90 = gpu_plan.gemm_a8_runs(lambda: _capability(index) == (9, 0))
        widened_f16 = gpu_plan.widened_f16_runs(lambda: _capability(index) >= (8, 0))
    return gpu_plan.quantized_activation_kernel(a_dtype, w_format, mode, group_size, M, K,
                                                decode_i8=decode_i8, sm90=sm90, gemm_mma_a8=gemm_mma_a8,
                                                widened_f16=widened_f16)


def run_cuda(A2, W, scale, zeros, bias, w_format: str, a_dtype: str, mode: str, group_size: int,
             out_dtype: str, C2: torch.Tensor, index: int, stream: int, row_scale=None) -> None:
    """C2 [M, N] (contiguous, out_dtype) = the op on CUDA tensors with int8 / float8 A2 [M, K] (contiguous),
    on the path the plan picks. Every argument was checked by ops._check; `index` is the tensors' device
    (the current device: the launchers launch there), `stream` torch's current stream on it; row_scale:
    None or the activation scales, float32 [M] contiguous."""
    M, K = A2.shape
    kernel = kernel_for(index, M, K, w_format, a_dtype, mode, group_size)
    # decode_i8_raw / gemm_mma_a8_raw take int8 A (DecodeI8Args), gemm_wgmma_a8_raw int8 and float8 A
    if (kernel in ("decode_i8", "gemm_mma_a8") and a_dtype == "int8") or kernel == "gemm_wgmma_a8":
        _a8_kernel(kernel, A2, W, scale, bias, w_format, a_dtype, mode, group_size, out_dtype, C2, stream, row_scale)
    elif kernel == "widened_f16" and a_dtype != "int8":
        _widened_f16(A2, W, scale, zeros, bias, w_format, mode, C2, row_scale)
    elif row_scale is not None:
        v = matmul_exact(A2, W, scale, zeros, None, w_format, a_dtype, mode, group_size, torch.float32)
        C2.copy_(epilogue(v, bias, C2.dtype, row_scale))
    else:
        C2.copy_(matmul_exact(A2, W, scale, zeros, bias, w_format, a_dtype, mode, group_size, C2.dtype))


def _aligned(t: torch.Tensor, align: int) -> torch.Tensor:
    """t, or a copy of it where its data does not start on an `align`-byte boundary (a slice may not;
    torch's allocations do)."""
    return t if t.data_ptr() % align == 0 else t.clone()


def in_a8_order(A2: torch.Tensor, axes) -> torch.Tensor:
    """A2 [M, K] with each 32-k block in an 8-bit kernel's k order (primitive.SIGMA_ORDER_AXES for the GEMMs,
    LANE_ORDER_AXES for decode_i8), a new contiguous tensor: the transpose primitive.in_a8_order applies (a
    view and a copy, no index tensor, so no host-to-device copy)."""
    from ..primitive import A8_K_BLOCK_VIEW
    M, K = A2.shape
    return A2.reshape((M, K // 32) + A8_K_BLOCK_VIEW).permute(axes).reshape(M, K).contiguous()


def _a8_kernel(kernel, A2, W, scale, bias, w_format, a_dtype, mode, group_size, out_dtype, C2, stream,
               row_scale=None) -> None:
    """decode_i8 / gemm_mma_a8 / gemm_wgmma_a8 as primitive._a8_kernel_call: the kernel writes C2 itself
    (its epilogue applies per-channel scales, the activation scales, the bias and the cast); A in the
    kernel's k order (in_a8_order: a new, aligned tensor)."""
    from ..primitive import LANE_ORDER_AXES, SIGMA_ORDER_AXES
    M, K = A2.shape
    N = W.shape[0]
    A2 = in_a8_order(A2, LANE_ORDER_AXES if kernel == "decode_i8" else SIGMA_ORDER_AXES)
    W = _aligned(W, 16)
    ptrs = (A2.data_ptr(), W.data_ptr(), 0 if scale is None else scale.data_ptr(),
            0 if bias is None or not bias.numel() else bias.data_ptr(), 0 if row_scale is None else row_scale.data_ptr())
    ids = (formats.FORMATS[w_format].id, formats.MODE_IDS[mode], group_size)
    if kernel == "gemm_wgmma_a8":
        _cuda_module().gemm_wgmma_a8_raw(M, N, K, formats.DTYPE_IDS[a_dtype], *ids, *ptrs, formats.DTYPE_IDS[out_dtype],
                                         C2.data_ptr(), stream)
    else:
        getattr(_cuda_module(), kernel + "_raw")(M, N, K, *ids, *ptrs, formats.DTYPE_IDS[out_dtype], C2.data_ptr(),
                                                 stream)


# ---- widened_f16 (as primitive._widened_f16_call) ------------------------------------------------------
def _widened_f16(A2, W, scale, zeros, bias, w_format, mode, C2, row_scale=None) -> None:
    """float8 A2 converted to float16 (exact: every e4m3fn / e5m2 value is a float16) through the op's
    16-bit CUDA path with mode none, float32 accumulation and float32 output: S over all of K; then the
    per-channel term and the epilogue (activation scales, bias, cast)."""
    K = A2.shape[1]
    S = torch.ops.bitblas_jax.matmul(A2.to(torch.float16), W, None, None, None, w_format, "none", K,
                                     "float32", "float32")
    C2.copy_(epilogue(per_channel_v(S, A2, scale, zeros, mode), bias, C2.dtype, row_scale))
