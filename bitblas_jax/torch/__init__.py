"""PyTorch front end: the same compiled kernels, called on torch tensors (no JAX at run time).

    import bitblas_jax.torch as bbt
    layer = bbt.Linear(4096, 4096, A_dtype="float16", W_dtype="int4", group_size=128,
                       with_scaling=True).cuda()
    layer.load_and_transform_weight(values, scales)          # BitBLAS semantics: element values
    y = layer(x)                                             # x: [..., 4096] float16

    model = bbt.quantize_model(model, W_dtype="int4", group_size=128)   # every nn.Linear

The op is torch.ops.bitblas_jax.matmul (a torch.library custom op with a fake
implementation), so torch.compile(fullgraph=True) and CUDA graphs work. Needs
PyTorch (`pip install 'bitblas_jax[torch]'`); `import bitblas_jax` alone does not.
"""
try:
    import torch as _torch  # noqa: F401  (absolute import: the real PyTorch)
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("bitblas_jax.torch needs PyTorch: pip install 'bitblas_jax[torch]' "
                      "(or pip install torch)") from e

from . import ops
from .linear import Linear, quantize_model
from .ops import dequantize, has_cuda_kernels, matmul

__all__ = ["Linear", "quantize_model", "matmul", "dequantize", "has_cuda_kernels", "ops"]
