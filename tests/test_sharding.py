"""Sharded bitblas_matmul on 8 virtual CPU devices: data-, column- and row-parallel run one
local kernel call per device (row-parallel plus one all-reduce), equal the single-device
result, and the compiled HLO gathers no weight; Explicit-mesh output types match jnp.dot's;
a K-sharded weight that is not packed per K-shard raises (jit and shard_map); Flax layers
with nnx.with_partitioning shard the same way.

XLA fixes the CPU device count when JAX starts, so the cases run in one subprocess
(this file run as a script, with XLA_FLAGS set) and the tests read its JSON report.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

N_DEVICES = 8


# ---- the worker (runs in the subprocess) ----------------------------------------------------------
def _collectives(hlo: str) -> list[tuple[str, int]]:
    """(kind, result bytes) of every collective in compiled HLO text."""
    import numpy as np
    sizes = {"f32": 4, "f16": 2, "bf16": 2, "u8": 1, "s8": 1, "s32": 4, "u32": 4, "pred": 1}
    out = []
    for line in hlo.splitlines():
        m = re.search(r"=\s*(\w+)\[([\d,]*)\][^ ]*\s+(all-gather|all-reduce|reduce-scatter|all-to-all|"
                      r"collective-permute)(-start)?\(", line)
        if m:
            dims = [int(d) for d in m.group(2).split(",") if d]
            out.append((m.group(3), int(np.prod(dims, dtype=np.int64)) * sizes.get(m.group(1), 4)))
    return out


def _spec(spec, ndim) -> list:
    """A PartitionSpec as a JSON list, padded with None to ndim."""
    out = [list(e) if isinstance(e, tuple) else e for e in spec]
    return out + [None] * (ndim - len(out))


def _worker() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    import bitblas_jax as bj
    from bitblas_jax.flax import Linear

    report = {"devices": len(jax.devices())}
    N, K, M, g = 512, 1024, 16, 128
    rng = np.random.default_rng(0)
    cfg = bj.MatmulConfig(N=N, K=K, A_dtype="float16", W_dtype="int4", group_size=g,
                          with_scaling=True, with_bias=True)
    w = rng.standard_normal((N, K)).astype(np.float32)
    vals, scale, _ = bj.quantize(w, "int4", g)
    A = jnp.asarray(rng.standard_normal((M, K)).astype(np.float16))
    bias = jnp.asarray(rng.standard_normal(N).astype(np.float16))
    mm1 = bj.Matmul(cfg)
    W1 = mm1.transform_weight(vals)
    ref = np.asarray(mm1(A, W1, scale=scale, bias=bias)).astype(np.float64)
    mm4 = bj.Matmul(cfg, k_shards=4)
    W4 = mm4.transform_weight(vals)
    mm_nb = bj.Matmul(bj.MatmulConfig(N=N, K=K, A_dtype="float16", W_dtype="int4", group_size=g,
                                      with_scaling=True))
    report["weight_bytes"] = int(W1.size)
    auto = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)

    def case(mm, W, specs, mesh=auto):
        """specs: of A, W, scale, bias and, where given, the group terms the call holds (Matmul.group_terms)."""
        held = len(specs) == 5
        f = jax.jit(lambda A, W, s, b, *t: mm(A, W, scale=s, bias=b, group_terms=t[0] if t else None))
        ops = (A, W, jnp.asarray(scale), bias) + ((mm.group_terms(scale),) if held else ())
        args = [jax.device_put(x, NamedSharding(mesh, p)) for x, p in zip(ops, specs)]
        hlo = f.lower(*args).compile().as_text()
        out = f(*args)
        return {"err": float(np.abs(np.asarray(out).astype(np.float64) - ref).max()),
                "out_spec": _spec(out.sharding.spec, out.ndim),
                "calls": len(re.findall(r'custom_call_target="bitblas_jax_matmul"', hlo)),
                "collectives": _collectives(hlo)}

    report["column"] = case(mm1, W1, (P(), P("model"), P("model"), P("model")))
    report["data"] = case(mm1, W1, (P("data"), P(), P(), P()))
    report["data_column"] = case(mm1, W1, (P("data"), P("model"), P("model"), P("model")))
    report["row"] = case(mm4, W4, (P(None, "model"), P(None, "model"), P(None, "model"), P()))
    report["row_data"] = case(mm4, W4, (P("data", "model"), P(None, "model"), P(None, "model"), P()))
    report["row_weight_only"] = case(mm4, W4, (P(), P(None, "model"), P(None, "model"), P()))
    report["row_packing_replicated"] = case(mm4, W4, (P(), P(), P(), P()))
    report["k_sharded_activations"] = case(mm1, W1, (P(None, "model"), P(), P(), P()))
    # group terms held with the weight, sharded as scale is: on N, or (row-parallel) their groups on K
    report["column_terms"] = case(mm1, W1, (P(), P("model"), P("model"), P("model"), P(None, None, "model")))
    report["data_column_terms"] = case(mm1, W1, (P("data"), P("model"), P("model"), P("model"),
                                                 P(None, None, "model")))
    report["row_terms"] = case(mm4, W4, (P(None, "model"), P(None, "model"), P(None, "model"), P(),
                                         P(None, "model")))
    try:
        case(mm1, W1, (P(None, "model"), P(None, "model"), P(None, "model"), P()))
        report["misuse_jit"] = "no error"
    except Exception as e:  # noqa: BLE001 - the partitioner wraps the ValueError
        report["misuse_jit"] = str(e)

    # int8 activations: int32 outputs stay exact in every layout (row-parallel adds int32 partial
    # sums); a W4A8 call with per-token activation scales reduces float32 partial sums
    i8 = bj.MatmulConfig(N=N, K=K, A_dtype="int8", W_dtype="int8", out_dtype="int32")
    v8 = rng.integers(-128, 128, (N, K)).astype(np.int8)
    A8 = jnp.asarray(rng.integers(-128, 128, (M, K)).astype(np.int8))
    ref8 = (np.asarray(A8).astype(np.int64) @ v8.astype(np.int64).T)
    w4a8 = bj.MatmulConfig(N=N, K=K, A_dtype="int8", W_dtype="int4", out_dtype="float32", group_size=g,
                           with_scaling=True, with_bias=True)
    a_scale = jnp.asarray(rng.uniform(0.5, 2, M).astype(np.float32))
    bias32 = jnp.asarray(np.asarray(bias, np.float32))
    ref_q = np.asarray(bj.Matmul(w4a8)(A8, bj.Matmul(w4a8).transform_weight(vals), scale=scale, bias=bias32,
                                       a_scale=a_scale), np.float64)
    for name, shards, specs in (("int8_column", 1, (P(), P("model"))), ("int8_data", 1, (P("data"), P())),
                                ("int8_row", 4, (P(None, "model"), P(None, "model")))):
        mm = bj.Matmul(i8, k_shards=shards)
        args = [jax.device_put(x, NamedSharding(auto, p)) for x, p in zip((A8, mm.transform_weight(v8)), specs)]
        f = jax.jit(lambda A, W, mm=mm: mm(A, W))
        out = f(*args)
        hlo = f.lower(*args).compile().as_text()
        report[name] = {"exact": bool(np.array_equal(np.asarray(out).astype(np.int64), ref8)),
                        "dtype": str(out.dtype), "collectives": _collectives(hlo)}
    mmq = bj.Matmul(w4a8, k_shards=4)
    args = [jax.device_put(x, NamedSharding(auto, p)) for x, p in
            zip((A8, mmq.transform_weight(vals), jnp.asarray(scale), bias32, a_scale),
                (P(None, "model"), P(None, "model"), P(None, "model"), P(), P()))]
    out = jax.jit(lambda A, W, s, b, a: mmq(A, W, scale=s, bias=b, a_scale=a))(*args)
    report["w4a8_row_rel_err"] = float(np.abs(np.asarray(out, np.float64) - ref_q).max() / np.abs(ref_q).max())
    # the activation scales sharded with A's rows (data-parallel) or replicated (column-parallel): local
    mmq = bj.Matmul(w4a8)
    for name, specs in (("w4a8_data", (P("data"), P(), P(), P(), P("data"))),
                        ("w4a8_column", (P(), P("model"), P("model"), P("model"), P()))):
        args = [jax.device_put(x, NamedSharding(auto, p)) for x, p in
                zip((A8, mmq.transform_weight(vals), jnp.asarray(scale), bias32, a_scale), specs)]
        f = jax.jit(lambda A, W, s, b, a: mmq(A, W, scale=s, bias=b, a_scale=a))
        out = f(*args)
        report[name] = {"rel_err": float(np.abs(np.asarray(out, np.float64) - ref_q).max() / np.abs(ref_q).max()),
                        "collectives": _collectives(f.lower(*args).compile().as_text())}

    # gradient with respect to A through a column-parallel call
    def loss(A, W, s):
        return jnp.sum(mm1(A, W, scale=s, bias=bias).astype(jnp.float32) ** 2)
    gref = np.asarray(jax.grad(loss)(A, W1, jnp.asarray(scale))).astype(np.float64)
    sh = [jax.device_put(x, NamedSharding(auto, p)) for x, p in ((A, P()), (W1, P("model")),
                                                                    (jnp.asarray(scale), P("model")))]
    gsh = np.asarray(jax.jit(jax.grad(loss))(*sh)).astype(np.float64)
    report["grad_err"] = float(np.abs(gsh - gref).max() / np.abs(gref).max())

    # Explicit mesh: output sharding types as jnp.dot's
    explicit = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    wf = jnp.asarray(w).astype(jnp.float16)
    types = {}
    with jax.set_mesh(explicit):
        for name, sa, sw in (("column", P(), P("model")), ("data", P("data"), P()),
                             ("data_column", P("data"), P("model"))):
            a, ww, ss = (jax.device_put(x, s) for x, s in ((A, sa), (W1, sw), (jnp.asarray(scale), sw)))
            out = jax.jit(lambda a, ww, ss: mm_nb(a, ww, scale=ss))(a, ww, ss)
            dot = jax.jit(lambda a, wf: jnp.dot(a, wf.T))(a, jax.device_put(wf, sw))
            types[name] = [str(jax.typeof(out)), str(jax.typeof(dot))]
        try:
            a, ww = jax.device_put(A, P(None, "model")), jax.device_put(W1, P(None, "model"))
            mm_nb(a, ww, scale=jax.device_put(jnp.asarray(scale), P(None, "model")))
            report["misuse_explicit"] = "no error"
        except ValueError as e:
            report["misuse_explicit"] = str(e)
    report["explicit_types"] = types

    # shard_map by hand: a K block of an ordinary packed weight raises; the per-shard packing works
    cfg_local = bj.MatmulConfig(N=N, K=K // 4, A_dtype="float16", W_dtype="int4", group_size=g,
                                with_scaling=True)
    mml = bj.Matmul(cfg_local)
    mesh1 = jax.make_mesh((4,), ("model",), axis_types=(AxisType.Auto,), devices=jax.devices()[:4])
    spec = (P(None, "model"),) * 3

    def by_hand(k_block):
        def f(a, ww, ss):
            return jax.lax.psum(mml(a, ww, scale=ss, k_block=k_block).astype(jnp.float32), "model")
        return jax.jit(jax.shard_map(f, mesh=mesh1, in_specs=spec, out_specs=P()))
    try:
        by_hand(False)(A, W1, jnp.asarray(scale))
        report["misuse_shard_map"] = "no error"
    except ValueError as e:
        report["misuse_shard_map"] = str(e)
    out = np.asarray(by_hand(True)(A, W4, jnp.asarray(scale)))
    ref_nb = np.asarray(mm_nb(A, W1, scale=scale)).astype(np.float64)
    report["shard_map_row_err"] = float(np.abs(out - ref_nb).max())

    # Flax: nnx.with_partitioning on the kernel, as for nnx.Linear (Megatron MLP: up column-, down row-parallel)
    class MLP(nnx.Module):
        def __init__(self, rngs):
            col = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
            row = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("model", None))
            self.up = Linear(K, N, kernel_init=col, W_dtype="int4", group_size=g, dtype=jnp.float16,
                             use_bias=False, rngs=rngs)
            self.down = Linear(N, K, kernel_init=row, W_dtype="int4", group_size=g, dtype=jnp.float16,
                               use_bias=False, rngs=rngs)

        def __call__(self, x):
            return self.down(jax.nn.relu(self.up(x)))

    with jax.set_mesh(auto):
        model = MLP(nnx.Rngs(0))
        report["flax_k_shards"] = [model.up.k_shards, model.down.k_shards]
        report["flax_specs"] = [_spec(model.up.qweight[...].sharding.spec, 2),
                                _spec(model.down.qweight[...].sharding.spec, 2)]
        x = jax.device_put(A, NamedSharding(auto, P("data")))
        f = nnx.jit(lambda m, x: m(x))
        hlo = jax.jit(lambda s, x: nnx.merge(nnx.graphdef(model), s)(x)).lower(nnx.state(model), x).compile().as_text()
        y = np.asarray(f(model, x)).astype(np.float64)
    # the same layers on one device: the unsharded weights
    up1 = bj.Matmul(model.up.config)
    h = up1(A, jax.device_get(model.up.qweight[...]), scale=jax.device_get(model.up.scales[...]))
    dn = model.down
    w_std = bj.layout.from_k_shards(np.asarray(jax.device_get(dn.qweight[...])), K, N, 4, dn.k_shards)
    y1 = bj.Matmul(dn.config)(jax.nn.relu(h), jnp.asarray(w_std), scale=jax.device_get(dn.scales[...]))
    report["flax_err"] = float(np.abs(y - np.asarray(y1).astype(np.float64)).max())
    report["flax_scale"] = float(np.abs(np.asarray(y1).astype(np.float64)).max())
    report["flax_collectives"] = _collectives(hlo)
    report["flax_calls"] = len(re.findall(r'custom_call_target="bitblas_jax_matmul"', hlo))
    return report


# ---- the tests ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={N_DEVICES}",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True,
                       timeout=600)
    if p.returncode:
        pytest.fail(f"sharding worker failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


LOCAL = ("column", "data", "data_column", "row_packing_replicated", "column_terms", "data_column_terms")
ROW = ("row", "row_data", "row_weight_only", "row_terms")


def test_devices(report):
    assert report["devices"] == N_DEVICES


@pytest.mark.parametrize("name", LOCAL)
def test_local_cases_have_no_collective(report, name):
    r = report[name]
    assert r["err"] == 0.0, r                       # bit-identical to one device
    assert r["calls"] == 1 and r["collectives"] == [], r


def test_output_shardings(report):
    assert report["column"]["out_spec"] == [None, "model"]
    assert report["data"]["out_spec"] == ["data", None]
    assert report["data_column"]["out_spec"] == ["data", "model"]
    assert report["row"]["out_spec"] == [None, None]
    assert report["row_data"]["out_spec"] == ["data", None]


@pytest.mark.parametrize("name", ROW)
def test_row_parallel_reduces_once(report, name):
    r = report[name]
    # float32 partial sums added in another order: within one float16 ulp of |C| <= 128
    assert r["err"] <= 2.0 ** -4, r
    assert r["calls"] == 1, r
    assert [k for k, _ in r["collectives"]] == ["all-reduce"], r


def test_gathers_are_never_weight_sized(report):
    for name in LOCAL + ROW + ("k_sharded_activations",):
        for kind, nbytes in report[name]["collectives"]:
            assert kind != "all-gather" or nbytes < report["weight_bytes"] // 4, (name, kind, nbytes)
    # A sharded on K with an ordinary packed weight: the activations are gathered, not the weight
    r = report["k_sharded_activations"]
    assert r["err"] == 0.0 and any(k == "all-gather" for k, _ in r["collectives"]), r


def test_row_parallel_misuse_raises(report):
    for key in ("misuse_jit", "misuse_explicit"):
        assert "packed for 1 K-shard" in report[key], report[key]
    assert "k_block=True" in report["misuse_shard_map"], report["misuse_shard_map"]
    assert report["shard_map_row_err"] <= 2.0 ** -4


def test_explicit_mesh_types_match_jnp_dot(report):
    for name, (ours, dot) in report["explicit_types"].items():
        assert ours == dot, (name, ours, dot)


@pytest.mark.parametrize("name", ["int8_column", "int8_data", "int8_row"])
def test_int8_activations_sharded_exact(report, name):
    r = report[name]
    assert r["exact"] and r["dtype"] == "int32", r
    if name == "int8_row":
        assert [k for k, _ in r["collectives"]] == ["all-reduce"], r
    else:
        assert r["collectives"] == [], r


def test_w4a8_row_parallel(report):
    # float32 partial sums of 4 shards added in another order than the one-device group order
    assert report["w4a8_row_rel_err"] < 1e-6


@pytest.mark.parametrize("name", ["w4a8_data", "w4a8_column"])
def test_w4a8_activation_scales_sharded(report, name):
    # the same kernel arithmetic on each device's rows or columns: equal to the one-device call
    r = report[name]
    assert r["rel_err"] == 0.0 and r["collectives"] == [], r


def test_grad_through_sharded_call(report):
    assert report["grad_err"] < 1e-3


def test_flax_with_partitioning(report):
    assert report["flax_k_shards"] == [1, 4]
    assert report["flax_specs"] == [["model", None], [None, "model"]]
    assert report["flax_err"] <= 2.0 ** -10 * report["flax_scale"] * 4
    assert report["flax_calls"] == 2
    for kind, nbytes in report["flax_collectives"]:
        assert kind != "all-gather" or nbytes < report["weight_bytes"] // 4, (kind, nbytes)
    assert [k for k, _ in report["flax_collectives"]].count("all-reduce") == 1


if __name__ == "__main__":
    print(json.dumps(_worker()))
