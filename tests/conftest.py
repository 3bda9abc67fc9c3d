import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/cases.py


@pytest.fixture
def rng():
    """Fresh random inputs every run; the seed is printed on failure to reproduce."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)
