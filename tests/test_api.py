"""Config validation, bad input, quantize, layout, BitBLAS's quick start written in JAX, and the
package's import graph."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax import formats, layout, reference

from cases import check, make_case, random_values


# ---- BitBLAS's quick start, in JAX ------------------------------------------
def test_quickstart_int4_fp16(rng):
    """QuickStart.md: W_INT4 A_FP16, M=32 N=1024 K=1024, accum and out float16."""
    cfg = bj.MatmulConfig(M=32, N=1024, K=1024, A_dtype="float16", W_dtype="int4",
                          accum_dtype="float16", out_dtype="float16", layout="nt", bias=None,
                          group_size=None, with_scaling=None, with_zeros=None, zeros_mode=None)
    matmul = bj.Matmul(config=cfg)
    activation = jnp.asarray(rng.random((1024, 1024)), jnp.float16)
    weight = rng.integers(0, 7, (1024, 1024)).astype(np.int8)     # as BitBLAS's quick start
    weight_int4 = matmul.transform_weight(weight)
    output = matmul(activation, weight_int4)
    ref = np.asarray(activation, np.float64) @ weight.astype(np.float64).T
    # BitBLAS's own check (rtol=1e-2, atol=1.0); fp16 accumulation of K=1024 positive terms
    np.testing.assert_allclose(np.asarray(output, np.float64), ref, rtol=1e-2, atol=1.0)


def test_quickstart_uint4_scale_zeros(rng):
    """bitblas_api.md section 4: uint4, group 128, scaling and zeros "original"."""
    N = K = 1024
    cfg = bj.MatmulConfig(M=1, N=N, K=K, A_dtype="float16", W_dtype="uint4", accum_dtype="float16",
                          out_dtype="float16", group_size=128, with_scaling=True, with_zeros=True,
                          zeros_mode="original")
    mm = bj.Matmul(cfg)
    A = jnp.asarray(rng.random((1, K)), jnp.float16)
    W = rng.integers(0, 15, (N, K)).astype(np.int8)
    s = rng.random((N, K // 128)).astype(np.float16)
    z = rng.random((N, K // 128)).astype(np.float16)
    out = mm(A, mm.transform_weight(W), scale=s, zeros=z)
    wd = (W - np.repeat(z.astype(np.float64), 128, 1)) * np.repeat(s.astype(np.float64), 128, 1)
    ref = np.asarray(A, np.float64) @ wd.T
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())


# ---- quantize -----------------------------------------------------------------
@pytest.mark.parametrize("fmt,with_zeros,zeros_mode", [
    ("int8", False, None), ("int4", False, None), ("int2", False, None), ("uint4", True, "original"),
    ("uint4", True, "rescale"), ("uint4", True, "quantized"), ("uint8", True, "quantized"),
    ("int4", True, "original"), ("nf4", False, None), ("fp4_e2m1", False, None),
    ("float8_e4m3fn", False, None), ("float8_e5m2", False, None)])
def test_quantize_round_trip(rng, fmt, with_zeros, zeros_mode):
    """RTN error is at most half a grid step (or the code book's largest half gap) per element."""
    N, K, g = 32, 512, 128
    w = rng.standard_normal((N, K))
    vals, scale, zeros = bj.quantize(w, fmt, group_size=g, with_zeros=with_zeros,
                                     zeros_mode=zeros_mode or "original", A_dtype="float32")
    mode = zeros_mode if with_zeros else "scale"
    wd = reference.dequantize_values(vals, fmt, mode, scale, zeros, g, "float32")
    s = np.repeat(np.abs(scale.astype(np.float64)), g, 1)
    f = formats.get_format(fmt)
    step = {"table": 0.5 * max(np.diff(sorted(formats.NF4_VALUES if fmt == "nf4" else
                                              formats.FP4_E2M1_VALUES[:8]))),
            "fp8": None}.get(f.kind, 0.5)
    if f.kind == "fp8":   # relative: 2^-4 (e4m3) / 2^-3 (e5m2) of the value, plus the subnormal floor
        rel = 2.0**-4 if "e4m3" in fmt else 2.0**-3
        assert np.all(np.abs(wd - w) <= rel * np.abs(w) + s * 2.0**-6 + 1e-12)
    else:
        zero_slack = 0.5 if zeros_mode == "quantized" else 0.0   # integer zeros shift the grid
        # quantize works in float32: the weight, the offset and the quotient each round once (2^-24
        # relative), so a value that lies within a few float32 ulps of a half step may round either
        # way: 2^-21 of the group's magnitude covers that (int8's 127 steps make it matter)
        amax = np.repeat(np.abs(w).reshape(N, K // g, g).max(-1), g, 1)
        assert np.all(np.abs(wd - w) <= (step + zero_slack) * s + 2.0**-21 * amax + 1e-12)
    # the quantized values feed the matmul directly
    case_mm = bj.Matmul(bj.MatmulConfig(N=N, K=K, A_dtype="float32", W_dtype=fmt, out_dtype="float32",
                                        group_size=g, with_scaling=True, with_zeros=with_zeros,
                                        zeros_mode=zeros_mode))
    A = rng.standard_normal((2, K)).astype(np.float32)
    out = case_mm(jnp.asarray(A), case_mm.transform_weight(vals), scale=scale, zeros=zeros)
    np.testing.assert_allclose(np.asarray(out), A @ wd.T, rtol=1e-4, atol=1e-4 * np.abs(A @ wd.T).max())


@pytest.mark.parametrize("fmt", ["uint8", "uint4", "uint2", "uint1"])
def test_quantize_unsigned_needs_zeros(rng, fmt):
    """An unsigned format with a scale but no zeros would clip a zero-mean weight's negative half to
    0: NumPy, eager JAX and traced JAX quantizers all refuse it at once, naming with_zeros; with
    zeros every group's min..max is on the grid (the negative half survives)."""
    w = rng.standard_normal((16, 128))
    for x in (w, jnp.asarray(w, jnp.float32)):
        with pytest.raises(ValueError, match=rf"W_dtype='{fmt}'.*with_zeros=False.*with_zeros=True"):
            bj.quantize(x, fmt, group_size=64)
    with pytest.raises(ValueError, match="with_zeros"):
        jax.jit(lambda x: bj.quantize(x, fmt, group_size=64))(jnp.asarray(w, jnp.float32))
    vals, scale, zeros = bj.quantize(w, fmt, group_size=64, with_zeros=True)
    wd = reference.dequantize_values(vals, fmt, "original", scale, zeros, 64, "float16")
    assert (wd < 0).mean() > 0.3      # the negative half is kept, not clipped to 0
    # without a scale the values are rounded onto the grid as given, as for every format
    v, s, z = bj.quantize(np.abs(w) * 3, fmt, with_scaling=False)
    assert s is None and z is None and np.array_equal(v, np.clip(np.rint(np.abs(w) * 3), *formats.get_format(fmt).value_range))


def test_quantize_dense_and_no_scaling(rng):
    w = rng.standard_normal((16, 64))
    vals, s, z = bj.quantize(w, "bfloat16")
    assert s is None and z is None and vals.dtype == formats.DENSE_NUMPY["bfloat16"]
    vals, s, z = bj.quantize(w * 3, "int8", with_scaling=False)
    assert s is None and np.array_equal(vals, np.clip(np.rint(w * 3), -128, 127))


# ---- layout ---------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
def test_layout_round_trip(rng, bits):
    N, K = 48, 3 * layout.tile_k(bits)
    q = rng.integers(0, 2**bits, (N, K)).astype(np.uint32)
    p = layout.pack(q, bits)
    assert p.shape == (N, K * bits // 8) and p.dtype == np.uint8
    assert np.array_equal(layout.unpack(p, N, K, bits), q)


def test_layout_lane_chunk_is_an_mma_fragment():
    """Lane l's first word of a 4-bit tile holds rows g, g+8 and k = 2c, 2c+1, 2c+8, 2c+9."""
    N, K = 16, 64
    q = np.arange(N * K, dtype=np.uint32).reshape(N, K) % 16
    q[:] = 0
    q[3, 1] = 5                      # lane 3*4+0, k-step 0, fragment index 1 (row g, k=2c+1)
    p = layout.pack(q, 4).reshape(-1)
    word = int.from_bytes(bytes(p[12 * 16: 12 * 16 + 4]), "little")
    assert word == 5 << 16          # odd element -> high half, first field


# ---- bad input: clear errors at construction / trace time ------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(N=32, K=256, W_dtype="int3"), "W_dtype"),
    (dict(N=32, K=256, A_dtype="int4"), "A_dtype"),
    (dict(N=32, K=256, A_dtype="int8", W_dtype="nf4"), "W_dtype"),
    (dict(N=32, K=256, out_dtype="int32"), "out_dtype"),
    (dict(N=32, K=256, accum_dtype="int32"), "accum_dtype"),
    (dict(N=32, K=256, A_dtype="bfloat16", accum_dtype="float16"), "accum_dtype"),
    (dict(N=32, K=256, layout="nn"), "layout"),
    (dict(N=32, K=256, group_size=100, with_scaling=True), "group_size"),
    (dict(N=32, K=256, group_size=12, with_scaling=True), "group_size"),
    (dict(N=32, K=256, group_size=0, with_scaling=True), "group_size"),
    (dict(N=30, K=256), "N=30"),
    (dict(N=32, K=200), "K=200"),
    (dict(N=32, K=128, W_dtype="int1"), "K=128"),
    (dict(N=None, K=256), "N"),
    (dict(N=32, K=256, M=0), "M"),
    (dict(N=32, K=256, M=[1, -2]), "M"),
    (dict(N=32, K=256, with_zeros=True), "with_zeros"),
    (dict(N=32, K=256, W_dtype="nf4", with_scaling=True, with_zeros=True), "nf4"),
    (dict(N=32, K=256, W_dtype="int1", with_scaling=True, with_zeros=True, zeros_mode="quantized"), "int1"),
    (dict(N=32, K=256, W_dtype="float16", with_scaling=True), "float16"),
    (dict(N=32, K=256, with_scaling=True, with_zeros=True, zeros_mode="weird"), "zeros_mode"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bj.MatmulConfig(**kwargs)


def test_config_accepts_bitblas_spellings():
    cfg = bj.MatmulConfig(M=[1, 16, 32], N=32, K=256, W_dtype="e4m3_float8", bias=True)
    assert cfg.W_dtype == "float8_e4m3fn" and cfg.with_bias and cfg.M == (1, 16, 32)


def test_call_errors(rng):
    case = make_case(rng, "int4", "scale", 64, "float16", with_bias=True)
    mm, W = case.mm, case.packed()
    A = jnp.asarray(case.A)
    ok = dict(scale=case.scale, bias=case.bias)
    with pytest.raises(ValueError, match=r"A must have shape \[..., K=256\]"):
        mm(A[:, :128], W, **ok)
    with pytest.raises(TypeError, match="A must be float16"):
        mm(A.astype(jnp.float32), W, **ok)
    with pytest.raises(ValueError, match="W_packed must be the uint8"):
        mm(A, W[:, :64], **ok)
    with pytest.raises(ValueError, match="W_packed must be the uint8"):
        mm(A, W.astype(jnp.int32), **ok)
    with pytest.raises(ValueError, match="scale is required"):
        mm(A, W, bias=case.bias)
    with pytest.raises(ValueError, match="scale must have shape"):
        mm(A, W, scale=case.scale[:, :2], bias=case.bias)
    with pytest.raises(TypeError, match="scale must be a float"):
        mm(A, W, scale=case.scale.astype(np.int32), bias=case.bias)
    with pytest.raises(ValueError, match="zeros is not expected"):
        mm(A, W, zeros=case.scale, **ok)
    with pytest.raises(ValueError, match="bias is required"):
        mm(A, W, scale=case.scale)
    with pytest.raises(ValueError, match="bias must have shape"):
        mm(A, W, scale=case.scale, bias=case.bias[:8])
    # the same checks fire at trace time under jit
    with pytest.raises(ValueError, match="W_packed must be the uint8"):
        jax.jit(lambda a, w: mm(a, w, **ok))(A, W[:16])


def test_transform_weight_errors(rng):
    mm = bj.Matmul(bj.MatmulConfig(N=32, K=256, W_dtype="int4"))
    with pytest.raises(ValueError, match=r"weight must be \[N, K\]"):
        mm.transform_weight(np.zeros((32, 128), np.int8))
    with pytest.raises(ValueError, match=r"must lie in \[-8, 7\]"):
        mm.transform_weight(np.full((32, 256), 9, np.int8))
    with pytest.raises(ValueError, match="must be integers"):
        mm.transform_weight(np.full((32, 256), 0.5))
    mm1 = bj.Matmul(bj.MatmulConfig(N=32, K=256, W_dtype="int1"))
    with pytest.raises(ValueError, match="-1 or \\+1"):
        mm1.transform_weight(np.zeros((32, 256), np.int8))
    mmq = bj.Matmul(bj.MatmulConfig(N=32, K=256, W_dtype="uint4", with_scaling=True, with_zeros=True,
                                    zeros_mode="quantized", group_size=128))
    W = mmq.transform_weight(random_values(rng, formats.get_format("uint4"), 32, 256))
    with pytest.raises(TypeError, match="quantized zeros must be integers"):
        mmq(jnp.ones((1, 256), jnp.float16), W, scale=np.ones((32, 2), np.float16),
            zeros=np.ones((32, 2), np.float16))


def test_empty_m(rng):
    case = make_case(rng, "int4", "scale", 64, "float16", a_shape=(0, 256))
    out = case.run()
    assert out.shape == (0, 32)


def test_float32_activations_quantized_zeros(rng):
    case = make_case(rng, "int8", "quantized", 32, "float32", "float32", "float32", True)
    check(case, case.run())


# ---- import graph ---------------------------------------------------------------------
PACKAGE_DIR = pathlib.Path(bj.__file__).parent


def _bound_names(tree) -> set[str]:
    """Names a module binds at top level (imports, defs, classes, assignments)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def package_imports() -> dict[str, set[str]]:
    """{module: the bitblas_jax modules it imports}, from the source, every import statement
    (function-level ones too: an import deferred into a function still closes a circle).
    ``from pkg import x`` is an edge to the module pkg.x when there is one, to pkg when its
    __init__ binds x, and to nothing otherwise (x is then a compiled extension module)."""
    trees, is_pkg = {}, {}
    for f in PACKAGE_DIR.rglob("*.py"):
        parts = f.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name], is_pkg[name] = ast.parse(f.read_text(), str(f)), parts[-1] == "__init__"
    bound = {name: _bound_names(tree) for name, tree in trees.items()}
    graph = {}
    for name, tree in trees.items():
        package = name if is_pkg[name] else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for a in node.names:
                    if f"{target}.{a.name}" in trees:
                        deps.add(f"{target}.{a.name}")
                    elif target in trees and (not is_pkg[target] or a.name in bound[target]):
                        deps.add(target)
        graph[name] = {d for d in deps if d in trees and d != name}
    return graph


def test_import_graph_has_no_cycle():
    graph = package_imports()
    assert "bitblas_jax.gptq_awq" in graph and "bitblas_jax.flax.checkpoints" in graph
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_gptq_awq_is_numpy_only():
    """The GPTQ / AWQ codecs serve both front ends, so they import neither (nor the package)."""
    tree = ast.parse((PACKAGE_DIR / "gptq_awq.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] if not n.level else "." for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "typing", "numpy"}, imported


@pytest.mark.parametrize("module,absent", [
    ("bitblas_jax.gptq_awq", ("flax", "torch")),
    ("bitblas_jax.flax.checkpoints", ("torch",)),
])
def test_module_imports_alone(module, absent):
    code = (f"import sys, {module}\n"
            f"bad = [m for m in {absent!r} if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
