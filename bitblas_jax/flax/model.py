"""quantize_model: replace the nnx.Linear layers of a Flax NNX model by low-bit `Linear`s."""
from __future__ import annotations

import dataclasses
import re
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

import jax
from flax import nnx

from ..progress import ProgressBar
from ..quantize import check_rtn_options
from .linear import Linear, array_nbytes, variable_value

__all__ = ["quantize_model", "QuantizeSummary", "quantized_layers", "path_str",
           "iter_linears", "get_module", "replace_module"]

_OPTION_KEYS = ("W_dtype", "group_size", "with_scaling", "with_zeros", "zeros_mode", "A_dtype",
                "dtype", "accum_dtype", "out_dtype", "activation_granularity")


def path_str(path: Sequence[Any]) -> str:
    """A module path as a string: ('layers', 0, 'attn', 'q_proj') -> 'layers/0/attn/q_proj'."""
    return "/".join(str(p) for p in path)


def iter_linears(model, types=(nnx.Linear,)):
    """(path tuple, module) of every module of one of `types` in the model, each shared
    module once, in graph order."""
    return [(tuple(p), m) for p, m in nnx.iter_graph(model) if isinstance(m, types)]


def hold_group_terms(model) -> int:
    """Every bitblas_jax.flax.Linear of the model holds its group terms (Linear.hold_group_terms: the
    Hopper GEMM skips its terms kernel on each call); for inference. Returns how many layers hold them."""
    return sum(bool(layer.hold_group_terms()) for _, layer in iter_linears(model, (Linear,)))


def quantized_layers(model) -> dict[str, Linear]:
    """{path: bitblas_jax.flax.Linear} of a model."""
    return {path_str(p): m for p, m in iter_linears(model, (Linear,))}


def _child(node, key):
    if isinstance(node, nnx.Module) and isinstance(key, str) and hasattr(node, key):
        return getattr(node, key)
    return node[key]


def get_module(model, path: Sequence[Any]):
    """The module at `path` (attribute names and list / dict keys, as iter_linears gives).
    Raises KeyError / IndexError / AttributeError / TypeError when the path does not exist."""
    node = model
    for k in path:
        node = _child(node, k)
    return node


def replace_module(model, path: Sequence[Any], new) -> None:
    """Set the module at `path` (attribute names and list / dict keys) to `new`, in place."""
    path = tuple(path)
    if not path:
        raise ValueError("cannot replace the root module")
    parent = get_module(model, path[:-1])
    key = path[-1]
    if isinstance(parent, nnx.Module) and isinstance(key, str) and hasattr(parent, key):
        setattr(parent, key, new)
    else:
        parent[key] = new


@dataclasses.dataclass
class QuantizeSummary:
    """What quantize_model did."""
    converted: list[str] = dataclasses.field(default_factory=list)
    kept: dict[str, str] = dataclasses.field(default_factory=dict)      # path -> why
    layer_bytes_before: int = 0        # kernels + biases of the converted layers
    layer_bytes_after: int = 0         # packed weights + scales + zeros + biases
    model_bytes_before: int = 0        # every array in the model's state
    model_bytes_after: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        mib = lambda b: b / 2**20  # noqa: E731
        lines = [f"quantize_model: converted {len(self.converted)} layer(s), kept "
                 f"{len(self.kept)} in float, {self.seconds:.1f} s",
                 f"  converted layers: {mib(self.layer_bytes_before):.2f} MiB -> "
                 f"{mib(self.layer_bytes_after):.2f} MiB",
                 f"  whole model:      {mib(self.model_bytes_before):.2f} MiB -> "
                 f"{mib(self.model_bytes_after):.2f} MiB"
                 + (f" ({self.model_bytes_before / max(self.model_bytes_after, 1):.2f}x smaller)"
                    if self.model_bytes_after else "")]
        for p, why in self.kept.items():
            lines.append(f"  kept {p}: {why}")
        return "\n".join(lines)


def _state_bytes(model) -> int:
    return sum(array_nbytes(leaf) for leaf in jax.tree.leaves(nnx.state(model))
               if hasattr(leaf, "shape") and hasattr(leaf, "dtype"))


def _resolve(path: str, module, rules, exclude) -> tuple[dict | None, str]:
    """Options for one layer (None = keep it in float) and the reason."""
    for pat in exclude or ():
        if re.search(pat, path):
            return None, f"excluded by {pat!r}"
    if rules is None:
        return {}, ""
    if callable(rules):
        spec = rules(path, module)
        return (None, "rules() returned None") if spec in (None, False) else \
            ({} if spec is True else dict(spec), "")
    items = rules.items() if isinstance(rules, Mapping) else rules
    for pat, spec in items:
        if re.search(pat, path):
            if spec in (None, False):
                return None, f"rule {pat!r} keeps it in float"
            return ({} if spec is True else dict(spec)), ""
    return None, "no rule matched"


