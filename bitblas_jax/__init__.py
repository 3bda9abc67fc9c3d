"""bitblas_jax: fast mixed-precision (low-bit weight x fp16/bf16, int8 or float8 activation) matmul for JAX.

    cfg = bitblas_jax.MatmulConfig(N=1024, K=1024, A_dtype="float16", W_dtype="int4",
                                   group_size=128, with_scaling=True)
    mm = bitblas_jax.Matmul(cfg)
    values, scale, _ = bitblas_jax.quantize(weight, "int4", group_size=128)
    C = mm(A, mm.transform_weight(values), scale=scale)
"""
from .activations import quantize_activations
from .config import MatmulConfig
from .formats import FORMATS
from .matmul import Matmul
from .quantize import quantize

__all__ = ["MatmulConfig", "Matmul", "quantize", "quantize_activations", "FORMATS"]
__version__ = "0.1.0"
