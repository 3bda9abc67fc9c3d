"""The short fuzz run of the test suite: 320 random cases (tests/fuzz.py) through JAX on the CPU kernel
and, with torch installed, the torch shim, each against the float64 reference under the derived bound,
outputs poisoned. A fresh seed per chunk of 40 (chunks spread over pytest-xdist's workers); a failure
names its seed, its case and the command that reruns it. The GPU run is `tools/fuzz.py --device gpu`."""
from __future__ import annotations

import os

import pytest

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
