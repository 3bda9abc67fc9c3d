"""bitblas_jax against every baseline, in one run: XLA's fp16 and bf16 dots, XLA's own int4 path
(jnp.int4, group 128, dequantized inside jit), torch's bf16 matmul, torch's tinygemm int4 and gemlite
(Triton) A16W4 / A16W8, on layer shapes of popular open models (SHAPES). The quantized-activation
formats (w8a8, w4a8g128: SmoothQuant's W8A8 / W4A8; fp8a8, w4f8g128: float8 E4M3 activations with float8
or int4 weights; per-token activation scales, fp16 output) are timed against XLA's dot of the same
activation type too (int8 x int8 -> int32, e4m3 x e4m3 -> float32; added as a baseline whenever they run).

    python benchmarks/bench_matmul.py --quick           # 3 big layers + a small one, 4 M (tools/gpu_check.sh)
    python benchmarks/bench_matmul.py                   # the full sweep (FULL_SHAPES x MS)
    python benchmarks/bench_matmul.py --out results     # + results.json, results.png
    python benchmarks/bench_matmul.py --formats w4g128,w4a8g128,w8,w8a8 --Ms 1,16 --shapes 8192x8192,28672x8192
                                                        # int8 activations at decode sizes (decode_i8)
    python benchmarks/bench_matmul.py --replot a,b --out joined   # the tables / plot of written runs

On a CPU backend (no GPU) the default grid shrinks to a smoke run on small shapes; the baselines that
need CUDA are skipped.

JAX ops (bitblas_jax, XLA dots, XLA int4): every timed jit call runs the op on several weight copies
(about 256 MB of weight traffic per call, 2 to 64 ops, more than twice the L2, so each weight comes from
HBM; a copy used twice in one call would let XLA merge the two dots or reuse one dequantized weight),
each op with its own activations. After a warm-up:
  us      wall time per op: calls dispatched back to back for SAMPLE_S of GPU time, one sync (dispatch and
          sync < 1% of it); the median over --repeats samples, with its 10..90% spread
  gpu_us  GPU busy time per op from a profiler trace (the union of the device streams' CUPTI records over
          a few calls, divided by the ops they ran): the kernels without XLA's per-op host path. One
          trace per (shape, M) serves all of its JAX ops (gpu_busy_batch).
PyTorch ops (torch_baselines.py, in a child process with its own CUDA context): the same weight rotation
and warm-up; wall time of eager calls, and GPU time of the same pass replayed from a CUDA graph (CUDA events).
Weights are drawn and packed on the device once per layer shape and shared by its M; --max-minutes (from
the process start) is checked before every (shape, M); OUT.json is rewritten after each; SIGTERM ends the
run with its tables and plot; --replot prints / joins runs already written.
Every row names the kernel bitblas_jax's plan chose (gpu_plan.plan_cuda, the plan the dispatcher runs).
"""
from __future__ import annotations

import os
import time

T0 = time.perf_counter()  # --max-minutes counts from here (before the imports of jax and bitblas_jax)
# the torch baselines' process shares the GPU: XLA takes memory as it needs it rather than 75% up front
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bitblas_jax as bj  # noqa: E402

# the sibling modules, also where this file is loaded by path (tools/gpu_qact_check.py uses time_jit)
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_baselines  # noqa: E402
import weight_copies  # noqa: E402

