"""Saving, loading and importing quantized Flax NNX models.

    save_orbax(path, model) / load_orbax(path, model)
    save_safetensors(path, model) / load_safetensors(path, model)
    read_safetensors(path) -> {name: np.ndarray}
    import_gptq(model, tensors, ...) / import_awq(model, tensors, ...)
    quant_layout_metadata(model) / apply_quant_layout(model, layout)

A checkpoint holds the model's state plus a JSON "layout" (which layers are quantized
Linears, with which config), so a load can first turn the float model a user builds from
its config into the quantized structure. The GPTQ / AWQ unpacking itself is the
framework-free bitblas_jax.gptq_awq. orbax-checkpoint and safetensors are optional
dependencies (pip install bitblas_jax[io]): they are imported by the functions that use them.
"""
from __future__ import annotations

import json
import os
import re
import struct
import sys
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from ..gptq_awq import unpack_awq, unpack_gptq
from .linear import GroupTerms, Linear
from .model import get_module, iter_linears, path_str, replace_module

__all__ = [
    "save_orbax", "load_orbax", "save_safetensors", "load_safetensors", "read_safetensors",
    "import_gptq", "import_awq", "quant_layout_metadata", "apply_quant_layout",
]

LAYOUT_FILE = "bitblas_jax.json"      # next to the Orbax state: which layers are quantized, how
_META_KEY = "bitblas_jax.layout"      # the same JSON in a safetensors file's metadata
# The layout JSON's format tag. It is written into every checkpoint and checked on load,
# so it changes only when the layout JSON changes incompatibly.
_FORMAT = "bitblas_jax/1"


def _rng_free_state(model):
    """The model's state without RNG state (keys are not checkpointed) and without held group terms
    (derived from the scales: a load derives them again, _derive_held_terms)."""
    return nnx.state(model, nnx.Not(nnx.Any(nnx.RngState, GroupTerms)))


def _derive_held_terms(model):
    """The group terms of the layers that hold them, derived again from their loaded scales / zeros."""
    for _, layer in iter_linears(model, (Linear,)):
        if layer.group_terms is not None:
            layer.hold_group_terms()
    return model


def quant_layout_metadata(model) -> dict:
    """JSON-able description of a model's quantized layers: {"format", "layers": [{"path", "config"}]}."""
    layers = [{"path": list(p), "config": m.layout_metadata()} for p, m in iter_linears(model, (Linear,))]
    return {"format": _FORMAT, "layers": layers}


def apply_quant_layout(model, layout: Mapping[str, Any]):
    """Give `model` the quantized structure described by `layout` (quant_layout_metadata):
    each listed layer that is a float nnx.Linear (or a Linear of another config) is replaced
    by an all-zero `Linear` of the saved config, ready to be filled by a load. In place;
    returns the model."""
    if layout.get("format") != _FORMAT:
        raise ValueError(f"not a bitblas_jax layout (format={layout.get('format')!r}, expected {_FORMAT!r})")
    for entry in layout["layers"]:
        path, cfg = tuple(entry["path"]), entry["config"]
        try:
            node = get_module(model, path)
        except (KeyError, IndexError, AttributeError, TypeError):
            raise ValueError(f"checkpoint layer {path_str(path)!r} does not exist in the model") from None
        if isinstance(node, Linear) and node.layout_metadata() == dict(cfg):
            continue
        if not isinstance(node, (nnx.Linear, Linear)):
            raise ValueError(f"checkpoint layer {path_str(path)!r} is a {type(node).__name__} "
                             "in the model, not a Linear")
        k_in, n_out = node.in_features, node.out_features
        if (k_in, n_out) != (cfg["in_features"], cfg["out_features"]):
            raise ValueError(f"layer {path_str(path)!r}: model has [in, out] = {(k_in, n_out)}, "
                             f"checkpoint has {(cfg['in_features'], cfg['out_features'])}")
        replace_module(model, path, Linear.from_layout_metadata(cfg))
    return model


