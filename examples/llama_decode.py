"""Greedy decoding with a Llama-style decoder in Flax NNX, bf16 vs int4 (bitblas_jax).

The model (RMSNorm, rotary attention with a KV cache and grouped KV heads, SwiGLU MLP)
has seeded random weights, so nothing is downloaded. It is quantized to int4, group 128,
with bitblas_jax.flax.quantize_model (lm_head kept in bf16), then both versions decode
the same prompt under jax.jit, for each batch size of --batch (default 1, 8 and 32).
Printed: a table of tokens/s and time per decoder layer of both models per batch size, the
max logit difference on the same token sequence, and how many greedy tokens agree.

    python examples/llama_decode.py                       # --config tiny on CPU (< 1 min)
    python examples/llama_decode.py --config 7b --layers 8 --new-tokens 64   # Llama-2-7B layers, a GPU
    python examples/llama_decode.py --batch 1             # one batch size
    python examples/llama_decode.py --mesh 8              # tensor-parallel over 8 devices

Time per layer: a decode step's time (from the tokens/s loop) less the time of the rest of
the step (embedding, final norm, lm_head, argmax; timed alone, chained as in decoding),
divided by the number of layers: the attention and MLP of one layer, KV cache included.

--mesh N runs the model tensor-parallel over N devices (N virtual CPU devices on a CPU
machine; GPUs where there are N): q/k/v/gate/up column-parallel, o/down row-parallel
(Megatron), declared as for nnx.Linear with nnx.with_partitioning; quantize_model keeps
the sharding (the row-parallel weights packed per K-shard). It prints each model's bytes
per device and whether the compiled decode step gathers any weight.

Random weights make the logits of both models nearly flat, so the token agreement is
only a smoke signal; the logit difference is the number to look at (int4 RTN with
group 128 moves logits by a few percent of their spread).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if "--mesh" in sys.argv:      # virtual CPU devices must be asked for before JAX starts
    _n = sys.argv[sys.argv.index("--mesh") + 1]
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_n}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from bitblas_jax.flax import quantize_model  # noqa: E402


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    max_len: int
    rope_theta: float = 10000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


CONFIGS = {
    # CPU-sized: every matrix is a multiple of 128 so int4 group 128 applies everywhere.
    "tiny": LlamaConfig(vocab=512, hidden=256, intermediate=768, layers=2, heads=4, kv_heads=2,
                        max_len=128),
    # CPU-sized for --mesh 8: every row-parallel K splits into 8 blocks of whole int4 groups.
    "tiny-tp": LlamaConfig(vocab=512, hidden=1024, intermediate=3072, layers=2, heads=8, kv_heads=8,
                           max_len=128),
    # Llama-2-7B's layer shapes (fewer layers by default: --layers).
    "7b": LlamaConfig(vocab=32000, hidden=4096, intermediate=11008, layers=4, heads=32, kv_heads=32,
                      max_len=512),
}

DTYPE = jnp.bfloat16
MODEL_AXIS = "model"


def _linear(i, o, rngs, parallel=None):
    """parallel: None (replicated), "column" (split the outputs) or "row" (split the inputs),
    declared only when the model is built under a mesh with a "model" axis."""
    init = nnx.initializers.normal(0.02)
    mesh = jax.sharding.get_abstract_mesh()
    if parallel and not mesh.empty and MODEL_AXIS in mesh.shape:
        init = nnx.with_partitioning(init, (None, MODEL_AXIS) if parallel == "column" else (MODEL_AXIS, None))
    return nnx.Linear(i, o, use_bias=False, dtype=DTYPE, param_dtype=DTYPE, kernel_init=init, rngs=rngs)


class RMSNorm(nnx.Module):
    def __init__(self, dim, eps):
        self.weight = nnx.Param(jnp.ones((dim,), DTYPE))
        self.eps = eps

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.weight[...].astype(jnp.float32)).astype(x.dtype)


def rope(x, positions, theta):
    """Rotary embedding, rotate-half convention (HF Llama). x [B, T, H, D], positions [T]."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    ang = positions.astype(jnp.float32)[:, None] * inv[None, :]          # [T, D/2]
    cos = jnp.concatenate([jnp.cos(ang)] * 2, -1)[None, :, None, :]
    sin = jnp.concatenate([jnp.sin(ang)] * 2, -1)[None, :, None, :]
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., : d // 2], x32[..., d // 2:]
    rot = jnp.concatenate([-x2, x1], -1)
    return (x32 * cos + rot * sin).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs):
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = _linear(cfg.hidden, cfg.heads * hd, rngs, "column")
        self.k_proj = _linear(cfg.hidden, cfg.kv_heads * hd, rngs, "column")
        self.v_proj = _linear(cfg.hidden, cfg.kv_heads * hd, rngs, "column")
        self.o_proj = _linear(cfg.heads * hd, cfg.hidden, rngs, "row")

    def __call__(self, x, cache_k, cache_v, pos):
        """x [B, T, hidden]; cache_k/v [B, max_len, kv_heads, hd]; pos: index of x[:, 0]."""
        cfg, (B, T, _) = self.cfg, x.shape
        hd = cfg.head_dim
        positions = pos + jnp.arange(T)
        q = rope(self.q_proj(x).reshape(B, T, cfg.heads, hd), positions, cfg.rope_theta)
        k = rope(self.k_proj(x).reshape(B, T, cfg.kv_heads, hd), positions, cfg.rope_theta)
        v = self.v_proj(x).reshape(B, T, cfg.kv_heads, hd)
        cache_k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), (0, pos, 0, 0))
        cache_v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), (0, pos, 0, 0))
        rep = cfg.heads // cfg.kv_heads
        qg = q.reshape(B, T, cfg.kv_heads, rep, hd).astype(jnp.float32)
        s = jnp.einsum("btgrd,bsgd->bgrts", qg, cache_k.astype(jnp.float32)) / math.sqrt(hd)
        mask = jnp.arange(cfg.max_len)[None, :] <= positions[:, None]       # [T, S]
        s = jnp.where(mask, s, -1e30)
        p = jax.nn.softmax(s, axis=-1)
        o = jnp.einsum("bgrts,bsgd->btgrd", p, cache_v.astype(jnp.float32))
        return self.o_proj(o.reshape(B, T, cfg.heads * hd).astype(x.dtype)), cache_k, cache_v


