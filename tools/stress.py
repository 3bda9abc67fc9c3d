"""Long-run stress test: many calls across shapes and plans from several threads at once, then the
memory they leave behind.

    python tools/stress.py                      # 100,000 calls on the GPU (JAX, torch, CUDA graphs, CPU)
    python tools/stress.py --calls 5000         # a short run
    python tools/stress.py --device cpu --calls 3000    # no GPU: JAX and torch threads on the CPU kernel

Workers, all running at once:
  * 4 JAX threads, each with its own jitted function per case (traced up front, the plan forced per
    case by the environment overrides where the rule would not pick the kernel wanted), on the GPU;
  * 2 torch threads, each on its own CUDA stream;
  * 1 thread replaying a CUDA graph that holds one torch call per case;
  * on the CPU kernel: 1 JAX thread and 1 torch thread (the CPU kernel splits large problems over its
    own threads, so these calls overlap inside it too).
The calls are shared out in proportion (JAX GPU 70%, torch 15%, graph 10%, CPU 5%), round robin over
each worker's cases. Every case's first result is checked against the float64 reference under the
derived bound (tests/cases.py); every 100th later result of each worker and case is checked again,
and counted when it is not bit-identical to the first (the kernels' split-K reduction is
deterministic; XLA's dot in dequantize_then_dot is not promised to be).

Memory: a warm-up (5% of the calls, the same workers) fills the compilation and allocator caches; then
device bytes in use (JAX's allocator and torch's), torch's reserved bytes (its cache) and the host RSS are
read, the other 95% run, and they are read again. PASS needs no error, every check within its bound, no
growth of the device bytes in use, and host RSS growth under --rss-slack MiB.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import threading
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

MMA = {"BITBLAS_JAX_HOPPER": "0", "BITBLAS_JAX_GEMM_MAX_M": "4096"}
GPU_CASES = [  # (format, mode, group, A dtype, accumulation, A shape, N, K, environment)
    ("int4", "scale", 128, "float16", "float32", (1, 4096), 4096, 4096, {}),            # decode
    ("nf4", "scale", 128, "bfloat16", "float32", (16, 4096), 4096, 4096, {}),           # decode, 2 n8 blocks
    ("int4", "scale", 128, "float16", "float16", (4, 4096), 4096, 4096, {}),            # decode_splitk
    ("uint2", "quantized", 32, "bfloat16", "float32", (3, 2048), 2048, 2048, {}),       # decode_splitk
    ("int4", "scale", 128, "float16", "float32", (64, 4096), 4096, 4096, {}),           # gemm_wgmma
    ("float8_e4m3fn", "scale", 128, "float16", "float32", (300, 4096), 4096, 4096, {}),  # gemm_wgmma
    ("uint4", "quantized", 128, "bfloat16", "float32", (33, 2048), 2048, 2048, MMA),    # gemm_mma
    ("int8", "scale", 128, "float16", "float32", (1000, 2048), 2048, 2048, {}),         # dequantize_then_dot
    ("fp4_e2m1", "scale", 128, "bfloat16", "float32", (2, 4, 8192), 1024, 8192, {}),    # decode, leading dims
]
CPU_CASES = [
    ("int4", "scale", 128, "float16", "float32", (16, 1024), 256, 1024, {}),    # split over the CPU kernel's threads
    ("uint2", "quantized", 32, "bfloat16", "float32", (3, 512), 64, 512, {}),
    ("float8_e5m2", "scale", -1, "bfloat16", "float32", (5, 256), 64, 256, {}),
    ("int4", "original", 64, "float16", "float16", (2, 3, 256), 128, 256, {}),
]
CHECK_EVERY = 100


class Spec:
    """One case: its data, its reference checker, the torch tensors (built lazily)."""

    def __init__(self, i, fmt, mode, g, adt, acc, a_shape, N, K, env):
        from cases import checker, make_case
        rng = np.random.default_rng(1000 + i)
        self.env = env
        self.case = make_case(rng, fmt, mode, g, adt, acc, adt, i % 2 == 0, M=int(np.prod(a_shape[:-1])),
                              N=N, K=K, a_shape=a_shape)
        self.check = checker(self.case)
        self.name = f"{fmt} {mode} g{g} A{list(a_shape)} N={N} {adt} acc={acc}"
        self.first = {}                          # worker kind -> first result (bits)
        self.lock = threading.Lock()

    def verify(self, kind: str, out: np.ndarray, stats: dict) -> None:
        """Checks a result: the first of each worker kind fully, later ones for identical bits (else fully)."""
        with self.lock:
            first = self.first.get(kind)
            if first is None:
                self.check(out)
                self.first[kind] = out.copy()
                stats["checked"] += 1
                return
        if out.tobytes() != first.tobytes():
            stats["not_identical"] += 1
            self.check(out)
        stats["checked"] += 1


def memory(jax_devices, use_torch_cuda: bool) -> dict:
    m = {}
    for d in jax_devices:
        st = d.memory_stats() or {}
        if "bytes_in_use" in st:
            m[f"jax {d.platform} bytes in use"] = st["bytes_in_use"]
    if use_torch_cuda:
        import torch
        torch.cuda.synchronize()
        m["torch cuda allocated"] = torch.cuda.memory_allocated()
        m["torch cuda reserved (cache)"] = torch.cuda.memory_reserved()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                m["host RSS"] = int(line.split()[1]) * 1024
    return m


# ---- workers --------------------------------------------------------------------------------------
def jax_worker_setup(specs, device):
    """Per case: its own jitted function (traced and compiled now, under the case's plan overrides) and
    its operands on the device."""
    import jax
    import jax.numpy as jnp
    import fuzz
    fns = []
    for s in specs:
        c = s.case
        args = [None if a is None else jax.device_put(jnp.asarray(a), device)
                for a in (c.A, c.packed(), c.scale, c.zeros, c.bias)]
        f = jax.jit(lambda A, W, sc, z, b, mm=c.mm: mm(A, W, scale=sc, zeros=z, bias=b))
        with fuzz.plan_env(s.env):
            jax.block_until_ready(f(*args))
        fns.append((s, f, args))
    return fns


def jax_loop(kind, fns, n_calls, stats):
    import jax
    last = None
    counts = {}
    for i, (s, f, args) in zip(range(n_calls), itertools.cycle(fns)):
        out = f(*args)
        k = counts[s.name] = counts.get(s.name, 0) + 1
        if k == 1 or k % CHECK_EVERY == 0:
            s.verify(kind, np.asarray(out), stats)
        elif i % 64 == 63:
            jax.block_until_ready(out)
        last = out
        stats["calls"] += 1
    if last is not None:
        jax.block_until_ready(last)


def torch_setup(specs, device):
    import torch

    from bitblas_jax.torch import ops
    from test_torch import to_torch
    import fuzz
    setups = []
    for s in specs:
        c = s.case
        with fuzz.plan_env(s.env):
            ops._plan.cache_clear()
            t = [to_torch(c.A, device), to_torch(np.asarray(c.packed()), device)] + \
                [None if x is None else to_torch(x, device) for x in (c.scale, c.zeros, c.bias)]
            call = (lambda t=t, c=c: torch.ops.bitblas_jax.matmul(
                *t, c.cfg.W_dtype, c.cfg.mode, c.cfg.group_size, c.cfg.accum_dtype, c.cfg.out_dtype))
            call()                                # the plan (per shape, cached) is fixed under s.env now
        setups.append((s, call))
    if device == "cuda":
        torch.cuda.synchronize()
    return setups


def torch_loop(kind, setups, n_calls, stats, stream=None):
    import torch

    from test_torch import to_numpy
    ctx = torch.cuda.stream(stream) if stream is not None else _nullcontext()
    counts = {}
    with ctx:
        for i, (s, call) in zip(range(n_calls), itertools.cycle(setups)):
            out = call()
            k = counts[s.name] = counts.get(s.name, 0) + 1
            if k == 1 or k % CHECK_EVERY == 0:
                s.verify(kind, to_numpy(out), stats)    # .cpu() synchronizes with this stream
            elif stream is not None and i % 64 == 63:
                stream.synchronize()
            stats["calls"] += 1
        if stream is not None:
            stream.synchronize()


def graph_setup(setups):
    """One CUDA graph holding one call per case; returns (graph, outputs)."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):                 # warm-up outside capture, as torch asks
        for _, call in setups:
            call()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        outs = [call() for _, call in setups]
    torch.cuda.synchronize()
    return g, outs


def graph_loop(kind, g, outs, setups, n_calls, stats):
    import torch

    from test_torch import to_numpy
    per = len(setups)
    replays = max(1, n_calls // per)
    for r in range(replays):
        g.replay()
        if r == 0 or (r + 1) % CHECK_EVERY == 0:
            torch.cuda.synchronize()
            for (s, _), out in zip(setups, outs):
                s.verify(kind, to_numpy(out), stats)
        stats["calls"] += per
    torch.cuda.synchronize()


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


WARM_UP_FRACTION = 0.05   # of each worker's calls, before the memory is first read


def warm_up_calls(w) -> int:
    """Whole units: a CUDA-graph replay makes one call per case."""
    u = w["unit"]
    return u * max(1, int(round(w["calls"] * WARM_UP_FRACTION / u)))


def run_phase(workers, warm_up, errors):
    """Runs every worker's warm-up calls, or the rest of its calls, in its own thread, all at once."""
    threads = []
    for w in workers:
        n = warm_up_calls(w) if warm_up else w["calls"] - warm_up_calls(w)

        def body(w=w, n=n):
            try:
                w["run"](n, w["stats"])
            except Exception:             # noqa: BLE001 - reported with the worker's name
                errors.append(f"{w['name']}: {traceback.format_exc(limit=3)}")
        threads.append(threading.Thread(target=body, name=w["name"]))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    ap.add_argument("--jax-threads", type=int, default=4)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--rss-slack", type=float, default=64.0, help="allowed host RSS growth, MiB")
    args = ap.parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    t_start = time.perf_counter()
    gpu = args.device == "gpu"
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch  # noqa: F401

            import bitblas_jax.torch  # noqa: F401
        except ImportError:
            use_torch = False
    cpu_dev = jax.devices("cpu")[0]
    gpu_dev = jax.devices("cuda")[0] if gpu else None
    main_specs = [Spec(i, *c) for i, c in enumerate(GPU_CASES if gpu else CPU_CASES)]
    cpu_specs = [Spec(100 + i, *c) for i, c in enumerate(CPU_CASES)] if gpu else main_specs
    C = args.calls
    share = {"jax": 0.70, "torch": 0.15, "graph": 0.10, "cpu": 0.05} if gpu else {"jax": 0.75, "torch": 0.25}
    if not use_torch:                            # JAX takes the torch workers' calls
        share["jax"] += share.pop("torch") + share.pop("graph", 0)
    workers = []

    def add(name, calls, run, unit=1):   # unit: calls per step of the worker (the calls are whole steps)
        workers.append({"name": name, "calls": calls // unit * unit, "run": run, "unit": unit,
                        "stats": {"calls": 0, "checked": 0, "not_identical": 0}})

    print(f"stress: {C} calls on {args.device}; setting up (tracing, compiling, references)...", flush=True)
    for t in range(args.jax_threads):
        fns = jax_worker_setup(main_specs, gpu_dev or cpu_dev)
        add(f"jax-{args.device}-{t}", int(C * share["jax"] / args.jax_threads),
            lambda n, st, fns=fns, t=t: jax_loop("jax", fns, n, st))
    if use_torch:
        import torch
        dev = "cuda" if gpu else "cpu"
        tsetups = torch_setup(main_specs, dev)
        n_torch = 2 if gpu else 1
        for t in range(n_torch):
            stream = torch.cuda.Stream() if gpu else None
            add(f"torch-{dev}-{t}", int(C * share["torch"] / n_torch),
                lambda n, st, stream=stream: torch_loop("torch", tsetups, n, st, stream))
        if gpu:
            g, outs = graph_setup(tsetups)
            add("cuda-graph", int(C * share["graph"]), lambda n, st: graph_loop("graph", g, outs, tsetups, n, st),
                unit=len(tsetups))
    if gpu:   # the CPU kernel at the same time
        cfns = jax_worker_setup(cpu_specs, cpu_dev)
        n_cpu = int(C * share["cpu"])
        add("jax-cpu", n_cpu // 2 if use_torch else n_cpu, lambda n, st: jax_loop("jax-cpu", cfns, n, st))
        if use_torch:
            csetups = torch_setup(cpu_specs, "cpu")
            add("torch-cpu", n_cpu // 2, lambda n, st: torch_loop("torch-cpu", csetups, n, st))

    workers[0]["calls"] += C - sum(w["calls"] for w in workers)   # the shares' rounding: C calls in all
    devices = [d for d in (gpu_dev, cpu_dev) if d is not None]
    errors: list[str] = []
    t0 = time.perf_counter()
    run_phase(workers, True, errors)                            # warm-up: caches filled
    gc.collect()
    before = memory(devices, gpu and use_torch)
    t1 = time.perf_counter()
    run_phase(workers, False, errors)
    gc.collect()
    time.sleep(0.5)                                             # buffers freed asynchronously
    gc.collect()
    after = memory(devices, gpu and use_torch)
    t2 = time.perf_counter()

    calls = sum(w["stats"]["calls"] for w in workers)
    print(f"\n== stress summary: {calls} calls on {args.device} in {t2 - t0:.0f} s "
          f"(warm-up {t1 - t0:.0f} s; set-up {t0 - t_start:.0f} s) ==")
    print(f"{'worker':<14}{'calls':>9}{'checked':>9}{'not bit-identical':>19}")
    for w in workers:
        st = w["stats"]
        print(f"{w['name']:<14}{st['calls']:>9}{st['checked']:>9}{st['not_identical']:>19}")
    print("memory after warm-up -> after the run (growth):")
    fails = list(errors)
    if calls != C:
        fails.append(f"{calls} calls made, {C} asked for")
    for k in before:
        grow = after.get(k, 0) - before[k]
        print(f"  {k:<30}{before[k] / 2**20:>10.1f} MiB -> {after.get(k, 0) / 2**20:>10.1f} MiB ({grow / 2**20:+.2f})")
        if k.endswith("bytes in use") or k == "torch cuda allocated":
            if grow > 0:
                fails.append(f"{k} grew by {grow} bytes")
        elif k == "host RSS" and grow > args.rss_slack * 2**20:
            fails.append(f"host RSS grew by {grow / 2**20:.1f} MiB (slack {args.rss_slack} MiB)")
    for e in errors[:10]:
        print("ERROR", e)
    print(f"{'PASS' if not fails else 'FAIL'} stress: {calls} calls, {len(errors)} errors"
          + ("" if not fails else "; " + "; ".join(f for f in fails if f not in errors)[:500]))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
