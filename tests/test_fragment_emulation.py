"""The 8-bit tensor-core fragments of the CUDA kernels (csrc/cuda/a8_fragment.cuh), checked on the host:
tests/cuda/fragment_emulation.cc feeds the A registers the kernels build and the activation registers
(decode_i8's loads of A in lane order; the GEMMs' of A in kSigma order) through mma.m16n8k32's register
semantics and compares with the exact dot product of the packed tile, for every integer weight format
int8 activations take (no GPU needed)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
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


def test_python_permutes_gemm_activations_in_the_kernels_k_order(emulator):
    """primitive.GEMM_A8_SIGMA (the XLA transpose before gemm_mma_a8 / gemm_wgmma_a8) is a8_fragment.cuh's kSigma,
    the order the emulation above checks."""
    from bitblas_jax import primitive
    out = subprocess.run([emulator, "1"], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("kSigma:"))
    assert [int(v) for v in line.split()[1:]] == list(primitive.GEMM_A8_SIGMA)


def test_python_permutes_decode_i8_activations_in_the_kernels_lane_order(emulator, rng):
    """primitive.DECODE_I8_LANE_ORDER (the XLA transpose before decode_i8) is a8_fragment.cuh's a8_lane_order_k,
    the order the emulation above checks, and in_a8_order puts each 32-k block of A in it."""
    from bitblas_jax import primitive
    out = subprocess.run([emulator, "1"], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("lane order:"))
    assert [int(v) for v in line.split(":")[1].split()] == list(primitive.DECODE_I8_LANE_ORDER)
    A = rng.integers(-128, 128, (3, 96)).astype(np.int8)
    want = A.reshape(3, 3, 32)[:, :, primitive.DECODE_I8_LANE_ORDER].reshape(3, 96)
    np.testing.assert_array_equal(np.asarray(primitive.in_a8_order(A, primitive.LANE_ORDER_AXES)), want)
    want = A.reshape(3, 6, 16)[:, :, primitive.GEMM_A8_SIGMA].reshape(3, 96)
    np.testing.assert_array_equal(np.asarray(primitive.in_a8_order(A, primitive.SIGMA_ORDER_AXES)), want)
