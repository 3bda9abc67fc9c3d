"""Loads the compiled kernels and registers them with XLA (once, at import)."""
from __future__ import annotations

import importlib
import warnings

import jax

try:
    from . import _bitblas_cpu
except ImportError as e:  # pragma: no cover - a source tree that was never built
    raise ImportError(
        f"bitblas_jax's compiled kernels did not load ({e}). Install the package, which builds them: "
        "pip install -e . (from the repository) or pip install <a built wheel>") from e


def _load_cuda():
    """The CUDA kernels' module, or None where this install was built without them (no nvcc at build
    time, or BITBLAS_JAX_CUDA=OFF). A module that exists but does not load is a broken install: say so
    instead of silently running on the CPU."""
    try:
        return importlib.import_module(f"{__package__}._bitblas_cuda")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}._bitblas_cuda":
            raise
        return None
    except ImportError as e:
        warnings.warn(f"bitblas_jax: the CUDA kernels were built but do not load ({e}); "
                      "only the CPU kernels are registered", RuntimeWarning, stacklevel=2)
        return None


_bitblas_cuda = _load_cuda()

for _name, _capsule in _bitblas_cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")
if _bitblas_cuda is not None:
    for _name, _capsule in _bitblas_cuda.registrations().items():
        jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")


def has_cuda() -> bool:
    """True when the CUDA kernels were built into this install."""
    return _bitblas_cuda is not None


def has_cutlass() -> bool:
    """True when the CUDA kernels include gemm_cutlass (built where the nvidia-cutlass headers were found)."""
    return _bitblas_cuda is not None and bool(_bitblas_cuda.has_cutlass())


cpu = _bitblas_cpu
cuda = _bitblas_cuda
