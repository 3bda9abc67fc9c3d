"""Fuzz the matmul against the float64 reference (the generator and checks: tests/fuzz.py).

    python tools/fuzz.py --cases 300                          # CPU, a fresh seed (printed)
    python tools/fuzz.py --cases 10000 --seed S --device gpu --force-plans      # 8 worker processes
    python tools/fuzz.py --seed S --case I [--device gpu] [--force-plans]   # rerun one case
    python tools/fuzz.py --cases 10000 --seed S --device gpu --force-plans --max-minutes 8  # within a deadline

Prints the seed first, one line per failing case with the command that reruns it, then a summary:
cases per GPU kernel (the plan each case got), how many outputs were written into poisoned memory,
the time, and a PASS / FAIL line. Exit status 1 on any failure.
--force-plans draws, per case, an environment override of the plan (tests/fuzz.py FORCED_PLANS) so
every kernel sees every shape; without it the plan rule decides.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def run_indices(seed, indices, device, force_plans, use_torch, emit, deadline=None):
    import fuzz
    for i in indices:
        if deadline is not None and time.time() > deadline:
            return
        fc = fuzz.draw(seed, i, device, force_plans)
        res = fuzz.run_case(fc, use_torch)
        emit({"index": i, "plans": {k: f"{v[0]}/split{v[1]}" for k, v in res["plans"].items()},
              "paths": res["paths"], "poisoned": res["poisoned"],
              "failures": res["failures"], "describe": fc.describe(), "command": fuzz.command(fc)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one (printed)")
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--case", type=int, action="append", help="run only this index (repeatable)")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--force-plans", action="store_true")
    ap.add_argument("--no-torch", action="store_true", help="JAX only")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes sharing the cases (default: 1 on the CPU, 8 on the GPU, where XLA's "
                         "compilation of each case's function is the bottleneck)")
    ap.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)   # "w/W": JSON lines out
    ap.add_argument("--max-failures-shown", type=int, default=50)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="start no case after this many minutes; the summary counts the cases run")
    ap.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)   # a worker's, epoch seconds
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    indices = args.case or list(range(args.start, args.start + args.cases))
    if args.workers is None:
        args.workers = 1 if args.device == "cpu" or len(indices) < 16 else 8
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    deadline = args.deadline if args.deadline is not None else \
        (time.time() + 60 * args.max_minutes if args.max_minutes is not None else None)

    if args.worker:                      # a child: its share of the indices, one JSON line each
        w, n = map(int, args.worker.split("/"))
        run_indices(seed, indices[w::n], args.device, args.force_plans, not args.no_torch,
                    lambda r: print(json.dumps(r), flush=True), deadline)
        return 0

    print(f"fuzz seed {seed}: {len(indices)} cases on {args.device}"
          f"{' (plans forced by the environment overrides)' if args.force_plans else ''}", flush=True)
    t0 = time.perf_counter()
    results = []
    shown = [0]

    def emit(r):
        results.append(r)
        if r["failures"]:
            shown[0] += 1
            if shown[0] <= args.max_failures_shown:
                print(f"FAIL case {r['index']}: {r['describe']} {r['plans'] or ''}\n"
                      f"    {'; '.join(r['failures'])}\n    rerun: {r['command']}", flush=True)
        done = len(results)
        if done % 500 == 0:
            print(f"  {done} cases, {sum(bool(x['failures']) for x in results)} failed, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)

    if args.workers <= 1:
        run_indices(seed, indices, args.device, args.force_plans, not args.no_torch, emit, deadline)
    else:
        base = [sys.executable, os.path.abspath(__file__), "--seed", str(seed), "--device", args.device]
        base += ["--force-plans"] * args.force_plans + ["--no-torch"] * args.no_torch
        base += ["--deadline", repr(deadline)] * (deadline is not None)
        base += sum((["--case", str(i)] for i in indices), []) if args.case else \
            ["--start", str(args.start), "--cases", str(args.cases)]
        threads = str(max(1, (os.cpu_count() or 1) // args.workers))   # NumPy's BLAS: no oversubscription
        env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", OMP_NUM_THREADS=threads,
                   OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        procs = [subprocess.Popen(base + ["--worker", f"{w}/{args.workers}"], stdout=subprocess.PIPE,
                                  text=True, env=env) for w in range(args.workers)]
        import selectors
        sel = selectors.DefaultSelector()
        for p in procs:
            sel.register(p.stdout, selectors.EVENT_READ)
        open_ = len(procs)
        while open_:
            for key, _ in sel.select():
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                    open_ -= 1
                elif line.startswith("{"):
                    emit(json.loads(line))
        rcs = [p.wait() for p in procs]
        if any(rcs) or (deadline is None and len(results) != len(indices)):
            print(f"FAIL: workers exited {rcs}, {len(results)} of {len(indices)} cases reported")
            return 1
    if len(results) < len(indices):
        print(f"stopped at the deadline: {len(results)} of {len(indices)} cases run")

    failed = [r for r in results if r["failures"]]
    secs = time.perf_counter() - t0
    kernels = collections.Counter(f"{path} {plan.split('/')[0]}" for r in results for path, plan in r["plans"].items())
    splits = collections.Counter(f"{path} {plan}" for r in results for path, plan in r["plans"].items())
    paths = collections.Counter(p for r in results for p in r["paths"])
    poisoned = collections.Counter(p for r in results for p in r["poisoned"])
    print(f"\n== fuzz summary: seed {seed}, {len(results)} cases, "
          + ", ".join(f"{v} {k} runs" for k, v in sorted(paths.items())) + f", {args.device}, {secs:.0f} s ==")
    if args.device == "gpu":
        print("runs per planned kernel: " + ", ".join(f"{k} {v}" for k, v in sorted(kernels.items())))
        print(f"distinct (path, kernel, split-K) plans: {len(splits)}")
    print("outputs written into poisoned memory: "
          + ", ".join(f"{k} {poisoned[k]} of {v}" for k, v in sorted(paths.items())))
    print(f"{'PASS' if not failed else 'FAIL'}  {len(failed)} failing case(s) of {len(results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
