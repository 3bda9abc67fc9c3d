"""How a sharded bitblas_matmul runs: one local kernel call per device, at most one reduction.

Under jax.jit with sharded operands (NamedShardings, an Explicit mesh, Flax sharding
metadata) the primitive lowers through jax.experimental.custom_partitioning: a Shardy
`sharding_rule` lets XLA propagate shardings through the op, and `partition` decides, from
the operands' shardings, what each device computes. With A [..., K] and W [N, K]:

  A's leading (batch) dims sharded    data-parallel: local, output sharded the same way
  N sharded (W, scale, zeros, bias,   column-parallel: local, output sharded on N; each
  group_terms)
                                      shard must hold whole 16-row bands (N / shards % 16)
  K sharded (W packed per K-shard)    row-parallel: local partial products in float32,
                                      one psum over the K axes, then the activation scale,
                                      the cast and the bias
(a_scale, one per row of A, is sharded as A's batch dims.)
  anything else                       the operand is gathered (replicated) first: correct,
                                      and the HLO shows the all-gather

The packed weight's columns are not K (docs/LAYOUT.md): a K-sharding of W is only honoured
when W was packed per K-shard (Matmul(cfg, k_shards=n), layout.to_k_shards) for a number
of shards the sharding divides. Any other K-sharding of W raises ValueError: computing on it
would be garbage, and gathering it would silently cost the whole weight on every device.

Nothing here runs on one device, inside shard_map (the body is called as is) or in
jax.export (the exported module holds the plain custom call; see README, Export).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P

from . import formats, group_terms, layout, quantized_dot
from .spec import KernelSpec

TILE_N = layout.TILE_N


# ---- entry point (from the primitive's lowering) -------------------------------------------------
def wants_rule(ctx) -> bool:
    """False where the partitioner never sees the op: an export (its module must not hold the
    Python callbacks custom_partitioning installs). Single-device and shard_map lowerings are
    inlined by custom_partitioning itself."""
    params = getattr(ctx.module_context, "lowering_parameters", None)
    return not getattr(params, "for_export", False)


def call(body, bind, spec: KernelSpec, k_shards: int, A, W, scale, zeros, bias, terms, a_scale):
    """body(A, W, scale, zeros, bias, terms, a_scale) computes the whole op on one device; bind(..., spec,
    k_shards) binds the primitive (what each device runs after partitioning)."""
    present = tuple(x.size > 0 for x in (scale, zeros, bias, terms, a_scale))
    aux = tuple(x for x, p in zip((scale, zeros, bias, terms, a_scale), present) if p)
    return _partitioned(body, bind, spec, k_shards, present, A, W, aux)


@functools.partial(custom_partitioning, static_argnums=(0, 1, 2, 3, 4))
def _partitioned(body, bind, spec, k_shards, present, A, W, aux):
    return body(A, W, *_full_aux(aux, present, spec))


def _full_aux(aux, present, spec: KernelSpec):
    """scale, zeros, bias, group_terms, a_scale with the absent ones as empty arrays (scale's dtype; the
    terms' A's; a_scale float32)."""
    it = iter(aux)
    dtypes = (formats.scale_dtype(spec.a_dtype),) * 3 + (spec.a_dtype, "float32")
    return tuple(next(it) if p else jnp.zeros((0,), dt) for p, dt in zip(present, dtypes))


# ---- the Shardy rule ------------------------------------------------------------------------------
def _sharding_rule(body, bind, spec: KernelSpec, k_shards: int, present, mesh, value_types, result_types):
    """Factors: b* (A's batch dims), n (N), K as k / w / g (A, W, scales; unlinked) or, for a
    weight packed per K-shard, as (p, ...) compounds sharing the shard factor p."""
    del body, bind, mesh, result_types
    rank = len(value_types[0].shape)
    batch = " ".join(f"b{i}" for i in range(rank - 1))
    G = spec.num_groups
    Kb = value_types[1].shape[1]
    sizes = {}
    if k_shards > 1:
        a_k, w_k = "(p ka)", "(p kw)"
        sizes.update(p=k_shards, ka=spec.K // k_shards, kw=Kb // k_shards)
        if G == 1:
            g_k = "g"
        elif G == k_shards:
            g_k = "p"
        else:
            g_k = "(p kg)"
            sizes["kg"] = G // k_shards
    else:
        a_k, w_k, g_k = "k", "w", "g"
    operands = [f"{batch} {a_k}", f"n {w_k}"]
    operands += [f"n {g_k}"] * (int(present[0]) + int(present[1]))
    operands += ["n"] * int(present[2])
    if present[3]:              # group_terms [2, rows, N]: rows are the groups, or one row repeated
        operands.append(f"t {'r' if group_terms.one_per_row(spec) else g_k} n")
    if present[4]:              # a_scale: one per row of A
        operands.append(batch)
    if g_k == "p" and (present[0] or present[1] or (present[3] and not group_terms.one_per_row(spec))):
        sizes.pop("p")          # p appears on its own: its size is that dimension's
    return f"{', '.join(operands)} -> {batch} n", sizes


# ---- the partition callback ---------------------------------------------------------------------
def _axes(entry) -> tuple:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def _spec_of(shape_with_sharding, ndim):
    sh = shape_with_sharding.sharding
    spec = tuple(sh.spec) if isinstance(sh, NamedSharding) else ()
    return [_axes(e) for e in spec] + [()] * (ndim - len(spec))


def _size(mesh, axes) -> int:
    return math.prod(mesh.shape[a] for a in axes)


def _entry(axes):
    return None if not axes else (axes[0] if len(axes) == 1 else tuple(axes))


def _partition(body, bind, spec: KernelSpec, k_shards: int, present, mesh, arg_shapes, result_shape):
    del body, result_shape
    A_s, W_s, aux_s = arg_shapes
    if not all(isinstance(x.sharding, NamedSharding) for x in (A_s, W_s, *aux_s)):
        return _replicated(bind, spec, k_shards, present, mesh, arg_shapes)
    mesh = A_s.sharding.mesh
    r = len(A_s.shape)
    a_spec = _spec_of(A_s, r)
    w_spec = _spec_of(W_s, 2)
    batch = [tuple(a) for a in a_spec[:-1]]
    used = {a for axes in batch for a in axes}

    # row-parallel: honoured only for a weight packed per K-shard, for a divisor of k_shards
    k_axes = tuple(w_spec[1])
    if k_axes:
        S = _size(mesh, k_axes)
        if k_shards == 1 or k_shards % S:
            raise _misuse(k_axes, S, k_shards)
        if set(k_axes) & used:
            raise ValueError(f"bitblas_matmul: mesh axes {sorted(set(k_axes) & used)} shard both A's "
                             "batch dims and K; a mesh axis can split only one of them")
        used |= set(k_axes)
    else:
        S = 1

    # column-parallel: N split into whole 16-row bands, on axes A's batch dims do not use
    n_axes = tuple(a for a in w_spec[0] if a not in used)
    while n_axes and (spec.N % _size(mesh, n_axes) or (spec.N // _size(mesh, n_axes)) % TILE_N):
        n_axes = n_axes[:-1]          # shard less (the rest is gathered) rather than split a band
    Sn = _size(mesh, n_axes)

    G = spec.num_groups
    g_axes = k_axes if G > 1 else ()
    a_sh = NamedSharding(mesh, P(*map(_entry, batch), _entry(k_axes)))
    w_sh = NamedSharding(mesh, P(_entry(n_axes), _entry(k_axes)))
    aux_sh = []
    for p, kind in zip(present, ("scale", "zeros", "bias", "terms", "a_scale")):
        if not p:
            continue
        if kind == "a_scale":
            aux_sh.append(NamedSharding(mesh, P(*map(_entry, batch))))
        elif kind == "bias":
            aux_sh.append(NamedSharding(mesh, P(_entry(n_axes))))
        elif kind == "terms":
            rows_axes = () if group_terms.one_per_row(spec) else g_axes
            aux_sh.append(NamedSharding(mesh, P(None, _entry(rows_axes), _entry(n_axes))))
        else:
            aux_sh.append(NamedSharding(mesh, P(_entry(n_axes), _entry(g_axes))))
    out_sh = NamedSharding(mesh, P(*map(_entry, batch), _entry(n_axes)))

    local = dataclasses.replace(spec, N=spec.N // Sn, K=spec.K // S,
                                group_size=spec.group_size if G > 1 else spec.K // S)
    local_k_shards = k_shards // S if k_shards > 1 else 1

    quantized_a = formats.is_quantized_activation(spec.a_dtype)
    aux_dtype = formats.scale_dtype(spec.a_dtype)
    # int32 outputs add int32 partial sums (exact, as the whole sum); the rest float32 partial sums
    partial_dtype = "int32" if spec.out_dtype == "int32" else "float32"

    def lower_fn(A, W, aux):
        scale, zeros, bias, terms, a_scale = _full_aux(aux, present, spec)
        if not k_axes:
            return bind(A, W, scale, zeros, bias, terms, a_scale, local, local_k_shards)
        # the partial sums are float32 or int32 (no kernel that reads group terms computes them)
        partial = bind(A, W, scale, zeros, jnp.zeros((0,), aux_dtype), jnp.zeros((0,), spec.a_dtype),
                       jnp.zeros((0,), jnp.float32), dataclasses.replace(local, out_dtype=partial_dtype),
                       local_k_shards)
        out = jax.lax.psum(partial, k_axes)
        if quantized_a:   # their epilogue: one cast of a_scale * v + bias (quantized_dot.py)
            if partial_dtype == "int32":
                return out
            return quantized_dot.epilogue(out, bias, spec.out_dtype, a_scale[..., None] if a_scale.size else None)
        out = out.astype(spec.out_dtype)
        if bias.size:   # the kernels' epilogue: bias added after the cast, rounded once more
            out = (out.astype(jnp.float32) + bias.astype(jnp.float32)).astype(spec.out_dtype)
        return out

    return mesh, lower_fn, out_sh, (a_sh, w_sh, tuple(aux_sh))


def _misuse(k_axes, S, k_shards) -> ValueError:
    return ValueError(
        f"bitblas_matmul: the packed weight is sharded along K over mesh axes {tuple(k_axes)} "
        f"({S} shards) but it is packed for {k_shards} K-shard(s). A column block of the "
        "packed weight is not the packing of a K block (docs/LAYOUT.md); pack it per shard "
        f"with Matmul(config, k_shards={S}).transform_weight(values) or "
        f"layout.to_k_shards(W, N, K, bits, {S}) (flax Linear: create it under the mesh), "
        "or do not shard W along K")


def check_weight_sharding(W, k_shards: int) -> None:
    """The partitioner's K-sharding check, early (a ValueError at trace time) where the
    sharding is known then: a concrete array's, or an Explicit mesh's sharding type."""
    sh = W.sharding if isinstance(W, jax.Array) and not isinstance(W, jax.core.Tracer) else None
    if not isinstance(sh, NamedSharding):
        sh = getattr(jax.typeof(W), "sharding", None)
    if not isinstance(sh, NamedSharding) or len(sh.spec) < 2:
        return
    k_axes = _axes(sh.spec[1])
    if k_axes:
        S = _size(sh.mesh, k_axes)
        if S > 1 and (k_shards == 1 or k_shards % S):
            raise _misuse(k_axes, S, k_shards)


def _replicated(bind, spec, k_shards, present, mesh, arg_shapes):
    """Shardings given without a named mesh: gather every operand, run the whole op."""
    A_s, W_s, aux_s = arg_shapes

    def rep(x):
        sh = x.sharding
        if isinstance(sh, NamedSharding):
            return NamedSharding(sh.mesh, P())
        return type(sh).get_replicated(sh._device_assignment)
    args = (rep(A_s), rep(W_s), tuple(rep(x) for x in aux_s))

    def lower_fn(A, W, aux):
        return bind(A, W, *_full_aux(aux, present, spec), spec, k_shards)
    return mesh, lower_fn, rep(A_s), args


_partitioned.def_partition(partition=_partition, sharding_rule=_sharding_rule)


# ---- sharding types (Explicit meshes) ----------------------------------------------------------------
def unsharded_type(x):
    """x with a replicated sharding type when an Explicit mesh types it as sharded (the
    quantizer and the packer reshape and regroup the weight, which Explicit typing would
    make the caller spell out); x itself otherwise."""
    sh = getattr(jax.typeof(x), "sharding", None)
    if not isinstance(sh, NamedSharding) or not any(e is not None for e in sh.spec):
        return x
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    if not any(t == explicit for t in getattr(sh.mesh, "axis_types", ())):
        return x
    concrete = getattr(x, "sharding", None)
    target = concrete if isinstance(concrete, NamedSharding) else sh
    return jax.sharding.reshard(x, NamedSharding(target.mesh, P()))



def output_sharding(A, W, out_ndim: int):
    """The sharding type of the output aval: A's batch dims as in A, N as W's rows where an
    Explicit mesh types them (as jnp.dot types A @ W.T); None to leave it to JAX's default."""
    sa, sw = getattr(A, "sharding", None), getattr(W, "sharding", None)
    if not isinstance(sa, NamedSharding):
        return None
    mesh = sa.mesh
    if mesh.empty and isinstance(sw, NamedSharding):
        mesh = sw.mesh
    if mesh.empty:
        return None
    a_spec = list(sa.spec) + [None] * (len(A.shape) - len(sa.spec))
    batch = a_spec[:-1]
    used = {a for e in batch for a in _axes(e)} | set(_axes(a_spec[-1]))
    n = None
    if isinstance(sw, NamedSharding) and sw.mesh == mesh and len(sw.spec):
        n_axes = tuple(a for a in _axes(sw.spec[0]) if a not in used)
        n = _entry(n_axes)
    return NamedSharding(mesh, P(*batch, n))