def _flatten(tree, prefix=()) -> dict:
    out = {}
    for k, v in tree.items():
        key = prefix + (k,)
        if isinstance(v, Mapping):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _place(x, like):
    """jax array from host data `x`, on `like`'s sharding / device when it has one."""
    sharding = getattr(like, "sharding", None)
    if sharding is not None:
        return jax.device_put(x, sharding)
    return jnp.asarray(x)


# ---- Orbax --------------------------------------------------------------------------------
def save_orbax(path, model, *, force: bool = False) -> None:
    """Save a (quantized) NNX model's state with Orbax to the directory `path`.

    Writes `path/state` (Orbax StandardCheckpointer, every array bit-exact, sharded
    arrays written by their hosts) and `path/bitblas_jax.json` (the quantized layout)."""
    import orbax.checkpoint as ocp   # optional dependency (bitblas_jax[io])
    path = os.path.abspath(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(path, "state"), nnx.to_pure_dict(_rng_free_state(model)), force=force)
    ckptr.wait_until_finished()
    with open(os.path.join(path, LAYOUT_FILE), "w") as f:
        json.dump(quant_layout_metadata(model), f, indent=1)


def load_orbax(path, model):
    """Restore a checkpoint written by save_orbax into `model`, in place; returns the model.

    `model` may be the float model (even an abstract one from nnx.eval_shape): the layers
    the checkpoint holds quantized are first replaced by empty quantized Linears of the
    saved config. Arrays are restored onto the target's shardings when it has them."""
    import orbax.checkpoint as ocp   # optional dependency (bitblas_jax[io])
    path = os.path.abspath(os.fspath(path))
    layout_file = os.path.join(path, LAYOUT_FILE)
    if os.path.exists(layout_file):
        with open(layout_file) as f:
            apply_quant_layout(model, json.load(f))
    state = _rng_free_state(model)
    pure = nnx.to_pure_dict(state)

    def abstract(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    target = jax.tree.map(abstract, pure)
    restored = ocp.StandardCheckpointer().restore(os.path.join(path, "state"), target)
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return _derive_held_terms(model)


# ---- safetensors --------------------------------------------------------------------------
def _require_safetensors():
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("safetensors is needed for this: pip install safetensors "
                          "(or pip install bitblas_jax[io])") from e
    return safetensors.numpy


def save_safetensors(path, model, metadata: Mapping[str, str] | None = None) -> None:
    """Save a (quantized) NNX model's state as one safetensors file.

    Tensor names are the state paths joined with "." ("layers.0.attn.q_proj.qweight");
    the quantized layout is stored in the file's metadata under "bitblas_jax.layout"."""
    stn = _require_safetensors()
    flat = _flatten(nnx.to_pure_dict(_rng_free_state(model)))
    tensors = {".".join(map(str, k)): np.ascontiguousarray(np.asarray(jax.device_get(v)))
               for k, v in flat.items()}
    meta = {"format": "np", _META_KEY: json.dumps(quant_layout_metadata(model))}
    meta.update(metadata or {})
    stn.save_file(tensors, os.fspath(path), metadata=meta)


_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
    "U8": np.uint8, "BOOL": np.bool_,
}


def _st_dtype(name: str):
    if name in _ST_DTYPES:
        return np.dtype(_ST_DTYPES[name])
    extra = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
             "F8_E5M2": ml_dtypes.float8_e5m2}
    if name not in extra:
        raise ValueError(f"safetensors dtype {name!r} is not supported")
    return np.dtype(extra[name])


