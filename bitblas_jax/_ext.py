"""Loads the compiled kernels and registers them with XLA (once, at import)."""
from __future__ import annotations

import jax

from . import _bitblas_cpu

try:  # built only when nvcc was found at install time
    from . import _bitblas_cuda
except ImportError:  # pragma: no cover - depends on the build
    _bitblas_cuda = None

for _name, _capsule in _bitblas_cpu.registrations().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")
if _bitblas_cuda is not None:
    for _name, _capsule in _bitblas_cuda.registrations().items():
        jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")


def has_cuda() -> bool:
    """True when the CUDA kernels were built into this install."""
    return _bitblas_cuda is not None


cpu = _bitblas_cpu
cuda = _bitblas_cuda