class MLP(nnx.Module):
    def __init__(self, cfg, rngs):
        self.gate_proj = _linear(cfg.hidden, cfg.intermediate, rngs, "column")
        self.up_proj = _linear(cfg.hidden, cfg.intermediate, rngs, "column")
        self.down_proj = _linear(cfg.intermediate, cfg.hidden, rngs, "row")

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    def __init__(self, cfg, rngs):
        self.input_norm = RMSNorm(cfg.hidden, cfg.eps)
        self.attn = Attention(cfg, rngs)
        self.post_norm = RMSNorm(cfg.hidden, cfg.eps)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, ck, cv, pos):
        h, ck, cv = self.attn(self.input_norm(x), ck, cv, pos)
        x = x + h
        return x + self.mlp(self.post_norm(x)), ck, cv


class Llama(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab, cfg.hidden, dtype=DTYPE, param_dtype=DTYPE,
                               embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.layers)])
        self.norm = RMSNorm(cfg.hidden, cfg.eps)
        self.lm_head = _linear(cfg.hidden, cfg.vocab, rngs)

    def init_cache(self, batch):
        c = self.cfg
        shape = (c.layers, batch, c.max_len, c.kv_heads, c.head_dim)
        return jnp.zeros(shape, DTYPE), jnp.zeros(shape, DTYPE)

    def __call__(self, tokens, cache, pos):
        """tokens [B, T] -> (logits float32 [B, T, vocab], updated cache)."""
        ks, vs = cache
        x = self.embed(tokens)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, ks[i], vs[i], pos)
            new_k.append(k)
            new_v.append(v)
        logits = self.lm_head(self.norm(x)).astype(jnp.float32)
        return logits, (jnp.stack(new_k), jnp.stack(new_v))


def make_step(model):
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, tokens, cache, pos):
        return nnx.merge(graphdef, state)(tokens, cache, pos)

    return step, state


