"""bitblas_jax vs XLA (fp16/bf16 dot, jnp.int4 per-channel and group-128) vs PyTorch, same run.

    python benchmarks/bench_matmul.py --quick           # a few rows (tools/gpu_check.sh)
    python benchmarks/bench_matmul.py                   # the issue's full sweep
    python benchmarks/bench_matmul.py --out results     # + results.json, results.png

Timing: every timed jit call runs the op many times (about 256 MB of weight traffic, 2 to 64 ops),
each op on its own weight copy (together > 2x the 50 MB L2, so each weight comes from HBM; a copy used
twice in one call would let XLA merge the two dots into one, or reuse one dequantized weight) and its
own activations; a sample dispatches enough calls back to back for
20 ms of GPU time and syncs once, so dispatch and sync are < 1% of it; time = wall / ops, after a
warm-up; the median over repeats is reported with its 10..90% spread.
--gpu-time adds the GPU busy time per op from a profiler trace (the union of the device streams'
CUPTI records over a few calls, divided by the ops they ran): what the kernels take without XLA's
per-op host path, for every bitblas_jax format and XLA baseline alike.
Torch: triton.testing.do_bench (flushes L2), median.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import math
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import bitblas_jax as bj

SHAPES = [(4096, 4096), (6144, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (4096, 14336),
          (8192, 8192), (10240, 8192), (28672, 8192), (8192, 28672)]
MS = [1, 4, 16, 32, 64, 128, 256, 1024, 4096]
# name -> (W_dtype, group_size, A dtype)
FORMATS = {
    "w4g128": ("int4", 128, "float16"), "w4g128-bf16": ("int4", 128, "bfloat16"),
    "w4pc": ("int4", -1, "float16"), "w8": ("int8", -1, "float16"), "w2g128": ("int2", 128, "float16"),
    "nf4g128": ("nf4", 128, "float16"), "fp4g128": ("fp4_e2m1", 128, "float16"),
    "fp8": ("float8_e4m3fn", -1, "float16"),
}
L2_BYTES = 50 * 2**20
CALL_BYTES = 256 << 20  # weight bytes streamed per timed jit call (--call-mb)


def copies_for(nbytes: int) -> int:
    """Ops per timed call, each on its own weight copy: about CALL_BYTES of weight traffic (> 2x L2),
    at least 2, at most 64."""
    return int(min(64, max(2, math.ceil(max(CALL_BYTES, 2 * L2_BYTES) / max(nbytes, 1)))))


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


GPU_TIME = False  # --gpu-time: also measure the GPU busy time per op from a profiler trace


def device_spans(fn, args, calls: int = 4) -> list[tuple[float, float, str]] | None:
    """(start us, end us, name) of every device-stream record (CUPTI kernels / copies) in a profiler trace
    of `calls` calls of `fn`, sorted by start; None without device records."""
    jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(calls):
                out = fn(*args)
            jax.block_until_ready(out)
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
            print("device_spans: no stream records among the device threads", device_threads, flush=True)
        return None
    return spans


def gpu_busy_us(fn, args, ops: int, calls: int = 4) -> float | None:
    """GPU busy time per op: the union of the device streams' activity over `calls` calls of `fn`
    (device_spans), divided by the ops they ran; None without device records."""
    spans = device_spans(fn, args, calls)
    if not spans:
        return None
    busy, end = 0.0, -math.inf
    for t0, t1, _ in spans:
        if t1 > end:
            busy += t1 - max(t0, end)
            end = t1
    return busy / (calls * ops)


def copy_bandwidth() -> float:
    """HBM TB/s of a 2 GiB device copy, counting read + write (float32: XLA vectorizes it)."""
    x = jnp.zeros((2**29,), jnp.float32) + 1
    f = jax.jit(lambda x: x * 2.0)
    t = time_jit(f, (x,), 1, 20)["us"]
    return 2 * x.nbytes / (t * 1e-6) / 1e12


def timed_rotation(fn, A, ws, repeats):
    """Median us of fn(a, *w) over one op per weight copy in ws (copies_for), each with its own activations."""
    n = len(ws)
    As = [A * (1 + 1e-3 * j) for j in range(n)]
    f = jax.jit(lambda As, ws: [fn(As[j], *ws[j]) for j in range(n)])
    r = time_jit(f, (As, ws), n, repeats)
    if GPU_TIME:
        r["gpu_us"] = gpu_busy_us(f, (As, ws), n)
    if TRACE:
        print(f"  {r['us']:.2f} us per op, host dispatch {r['host_us']:.2f} us per op, {n} ops per call", flush=True)
        print_timeline(f, (As, ws), n)
    return r


TRACE = False  # --trace: print each timed op's kernels and the idle gaps between them (profiler trace)


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


def bench_bitblas(M, N, K, W_dtype, group, adt, rng, repeats):
    cfg = bj.MatmulConfig(M=M, N=N, K=K, A_dtype=adt, W_dtype=W_dtype, accum_dtype="float32",
                          out_dtype=adt, group_size=group, with_scaling=True)
    mm = bj.Matmul(cfg)
    fmt = cfg.format
    vals = _values(rng, fmt, N, K)
    W = mm.transform_weight(vals)
    S = jnp.asarray(rng.uniform(0.5, 1.5, (N, cfg.num_groups)) * 0.01, adt)
    wbytes = W.nbytes + S.nbytes
    n = copies_for(wbytes)
    ws = [(W + jnp.uint8(i), S * (1 + i)) for i in range(n)]  # distinct buffers, same statistics
    A = jnp.asarray(rng.standard_normal((M, K)), adt)
    r = timed_rotation(lambda a, w, s: mm(a, w, scale=s), A, ws, repeats)
    r["weight_bytes"] = int(wbytes)
    return r


def _values(rng, fmt, N, K):
    if fmt.kind == "fp8":
        return rng.standard_normal((N, K)).astype(bj.formats.FP8_NUMPY[fmt.name])
    if fmt.is_integer:
        lo, hi = fmt.value_range
        return rng.integers(lo, hi + 1, (N, K), dtype=np.int32) if fmt.bits > 1 else \
            rng.choice(np.array([-1, 1]), (N, K))
    return rng.integers(0, 16, (N, K)).astype(np.uint8)


def bench_xla_dense(M, N, K, dtype, rng, repeats):
    W = jnp.asarray(rng.standard_normal((N, K)), dtype)
    n = copies_for(W.nbytes)
    ws = [(W + i,) for i in range(n)]
    A = jnp.asarray(rng.standard_normal((M, K)), dtype)
    return timed_rotation(lambda a, w: a @ w.T, A, ws, repeats)


def bench_xla_int4(M, N, K, group, rng, repeats):
    """XLA's own path: jnp.int4 weight dequantized inside jit (per-channel or grouped), bf16."""
    Wi = jnp.asarray(rng.integers(-8, 8, (N, K)), jnp.int4)
    G = 1 if group == -1 else K // group
    S = jnp.asarray(rng.uniform(0.5, 1.5, (N, G)) * 0.01, jnp.bfloat16)

    def f(a, w, s):
        if group == -1:
            return a @ (w.astype(jnp.bfloat16) * s).T
        wd = (w.reshape(N, G, group).astype(jnp.bfloat16) * s[..., None]).reshape(N, K)
        return a @ wd.T

    n = copies_for(N * K // 2)
    shift = jax.jit(lambda w, i: ((w.astype(jnp.int8) + 8 + i) % 16 - 8).astype(jnp.int4))  # distinct buffers
    ws = [(shift(Wi, i), S * (1 + i)) for i in range(n)]
    A = jnp.asarray(rng.standard_normal((M, K)), jnp.bfloat16)
    return timed_rotation(f, A, ws, repeats)


def bench_torch(M, N, K):
    """torch bf16 matmul and tinygemm int4 g128 (do_bench flushes L2)."""
    try:
        import torch
        import triton.testing
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    dev = "cuda"
    A = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
    W = torch.randn(N, K, dtype=torch.bfloat16, device=dev)
    res = {"torch_bf16": triton.testing.do_bench(lambda: A @ W.T, return_mode="median") * 1e3}
    try:
        Wq = torch.randint(0, 16, (N, K), dtype=torch.int32, device=dev)
        packed = torch.ops.aten._convert_weight_to_int4pack(((Wq[:, ::2] << 4) | Wq[:, 1::2]).to(torch.uint8), 8)
        sz = torch.randn(K // 128, N, 2, dtype=torch.bfloat16, device=dev)
        res["torch_int4"] = triton.testing.do_bench(
            lambda: torch.ops.aten._weight_int4pack_mm(A, packed, 128, sz), return_mode="median") * 1e3
    except Exception as e:  # noqa: BLE001 - API differs across torch versions
        res["torch_int4_error"] = str(e)[:120]
    return res


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="a few rows for gpu_check.sh")
    p.add_argument("--shapes", default=None, help="e.g. 8192x8192,28672x8192 (N x K)")
    p.add_argument("--Ms", default=None, help="e.g. 1,16,128")
    p.add_argument("--formats", default=None, help=",".join(FORMATS))
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None, help="write OUT.json and OUT.png")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--fp16-baseline-only", action="store_true",
                   help="time only the XLA fp16 dot besides bitblas_jax (A/B of plan rules); XLA int4 ratios nan")
    p.add_argument("--gpu-time", action="store_true", help="also the GPU busy time per op (profiler trace)")
    p.add_argument("--trace", action="store_true", help="print each op's kernels and idle gaps (profiler trace)")
    p.add_argument("--call-mb", type=int, default=256, help="weight MB streamed per jit call")
    args = p.parse_args()
    global GPU_TIME, TRACE, CALL_BYTES
    GPU_TIME, TRACE, CALL_BYTES = args.gpu_time, args.trace, args.call_mb << 20
    shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")] if args.shapes else \
        ([(4096, 4096), (8192, 8192), (28672, 8192)] if args.quick else SHAPES)
    Ms = [int(m) for m in args.Ms.split(",")] if args.Ms else ([1, 16, 128, 1024] if args.quick else MS)
    fmts = args.formats.split(",") if args.formats else (["w4g128", "w4g128-bf16", "w2g128", "w8"]
                                                         if args.quick else list(FORMATS))
    rng = np.random.default_rng(0)
    dev = jax.devices()[0]
    bw = copy_bandwidth()
    print(f"device {dev.device_kind}; measured copy bandwidth {bw:.2f} TB/s", flush=True)
    rows = []
    for (N, K) in shapes:
        for M in Ms:
            xla = {"fp16": bench_xla_dense(M, N, K, jnp.float16, rng, args.repeats)}
            if not args.fp16_baseline_only:
                xla.update({"bf16": bench_xla_dense(M, N, K, jnp.bfloat16, rng, args.repeats),
                            "xla_int4_pc": bench_xla_int4(M, N, K, -1, rng, args.repeats),
                            "xla_int4_g128": bench_xla_int4(M, N, K, 128, rng, args.repeats)})
            base = {k: v["us"] for k, v in xla.items()}
            base.update({k + "_gpu": v["gpu_us"] for k, v in xla.items() if v.get("gpu_us")})
            if not (args.no_torch or args.fp16_baseline_only):
                base.update(bench_torch(M, N, K))
            for name in fmts:
                W_dtype, g, adt = FORMATS[name]
                r = bench_bitblas(M, N, K, W_dtype, g, adt, rng, args.repeats)
                floor_us = max((r["weight_bytes"] + 2 * (M * K + M * N)) / (bw * 1e12),
                               2 * M * N * K / 790e12) * 1e6
                row = dict(N=N, K=K, M=M, format=name, **r, floor_us=floor_us, **base,
                           weight_tbps=r["weight_bytes"] / (r["us"] * 1e-6) / 1e12)
                row["pct_copy_bw"] = 100 * row["weight_tbps"] / bw
                row["x_fp16"] = base["fp16"] / r["us"]
                row["x_xla_int4"] = base.get("xla_int4_g128", math.nan) / r["us"]
                if "torch_int4" in base:
                    row["x_torch_int4"] = base["torch_int4"] / r["us"]
                if r.get("gpu_us") and base.get("fp16_gpu"):
                    row["x_fp16_gpu"] = base["fp16_gpu"] / r["gpu_us"]
                    row["pct_copy_bw_gpu"] = 100 * r["weight_bytes"] / (r["gpu_us"] * 1e-6) / 1e12 / bw
                rows.append(row)
                print(_fmt_row(row), flush=True)
            if args.out:  # after every (shape, M): a run cut short keeps what it measured
                with open(args.out + ".json", "w") as f:
                    json.dump(dict(device=dev.device_kind, copy_tbps=bw, rows=rows), f, indent=1)
    print()
    print(_table(rows))
    if args.out:
        _plot(rows, args.out + ".png")


