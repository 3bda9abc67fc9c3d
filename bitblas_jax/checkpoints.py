"""Checkpoints: unpacking GPTQ / AutoAWQ weights, and saving / loading quantized models.

Framework-free part (NumPy only; the PyTorch shim's ``repack_from_gptq`` uses it):

    unpack_gptq(qweight, qzeros, scales, g_idx=None, *, bits=4, version=1) -> UnpackedQuant
    unpack_awq(qweight, qzeros, scales, *, bits=4)                          -> UnpackedQuant
    pack_gptq(...), pack_awq(...)   the inverse packers (tests, exporting)

An ``UnpackedQuant`` is what a bitblas_jax matmul with
``W_dtype=f"uint{bits}", with_scaling=True, with_zeros=True, zeros_mode="quantized"``
takes: ``w[n, k] = (values[n, k] - zeros[n, g]) * scales[n, g]`` with ``g = k // group_size``,
after the activations are permuted with ``x[..., perm]`` when ``perm`` is not None
(GPTQ act-order).

Flax part (imports flax / orbax / safetensors lazily):

    save_orbax(path, model) / load_orbax(path, model)
    save_safetensors(path, model) / load_safetensors(path, model)
    read_safetensors(path) -> {name: np.ndarray}
    import_gptq(model, tensors, ...) / import_awq(model, tensors, ...)
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

__all__ = [
    "UnpackedQuant", "unpack_gptq", "unpack_awq", "pack_gptq", "pack_awq",
    "unpack_int32", "pack_int32", "AWQ_ORDER", "AWQ_REVERSE_ORDER",
    "save_orbax", "load_orbax", "save_safetensors", "load_safetensors", "read_safetensors",
    "import_gptq", "import_awq", "quant_layout_metadata", "apply_quant_layout",
]

# AutoAWQ (GEMM kernels) packs 8 nibbles of one int32 in this column order:
# bit field i (bits 4i..4i+3) holds column 8c + AWQ_ORDER[i].
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)   # column j lives in field AWQ_REVERSE_ORDER[j]


class UnpackedQuant(NamedTuple):
    """A GPTQ / AWQ linear layer unpacked into bitblas_jax's "quantized zeros" form.

    values: uint8 [N, K], element values 0 .. 2**bits-1 (N = out_features, K = in_features),
        columns already in ``perm`` order when perm is not None.
    zeros:  uint8 [N, G], integer zero points (the GPTQ v1 "+1" already applied).
    scales: [N, G], the checkpoint's float dtype (usually float16), unchanged.
    perm:   int32 [K] or None. The layer computes ``y = x[..., perm] @ dequant(values)^T``;
        None when the groups are contiguous (no act-order, or act-order with one group).
    group_size: K // G (contiguous groups after the permutation).
    bits: 2, 4 or 8.
    """
    values: np.ndarray
    zeros: np.ndarray
    scales: np.ndarray
    perm: np.ndarray | None
    group_size: int
    bits: int

    @property
    def W_dtype(self) -> str:
        return f"uint{self.bits}"

    def dequantize(self) -> np.ndarray:
        """float64 [N, K] weight in ORIGINAL column order (the perm undone)."""
        g = self.group_size
        w = (self.values.astype(np.float64) - np.repeat(self.zeros.astype(np.float64), g, 1)) \
            * np.repeat(self.scales.astype(np.float64), g, 1)
        if self.perm is None:
            return w
        out = np.empty_like(w)
        out[:, self.perm] = w
        return out


def _check_bits(bits: int) -> int:
    if bits not in (2, 4, 8):
        raise ValueError(f"bits={bits}: only 2, 4 and 8-bit GPTQ / AWQ packing is supported "
                         "(3-bit GPTQ packs across int32 words and is not handled)")
    return bits


def unpack_int32(packed, bits: int, axis: int) -> np.ndarray:
    """int32 words -> unsigned fields, low bits first, expanding ``axis`` by 32/bits.

    Element j of a word is bits [bits*j, bits*j + bits). Returns uint8.
    """
    _check_bits(bits)
    p = np.asarray(packed)
    if p.dtype not in (np.int32, np.uint32):
        raise TypeError(f"packed tensor must be int32 (or uint32), got {p.dtype}")
    p = np.moveaxis(p.view(np.uint32), axis, -1)
    per = 32 // bits
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    fields = (p[..., None] >> shifts) & np.uint32((1 << bits) - 1)        # [..., words, per]
    out = fields.reshape(p.shape[:-1] + (p.shape[-1] * per,)).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def pack_int32(values, bits: int, axis: int) -> np.ndarray:
    """Inverse of unpack_int32: unsigned values < 2**bits -> int32 words along ``axis``."""
    _check_bits(bits)
    v = np.moveaxis(np.asarray(values).astype(np.uint32), axis, -1)
    per = 32 // bits
    if v.shape[-1] % per:
        raise ValueError(f"axis length {v.shape[-1]} is not a multiple of {per} ({bits}-bit in int32)")
    if v.size and v.max() >= (1 << bits):
        raise ValueError(f"values must be < 2**{bits}")
    v = v.reshape(v.shape[:-1] + (v.shape[-1] // per, per))
    words = np.bitwise_or.reduce(v << (np.arange(per, dtype=np.uint32) * bits), axis=-1)
    return np.moveaxis(words.astype(np.uint32).view(np.int32), -1, axis)


def _perm_from_g_idx(g_idx, K: int, G: int) -> tuple[np.ndarray | None, int]:
    """(perm, group_size) such that g_idx[perm] == arange(K) // group_size; perm None if identity."""
    if K % G:
        raise ValueError(f"in_features K={K} is not a multiple of the number of groups G={G}")
    gs = K // G
    if g_idx is None:
        return None, gs
    g = np.asarray(g_idx).astype(np.int64).reshape(-1)
    if g.shape != (K,):
        raise ValueError(f"g_idx must have shape [K]=({K},), got {np.shape(g_idx)}")
    if g.size and (g.min() < 0 or g.max() >= G):
        raise ValueError(f"g_idx values must lie in [0, {G}), got [{g.min()}, {g.max()}]")
    contiguous = np.arange(K) // gs
    if np.array_equal(g, contiguous) or G == 1:
        return None, gs
    perm = np.argsort(g, kind="stable")
    if not np.array_equal(g[perm], contiguous):
        counts = np.bincount(g, minlength=G)
        raise ValueError("g_idx groups have unequal sizes "
                         f"(min {counts.min()}, max {counts.max()}, expected {gs} each); "
                         "bitblas_jax needs equal-sized groups")
    return perm.astype(np.int32), gs


