"""gemm_cutlass's description of the packed weight for CUTLASS (csrc/cuda/cutlass_packed_layout.h) against
layout.h's code_slot, element by element, for 4- and 8-bit codes and K splits (tests/cuda/packed_layout_check.cu):
a host program, no GPU. Needs nvcc and CUTLASS's headers (a CUDA build's build/*/deps/cutlass, the nvidia-cutlass
package, or BITBLAS_JAX_CUTLASS_DIR); skipped without them.
"""
import glob
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cutlass_include() -> str | None:
    env = os.environ.get("BITBLAS_JAX_CUTLASS_DIR")
    found = [os.path.join(env, "include")] if env else []
    found += sorted(glob.glob(str(ROOT / "build" / "*" / "deps" / "cutlass" / "include")))
    spec = importlib.util.find_spec("cutlass_library")
    if spec and spec.submodule_search_locations:
        found.append(os.path.join(list(spec.submodule_search_locations)[0], "source", "include"))
    return next((d for d in found if os.path.isfile(os.path.join(d, "cute", "layout.hpp"))), None)


def test_cutlass_packed_layout_matches_code_slot(tmp_path):
    nvcc, include = shutil.which("nvcc"), _cutlass_include()
    if not nvcc or not include:
        pytest.skip("needs nvcc and CUTLASS's headers")
    exe = tmp_path / "packed_layout_check"
    subprocess.run([nvcc, "-std=c++17", "--expt-relaxed-constexpr", f"-I{ROOT}/csrc/include", f"-I{ROOT}/csrc/cuda",
                    f"-I{include}", str(ROOT / "tests" / "cuda" / "packed_layout_check.cu"), "-o", str(exe)],
                   check=True, capture_output=True, timeout=300)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "PASS packed layout check" in out.stdout, out.stdout + out.stderr
