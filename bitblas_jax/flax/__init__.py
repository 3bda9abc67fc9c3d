"""Flax front end of bitblas_jax: low-bit linear layers and whole-model quantization.

    from bitblas_jax.flax import Linear, Dense, quantize_model
    qlayer = Linear.from_linear(nnx_linear, W_dtype="int4", group_size=128)
    quantize_model(model, W_dtype="int4", group_size=128, exclude=("lm_head",))

Saving, loading and GPTQ / AWQ import are in bitblas_jax.flax.checkpoints.
"""
from .linear import (QUANT_COLLECTION, Dense, Linear, QuantizedWeight, make_config,
                     quantize_dense_params)
from .model import QuantizeSummary, quantize_model, quantized_layers

__all__ = ["Linear", "Dense", "QuantizedWeight", "quantize_model", "QuantizeSummary",
           "quantized_layers", "quantize_dense_params", "make_config", "QUANT_COLLECTION"]