def unpack_gptq(qweight, qzeros, scales, g_idx=None, *, bits: int = 4,
                version: int = 1) -> UnpackedQuant:
    """Unpack one GPTQ (AutoGPTQ / GPTQModel / HF "gptq") linear layer.

    Args:
      qweight: int32 [K * bits / 32, N]; element k of column n is field k % (32/bits)
        (low bits first) of word qweight[k // (32/bits), n].
      qzeros: int32 [G, N * bits / 32], packed the same way along N.
      scales: float [G, N] (float16 in most checkpoints).
      g_idx: int [K] group of each input channel, or None (= k // (K/G)). With act-order
        (desc_act=True) the groups are not contiguous: K is sorted by g_idx (stable) and
        the permutation is returned as ``perm`` (apply it to the activations).
      bits: 2, 4 or 8.
      version: 1 for the classic format (stored zero = zero - 1, so zero = (qzeros + 1)
        & (2**bits - 1), as BitBLAS's repack_from_gptq and exllama do), 2 for
        GPTQ-v2 / "gptq_v2" checkpoints (zero = qzeros).

    Returns an UnpackedQuant: values uint8 [N, K], zeros uint8 [N, G], scales [N, G], perm,
    group_size, bits; the weight is ``(values - zeros) * scales`` per group.
    """
    _check_bits(bits)
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    per = 32 // bits
    qweight, qzeros, scales = np.asarray(qweight), np.asarray(qzeros), np.asarray(scales)
    if qweight.ndim != 2 or qzeros.ndim != 2 or scales.ndim != 2:
        raise ValueError("qweight, qzeros and scales must be 2-D")
    K, N = qweight.shape[0] * per, qweight.shape[1]
    G = scales.shape[0]
    if scales.shape != (G, N):
        raise ValueError(f"scales must be [G, N=({N})], got {scales.shape}")
    if qzeros.shape != (G, N // per) or N % per:
        raise ValueError(f"qzeros must be [G={G}, N/{per}={N // per}], got {qzeros.shape}")
    w = unpack_int32(qweight, bits, axis=0)                      # [K, N]
    z = unpack_int32(qzeros, bits, axis=1).astype(np.int32)      # [G, N]
    if version == 1:
        z = (z + 1) & ((1 << bits) - 1)
    perm, gs = _perm_from_g_idx(g_idx, K, G)
    values = w.T                                                  # [N, K]
    if perm is not None:
        values = values[:, perm]
    return UnpackedQuant(np.ascontiguousarray(values, np.uint8), np.ascontiguousarray(z.T.astype(np.uint8)),
                         np.ascontiguousarray(scales.T), perm, gs, bits)


def pack_gptq(values, zeros, scales, g_idx=None, *, bits: int = 4, version: int = 1):
    """The GPTQ packer (for tests and export): the inverse of unpack_gptq.

    values: [N, K] ints in ORIGINAL column order, zeros [N, G] ints, scales [N, G].
    Returns (qweight int32 [K*bits/32, N], qzeros int32 [G, N*bits/32], scales [G, N],
    g_idx int32 [K]). With version=1 the stored zero is (zero - 1) & mask.
    """
    values, zeros = np.asarray(values), np.asarray(zeros).astype(np.int64)
    N, K = values.shape
    G = zeros.shape[1]
    if version == 1:
        zeros = (zeros - 1) & ((1 << bits) - 1)
    qweight = pack_int32(values.T, bits, axis=0)
    qzeros = pack_int32(zeros.T, bits, axis=1)
    if g_idx is None:
        g_idx = np.arange(K, dtype=np.int32) // (K // G)
    return qweight, qzeros, np.ascontiguousarray(np.asarray(scales).T), np.asarray(g_idx, np.int32)


def _awq_cols(x: np.ndarray, order) -> np.ndarray:
    """Reorder the last axis within blocks of 8 columns: out[..., 8c + j] = x[..., 8c + order[j]]."""
    n = x.shape[-1]
    if n % 8:
        raise ValueError(f"AWQ packing needs a multiple of 8 columns, got {n}")
    idx = (np.arange(n) // 8) * 8 + np.asarray(order)[np.arange(n) % 8]
    return x[..., idx]


def unpack_awq(qweight, qzeros, scales, *, bits: int = 4) -> UnpackedQuant:
    """Unpack one AutoAWQ GEMM-format linear layer (``version="gemm"``).

    Args:
      qweight: int32 [K, N / 8]; bit field i of word [k, c] holds column
        8c + AWQ_ORDER[i] with AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7).
      qzeros: int32 [G, N / 8], same packing (zero = qzeros, no +1).
      scales: float [G, N].
      bits: 4 (AutoAWQ's only width).
    Returns an UnpackedQuant (perm None; groups are contiguous, group_size = K / G).
    """
    if bits != 4:
        raise ValueError(f"AutoAWQ packs 4-bit weights only, got bits={bits}")
    qweight, qzeros, scales = np.asarray(qweight), np.asarray(qzeros), np.asarray(scales)
    K, N = qweight.shape[0], qweight.shape[1] * 8
    G = scales.shape[0]
    if scales.shape != (G, N) or qzeros.shape != (G, N // 8):
        raise ValueError(f"AWQ shapes: qweight [K, N/8]={qweight.shape} needs scales [G, {N}] and "
                         f"qzeros [G, {N // 8}], got {scales.shape} and {qzeros.shape}")
    if K % G:
        raise ValueError(f"K={K} is not a multiple of G={G}")
    w = _awq_cols(unpack_int32(qweight, 4, axis=1), AWQ_REVERSE_ORDER)     # [K, N]
    z = _awq_cols(unpack_int32(qzeros, 4, axis=1), AWQ_REVERSE_ORDER)      # [G, N]
    return UnpackedQuant(np.ascontiguousarray(w.T), np.ascontiguousarray(z.T), np.ascontiguousarray(scales.T),
                         None, K // G, 4)


def pack_awq(values, zeros, scales):
    """The AutoAWQ GEMM packer (inverse of unpack_awq): values [N, K], zeros [N, G], scales [N, G]
    -> (qweight int32 [K, N/8], qzeros int32 [G, N/8], scales [G, N])."""
    qweight = pack_int32(_awq_cols(np.asarray(values).T, AWQ_ORDER), 4, axis=1)
    qzeros = pack_int32(_awq_cols(np.asarray(zeros).T, AWQ_ORDER), 4, axis=1)
    return qweight, qzeros, np.ascontiguousarray(np.asarray(scales).T)


# =========================================================================================
# Flax: save / load quantized models (Orbax, safetensors), import GPTQ / AWQ checkpoints
# =========================================================================================
LAYOUT_FILE = "bitblas_jax.json"      # next to the Orbax state: which layers are quantized, how
_META_KEY = "bitblas_jax.layout"      # the same JSON in a safetensors file's metadata
_FORMAT = "bitblas_jax/1"


def _nnx():
    from flax import nnx
    return nnx


def _rng_free_state(model):
    """The model's state without RNG state (keys are not checkpointed)."""
    nnx = _nnx()
    return nnx.state(model, nnx.Not(nnx.RngState))


def quant_layout_metadata(model) -> dict:
    """JSON-able description of a model's quantized layers: {"format", "layers": [{"path", "config"}]}."""
    from .flax.model import iter_linears
    from .flax.linear import Linear
    layers = [{"path": list(p), "config": m.layout_metadata()} for p, m in iter_linears(model, (Linear,))]
    return {"format": _FORMAT, "layers": layers}


def apply_quant_layout(model, layout: Mapping[str, Any]):
    """Give `model` the quantized structure described by `layout` (quant_layout_metadata):
    each listed layer that is a float nnx.Linear (or a Linear of another config) is replaced
    by an all-zero `Linear` of the saved config, ready to be filled by a load. In place;
    returns the model."""
    from .flax.linear import Linear
    from .flax.model import replace_module, _child
    if layout.get("format") != _FORMAT:
        raise ValueError(f"not a bitblas_jax layout (format={layout.get('format')!r}, expected {_FORMAT!r})")
    for entry in layout["layers"]:
        path, cfg = tuple(entry["path"]), entry["config"]
        node = model
        try:
            for k in path:
                node = _child(node, k)
        except (KeyError, IndexError, AttributeError, TypeError):
            raise ValueError(f"checkpoint layer {'/'.join(map(str, path))!r} does not exist in the model") from None
        if isinstance(node, Linear) and node.layout_metadata() == dict(cfg):
            continue
        nnx = _nnx()
        if not isinstance(node, (nnx.Linear, Linear)):
            raise ValueError(f"checkpoint layer {'/'.join(map(str, path))!r} is a {type(node).__name__} "
                             "in the model, not a Linear")
        k_in, n_out = node.in_features, node.out_features
        if (k_in, n_out) != (cfg["in_features"], cfg["out_features"]):
            raise ValueError(f"layer {'/'.join(map(str, path))!r}: model has [in, out] = {(k_in, n_out)}, "
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
    import jax
    import jax.numpy as jnp
    sharding = getattr(like, "sharding", None)
    if sharding is not None:
        return jax.device_put(x, sharding)
    return jnp.asarray(x)


# ---- Orbax --------------------------------------------------------------------------------
def save_orbax(path, model, *, force: bool = False) -> None:
    """Save a (quantized) NNX model's state with Orbax to the directory `path`.

    Writes `path/state` (Orbax StandardCheckpointer, every array bit-exact, sharded
    arrays written by their hosts) and `path/bitblas_jax.json` (the quantized layout)."""
    import orbax.checkpoint as ocp
    nnx = _nnx()
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
    import jax
    import orbax.checkpoint as ocp
    nnx = _nnx()
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
    return model


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
    import jax
    stn = _require_safetensors()
    nnx = _nnx()
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
    import ml_dtypes
    extra = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
             "F8_E5M2": ml_dtypes.float8_e5m2}
    if name not in extra:
        raise ValueError(f"safetensors dtype {name!r} is not supported")
    return np.dtype(extra[name])


def _read_one_safetensors(path) -> tuple[dict, dict]:
    """One file -> ({name: array (memory-mapped, read-only)}, metadata). Reads the format
    directly (8-byte header length, JSON header, data) so bfloat16 / float8 work."""
    import struct
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
    nnx = _nnx()
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
    return model


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
    import re
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
    import sys
    import jax
    from .flax.linear import Linear
    from .flax.model import iter_linears, replace_module
    nnx = _nnx()
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