def _fmt_row(r):
    t = f"{r['x_torch_int4']:5.2f}" if "x_torch_int4" in r else "  -  "
    g = (f"  gpu {r['gpu_us']:7.1f}us {r['pct_copy_bw_gpu']:5.1f}% x_fp16_gpu {r['x_fp16_gpu']:5.2f}"
         if "x_fp16_gpu" in r else "")
    return (f"{r['N']:>5}x{r['K']:<5} M={r['M']:<4} {r['format']:<11} {r['us']:8.1f}us "
            f"[{r['p10']:.1f}-{r['p90']:.1f}] floor {r['floor_us']:6.1f} {r['weight_tbps']:5.2f}TB/s "
            f"{r['pct_copy_bw']:5.1f}%  x_fp16 {r['x_fp16']:5.2f}  x_xla_int4 {r['x_xla_int4']:5.2f}  "
            f"x_torch_int4 {t}{g}")


def _table(rows):
    gpu = any("x_fp16_gpu" in r for r in rows)
    head = "| N x K | M | format | us | floor us | weight TB/s | % copy BW | x fp16 dot | x XLA int4 g128 | x torch int4 |"
    head += " GPU us | % copy BW (GPU) | x fp16 dot (GPU) |" if gpu else ""
    out = [head, "|" + "---|" * (13 if gpu else 10)]
    for r in rows:
        t = f"{r['x_torch_int4']:.2f}" if "x_torch_int4" in r else "-"
        line = (f"| {r['N']}x{r['K']} | {r['M']} | {r['format']} | {r['us']:.1f} | {r['floor_us']:.1f} | "
                f"{r['weight_tbps']:.2f} | {r['pct_copy_bw']:.0f} | {r['x_fp16']:.2f} | "
                f"{r['x_xla_int4']:.2f} | {t} |")
        if gpu:
            line += (f" {r['gpu_us']:.1f} | {r['pct_copy_bw_gpu']:.0f} | {r['x_fp16_gpu']:.2f} |"
                     if "x_fp16_gpu" in r else " - | - | - |")
        out.append(line)
    return "\n".join(out)


def _plot(rows, path):
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
        rs = sorted((r for r in rows if (r["N"], r["K"], r["format"]) == (N, K, f)), key=lambda r: r["M"])
        ls, mk = styles[fmts.index(f) % len(styles)]
        ax.plot([r["M"] for r in rs], [r["x_fp16"] for r in rs], marker=mk, ls=ls, lw=1.2,
                color=plt.cm.tab10(shapes.index((N, K)) % 10), label=f"{N}x{K} {f}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("speedup over XLA fp16 dot")
    ax.set_title("bitblas_jax vs XLA fp16 dot (same run)")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
