"""Flax front end of bitblas_jax: low-bit linear layers and whole-model quantization.

    from bitblas_jax.flax import Linear, Dense, quantize_model
    qlayer = Linear.from_linear(nnx_linear, W_dtype="int4", group_size=128)
    quantize_model(model, W_dtype="int4", group_size=128, exclude=("lm_head",))

Saving, loading and GPTQ / AWQ import are in bitblas_jax.flax.checkpoints.
Needs Flax (`pip install 'bitblas_jax[flax]'`); `import bitblas_jax` alone does not.
"""
try:
    import flax as _flax  # noqa: F401  (absolute import: the real Flax)
except ImportError as e:
    raise ImportError("bitblas_jax.flax needs Flax: pip install 'bitblas_jax[flax]' "
                      "(or pip install flax)") from e

from .linear import (QUANT_COLLECTION, Dense, GroupTerms, Linear, QuantizedWeight, make_config,
                     quantize_dense_params)
from .model import QuantizeSummary, hold_group_terms, quantize_model, quantized_layers

__all__ = ["Linear", "Dense", "QuantizedWeight", "GroupTerms", "quantize_model", "QuantizeSummary",
           "quantized_layers", "hold_group_terms", "quantize_dense_params", "make_config", "QUANT_COLLECTION"]
