"""How many weight copies one timed call rotates through, for bench_matmul.py's JAX ops and
torch_baselines.py's torch ops alike (torch_baselines runs in its own process, without JAX)."""
from __future__ import annotations

import math

L2_BYTES = 50 * 2**20


def copies_for(nbytes: int, call_bytes: int) -> int:
    """Ops per timed call, each on its own weight copy: about call_bytes of weight traffic and more than
    twice the L2, so every op reads its weight from HBM; at least 2, at most 64."""
    return int(min(64, max(2, math.ceil(max(call_bytes, 2 * L2_BYTES) / max(nbytes, 1)))))
