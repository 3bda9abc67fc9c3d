"""The short fuzz run of the test suite: 320 random cases (tests/fuzz.py) through JAX on the CPU kernel
and, with torch installed, the torch shim, each against the float64 reference under the derived bound,
outputs poisoned. A fresh seed per chunk of 40 (chunks spread over pytest-xdist's workers); a failure
names its seed, its case and the command that reruns it. The GPU run is `tools/fuzz.py --device gpu`."""
from __future__ import annotations

import os

import pytest

import cases
import fuzz

CHUNKS, PER_CHUNK = 8, 40


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_fuzz_cpu(chunk):
    seed = int(os.environ.get("BITBLAS_JAX_FUZZ_SEED", "0")) or int.from_bytes(os.urandom(4), "little")
    print(f"fuzz seed {seed}")
    failures, poisoned = [], 0
    for i in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        fc = fuzz.draw(seed, i, "cpu")
        res = fuzz.run_case(fc)
        poisoned += "jax" in res["poisoned"]
        if res["failures"]:
            failures.append(f"case {i}: {fc.describe()}: {'; '.join(res['failures'])}\n  rerun: {fuzz.command(fc)}")
    assert not failures, f"fuzz seed {seed}: {len(failures)} failing case(s)\n" + "\n".join(failures)
    assert poisoned == PER_CHUNK, "the JAX outputs were not written into the poisoned buffers"


# seed 2026 cases (int8 / uint8 / uint4, mode original, K <= 64) where the 16-bit kernels' one rounded
# z * s per group weighs most against the bound
ZERO_POINT_CASES = [1312, 1777, 2576, 3165, 4887]


@pytest.mark.parametrize("index", ZERO_POINT_CASES)
def test_bound_takes_the_kernels_zero_point_rounding(index, monkeypatch):
    """The 16-bit kernels' original-mode weight, round(v s - round(z s)) (cases.kernel_weight), checked
    as a kernel output: within the bound (and its non-finite outputs taken) though it differs from the
    reference's round((v - z) s), by more than the bound without its z s term."""
    import numpy as np

    from bitblas_jax import formats, reference
    fc = fuzz.draw(2026, index, "gpu", True)
    case = fuzz.build(fc)
    assert case.cfg.mode == "original" and np.any(cases.kernel_weight(case) != case.wd())
    with np.errstate(invalid="ignore"):
        out = reference.matmul(case.A, cases.kernel_weight(case), case.bias).astype(
            formats.NUMPY_DTYPES[fc.out])
    fuzz.check_result(fc, case, out)
    monkeypatch.setattr(cases, "zero_point_products", lambda c: None)    # the bound without the rule
    monkeypatch.setattr(cases, "kernel_weight", lambda c: c.wd())
    with pytest.raises(AssertionError):
        fuzz.check_result(fc, case, out)


def test_nonfinite_takes_gemm_cutlass_weight(monkeypatch):
    """Seed 20261206 case 3512 (uint8 quantized, inf in A; gemm_cutlass on an H100 gave inf where the
    reference has inf * 0 = NaN): gemm_cutlass's fused code * S + Z leaves weights the reference holds at zero
    nonzero, so check_nonfinite takes its weight's outputs (cases.gemm_cutlass_weights), and fails them
    without."""
    import numpy as np

    from bitblas_jax import formats, reference
    monkeypatch.setenv("BITBLAS_JAX_GEMM_CUTLASS", "1")       # where gemm_cutlass may run the call
    fc = fuzz.draw(20261206, 3512, "gpu", True)
    case = fuzz.build(fc)
    fused = cases.gemm_cutlass_weights(case, case.A)[0]
    assert np.any((case.wd() == 0) & (fused != 0))
    with np.errstate(invalid="ignore"):
        out = reference.matmul(case.A, fused, case.bias).astype(formats.NUMPY_DTYPES[fc.out])
    fuzz.check_result(fc, case, out)
    monkeypatch.setattr(cases, "gemm_cutlass_weights", lambda c, a: [])
    with pytest.raises(AssertionError, match="NaN outputs missing"):
        fuzz.check_result(fc, case, out)