def generate(model, prompt, new_tokens):
    """Greedy decoding; returns (tokens [B, P + new], decode seconds (after compiling))."""
    step, state = make_step(model)
    B, P = prompt.shape

    def run(n):
        cache = model.init_cache(B)
        logits, cache = step(state, prompt, cache, 0)                  # prefill
        tok = jnp.argmax(logits[:, -1], -1)[:, None]
        out = [tok]
        jax.block_until_ready(tok)
        t0 = time.perf_counter()
        for i in range(n - 1):
            logits, cache = step(state, tok, cache, P + i)
            tok = jnp.argmax(logits[:, -1], -1)[:, None]
            out.append(tok)
        jax.block_until_ready(tok)
        return jnp.concatenate([prompt] + out, axis=1), time.perf_counter() - t0

    run(3)                        # compile the prefill and decode steps
    return run(new_tokens)


def head_seconds(model, batch, reps=20):
    """Seconds per call of the part of a decode step outside the decoder layers (embedding,
    final norm, lm_head, argmax), calls chained through their tokens as in decoding."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def head(state, tok):
        m = nnx.merge(graphdef, state)
        return jnp.argmax(m.lm_head(m.norm(m.embed(tok))).astype(jnp.float32)[:, -1], -1)[:, None]

    tok = jax.block_until_ready(head(state, jnp.zeros((batch, 1), jnp.int32)))
    t0 = time.perf_counter()
    for _ in range(reps):
        tok = head(state, tok)
    jax.block_until_ready(tok)
    return (time.perf_counter() - t0) / reps


def decode_speed(model, prompt, new_tokens):
    """(tokens [B, P + new], tokens/s, ms per decode step, ms per decoder layer)."""
    toks, t = generate(model, prompt, new_tokens)
    steps = new_tokens - 1
    step_ms = 1e3 * t / steps
    layer_ms = max(step_ms - 1e3 * head_seconds(model, prompt.shape[0]), 0.0) / len(model.layers)
    return toks, prompt.shape[0] * steps / t, step_ms, layer_ms


def device_bytes(model) -> dict:
    """Bytes of the model's arrays held by each device."""
    out = {}
    for leaf in jax.tree.leaves(nnx.state(model)):
        for shard in getattr(leaf, "addressable_shards", ()):
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out


