"""PyTorch shim vs torch's own kernels on GPU: int4 g128 weight, bf16 activations.

    python benchmarks/bench_torch.py                # N=K in {4096, 8192}, M in {1, 16, 128}
    python benchmarks/bench_torch.py --sizes 4096 --ms 1 16 --no-compile --json out.json

Rows per (N=K, M):
  bf16 F.linear          torch.nn.functional.linear with the dense bf16 weight (cuBLAS)
  tinygemm int4          torch.ops.aten._weight_int4pack_mm (weight from _convert_weight_to_int4pack)
  bitblas_jax int4       bitblas_jax.torch.Linear (eager: the direct path) / torch.ops.bitblas_jax.matmul (compiled)
each eager and under torch.compile(fullgraph=True). Times are triton.testing.do_bench medians
(CUDA events, L2 flushed before each call) over calls that rotate through enough weight
copies to exceed 4x a 50 MB L2, so weights always come from HBM. GB/s counts weight + scales
+ A + C bytes once per call. Where a call's host time exceeds the GPU time of do_bench's L2
flush plus the kernel (small M, compiled wrappers), the GPU waits for the host and the
median includes that wait: per-call overhead shows up there too. A second table gives the host overhead per call (µs of wall time
per call in a long loop of M=1, N=K=1024 calls, where the GPU work is tiny) and the same call
replayed from a CUDA graph (GPU time only).

Needs a CUDA GPU and bitblas_jax built with its CUDA kernels; every measurement is guarded,
so a failing row prints its error instead of stopping the run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback

import torch
import torch.nn.functional as F

L2_BYTES = 50 * 2**20
GROUP = 128


# ---- timing -----------------------------------------------------------------------------
def _do_bench(fn, rep_ms: int) -> float:
    """Median ms per call (triton.testing.do_bench, or the same recipe without triton)."""
    try:
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=max(25, rep_ms // 4), rep=rep_ms, return_mode="median"))
    except ImportError:
        pass
    flush = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda")
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    n = max(10, min(1000, int(rep_ms / max((time.perf_counter() - t0) / 5 * 1e3, 1e-3))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        flush.zero_()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    return times[len(times) // 2]


def _rotating(fn, args_list):
    """A no-argument callable that calls fn(*args) with the next set of weights each time."""
    state = [0]
    n = len(args_list)

    def call():
        i = state[0]
        state[0] = i + 1 if i + 1 < n else 0
        return fn(*args_list[i])
    return call


def _copies(bytes_per_set: int) -> int:
    return max(2, math.ceil(4 * L2_BYTES / max(bytes_per_set, 1)))


# ---- the three implementations ----------------------------------------------------------------
def _int4_problem(N, K, device):
    """Random int4 values v in [-8, 7] with per-group scales: w = v * s (symmetric), bf16."""
    v = torch.randint(-8, 8, (N, K), dtype=torch.int8)
    s = (torch.rand(N, K // GROUP) * 0.02 + 0.01).to(torch.bfloat16)
    w = (v.float() * s.float().repeat_interleave(GROUP, 1)).to(torch.bfloat16)
    return v, s, w.to(device)


def make_bitblas(v, s, N, K, device):
    import bitblas_jax.torch as bbt
    lin = bbt.Linear(K, N, A_dtype="bfloat16", W_dtype="int4", out_dtype="bfloat16", group_size=GROUP,
                     with_scaling=True, device=device)
    lin.load_and_transform_weight(v, s)
    return lin


def make_tinygemm(v, s, N, K, device, inner_k_tiles=8):
    """tinygemm packs uint4 q = v + 8 two per byte (even k in the high nibble); w = (q - 8) * s + z."""
    q = (v.to(torch.int32) + 8).to(device)
    packed_u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
    try:
        wq = torch.ops.aten._convert_weight_to_int4pack(packed_u8, inner_k_tiles)
    except RuntimeError:                     # torch < 2.5 took int32 [N, K]
        wq = torch.ops.aten._convert_weight_to_int4pack(q.to(torch.int32), inner_k_tiles)
    sz = torch.stack([s.t().contiguous(), torch.zeros_like(s.t())], dim=-1).to(device)  # [K/g, N, 2]
    return wq, sz.contiguous()


def tinygemm_mm(x, wq, sz):
    return torch.ops.aten._weight_int4pack_mm(x, wq, GROUP, sz)


def bitblas_mm(x, qweight, scales):
    return torch.ops.bitblas_jax.matmul(x, qweight, scales, None, None, "int4", "scale", GROUP,
                                        "float32", "bfloat16")


def bitblas_direct(x, qweight, scales):
    from bitblas_jax.torch.ops import matmul_impl
    return matmul_impl(x, qweight, scales, None, None, "int4", "scale", GROUP, "float32", "bfloat16")


def dense_mm(x, w):
    return F.linear(x, w)


# ---- one (N, K) --------------------------------------------------------------------------------
def bench_size(N, K, ms, rep_ms, do_compile, device, results, check=True):
    v, s, w = _int4_problem(N, K, device)
    impls = {}
    errors = {}
    try:
        lin = make_bitblas(v, s, N, K, device)
        base = (lin.qweight, lin.scales)
        n = _copies(lin.qweight.numel() + lin.scales.numel() * 2)
        impls["bitblas_jax int4"] = (bitblas_direct, bitblas_mm,
                                     [base] + [(base[0].clone(), base[1].clone()) for _ in range(n - 1)],
                                     lin.qweight.numel() + lin.scales.numel() * 2)
    except Exception as e:  # noqa: BLE001
        errors["bitblas_jax int4"] = _short(e)
    try:
        wq, sz = make_tinygemm(v, s, N, K, device)
        n = _copies(wq.numel() * wq.element_size() + sz.numel() * 2)
        impls["tinygemm int4"] = (tinygemm_mm, tinygemm_mm,
                                  [(wq, sz)] + [(wq.clone(), sz.clone()) for _ in range(n - 1)],
                                  wq.numel() * wq.element_size() + sz.numel() * 2)
    except Exception as e:  # noqa: BLE001
        errors["tinygemm int4"] = _short(e)
    n = _copies(w.numel() * 2)
    impls["bf16 F.linear"] = (dense_mm, dense_mm, [(w,)] + [(w.clone(),) for _ in range(n - 1)], w.numel() * 2)

    for M in ms:
        x = torch.randn(M, K, dtype=torch.bfloat16, device=device)
        ref = F.linear(x.float(), w.float())
        for name in ("bf16 F.linear", "tinygemm int4", "bitblas_jax int4"):
            if name in errors:
                for mode in ("eager", "compile") if do_compile else ("eager",):
                    results.append(dict(N=N, K=K, M=M, impl=name, mode=mode, error=errors[name]))
                continue
            eager_fn, op_fn, arg_sets, wbytes = impls[name]
            modes = [("eager", eager_fn)]
            if do_compile:
                modes.append(("compile", torch.compile(op_fn, fullgraph=True, dynamic=False)))
            for mode, fn in modes:
                row = dict(N=N, K=K, M=M, impl=name, mode=mode, copies=len(arg_sets))
                try:
                    out = fn(x, *arg_sets[0])
                    torch.cuda.synchronize()
                    if check:
                        err = ((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-6)).item()
                        row["rel_err"] = err
                    call = _rotating(lambda *a, _fn=fn: _fn(x, *a), arg_sets)
                    t = _do_bench(call, rep_ms)
                    row["ms"] = t
                    row["GBps"] = (wbytes + x.numel() * 2 + M * N * 2) / (t * 1e-3) / 1e9
                except Exception as e:  # noqa: BLE001
                    row["error"] = _short(e)
                results.append(row)
    del impls
    torch.cuda.empty_cache()


# ---- host overhead per call ----------------------------------------------------------------------
def bench_overhead(device, do_compile, n_calls=3500):
    import bitblas_jax.torch as bbt  # noqa: F401
    N = K = 1024
    v, s, w = _int4_problem(N, K, device)
    x = torch.randn(1, K, dtype=torch.bfloat16, device=device)
    rows = []
    cands = []
    try:
        lin = make_bitblas(v, s, N, K, device)
        def op_inference():
            with torch.inference_mode():
                return bitblas_mm(x, lin.qweight, lin.scales)
        cands += [("bitblas_jax Linear (eager, direct)", lambda: lin(x)),
                  ("bitblas_jax torch.ops (dispatcher)", lambda: bitblas_mm(x, lin.qweight, lin.scales)),
                  ("bitblas_jax torch.ops (inference_mode)", op_inference)]
        if do_compile:
            cl = torch.compile(lambda t: lin(t), fullgraph=True)
            cands.append(("bitblas_jax Linear (compiled)", lambda: cl(x)))
    except Exception as e:  # noqa: BLE001
        rows.append(dict(impl="bitblas_jax", error=_short(e)))
    cands.append(("bf16 F.linear (eager)", lambda: dense_mm(x, w)))
    if do_compile:
        cd = torch.compile(dense_mm, fullgraph=True)
        cands.append(("bf16 F.linear (compiled)", lambda: cd(x, w)))
    try:
        wq, sz = make_tinygemm(v, s, N, K, device)
        cands.append(("tinygemm int4 (eager)", lambda: tinygemm_mm(x, wq, sz)))
        if do_compile:
            ct = torch.compile(tinygemm_mm, fullgraph=True)
            cands.append(("tinygemm int4 (compiled)", lambda: ct(x, wq, sz)))
    except Exception as e:  # noqa: BLE001
        rows.append(dict(impl="tinygemm int4", error=_short(e)))
    for name, fn in cands:
        row = dict(impl=name)
        try:
            for _ in range(50):
                fn()
            torch.cuda.synchronize()
            host, wall = [], []
            chunk = max(1, n_calls // 7)
            for _ in range(7):              # median of 7 chunks: robust to a noisy host
                t0 = time.perf_counter()
                for _ in range(chunk):
                    fn()
                t1 = time.perf_counter()
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                host.append((t1 - t0) / chunk * 1e6)
                wall.append((t2 - t0) / chunk * 1e6)
            row["host_us"] = sorted(host)[3]
            row["wall_us"] = sorted(wall)[3]
        except Exception as e:  # noqa: BLE001
            row["error"] = _short(e)
        rows.append(row)
    # the same call from a CUDA graph: 100 calls per replay, GPU time per call
    try:
        lin_g = make_bitblas(v, s, N, K, device)
        sx = x.clone()
        st = torch.cuda.Stream()
        st.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(st):
            for _ in range(3):
                lin_g(sx)
        torch.cuda.current_stream().wait_stream(st)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(100):
                lin_g(sx)
        g.replay()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(20):
            g.replay()
        e1.record()
        torch.cuda.synchronize()
        rows.append(dict(impl="bitblas_jax in a CUDA graph (GPU time)", wall_us=e0.elapsed_time(e1) * 1e3 / 2000))
    except Exception as e:  # noqa: BLE001
        rows.append(dict(impl="bitblas_jax in a CUDA graph", error=_short(e)))
    return rows


def _short(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"


# ---- printing --------------------------------------------------------------------------------------
def print_tables(results, overhead, out=sys.stdout):
    base = {(r["N"], r["M"], r["mode"]): r.get("ms") for r in results if r["impl"] == "bf16 F.linear"}
    base_eager = {(r["N"], r["M"]): r.get("ms") for r in results
                  if r["impl"] == "bf16 F.linear" and r["mode"] == "eager"}
    hdr = (f"{'N=K':>6} {'M':>4}  {'impl':<18} {'mode':<8} {'median us':>10} {'GB/s':>8} "
           f"{'vs bf16 (same mode)':>20} {'vs bf16 eager':>14} {'rel err':>9}  copies")
    print("\nint4 (g128) x bf16 GEMM, weights rotated beyond L2 (do_bench median)", file=out)
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in results:
        if "error" in r:
            print(f"{r['N']:>6} {r['M']:>4}  {r['impl']:<18} {r['mode']:<8} {r['error']}", file=out)
            continue
        b, be = base.get((r["N"], r["M"], r["mode"])), base_eager.get((r["N"], r["M"]))
        sp = f"{b / r['ms']:.2f}x" if b else "-"
        spe = f"{be / r['ms']:.2f}x" if be else "-"
        err = f"{r['rel_err']:.1e}" if "rel_err" in r else "-"
        print(f"{r['N']:>6} {r['M']:>4}  {r['impl']:<18} {r['mode']:<8} {r['ms'] * 1e3:>10.1f} "
              f"{r['GBps']:>8.0f} {sp:>20} {spe:>14} {err:>9}  {r.get('copies', '')}", file=out)
    if overhead:
        print("\nper-call overhead, M=1 N=K=1024 (host: enqueue time per call; wall: incl. GPU)", file=out)
        print(f"{'impl':<42} {'host us':>9} {'wall us':>9}", file=out)
        for r in overhead:
            if "error" in r:
                print(f"{r['impl']:<42} {r['error']}", file=out)
            else:
                h = f"{r['host_us']:.1f}" if "host_us" in r else "-"
                print(f"{r['impl']:<42} {h:>9} {r['wall_us']:>9.1f}", file=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192], help="N = K values")
    p.add_argument("--ms", type=int, nargs="+", default=[1, 16, 128], help="M values")
    p.add_argument("--rep", type=int, default=200, help="do_bench rep (ms) per measurement")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call overhead table")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_torch: needs a CUDA GPU (torch.cuda.is_available() is False); nothing to do")
        return 0
    import bitblas_jax.torch as bbt
    if not bbt.has_cuda_kernels():
        print("bench_torch: bitblas_jax was built without CUDA kernels (no nvcc at install time)")
        return 1
    device = "cuda"
    torch.manual_seed(0)
    for knob in ("cache_size_limit", "recompile_limit"):      # one entry per (M, N) shape
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    results = []
    for n in args.sizes:
        try:
            bench_size(n, n, args.ms, args.rep, not args.no_compile, device, results)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    overhead = [] if args.no_overhead else bench_overhead(device, not args.no_compile)
    print_tables(results, overhead)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                           gemm=results, overhead=overhead), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
