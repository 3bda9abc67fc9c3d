"""The 8-bit tensor-core fragments of the CUDA kernels (csrc/cuda/a8_fragment.cuh), checked on the host:
tests/cuda/fragment_emulation.cc feeds the A registers the kernels build and the activation registers
decode_i8 loads through mma.m16n8k32's register semantics and compares with the exact dot product of
the packed tile, for every integer weight format int8 activations take (no GPU needed)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler on PATH")
    exe = str(tmp_path_factory.mktemp("fragments") / "fragment_emulation")
    src = os.path.join(ROOT, "tests", "cuda", "fragment_emulation.cc")
    inc = [f"-I{os.path.join(ROOT, 'csrc', d)}" for d in ("include", "cuda")]
    subprocess.run([CXX, "-std=c++17", "-O1", "-Wno-unknown-pragmas", *inc, src, "-o", exe], check=True)
    return exe


@pytest.mark.parametrize("fresh", [False, True], ids=["seed2026", "fresh_seed"])
def test_fragments_give_the_exact_dot_product(emulator, rng, fresh):
    seed = int(rng.integers(2**32)) if fresh else 2026
    out = subprocess.run([emulator, str(seed)], capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("PASS"), out.stdout + out.stderr