def weight_gathers(model, prompt) -> list[int]:
    """Result bytes of every all-gather in the compiled decode step that is as large as a
    quantized weight's shard on one device (a gathered weight)."""
    from bitblas_jax.flax import quantized_layers
    step, state = make_step(model)
    hlo = step.lower(state, prompt[:, :1], model.init_cache(prompt.shape[0]), 0).compile().as_text()
    sizes = {"f32": 4, "bf16": 2, "f16": 2, "u8": 1, "s8": 1, "s32": 4}
    gathers = []
    for m in re.finditer(r"=\s*(\w+)\[([\d,]*)\][^ ]*\s+all-gather(?:-start)?\(", hlo):
        n = math.prod(int(d) for d in m.group(2).split(",") if d)
        gathers.append(n * sizes.get(m.group(1), 4))
    layers = quantized_layers(model)
    smallest = min((layer.qweight[...].nbytes for layer in layers.values()), default=0)
    return [g for g in gathers if smallest and g >= smallest // len(jax.devices())]


def report_sharding(model, qmodel, prompt, mesh):
    for name, m in (("bf16", model), ("quantized", qmodel)):
        per = device_bytes(m)
        mib = [per.get(d, 0) / 2**20 for d in mesh.devices.flat]
        print(f"{name:<10} bytes per device: {min(mib):.2f} .. {max(mib):.2f} MiB over {len(mib)} devices "
              f"(total {sum(mib):.2f} MiB)")
    big = weight_gathers(qmodel, prompt)
    print(f"quantized decode step: weight all-gathers in the compiled HLO: "
          f"{'none' if not big else f'{len(big)} (largest {max(big)} bytes)'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS),
                    default="tiny" if jax.default_backend() == "cpu" else "7b")
    ap.add_argument("--layers", type=int, default=None, help="number of decoder layers")
    ap.add_argument("--batch", default="1,8,32", help="batch sizes, comma-separated (a table row each)")
    ap.add_argument("--prompt-len", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--w-dtype", default="int4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mesh", type=int, default=0,
                    help="tensor-parallel over this many devices (virtual CPU devices on a CPU)")
    args = ap.parse_args(argv)
    if args.mesh > 1 and args.config == "tiny":
        args.config = "tiny-tp"
    batches = [int(b) for b in str(args.batch).split(",")]
    if args.new_tokens < 2 or min(batches) < 1:
        raise SystemExit("--new-tokens must be >= 2 (one decode step after the prefill) and --batch sizes >= 1")

    cfg = CONFIGS[args.config]
    if args.layers is not None:
        cfg = dataclasses.replace(cfg, layers=args.layers)
    if args.prompt_len + args.new_tokens > cfg.max_len:
        cfg = dataclasses.replace(cfg, max_len=args.prompt_len + args.new_tokens)
    print(f"backend {jax.default_backend()}, config {args.config}: {cfg}")

    mesh = None
    if args.mesh > 1:
        if len(jax.devices()) < args.mesh:
            raise SystemExit(f"--mesh {args.mesh}: only {len(jax.devices())} {jax.default_backend()} devices")
        mesh = jax.make_mesh((args.mesh,), (MODEL_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                             devices=jax.devices()[:args.mesh])
    with (jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext()):
        model = Llama(cfg, nnx.Rngs(args.seed))
        # int4 copy that shares the embedding, norms and lm_head with the bf16 model.
        qmodel = quantize_model(model, args.w_dtype, args.group_size, exclude=("lm_head",), inplace=False)
    label = f"{args.w_dtype} g{args.group_size}"
    rows, first = [], None
    for batch in batches:
        prompt = jax.random.randint(jax.random.key(args.seed + 1), (batch, args.prompt_len), 0, cfg.vocab)
        if mesh is not None and first is None:
            report_sharding(model, qmodel, prompt, mesh)
        toks_bf16, tps_bf16, step_bf16, layer_bf16 = decode_speed(model, prompt, args.new_tokens)
        toks_q, tps_q, step_q, layer_q = decode_speed(qmodel, prompt, args.new_tokens)
        rows.append(dict(batch=batch, tokens_per_s_bf16=tps_bf16, tokens_per_s_quant=tps_q,
                         ms_per_step_bf16=step_bf16, ms_per_step_quant=step_q,
                         ms_per_layer_bf16=layer_bf16, ms_per_layer_quant=layer_q))
        if first is None:
            first = (prompt, toks_bf16, toks_q)

    print(f"\n{cfg.layers} layers, {args.new_tokens - 1} decode steps after a {args.prompt_len}-token prompt; "
          f"speed-up = bf16 time / {label} time")
    print(f"| batch | bf16 tokens/s | {label} tokens/s | speed-up | bf16 ms/layer | {label} ms/layer "
          f"| layer speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        x_layer = r["ms_per_layer_bf16"] / r["ms_per_layer_quant"] if r["ms_per_layer_quant"] else math.nan
        print(f"| {r['batch']} | {r['tokens_per_s_bf16']:.1f} | {r['tokens_per_s_quant']:.1f} | "
              f"{r['tokens_per_s_quant'] / r['tokens_per_s_bf16']:.2f}x | {r['ms_per_layer_bf16']:.3f} | "
              f"{r['ms_per_layer_quant']:.3f} | {x_layer:.2f}x |")

    # Logits of both models on the same tokens (the bf16 model's greedy output), first batch size.
    prompt, toks_bf16, toks_q = first
    batch = prompt.shape[0]
    seq = toks_bf16[:, :-1]
    lb, _ = make_step(model)[0](nnx.split(model)[1], seq, model.init_cache(batch), 0)
    step_fn, state_q = make_step(qmodel)
    lq, _ = step_fn(state_q, seq, qmodel.init_cache(batch), 0)
    diff = float(jnp.max(jnp.abs(lb - lq)))
    spread = float(jnp.std(lb))
    agree = float(jnp.mean(toks_bf16[:, args.prompt_len:] == toks_q[:, args.prompt_len:]))
    print(f"batch {batch}: max |logit bf16 - logit {args.w_dtype}| = {diff:.4f} (logit std {spread:.4f}); "
          f"greedy tokens agree {100 * agree:.0f}%")
    return {"max_logit_diff": diff, "logit_std": spread, "agree": agree,
            "tokens_per_s_bf16": rows[0]["tokens_per_s_bf16"], "tokens_per_s_quant": rows[0]["tokens_per_s_quant"],
            "batches": rows}


if __name__ == "__main__":
    main()
