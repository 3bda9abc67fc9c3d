"""jax.export of a bitblas_jax function: serialized here, deserialized and run in a fresh
process that only imports bitblas_jax."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bitblas_jax as bj
from bitblas_jax.export import disabled_checks, export

pytest.importorskip("flatbuffers", reason="jax.export serialization needs the flatbuffers package")


def test_export_serialize_and_run_in_a_fresh_process(tmp_path, rng):
    cfg = bj.MatmulConfig(N=64, K=256, A_dtype="float16", W_dtype="int4", group_size=128,
                          with_scaling=True, with_bias=True)
    mm = bj.Matmul(cfg)
    vals, scale, _ = bj.quantize(rng.standard_normal((64, 256)).astype(np.float32), "int4", 128)
    W, s = mm.transform_weight(vals), jnp.asarray(scale)
    b = jnp.asarray(rng.standard_normal(64), jnp.float16)
    A = jnp.asarray(rng.standard_normal((4, 256)), jnp.float16)
    f = jax.jit(lambda A, W, s, b: jax.nn.relu(mm(A, W, scale=s, bias=b)))
    exp = export(f)(A, W, s, b)
    # the documented spelling with jax.export itself is the same thing
    same = jax.export.export(f, disabled_checks=disabled_checks())(A, W, s, b)
    assert same.mlir_module() == exp.mlir_module()
    (tmp_path / "f.bin").write_bytes(exp.serialize())
    np.savez(tmp_path / "args.npz", A=np.asarray(A), W=np.asarray(W), s=np.asarray(s), b=np.asarray(b))
    script = textwrap.dedent(f"""
        import jax, numpy as np
        import bitblas_jax  # registers the custom calls
        exp = jax.export.deserialize(open({str(tmp_path / 'f.bin')!r}, "rb").read())
        a = np.load({str(tmp_path / 'args.npz')!r})
        np.save({str(tmp_path / 'out.npy')!r}, np.asarray(exp.call(a["A"], a["W"], a["s"], a["b"])))
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.asarray(f(A, W, s, b)))


def test_plain_jax_export_names_the_check():
    cfg = bj.MatmulConfig(N=16, K=64, A_dtype="float16", W_dtype="int8", with_scaling=False)
    mm = bj.Matmul(cfg)
    W = mm.transform_weight(np.ones((16, 64), np.int8))
    with pytest.raises(ValueError, match="bitblas_jax_matmul"):
        jax.export.export(jax.jit(mm))(jnp.ones((2, 64), jnp.float16), W)
