"""jax.export of functions that call bitblas_jax.

jax.export refuses custom calls it does not know ("no compatibility guarantees"), so the
bitblas_jax targets are named in `disabled_checks`. The exported module holds the custom
calls by name: the process that deserializes it must `import bitblas_jax` (which
registers them) and run the same bitblas_jax build. On a GPU the kernel plan is fixed at
export time for the exporting GPU. A sharded export runs the gathered op on each device
(the partitioning rule is Python, which a serialized module cannot carry).

    from bitblas_jax.export import export
    exp = export(jax.jit(f))(*args)          # jax.export.Exported
    blob = exp.serialize()                   # bytes; needs the `flatbuffers` package
    # elsewhere: import bitblas_jax; jax.export.deserialize(blob).call(*args)
"""
from __future__ import annotations

import jax

from . import primitive

#: The custom-call targets a bitblas_jax function lowers to (CPU and CUDA).
CUSTOM_CALL_TARGETS = (primitive.TARGET, primitive.DEQUANT_TARGET, primitive.DECODE_I8_TARGET,
                       primitive.GEMM_A8_TARGET, primitive.GEMM_MMA_A8_TARGET)


def disabled_checks() -> list:
    """The `disabled_checks` jax.export.export needs for bitblas_jax's custom calls."""
    return [jax.export.DisabledSafetyCheck.custom_call(t) for t in CUSTOM_CALL_TARGETS]


def export(fun, **kwargs):
    """jax.export.export(fun, ...) with bitblas_jax's custom calls allowed.

    fun: a jax.jit-wrapped function (a plain function is wrapped in jax.jit). kwargs go to
    jax.export.export (platforms=..., more disabled_checks=...)."""
    if not hasattr(fun, "trace"):
        fun = jax.jit(fun)
    checks = list(kwargs.pop("disabled_checks", ())) + disabled_checks()
    return jax.export.export(fun, disabled_checks=checks, **kwargs)