def quantize_model(model, W_dtype: str = "int4", group_size: int | None = 128, *,
                   with_scaling: bool | None = None, with_zeros: bool = False,
                   zeros_mode: str = "original", A_dtype=None, dtype=None,
                   accum_dtype: str | None = None, out_dtype=None,
                   activation_granularity: str = "per_token", rules=None, exclude: Iterable[str] | None = ("lm_head",),
                   inplace: bool = True, progress: bool = True, verbose: bool = True,
                   on_error: str = "keep", return_summary: bool = False):
    """Replace every matching `nnx.Linear` of an NNX model by a quantized `Linear`.

    Args:
      model: an nnx.Module.
      W_dtype, group_size, with_scaling, with_zeros, zeros_mode, A_dtype / dtype,
        accum_dtype, out_dtype, activation_granularity: the defaults for every layer (see
        `Linear`; A_dtype="int8" with W_dtype="int8" is SmoothQuant's W8A8). The
        activation dtype defaults to each layer's dtype / float16-or-bfloat16 kernel
        dtype, else bfloat16 (`Linear.from_linear`).
      rules: which layers and how, matched against the module path string
        ('layers/0/mlp/up_proj', see `path_str`) with `re.search`:
        * None: every layer, with the defaults;
        * a list of (pattern, spec) pairs or a dict pattern -> spec, first match wins;
          spec None/False keeps the layer in float, True/{} uses the defaults, a dict
          overrides options (e.g. {"W_dtype": "int8", "group_size": -1}); layers no rule
          matches are kept in float;
        * a callable (path, module) -> spec.
      exclude: patterns of layers always kept in float (default ("lm_head",)).
      inplace: modify `model` (True) or return a new model that shares the untouched
        arrays (False: `nnx.merge(*nnx.split(model))`, so no float weight is copied).
      progress: a progress bar (tqdm if installed, else a plain stderr bar).
      verbose: print the summary to stderr.
      on_error: "keep" (a layer whose shape the kernels do not support, e.g. N not a
        multiple of 16 or K not a multiple of group_size, stays in float and is listed in
        the summary) or "raise".
      return_summary: return (model, QuantizeSummary) instead of the model.

    Each layer is quantized on its kernel's device (jax.numpy, jitted; the GPU for a model
    on the GPU). Stacked layers (an nnx.Linear made under nnx.vmap, kernel [*layers, in,
    out]) become stacked quantized Linears that run under nnx.scan / nnx.vmap. Works under
    `nnx.eval_shape` and nnx.jit too (an abstract model gives an abstract quantized model,
    e.g. as the target structure to restore a quantized checkpoint into).
    """
    if on_error not in ("keep", "raise"):
        raise ValueError(f"on_error must be 'keep' or 'raise', got {on_error!r}")
    t0 = time.perf_counter()
    if not inplace:
        model = nnx.merge(*nnx.split(model))
    summary = QuantizeSummary(model_bytes_before=_state_bytes(model))
    defaults = dict(W_dtype=W_dtype, group_size=group_size, with_scaling=with_scaling,
                    with_zeros=with_zeros, zeros_mode=zeros_mode, A_dtype=A_dtype, dtype=dtype,
                    accum_dtype=accum_dtype, out_dtype=out_dtype,
                    activation_granularity=activation_granularity)
    todo = []
    for path, module in iter_linears(model):
        if isinstance(module, Linear):
            continue
        ps = path_str(path)
        if not path:
            raise ValueError("the model itself is an nnx.Linear: use Linear.from_linear(model, ...)")
        spec, why = _resolve(ps, module, rules, exclude)
        if spec is None:
            summary.kept[ps] = why
            continue
        bad = set(spec) - set(_OPTION_KEYS)
        if bad:
            raise ValueError(f"rule for {ps!r} has unknown options {sorted(bad)}; allowed: {_OPTION_KEYS}")
        opts = {**defaults, **spec}
        if "dtype" in spec and "A_dtype" not in spec:
            opts["A_dtype"] = None
        if "A_dtype" in spec and "dtype" not in spec:
            opts["dtype"] = None
        # a configuration error, not a layer the kernels cannot run: raised whatever on_error says
        check_rtn_options(opts["W_dtype"], opts["with_scaling"], opts["with_zeros"],
                          where=f"quantize_model: layer {ps!r}")
        todo.append((path, ps, module, opts))

    def convert(item):
        path, ps, module, opts = item
        try:
            return Linear.from_linear(module, **opts), None
        except ValueError as e:
            if on_error == "raise":
                raise ValueError(f"quantize_model: layer {ps!r}: {e}") from e
            return None, f"not supported: {e}"

    bar = ProgressBar(len(todo), progress)
    try:
        # In the calling thread: under nnx.eval_shape / nnx.jit the kernels are tracers of its
        # trace. On a device the work is dispatched asynchronously, layer after layer.
        for path, ps, module, opts in todo:
            new, why = convert((path, ps, module, opts))
            bar.update(ps)
            if new is None:
                summary.kept[ps] = why
                continue
            summary.layer_bytes_before += sum(
                array_nbytes(variable_value(v)) for v in (module.kernel, module.bias) if v is not None)
            summary.layer_bytes_after += new.nbytes()
            replace_module(model, path, new)
            summary.converted.append(ps)
    finally:
        bar.close()
    leaves = [x for x in jax.tree.leaves(nnx.state(model)) if isinstance(x, jax.Array)]
    jax.block_until_ready(leaves)       # the time below is the quantization's, not its dispatch's
    summary.model_bytes_after = _state_bytes(model)
    summary.seconds = time.perf_counter() - t0
    if verbose:
        print(summary, file=sys.stderr)
    return (model, summary) if return_summary else model
