"""The generated files are current: each generator, run now, writes exactly the checked-in file.

CPU only, no build: the generators are plain Python (tools/).
"""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(tool: str):
    path = ROOT / "tools" / f"{tool}.py"
    spec = importlib.util.spec_from_file_location(f"_tools_{tool}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("tool, path", [
    ("gen_formats_header", "csrc/include/bitblas_jax/formats_generated.h"),
    ("gen_wgmma_ops", "csrc/cuda/wgmma_ops.cuh"),
    ("gen_speed_table", "README.md"),
])
def test_generated_file_is_current(tool, path, tmp_path):
    gen = _load(tool)
    assert gen.OUT == ROOT / path
    fresh = tmp_path / Path(path).name
    fresh.write_text(gen.render())
    assert fresh.read_text() == (ROOT / path).read_text(), (
        f"{path} is stale: run `python3 tools/{tool}.py` and commit the result")


def test_formats_header_matches_formats_py():
    """Spot checks of the generated C++ against formats.py, so a generator bug cannot hide."""
    gen = _load("gen_formats_header")
    formats = gen.load_formats()  # by path: no jax import needed
    text = (ROOT / "csrc/include/bitblas_jax/formats_generated.h").read_text()
    for name, fmt in formats.FORMATS.items():
        e = gen.WFORMAT_ENUMERATORS[name]
        assert f"  {e} = {fmt.id}," in text
        assert f"case WFormat::{e}: return {fmt.bits};" in text
        assert f'case WFormat::{e}: return "{name}";' in text
    for name, i in formats.MODE_IDS.items():
        assert f"  k{name.capitalize()} = {i}," in text
    for name, i in formats.DTYPE_IDS.items():
        assert f"{gen.DTYPE_ENUMERATORS[name]} = {i}," in text
    assert f"kNumWFormats = {len(formats.FORMATS)};" in text


def test_table_bits_round_to_nearest_even():
    """The 16-bit table patterns (the register lookups' constants) are the table values rounded as numpy rounds
    them to float16 and ml_dtypes to bfloat16: round to nearest even."""
    np = pytest.importorskip("numpy")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    gen = _load("gen_formats_header")
    formats = gen.load_formats()
    for values in (formats.NF4_VALUES, formats.FP4_E2M1_VALUES):
        v32 = np.asarray(values, np.float32)
        assert [gen.f16_bits(float(v)) for v in values] == v32.astype(np.float16).view(np.uint16).tolist()
        assert [gen.bf16_bits(float(v)) for v in values] == v32.astype(ml_dtypes.bfloat16).view(np.uint16).tolist()
