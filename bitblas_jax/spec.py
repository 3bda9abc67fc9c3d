"""KernelSpec: the static parameters of one matmul call, hashable, as the primitive's param."""
from __future__ import annotations

import dataclasses

import numpy as np

from . import formats


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    w_format: str        # canonical format name (formats.FORMATS)
    mode: str            # none / scale / original / rescale / quantized
    group_size: int      # resolved (K when the config says -1)
    a_dtype: str
    accum_dtype: str
    out_dtype: str
    N: int
    K: int

    @property
    def format(self) -> formats.WeightFormat:
        return formats.get_format(self.w_format)

    @property
    def num_groups(self) -> int:
        return self.K // self.group_size

    @classmethod
    def from_config(cls, cfg) -> "KernelSpec":
        return cls(cfg.W_dtype, cfg.mode, cfg.resolved_group_size, cfg.A_dtype,
                   cfg.accum_dtype, cfg.out_dtype, cfg.N, cfg.K)

    def ffi_attrs(self) -> dict:
        """Attributes of the "bitblas_jax_matmul" custom call (csrc/include/bitblas_jax/ffi_args.h)."""
        return dict(w_format=np.int64(self.format.id), mode=np.int64(formats.MODE_IDS[self.mode]),
                    group_size=np.int64(self.group_size),
                    accum_dtype=np.int64(formats.DTYPE_IDS[self.accum_dtype]),
                    N=np.int64(self.N), K=np.int64(self.K))
