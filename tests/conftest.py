import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/cases.py


@pytest.fixture
def rng():
    """Fresh random inputs every run; the seed is printed on failure, and BITBLAS_JAX_TEST_SEED=<seed>
    replays it (pytest tests/x.py::test_y[...] with that seed gives the failing inputs again)."""
    seed = int(os.environ.get("BITBLAS_JAX_TEST_SEED", "0")) or int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed} (BITBLAS_JAX_TEST_SEED={seed} replays it)")
    return np.random.default_rng(seed)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The whole suite on every core where that is safe: with pytest-xdist installed (the [test] extra
    pulls it), no -n given, no single test named, and no NVIDIA GPU (each JAX process would claim the
    GPU's memory). The CPU suite is some 1,300 small jitted tests; two processes on a 2-core machine take
    2/3 of the time of one. `-n 0` or `-p no:xdist` runs in one process."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return
    if config.option.numprocesses is not None or (os.cpu_count() or 1) < 2:
        return
    if any("::" in a for a in config.args) or os.path.exists("/dev/nvidiactl") or config.option.usepdb:
        return
    config.option.numprocesses = "auto"


def pytest_terminal_summary(terminalreporter):
    """Say once how many tests were skipped and why (without -rs pytest shows only 's')."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    counts = {}
    for rep in skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        kind = "GPU tests" if "gpu" in getattr(rep, "keywords", {}) else "other"
        counts[(kind, reason)] = counts.get((kind, reason), 0) + 1
    terminalreporter.section("skipped tests")
    for (kind, reason), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1])):
        terminalreporter.write_line(f"{n:5d} skipped ({kind}): {reason}")
    if any(kind == "GPU tests" for kind, _ in counts):
        terminalreporter.write_line("      (GPU tests run where JAX sees a CUDA GPU and the package was built "
                                    "with nvcc; pytest -rs lists them)")
