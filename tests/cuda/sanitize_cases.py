"""A representative subset for compute-sanitizer: decode and tensor-core paths, split-K, every kind of format.
Run with BITBLAS_JAX_GEMM_MAX_M=4096 to send every M > 16 here to gemm_mma instead of dequantize_then_dot."""
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cases import check, make_case  # noqa: E402

rng = np.random.default_rng(0)
for fmt, mode, g, M in [("int4", "scale", 128, 1), ("int4", "original", 64, 16), ("uint2", "quantized", 32, 3),
                        ("nf4", "scale", 128, 70), ("fp4_e2m1", "scale", 128, 2), ("fp4_e2m1", "none", -1, 90), ("float8_e5m2", "scale", -1, 130), ("int8", "none", -1, 256),
                        ("bfloat16", "none", -1, 33), ("int1", "rescale", 256, 5),
                        ("uint4", "quantized", 32, 40), ("int8", "scale", 128, 50), ("float16", "none", -1, 20)]:
    for adt in ("float16", "bfloat16"):
        case = make_case(rng, fmt, mode, g, adt, "float32", adt, True, M=M, N=64, K=1024)
        out = jax.jit(lambda A, W, s, z, b: case.mm(A, W, scale=s, zeros=z, bias=b))(
            case.A, case.packed(), case.scale, case.zeros, case.bias)
        check(case, out)
        print("ok", fmt, mode, g, M, adt, flush=True)