# N x K = weight rows (out features) x in features, per model layer:
#   model                       q/o       qkv fused   gate / up (each)   down
#   Llama-2-7B                  4096x4096             11008x4096         4096x11008
#   Llama-3-8B / Mistral-7B               6144x4096   14336x4096         4096x14336  (Mixtral-8x7B experts too)
#   Llama-3-70B                 8192x8192 10240x8192  28672x8192         8192x28672
#   Qwen2.5-7B                  3584x3584 4608x3584   18944x3584         3584x18944
#   Gemma-2-9B                                        14336x3584         3584x14336
#   Phi-3-medium (14B)                                17920x5120         5120x17920
#   Mixtral-8x22B (an expert)                         16384x6144         6144x16384
#   Qwen2.5-72B                           10240x8192  29568x8192         8192x29568
SHAPES = [(4096, 4096), (6144, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (4096, 14336),
          (8192, 8192), (10240, 8192), (28672, 8192), (8192, 28672),
          (3584, 3584), (4608, 3584), (18944, 3584), (3584, 18944), (14336, 3584), (3584, 14336),
          (17920, 5120), (5120, 17920), (16384, 6144), (6144, 16384), (29568, 8192), (8192, 29568)]
# the default sweep: a small layer, then the shapes of issues 27 / 28 (models outside the first list) and
# the 70B-class layers; --shapes all runs SHAPES
FULL_SHAPES = [(4096, 4096), (4608, 3584), (18944, 3584), (3584, 18944), (14336, 3584), (17920, 5120),
               (29568, 8192), (8192, 29568), (28672, 8192)]
QUICK_SHAPES = [(4096, 4096), (18944, 3584), (29568, 8192), (8192, 28672)]
CPU_SHAPES = [(512, 1024), (1024, 512)]              # the CPU smoke run (with CPU_MS, 3 repeats)
MS = [1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]  # decode, then the GEMM regime
QUICK_MS = [1, 16, 128, 1024]
CPU_MS = [1, 16]
# name -> (W_dtype, group_size, A dtype); int8 A: per-token activation scales, float16 output
FORMATS = {
    "w4g128": ("int4", 128, "float16"), "w4g128-bf16": ("int4", 128, "bfloat16"),
    "w4pc": ("int4", -1, "float16"), "w8": ("int8", -1, "float16"), "w2g128": ("int2", 128, "float16"),
    "nf4g128": ("nf4", 128, "float16"), "fp4g128": ("fp4_e2m1", 128, "float16"),
    "fp8": ("float8_e4m3fn", -1, "float16"),
    "w8a8": ("int8", -1, "int8"), "w4a8g128": ("int4", 128, "int8"),
    "fp8a8": ("float8_e4m3fn", -1, "float8_e4m3fn"), "w4f8g128": ("int4", 128, "float8_e4m3fn"),
}
# a format name + HELD: the call holds its group terms (Matmul.group_terms, as a layer after
# hold_group_terms), so the Hopper GEMM skips its terms kernel; e.g. w4g128-held
HELD = "-held"


def format_spec(name: str) -> tuple:
    """(W_dtype, group_size, A dtype) of a format name (FORMATS, with or without HELD)."""
    return FORMATS[name.removesuffix(HELD)]


# the XLA dot of each quantized activation type: the baseline of its formats (issue 29)
ACT_BASELINE = {"int8": "xla_int8", "float8_e4m3fn": "xla_fp8"}
FULL_FORMATS = ["w4g128", "w4g128-bf16", "w8"]
QUICK_FORMATS = ["w4g128", "w4g128-bf16", "w2g128", "w8"]
XLA_BASELINES = ("fp16", "bf16", "xla_int4_g128", "xla_int4_pc", "xla_int8", "xla_fp8")
BASELINES = XLA_BASELINES + torch_baselines.NAMES
DEFAULT_BASELINES = [b for b in BASELINES if b not in ("xla_int4_pc", *ACT_BASELINE.values())]
CALL_BYTES = 256 << 20  # weight bytes streamed per timed jit call (--call-mb)
PEAK_FLOPS = 790e12     # H200 dense fp16, measured (the floor's compute term)
# a baseline's max error / max |reference| above this is a wrong product, not rounding: a mispacked weight
# (nibble order, zero point, scale layout) gives O(1); gemlite's split-K kernels add fp16 partial sums
# atomically (4e-3 at K = 4096 through Triton's interpreter, growing about as sqrt(K))
RELERR_SUSPECT = 5e-2


def copies_for(nbytes: int) -> int:
    """weight_copies.copies_for at this run's --call-mb."""
    return weight_copies.copies_for(nbytes, CALL_BYTES)


SAMPLE_S = 0.02  # GPU time per timing sample: the dispatch of the first call and the final sync are < 1% of it


def time_jit(fn, args, per_call: int, repeats: int) -> dict:
    """Median / p10 / p90 microseconds of one op over `repeats` samples; a sample is enough back-to-back
    calls of `fn` for SAMPLE_S of GPU time (asynchronous dispatch: the host runs ahead of the GPU), then
    one sync, so the fixed dispatch + sync cost (tens of us) is amortized over the whole sample."""
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    calls = int(min(500, max(4, math.ceil(SAMPLE_S / max(time.perf_counter() - t0, 1e-6)))))
    ts, hs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        t1 = time.perf_counter()
        jax.block_until_ready(out)
        ts.append((time.perf_counter() - t0) * 1e6 / (per_call * calls))
        hs.append((t1 - t0) * 1e6 / (per_call * calls))
    ts = np.asarray(ts)
    # host_us: the dispatch loop's time per op; near `us`, the host (XLA's per-op path) bounds the op
    return dict(us=float(np.median(ts)), p10=float(np.percentile(ts, 10)), p90=float(np.percentile(ts, 90)),
                host_us=float(np.median(hs)))


GPU_TIME = True  # --no-gpu-time: skip the profiler traces (GPU backends only)


def trace_device_spans(run) -> list[tuple[float, float, str]] | None:
    """(start us, end us, name) of every device-stream record (CUPTI kernels / copies) in a profiler trace
    of run(), sorted by start; None without device records."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            run()
        paths = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
        if not paths:
            return None
        with gzip.open(paths[0]) as fh:
            trace = json.load(fh)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") in ("process_name", "thread_name")}
    streams = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
               and names.get((e["pid"], None), "").startswith("/device:GPU") and "Stream" in e["args"]["name"]}
    spans = sorted((e["ts"], e["ts"] + e["dur"], e.get("name", "")) for e in events
                   if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in streams)
    if not spans:
        device_threads = sorted({n for (pid, tid), n in names.items()
                                 if tid is not None and names.get((pid, None), "").startswith("/device:GPU")})
        if device_threads:
            print("trace_device_spans: no stream records among the device threads", device_threads, flush=True)
        return None
    return spans


def device_spans(fn, args, calls: int = 4):
    """trace_device_spans of `calls` back-to-back calls of fn (warmed up first)."""
    jax.block_until_ready(fn(*args))

    def run():
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
    return trace_device_spans(run)


def busy_us(spans) -> float:
    """The union of the spans' intervals (us): time the GPU was running anything."""
    busy, end = 0.0, -math.inf
    for t0, t1, _ in spans:
        if t1 > end:
            busy += t1 - max(t0, end)
            end = t1
    return busy


def gpu_busy_us(fn, args, ops: int, calls: int = 4) -> float | None:
    """GPU busy time per op of one timed function: its own trace (device_spans), busy_us / ops run."""
    spans = device_spans(fn, args, calls)
    return busy_us(spans) / (calls * ops) if spans else None


GAP_S = 0.005  # idle time between two functions inside one batched trace


def gpu_busy_batch(items: dict, calls: int = 4) -> dict:
    """{name: GPU busy us per op} for items {name: (fn, args, ops)} from ONE profiler trace (a trace costs
    about a second; one per op would dominate a sweep): each function's calls run back to back, then a
    sync and GAP_S idle; the device records split at every gap longer than GAP_S / 2, and the k-th group
    belongs to the k-th function. Where the groups do not match the functions one to one (a stray record
    or a stall inside a function), each function gets its own trace instead."""
    for fn, args, _ in items.values():
        jax.block_until_ready(fn(*args))

    def run():
        for fn, args, _ in items.values():
            for _ in range(calls):
                out = fn(*args)
            jax.block_until_ready(out)
            time.sleep(GAP_S)
    spans = trace_device_spans(run)
    if not spans:
        return {}
    groups, cur = [], [spans[0]]
    for prev_end, s in zip(np.maximum.accumulate([sp[1] for sp in spans]), spans[1:]):
        if s[0] - prev_end > GAP_S * 1e6 / 2:
            groups.append(cur)
            cur = []
        cur.append(s)
    groups.append(cur)
    if len(groups) != len(items):
        print(f"  gpu_busy_batch: {len(groups)} record groups for {len(items)} functions; one trace each",
              flush=True)
        return {name: gpu_busy_us(fn, args, ops, calls) for name, (fn, args, ops) in items.items()}
    return {name: busy_us(g) / (calls * ops) for (name, (_, _, ops)), g in zip(items.items(), groups)}


def copy_bandwidth() -> float:
    """HBM TB/s of a device copy (2 GiB on a GPU), counting read + write (float32: XLA vectorizes it)."""
    x = jnp.zeros((2**29 if jax.default_backend() == "gpu" else 2**24,), jnp.float32) + 1
    f = jax.jit(lambda x: x * 2.0)
    t = time_jit(f, (x,), 1, 20)["us"]
    return 2 * x.nbytes / (t * 1e-6) / 1e12


def rotation(fn, A, ws):
    """(jitted f, its args, ops per call): one fn(a, *w) per weight copy in ws, each with its own activations."""
    n = len(ws)
    if jnp.issubdtype(A.dtype, jnp.integer):
        As = [A + jnp.asarray(j, A.dtype) for j in range(n)]   # wraps: the same full-range statistics
    else:
        As = [A * (1 + 1e-3 * j) for j in range(n)]
    return jax.jit(lambda As, ws: [fn(As[j], *ws[j]) for j in range(n)]), (As, ws), n


TRACE = False  # --trace: print each timed op's kernels and the idle gaps between them (profiler trace)


def measure(item, repeats: int) -> dict:
    f, args, n = item
    r = time_jit(f, args, n, repeats)
    if TRACE:
        print(f"  {r['us']:.2f} us per op, host dispatch {r['host_us']:.2f} us per op, {n} ops per call", flush=True)
        print_timeline(f, args, n)
    return r


def print_timeline(fn, args, ops: int, calls: int = 4):
    """Where an op's wall time goes: the median duration of each kernel it launches, the median idle
    gap between records inside a jit call, and the idle time between calls, per op."""
    spans = device_spans(fn, args, calls)
    if not spans:
        return
    per_name: dict[str, list[float]] = {}
    for t0, t1, name in spans:
        per_name.setdefault(name[:60], []).append(t1 - t0)
    gaps = sorted(max(0.0, b[0] - a[1]) for a, b in zip(spans, spans[1:]))
    # the calls - 1 largest gaps are taken as the gaps between calls, the rest as gaps inside a call
    inner, between = gaps[:len(gaps) - (calls - 1)], gaps[len(gaps) - (calls - 1):]
    print(f"  trace: {len(spans) / calls:.0f} records per call of {ops} ops; gap inside a call median "
          f"{np.median(inner) if inner else 0:.2f} us (sum per op {sum(inner) / (calls * ops):.2f}); "
          f"between calls {', '.join(f'{g:.1f}' for g in between)} us", flush=True)
    for name, ds in sorted(per_name.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {len(ds) / calls:5.1f}/call  median {np.median(ds):8.2f} us  {name}", flush=True)


def bitblas_config(M, N, K, fmt_name):
    W_dtype, group, adt = format_spec(fmt_name)
    quantized_a = adt in ACT_BASELINE
    return bj.MatmulConfig(M=M, N=N, K=K, A_dtype=adt, W_dtype=W_dtype, accum_dtype="int32" if adt == "int8" else "float32",
                           out_dtype="float16" if quantized_a else adt, group_size=group, with_scaling=True)


class Weights:
    """Random arrays made on the device (jax.random), and the weight copies of the current layer shape,
    made once and shared by every M: on the host, drawing and packing a 70B-class layer's weight took
    20-40 s per format, for each (shape, M)."""

    def __init__(self, seed: int = 0):
        self.key = jax.random.key(seed)
        self.shape = None
        self.copies: dict = {}

    def next_key(self):
        self.key, k = jax.random.split(self.key)
        return k

    def for_shape(self, name: str, N: int, K: int, make):
        """make() once per (name, N, K); the cache holds one layer shape at a time."""
        if self.shape != (N, K):
            self.shape, self.copies = (N, K), {}
        if name not in self.copies:
            self.copies[name] = make()
        return self.copies[name]

    def normal(self, shape, dtype):
        return jax.random.normal(self.next_key(), shape, jnp.float32).astype(dtype)

    def uniform(self, shape, lo, hi, dtype):
        return jax.random.uniform(self.next_key(), shape, jnp.float32, lo, hi).astype(dtype)

    def integers(self, shape, lo, hi_inclusive, dtype=jnp.int32):
        return jax.random.randint(self.next_key(), shape, lo, hi_inclusive + 1, jnp.int32).astype(dtype)


def bitblas_item(cfg, fmt_name, weights: Weights):
    """(rotation item, weight bytes per op) of bitblas_jax's Matmul for cfg (random values and scales)."""
    mm = bj.Matmul(cfg)
    N, K, adt = cfg.N, cfg.K, cfg.A_dtype
    held = fmt_name.endswith(HELD)
    if held and not mm.holds_group_terms:
        raise ValueError(f"{fmt_name}: this config holds no group terms (Matmul.holds_group_terms)")

    def make():
        values = _values(weights, cfg.format, N, K)
        try:
            W = mm.transform_weight(values)   # packed on the device
        except Exception as e:  # noqa: BLE001 - the host packing is slow but the other path
            print(f"  {fmt_name}: transform_weight on the device failed ({type(e).__name__}: {e}); "
                  "packing on the host", flush=True)
            W = mm.transform_weight(np.asarray(values))
        S = weights.uniform((N, cfg.num_groups), 0.5e-2, 1.5e-2, cfg.scale_dtype)
        wbytes = W.nbytes + S.nbytes
        # distinct buffers, same statistics; held: each copy's group terms beside it
        copies = [(W + jnp.uint8(i), S * (1 + i)) for i in range(copies_for(wbytes))]
        if held:
            copies = [(w, s, mm.group_terms(s)) for w, s in copies]
        return copies, int(wbytes)
    ws, wbytes = weights.for_shape("bitblas:" + fmt_name, N, K, make)
    if cfg.quantized_activations:   # already quantized (quantize_activations is the caller's, once per layer input)
        A = (weights.integers((cfg.M, K), -128, 127, jnp.int8) if adt == "int8"
             else weights.normal((cfg.M, K), bj.formats.FP8_NUMPY[adt]))
        a_scale = weights.uniform((cfg.M,), 0.5e-2, 1.5e-2, jnp.float32)
        return rotation(lambda a, w, s: mm(a, w, scale=s, a_scale=a_scale), A, ws), wbytes
    A = weights.normal((cfg.M, K), adt)
    if held:
        return rotation(lambda a, w, s, t: mm(a, w, scale=s, group_terms=t), A, ws), wbytes
    return rotation(lambda a, w, s: mm(a, w, scale=s), A, ws), wbytes


def plan_name(cfg, M: int) -> str:
    """The kernel bitblas_jax runs for this call: the GPU plan (gpu_plan.plan_cuda, as the dispatcher asks
    it), or "cpu" for the CPU handler."""
    if jax.default_backend() != "gpu":
        return "cpu"
    try:
        from bitblas_jax.gpu_plan import plan_cuda, quantized_activation_kernel, stream_k
        if cfg.quantized_activations:
            return quantized_activation_kernel(cfg.A_dtype, cfg.W_dtype, cfg.mode, cfg.resolved_group_size, M, cfg.K)
        p = plan_cuda(M, cfg.N, cfg.K, cfg.W_dtype, cfg.A_dtype, cfg.accum_dtype, cfg.out_dtype, cfg.mode,
                      cfg.resolved_group_size)
    except Exception as e:  # noqa: BLE001 - the row still has its timings
        return f"? ({type(e).__name__})"
    if p.kernel == "dequantize_then_dot":
        return p.kernel
    return (f"{p.kernel} t{p.tile}" + (f" sk{p.split_k}" if p.split_k > 1 else "")
            + (" stream-K" if stream_k(p) else ""))


def _values(weights: Weights, fmt, N, K):
    """Element values [N, K] of format fmt on the device (transform_weight's input)."""
    if fmt.kind == "fp8":
        return weights.normal((N, K), bj.formats.FP8_NUMPY[fmt.name])
    if fmt.is_integer:
        lo, hi = fmt.value_range
        return weights.integers((N, K), lo, hi) if fmt.bits > 1 else 2 * weights.integers((N, K), 0, 1) - 1
    return weights.integers((N, K), 0, 15, jnp.uint8)


def xla_dense_item(M, N, K, dtype, weights: Weights):
    ws = weights.for_shape(f"xla:{jnp.dtype(dtype).name}", N, K, lambda: (
        lambda W: [(W + i,) for i in range(copies_for(W.nbytes))])(weights.normal((N, K), dtype)))
    A = weights.normal((M, K), dtype)
    return rotation(lambda a, w: a @ w.T, A, ws)


def xla_int4_item(M, N, K, group, weights: Weights):
    """XLA's own path: jnp.int4 weight dequantized inside jit (per-channel or grouped), bf16."""
    G = 1 if group == -1 else K // group

    def f(a, w, s):
        if group == -1:
            return a @ (w.astype(jnp.bfloat16) * s).T
        wd = (w.reshape(N, G, group).astype(jnp.bfloat16) * s[..., None]).reshape(N, K)
        return a @ wd.T

    def make():
        Wi = weights.integers((N, K), -8, 7, jnp.int4)
        S = weights.uniform((N, G), 0.5e-2, 1.5e-2, jnp.bfloat16)
        shift = jax.jit(lambda w, i: ((w.astype(jnp.int8) + 8 + i) % 16 - 8).astype(jnp.int4))  # distinct buffers
        return [(shift(Wi, i), S * (1 + i)) for i in range(copies_for(N * K // 2))]
    ws = weights.for_shape(f"xla_int4:{group}", N, K, make)
    A = weights.normal((M, K), jnp.bfloat16)
    return rotation(f, A, ws)


def xla_int8_item(M, N, K, weights: Weights):
    """XLA's int8 dot: int8 x int8 -> int32 (cuBLASLt IMMA where XLA picks it), no epilogue."""
    def make():
        W = weights.integers((N, K), -128, 127, jnp.int8)
        return [(W + jnp.int8(i),) for i in range(copies_for(N * K))]
    ws = weights.for_shape("xla_int8", N, K, make)
    A = weights.integers((M, K), -128, 127, jnp.int8)
    return rotation(lambda a, w: jax.lax.dot_general(a, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32),
                    A, ws)


def xla_fp8_item(M, N, K, weights: Weights):
    """XLA's float8 dot: e4m3 x e4m3 -> float32 (cuBLASLt's fp8 GEMM where XLA picks it), no epilogue."""
    f8 = bj.formats.FP8_NUMPY["float8_e4m3fn"]
    ws = weights.for_shape("xla_fp8", N, K, lambda: [(weights.normal((N, K), f8),) for _ in range(copies_for(N * K))])
    A = weights.normal((M, K), f8)
    return rotation(lambda a, w: jax.lax.dot_general(a, w, (((1,), (1,)), ((), ())),
                                                     preferred_element_type=jnp.float32), A, ws)


def xla_item(name, M, N, K, weights: Weights):
    if name == "xla_int8":
        return xla_int8_item(M, N, K, weights)
    if name == "xla_fp8":
        return xla_fp8_item(M, N, K, weights)
    if name in ("fp16", "bf16"):
        return xla_dense_item(M, N, K, jnp.float16 if name == "fp16" else jnp.bfloat16, weights)
    return xla_int4_item(M, N, K, 128 if name == "xla_int4_g128" else -1, weights)


def _ratio(base, ours):
    return base / ours if base and ours else None


def gemlite_counterpart(fmt_name) -> str | None:
    """The gemlite baseline of the same weight bits (4-bit rows: A16W4, 8-bit rows: A16W8); none for
    quantized activations."""
    if format_spec(fmt_name)[2] in ACT_BASELINE:
        return None
    bits = bj.formats.get_format(format_spec(fmt_name)[0]).bits
    return {4: "gemlite_w4", 8: "gemlite_w8"}.get(bits)


def make_row(N, K, M, fmt_name, plan, r, wbytes, base, bw):
    """One table row: bitblas_jax's times for (shape, M, format), floor, and the ratios against every
    baseline of the same (shape, M) (baseline time / ours: above 1 is faster than the baseline)."""
    floor_us = max((wbytes + 2 * (M * K + M * N)) / (bw * 1e12), 2 * M * N * K / PEAK_FLOPS) * 1e6
    row = dict(N=N, K=K, M=M, format=fmt_name, plan=plan, **r, weight_bytes=wbytes, floor_us=floor_us,
               weight_tbps=wbytes / (r["us"] * 1e-6) / 1e12, **base)
    row["pct_copy_bw"] = 100 * row["weight_tbps"] / bw
    if r.get("gpu_us"):
        row["pct_copy_bw_gpu"] = 100 * wbytes / (r["gpu_us"] * 1e-6) / 1e12 / bw
    bits = bj.formats.get_format(format_spec(fmt_name)[0]).bits
    gemlite = gemlite_counterpart(fmt_name)
    act_base = ACT_BASELINE.get(format_spec(fmt_name)[2])
    for key, b in (("fp16", "fp16"), ("bf16", "bf16"), ("xla_int4", "xla_int4_g128"),
                   ("xla_int8", "xla_int8" if act_base == "xla_int8" else None),
                   ("xla_fp8", "xla_fp8" if act_base == "xla_fp8" else None),
                   ("torch_int4", "torch_int4" if bits == 4 else None), ("gemlite", gemlite)):
        if b is None:
            continue
        for suffix, ours in (("", r["us"]), ("_gpu", r.get("gpu_us"))):
            x = _ratio(base.get(b + suffix), ours)
            if x is not None:
                row[f"x_{key}{suffix}"] = x
    if gemlite:
        row["gemlite_baseline"] = gemlite
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="3 big layers + a small one, 4 M (gpu_check.sh)")
    p.add_argument("--shapes", default=None, help="e.g. 8192x8192,28672x8192 (N x K), or 'all' (SHAPES)")
    p.add_argument("--Ms", default=None, help="e.g. 1,16,128")
    p.add_argument("--formats", default=None,
                   help=",".join(FORMATS) + f"; each + {HELD!r}: with held group terms (Matmul.group_terms)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES), help=",".join(BASELINES))
    p.add_argument("--repeats", type=int, default=None, help="samples per op (default 10; 3 on a CPU)")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.png")
    p.add_argument("--no-torch", action="store_true", help="no PyTorch baselines (tinygemm, gemlite)")
    p.add_argument("--fp16-baseline-only", action="store_true",
                   help="time only the XLA fp16 dot besides bitblas_jax (A/B of plan rules)")
    p.add_argument("--gpu-time", action="store_true", help="(the default on a GPU)")
    p.add_argument("--no-gpu-time", action="store_true", help="no profiler traces: wall time only")
    p.add_argument("--trace", action="store_true", help="print each op's kernels and idle gaps (profiler trace)")
    p.add_argument("--call-mb", type=int, default=256, help="weight MB streamed per jit call")
    p.add_argument("--gemlite-config", default=torch_baselines.GEMLITE_H100_CONFIG,
                   help="gemlite autotune cache to load (default: the H100 file gemlite ships)")
    p.add_argument("--gemlite-autotune", default="bounded", choices=("bounded", "fast", "max"),
                   help="gemlite's autotune breadth for keys its cache lacks (torch_baselines.py: bounded = 2 "
                        "configs per GEMM kernel, 12-17 per GEMV kernel; fast = gemlite's own default)")
    p.add_argument("--gemlite-save", default=None,
                   help="write gemlite's autotune results (cached + tuned in this run) here, for --gemlite-config")
    p.add_argument("--torch-timeout", type=float, default=180.0,
                   help="seconds one torch-side baseline may take at one (shape, M) (gemlite's autotune and "
                        "compiles included) before its process is killed and the baseline given up")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="start no (shape, M) that would end past this many minutes from the process start "
                        "(estimate: the last time of the same M); keeps a sweep inside a 10-minute device command")
    p.add_argument("--replot", default=None,
                   help="no measuring: print the tables of OUT.json files (comma-separated stems, rows joined in "
                        "order) and write their plot (and joined JSON) to --out, or next to the first")
    p.add_argument("--jax-cache", default=None,
                   help="JAX's persistent compilation cache in this folder (XLA's dot autotuning included): a "
                        "later run on the same machine skips the compiles (e.g. the rest of a sweep cut by --max-minutes)")
    args = p.parse_args()
    if args.replot:
        return replot(args.replot.split(","), args.out)
    if args.jax_cache:
        jax.config.update("jax_compilation_cache_dir", args.jax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    global GPU_TIME, TRACE, CALL_BYTES
    on_gpu = jax.default_backend() == "gpu"
    GPU_TIME, TRACE, CALL_BYTES = on_gpu and not args.no_gpu_time, args.trace, args.call_mb << 20
    if args.shapes == "all":
        shapes = SHAPES
    elif args.shapes:
        shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
    else:
        shapes = CPU_SHAPES if not on_gpu else QUICK_SHAPES if args.quick else FULL_SHAPES
    Ms = [int(m) for m in args.Ms.split(",")] if args.Ms else \
        (CPU_MS if not on_gpu else QUICK_MS if args.quick else MS)
    if args.repeats is None:
        args.repeats = 10 if on_gpu else 3
    fmts = args.formats.split(",") if args.formats else (QUICK_FORMATS if args.quick else FULL_FORMATS)
    baselines = ["fp16"] if args.fp16_baseline_only else args.baselines.split(",")
    if args.no_torch:
        baselines = [b for b in baselines if b not in torch_baselines.NAMES]
    for f in fmts:   # the XLA dot of each quantized activation type that runs (issue 29)
        act_base = ACT_BASELINE.get(FORMATS.get(f.removesuffix(HELD), ("", 0, ""))[2])
        if act_base and act_base not in baselines and not args.fp16_baseline_only:
            baselines.append(act_base)
    unknown = sorted({f for f in fmts if f.removesuffix(HELD) not in FORMATS}) + \
        sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise SystemExit(f"unknown formats / baselines: {unknown}; formats: {list(FORMATS)}, baselines: {BASELINES}")
    torch_names = [b for b in baselines if b in torch_baselines.NAMES]
    worker = None
    if torch_names and not on_gpu:
        print(f"backend {jax.default_backend()}: skipping {', '.join(torch_names)} (CUDA only)", flush=True)
        torch_names = []
    elif torch_names:
        worker = torch_baselines.Worker(CALL_BYTES, args.gemlite_config, args.gemlite_autotune,
                                        any(b.startswith("gemlite") for b in torch_names), args.torch_timeout)
        info = worker.hello()
        print("torch baselines (own process):", info, flush=True)
        if info.get("error") or not info.get("cuda"):
            print(f"no torch with a CUDA GPU: skipping {', '.join(torch_names)}", flush=True)
            torch_names = []
        elif "gemlite_error" in info:
            print(f"gemlite not usable: skipping {', '.join(b for b in torch_names if b.startswith('gemlite'))}",
                  flush=True)
            torch_names = [b for b in torch_names if not b.startswith("gemlite")]
        elif "gemlite" in info:
            print(f"gemlite {info['gemlite']} (third_party), autotune cache {args.gemlite_config}, autotune "
                  f"breadth for other keys: {args.gemlite_autotune}", flush=True)
    if not on_gpu:
        print(f"backend {jax.default_backend()}: smoke run (no GPU time)", flush=True)

    weights = Weights()
    dev = jax.devices()[0]
    bw = copy_bandwidth()
    print(f"device {dev.device_kind}; measured copy bandwidth {bw:.2f} TB/s; bitblas_jax from "
          f"{os.path.dirname(bj.__file__)}; jax {jax.__version__}", flush=True)
    tree = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bitblas_jax")
    if os.path.realpath(os.path.dirname(bj.__file__)) != os.path.realpath(tree):
        print(f"WARNING: this measures the bitblas_jax installed at {os.path.dirname(bj.__file__)}, not {tree} "
              "(pip install -e . in this tree first)", flush=True)
    if on_gpu and not _has_cuda_kernels():
        print("WARNING: bitblas_jax was built without its CUDA kernels: its rows will fail", flush=True)
    rows, base_rows, skipped, seen_errors = [], [], [], set()
    point_s: dict[int, float] = {}   # M -> seconds its last (shape, M) took: the estimate for the next
    meta = dict(device=dev.device_kind, copy_tbps=bw, jax=jax.__version__, formats=fmts, baselines=baselines,
                repeats=args.repeats, call_mb=args.call_mb, gemlite_autotune=args.gemlite_autotune,
                gemlite_config=os.path.basename(args.gemlite_config or ""), max_minutes=args.max_minutes,
                bitblas_jax=os.path.dirname(bj.__file__))
    deadline = T0 + 60 * args.max_minutes
    signal.signal(signal.SIGTERM, _raise_cut)   # the device command's time limit: write what was measured
    cut = stop = False
    try:
        for (N, K) in shapes:
            t_shape = time.perf_counter()
            for M in Ms:
                t0 = time.perf_counter()
                if t0 + point_s.get(M, max(point_s.values(), default=0.0)) > deadline:
                    skipped.append((N, K, M))
                    continue
                items, res, errors = {}, {}, {}
                for name in (b for b in baselines if b in XLA_BASELINES):
                    item = _attempt(name, errors, lambda: xla_item(name, M, N, K, weights))
                    r = item and _attempt(name, errors, lambda: measure(item, args.repeats))
                    if r:
                        items[name], res[name] = item, r
                cfgs, wbytes = {}, {}
                for name in fmts:
                    cfg = bitblas_config(M, N, K, name)
                    made = _attempt("bitblas:" + name, errors, lambda: bitblas_item(cfg, name, weights))
                    r = made and _attempt("bitblas:" + name, errors, lambda: measure(made[0], args.repeats))
                    if r:
                        items["bitblas:" + name], wbytes[name], res["bitblas:" + name], cfgs[name] = *made, r, cfg
                if GPU_TIME and items:
                    for name, g in (_attempt("gpu_time", errors, lambda: gpu_busy_batch(items)) or {}).items():
                        if g:
                            res[name]["gpu_us"] = g
                items.clear()   # this M's activations and outputs, before the torch side allocates
                base = {k + "_error": v for k, v in errors.items()}
                for name in (b for b in baselines if b in XLA_BASELINES and b in res):
                    base[name] = res[name]["us"]
                    if res[name].get("gpu_us"):
                        base[name + "_gpu"] = res[name]["gpu_us"]
                if not res:
                    base_rows.append(dict(N=N, K=K, M=M, **base))
                    print(_fmt_base(base_rows[-1], seen_errors), flush=True)
                    print("no JAX op ran at this point: the run stops (a CUDA error leaves the context unusable)",
                          flush=True)
                    stop = True
                    break
                if worker is not None:
                    base.update(worker.run(M, N, K, torch_names, args.repeats, SAMPLE_S))
                base_rows.append(dict(N=N, K=K, M=M, **base))
                print(_fmt_base(base_rows[-1], seen_errors), flush=True)
                for name in (f for f in fmts if "bitblas:" + f in res):
                    row = make_row(N, K, M, name, plan_name(cfgs[name], M), res["bitblas:" + name], wbytes[name],
                                   base, bw)
                    rows.append(row)
                    print(_fmt_row(row), flush=True)
                point_s[M] = time.perf_counter() - t0
                if args.out:  # after every (shape, M): a run cut short keeps what it measured
                    _write_json(args.out, meta, rows, base_rows, skipped, T0)
            print(f"-- {N}x{K}: {time.perf_counter() - t_shape:.0f} s (run {time.perf_counter() - T0:.0f} s)",
                  flush=True)
            if stop:
                break
    except (KeyboardInterrupt, RunCut) as e:
        print(f"\nrun cut ({type(e).__name__}) at {time.perf_counter() - T0:.0f} s: writing what was measured",
              flush=True)
        cut = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print()
        print(_table(rows))
        print()
        print(_base_table(base_rows))
        if skipped:
            print(f"\nnot run (--max-minutes {args.max_minutes}): {_fmt_skipped(skipped)}; run them with --shapes / --Ms")
        print(f"\nrun time {time.perf_counter() - T0:.0f} s", flush=True)
        if args.out:
            _write_json(args.out, meta, rows, base_rows, skipped, T0)
            _plot(rows, args.out + ".png")
        if worker is not None and cut:
            worker.stop()   # it may be inside a baseline; the time limit's kill follows the signal
        elif worker is not None:
            if args.gemlite_save and any(b.startswith("gemlite") for b in torch_names):
                worker.save_gemlite(args.gemlite_save)
            worker.close()
    if cut:
        raise SystemExit(143)
    if stop:
        raise SystemExit(1)


def replot(stems: list[str], out: str | None):
    """The tables and plot of runs already written (a run killed before its end, or runs split across
    device commands): rows and baselines of the JSON files in order, meta of the first."""
    runs = []
    for stem in stems:
        with open(stem + ".json") as f:
            runs.append(json.load(f))
    rows = [r for d in runs for r in d["rows"]]
    base_rows = [b for d in runs for b in d["baselines"]]
    print(_table(rows))
    print()
    print(_base_table(base_rows))
    not_run = [tuple(x) for d in runs for x in d.get("not_run", [])
               if not any((b["N"], b["K"], b["M"]) == tuple(x) for b in base_rows)]
    if not_run:
        print(f"\nnot run: {_fmt_skipped(not_run)}")
    out = out or stems[0]
    if len(runs) > 1:
        meta = {k: v for k, v in runs[0].items() if k not in ("rows", "baselines", "not_run", "run_s")}
        meta["joined_from"] = [dict(stem=os.path.basename(s), run_s=d.get("run_s")) for s, d in zip(stems, runs)]
        with open(out + ".json", "w") as f:
            json.dump(dict(meta, not_run=not_run, rows=rows, baselines=base_rows), f, indent=1)
    _plot(rows, out + ".png")


def _has_cuda_kernels() -> bool:
    try:
        from bitblas_jax import _ext
        return bool(_ext.has_cuda())
    except Exception:  # noqa: BLE001 - an extension without the query
        return False


def _attempt(what: str, errors: dict, fn):
    """fn(), or None with errors[what] set: one op's failure (a compile error, an out-of-memory, a plan
    that raises) costs its column at this (shape, M), not the run."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        errors[what] = f"{type(e).__name__}: {e}"[:300]
        return None


class RunCut(Exception):
    """SIGTERM (the time limit of the command running the benchmark)."""


def _raise_cut(signum, frame):
    raise RunCut()


def _fmt_skipped(skipped) -> str:
    """'NxK (all M)' for a shape none of whose M ran, else 'NxK M=a,b'."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for N, K, M in skipped:
        by_shape.setdefault((N, K), []).append(M)
    return ", ".join(f"{N}x{K} M={','.join(map(str, ms))}" for (N, K), ms in by_shape.items())


def _write_json(out, meta, rows, base_rows, skipped, t0):
    """OUT.json: meta, run_s, not_run ([N, K, M] not measured for --max-minutes), rows, baselines; written
    to a temporary name and renamed, so a kill while writing leaves the previous complete file."""
    with open(out + ".json.tmp", "w") as f:
        json.dump(dict(meta, run_s=time.perf_counter() - t0, not_run=skipped, rows=rows,
                       baselines=base_rows), f, indent=1)
    os.replace(out + ".json.tmp", out + ".json")


def _f(x, fmt="{:.2f}"):
    return "-" if x is None else fmt.format(x)


def _fmt_row(r):
    return (f"{r['N']:>5}x{r['K']:<5} M={r['M']:<4} {r['format']:<11} {r['plan']:<22} {r['us']:8.1f}us "
            f"[{r['p10']:.1f}-{r['p90']:.1f}] gpu {_f(r.get('gpu_us'), '{:.1f}')}us floor {r['floor_us']:6.1f} "
            f"{_f(r.get('pct_copy_bw_gpu'), '{:.0f}')}% BW(gpu) | x fp16 {_f(r.get('x_fp16'))}/"
            f"{_f(r.get('x_fp16_gpu'))}  x xla_int4 {_f(r.get('x_xla_int4'))}/{_f(r.get('x_xla_int4_gpu'))}  "
            f"x tinygemm {_f(r.get('x_torch_int4'))}/{_f(r.get('x_torch_int4_gpu'))}  "
            f"x gemlite {_f(r.get('x_gemlite'))}/{_f(r.get('x_gemlite_gpu'))}  "
            f"x xla_int8 {_f(r.get('x_xla_int8'))}/{_f(r.get('x_xla_int8_gpu'))}  "
            f"x xla_fp8 {_f(r.get('x_xla_fp8'))}/{_f(r.get('x_xla_fp8_gpu'))}  (wall/gpu)")


BASE_COLUMNS = [("fp16", "XLA fp16"), ("bf16", "XLA bf16"), ("xla_int4_g128", "XLA int4 g128"),
                ("xla_int4_pc", "XLA int4 pc"), ("xla_int8", "XLA int8"), ("xla_fp8", "XLA fp8"), ("torch_bf16", "torch bf16"),
                ("torch_int4", "tinygemm"),
                ("gemlite_w4", "gemlite w4"), ("gemlite_w8", "gemlite w8")]


def _base_cell(b, key):
    if key + "_error" in b:
        return "error"
    if key not in b:
        return "-"
    cell = f"{b[key]:.1f} / {_f(b.get(key + '_gpu'), '{:.1f}')}"
    return cell + (f" ({b[key + '_cfg']})" if key + "_cfg" in b else "")


def _fmt_base(b, seen_errors: set | None = None):
    """One line of baseline times; then its errors (each message once per run where seen_errors is given)
    and any suspect output check."""
    cells = "  ".join(f"{label} {_base_cell(b, key)}" for key, label in BASE_COLUMNS if key in b or key + "_error" in b)
    new_errs = [f"{k}: {v}" for k, v in b.items() if k.endswith("error")]
    if seen_errors is not None:
        new_errs = [e for e in new_errs if e not in seen_errors]
        seen_errors.update(new_errs)
    errs = "; ".join(new_errs +
                     [f"{k} = {v:.3g}: this baseline does not compute the product it is given (mispacked?)"
                      for k, v in b.items() if k.endswith("_relerr") and v > RELERR_SUSPECT])
    return f"{b['N']:>5}x{b['K']:<5} M={b['M']:<4} baselines us (wall / gpu): {cells}" + (f"\n  {errs}" if errs else "")


def _table(rows):
    head = ("| N x K | M | format | plan | us | GPU us | floor us | % copy BW (GPU) | x fp16 | x fp16 (GPU) | "
            "x bf16 (GPU) | x XLA int4 | x XLA int4 (GPU) | x tinygemm | x tinygemm (GPU) | x gemlite | "
            "x gemlite (GPU) | x XLA int8 | x XLA int8 (GPU) | x XLA fp8 | x XLA fp8 (GPU) |")
    out = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in rows:
        out.append(f"| {r['N']}x{r['K']} | {r['M']} | {r['format']} | {r['plan']} | {r['us']:.1f} | "
                   f"{_f(r.get('gpu_us'), '{:.1f}')} | {r['floor_us']:.1f} | "
                   f"{_f(r.get('pct_copy_bw_gpu'), '{:.0f}')} | " +
                   " | ".join(_f(r.get(k)) for k in ("x_fp16", "x_fp16_gpu", "x_bf16_gpu", "x_xla_int4",
                                                      "x_xla_int4_gpu", "x_torch_int4", "x_torch_int4_gpu",
                                                      "x_gemlite", "x_gemlite_gpu", "x_xla_int8",
                                                      "x_xla_int8_gpu", "x_xla_fp8", "x_xla_fp8_gpu")) + " |")
    return "\n".join(out)


def _base_table(base_rows):
    keys = [(k, label) for k, label in BASE_COLUMNS if any(k in b or k + "_error" in b for b in base_rows)]
    out = ["Baselines, us per op (wall / GPU):", "",
           "| N x K | M | " + " | ".join(label for _, label in keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for b in base_rows:
        out.append(f"| {b['N']}x{b['K']} | {b['M']} | " + " | ".join(_base_cell(b, k) for k, _ in keys) + " |")
    errs = sorted({f"{k}: {v}" for b in base_rows for k, v in b.items() if k.endswith("error")})
    return "\n".join(out + ([""] + errs if errs else []))


def _plot(rows, path):
    if not any("x_fp16" in r for r in rows):
        print("no rows with an XLA fp16 time: no plot")
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return
    fig, ax = plt.subplots(figsize=(10, 6))
    keys = sorted({(r["N"], r["K"], r["format"]) for r in rows})
    # one colour per shape, one line style and marker per format, so every line stays distinguishable
    shapes = sorted({(N, K) for N, K, _ in keys})
    fmts = sorted({f for _, _, f in keys})
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "P")]
    for (N, K, f) in keys:
        rs = sorted((r for r in rows if (r["N"], r["K"], r["format"]) == (N, K, f) and "x_fp16" in r),
                    key=lambda r: r["M"])
        ls, mk = styles[fmts.index(f) % len(styles)]
        ax.plot([r["M"] for r in rs], [r["x_fp16"] for r in rs], marker=mk, ls=ls, lw=1.2,
                color=plt.cm.tab20(shapes.index((N, K)) % 20), label=f"{N}x{K} {f}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("speedup over XLA fp16 dot (wall time)")
    ax.set_title("bitblas_jax vs XLA fp16 dot (same run)")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