def _read_one_safetensors(path) -> tuple[dict, dict]:
    """One file -> ({name: array (memory-mapped, read-only)}, metadata). Reads the format
    directly (8-byte header length, JSON header, data) so bfloat16 / float8 work."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {}) or {}
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if header else None
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        dt = _st_dtype(info["dtype"])
        out[name] = data[a:b].view(dt).reshape(info["shape"])
    return out, meta


def read_safetensors(path, *, with_metadata: bool = False):
    """{name: np.ndarray} of a safetensors file, or of every *.safetensors file in a
    directory (a sharded Hugging Face checkpoint). Arrays are memory-mapped."""
    path = os.fspath(path)
    files = ([os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".safetensors")]
             if os.path.isdir(path) else [path])
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {path}")
    tensors, meta = {}, {}
    for f in files:
        t, m = _read_one_safetensors(f)
        dup = set(t) & set(tensors)
        if dup:
            raise ValueError(f"tensor(s) {sorted(dup)[:3]} appear in more than one file")
        tensors.update(t)
        meta.update(m)
    return (tensors, meta) if with_metadata else tensors


def load_safetensors(path, model, *, strict: bool = True):
    """Load a file written by save_safetensors into `model`, in place; returns the model.

    As load_orbax, `model` may be the float (or abstract) model: the saved layout is applied
    first. strict: every state entry must be in the file and every tensor used."""
    tensors, meta = read_safetensors(path, with_metadata=True)
    if _META_KEY in meta:
        apply_quant_layout(model, json.loads(meta[_META_KEY]))
    state = _rng_free_state(model)
    pure = nnx.to_pure_dict(state)
    flat = _flatten(pure)
    used = set()
    missing = []
    new_flat = {}
    for key, like in flat.items():
        name = ".".join(map(str, key))
        if name not in tensors:
            missing.append(name)
            new_flat[key] = like
            continue
        t = tensors[name]
        if tuple(t.shape) != tuple(like.shape) or np.dtype(t.dtype) != np.dtype(like.dtype):
            raise ValueError(f"{name}: file has {t.dtype} {tuple(t.shape)}, model has "
                             f"{np.dtype(like.dtype)} {tuple(like.shape)}")
        new_flat[key] = _place(np.array(t), like)
        used.add(name)
    unexpected = sorted(set(tensors) - used)
    if strict and (missing or unexpected):
        raise ValueError(f"load_safetensors: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    nested: dict = {}
    for key, v in new_flat.items():
        d = nested
        for k in key[:-1]:
            d = d.setdefault(k, {})
        d[key[-1]] = v
    nnx.replace_by_pure_dict(state, nested)
    nnx.update(model, state)
    return _derive_held_terms(model)


# ---- GPTQ / AWQ import ------------------------------------------------------------------------
def _read_quant_config(path) -> dict:
    """bits / group_size / desc_act / sym / checkpoint_format from quantize_config.json or
    config.json["quantization_config"] in a checkpoint directory ({} if none)."""
    if not os.path.isdir(path):
        path = os.path.dirname(os.path.abspath(path))
    for name in ("quantize_config.json", "quant_config.json"):
        f = os.path.join(path, name)
        if os.path.exists(f):
            with open(f) as fh:
                return json.load(fh)
    f = os.path.join(path, "config.json")
    if os.path.exists(f):
        with open(f) as fh:
            return json.load(fh).get("quantization_config", {}) or {}
    return {}


def _name_mapper(name_map) -> Callable[[str], str]:
    if name_map is None:
        return lambda p: p
    if callable(name_map):
        return name_map
    subs = list(name_map.items())

    def f(p):
        for pat, rep in subs:
            p = re.sub(pat, rep, p)
        return p
    return f


def _import_quantized(model, tensors, kind: str, *, bits, version, name_map, A_dtype, dtype,
                      accum_dtype, out_dtype, strict, verbose):
    if isinstance(tensors, (str, os.PathLike)):
        qc = _read_quant_config(tensors)
        if bits is None:
            bits = qc.get("bits", qc.get("w_bit"))
        if version is None and kind == "gptq":
            version = 2 if str(qc.get("checkpoint_format", "gptq")).lower() == "gptq_v2" else 1
        tensors = read_safetensors(tensors)
    bits = 4 if bits is None else int(bits)
    version = 1 if version is None else int(version)
    mapper = _name_mapper(name_map)
    prefixes = {k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")}
    done = []
    for path, module in iter_linears(model, (nnx.Linear, Linear)):
        prefix = mapper(".".join(map(str, path)))
        if prefix not in prefixes:
            continue
        t = lambda s: tensors.get(f"{prefix}.{s}")  # noqa: E731
        if kind == "gptq":
            up = unpack_gptq(t("qweight"), t("qzeros"), t("scales"), t("g_idx"), bits=bits, version=version)
        else:
            up = unpack_awq(t("qweight"), t("qzeros"), t("scales"), bits=bits)
        K, N = up.values.shape[1], up.values.shape[0]
        k_in, n_out = module.in_features, module.out_features
        has_bias = module.bias is not None
        old_bias = module.bias.get_value() if has_bias else None
        if (k_in, n_out) != (K, N):
            raise ValueError(f"{prefix}: checkpoint layer is [in, out] = {(K, N)}, model layer {(k_in, n_out)}")
        bias = t("bias")
        if bias is None and has_bias and not isinstance(old_bias, jax.ShapeDtypeStruct):
            bias = np.asarray(old_bias)
        new = Linear.from_unpacked(up, bias, A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype,
                                   out_dtype=out_dtype)
        if isinstance(module, Linear) and module.group_terms is not None:
            new.hold_group_terms()
        replace_module(model, path, new)
        done.append(prefix)
    left = sorted(prefixes - set(done))
    if left and strict:
        raise ValueError(f"import_{kind}: {len(left)} quantized layer(s) in the checkpoint match no "
                         f"nnx.Linear of the model (after name_map): {left[:5]}")
    if verbose:
        print(f"import_{kind}: imported {len(done)} layer(s)"
              + (f"; {len(left)} checkpoint layer(s) unmatched: {left[:3]}" if left else ""), file=sys.stderr)
    return model


def import_gptq(model, tensors, *, bits: int | None = None, version: int | None = None,
                name_map=None, A_dtype=None, dtype=None, accum_dtype: str = "float32",
                out_dtype=None, strict: bool = True, verbose: bool = True):
    """Replace the model's linear layers by those of a GPTQ checkpoint, in place.

    tensors: {name: array} (e.g. read_safetensors(...)) or a safetensors file / directory
      (then bits and the format version are read from quantize_config.json or
      config.json's quantization_config when present: checkpoint_format "gptq_v2" -> 2).
    A layer at module path ('layers', 0, 'attn', 'q_proj') takes the tensors
      "<prefix>.qweight/.qzeros/.scales/.g_idx/.bias" with prefix = name_map("layers.0.attn.q_proj");
      name_map: None (identity), a dict {regex: replacement} applied in order with re.sub,
      or a callable.
    Each becomes a Linear with W_dtype uint{bits}, zeros_mode "quantized", group_size K/G,
    the act-order permutation applied to its inputs, activations in the scales' dtype
    (float16 for most checkpoints) unless A_dtype / dtype says otherwise. Only the
    quantized linear layers are imported: embeddings, norms and float layers are the
    caller's. strict: every quantized layer of the checkpoint must find its module.
    """
    return _import_quantized(model, tensors, "gptq", bits=bits, version=version, name_map=name_map,
                             A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype,
                             out_dtype=out_dtype, strict=strict, verbose=verbose)


def import_awq(model, tensors, *, name_map=None, A_dtype=None, dtype=None,
               accum_dtype: str = "float32", out_dtype=None, strict: bool = True,
               verbose: bool = True):
    """As import_gptq, for AutoAWQ GEMM checkpoints ("<prefix>.qweight/.qzeros/.scales")."""
    return _import_quantized(model, tensors, "awq", bits=4, version=None, name_map=name_map,
                             A_dtype=A_dtype, dtype=dtype, accum_dtype=accum_dtype,
                             out_dtype=out_dtype, strict=strict, verbose=verbose)
