"""What an install with only the core dependencies (jax, jaxlib, numpy, ml_dtypes) gives.

Under pytest: `import bitblas_jax` pulls in no extra, the front ends name their extra when it is
missing, and pyproject.toml keeps Flax, PyTorch, Orbax and safetensors out of the core dependencies.
As a script (`.ci/run`'s core-only job runs it in a fresh venv holding only the built wheel and its
core dependencies, without a compiler on PATH): the same checks for real, and a CPU matmul within its
error bound.
"""
from __future__ import annotations

import os
import subprocess
import sys

EXTRAS = {"flax": "flax", "torch": "torch"}   # front end -> the package it needs (and its extra's name)
OPTIONAL_MODULES = ("flax", "torch", "orbax", "safetensors", "optax")

# A module finder that makes the named top-level packages missing, as in a core-only install.
_HIDE = """
import sys
class _Hide:
    def __init__(self, names): self.names = names
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide(NAMES))
"""


def _hide(names) -> str:
    return _HIDE.replace("NAMES", repr(set(names)))


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def check_core_import_pulls_no_extra(hide=False):
    code = (_hide(OPTIONAL_MODULES) if hide else "") + (
        "import sys, bitblas_jax\n"
        f"print(sorted(m for m in {OPTIONAL_MODULES!r} if m in sys.modules))\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"import bitblas_jax imported {r.stdout.strip()}"


def check_front_end_names_its_extra(front_end: str, hide=True):
    code = (_hide([EXTRAS[front_end]]) if hide else "") + (
        "try:\n"
        f"    import bitblas_jax.{front_end}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    print('imported')\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert f"bitblas_jax[{front_end}]" in r.stdout, r.stdout


def check_cpu_matmul():
    import numpy as np
    from cases import check, make_case   # tests/cases.py: the bound every kernel test checks

    rng = np.random.default_rng(0)
    for W_dtype, mode, group_size in (("int4", "scale", 128), ("int8", "original", 64), ("nf4", "scale", -1)):
        case = make_case(rng, W_dtype, mode, group_size=group_size, M=5, N=64, K=256)
        check(case, case.run())


# ---- under pytest -----------------------------------------------------------------------------------
def test_core_import_pulls_no_extra():
    check_core_import_pulls_no_extra(hide=True)


def test_flax_front_end_names_its_extra():
    check_front_end_names_its_extra("flax")


def test_torch_front_end_names_its_extra():
    check_front_end_names_its_extra("torch")


def test_core_dependencies_are_core_only():
    tomllib = __import__("tomllib") if sys.version_info >= (3, 11) else None
    if tomllib is None:
        import pytest
        pytest.skip("tomllib needs Python 3.11")
    path = os.path.join(os.path.dirname(__file__), os.pardir, "pyproject.toml")
    with open(path, "rb") as f:
        project = tomllib.load(f)["project"]
    name = lambda req: req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()  # noqa: E731
    assert {name(r) for r in project["dependencies"]} == {"jax", "jaxlib", "numpy", "ml_dtypes"}
    extras = project["optional-dependencies"]
    assert {"flax", "torch", "io", "test"} <= set(extras)
    assert "flax" in {name(r) for r in extras["flax"]} and "torch" in {name(r) for r in extras["torch"]}


def test_build_takes_the_oldest_supported_jaxlib():
    """The XLA FFI handlers compile against the build environment's jaxlib, and a jaxlib refuses handlers of a
    newer FFI API than its own (JAX then fails to start): the build's jaxlib is the oldest minor version the
    runtime dependencies admit, so one build loads on every supported jaxlib."""
    tomllib = __import__("tomllib") if sys.version_info >= (3, 11) else None
    if tomllib is None:
        import pytest
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(os.path.dirname(__file__), os.pardir, "pyproject.toml"), "rb") as f:
        toml = tomllib.load(f)
    build = next(r for r in toml["build-system"]["requires"] if r.startswith("jaxlib"))
    runtime = next(r for r in toml["project"]["dependencies"] if r.startswith("jaxlib"))
    lowest = lambda req: tuple(int(p) for p in req.split(">=")[1].split(",")[0].split(".")[:2])  # noqa: E731
    upper = tuple(int(p) for p in build.split("<")[1].split(".")[:2])
    assert lowest(build) == lowest(runtime), (build, runtime)
    assert upper == (lowest(runtime)[0], lowest(runtime)[1] + 1), build


# ---- as a script: the core-only install ----------------------------------------------------------------
if __name__ == "__main__":
    import bitblas_jax
    print(f"bitblas_jax from {os.path.dirname(bitblas_jax.__file__)}")
    check_core_import_pulls_no_extra()
    for fe in EXTRAS:
        check_front_end_names_its_extra(fe, hide=False)   # really not installed here
    check_cpu_matmul()
    print("core-only install: import, extras' messages and CPU matmul OK")
