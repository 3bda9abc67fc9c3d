"""gemm_cutlass's tile and split choice against a measured sweep of every configuration.

plan.h gemm_cutlass_choice picks (tile, split) by a model whose constants were fit to a kernel-alone sweep on
an H100. This tool writes such a sweep's input and reads its output back, so the model can be checked (and
refit) on any GPU:
    python3 tools/gemm_cutlass_sweep.py --list > sweep.txt            # the configurations to time
    gemm_cutlass_selftest --time-list < sweep.txt > sweep.log         # on the GPU (tools/gpu_check.sh builds it)
    python3 tools/gemm_cutlass_sweep.py --check sweep.log [--sms 132] # the model's choice against the fastest
    python3 tools/gemm_cutlass_sweep.py --fit-in-kernel-split sweep.log   # plan.h's kCutlassInKernelSplit*
(--weights nf4 for the table formats' lines: plan.h kCutlassTiles' table_pct.)
The check prints, per (layer, M), the configuration the plan chooses, the fastest measured and how much
slower the choice ran; it exits 1 when the choice is more than --tolerance slower anywhere.
benchmarks/results/h100-gemm-cutlass-sweep.log is the sweep the constants were fit to (its nf4 lines: table_pct).
"""
from __future__ import annotations

import argparse
import re
import sys

# Layers of popular open models (N x K): Qwen2-7B MLP up / down, Llama-2-7B attention, Llama-3-8B MLP up /
# down and fused qkv, Qwen2-72B MLP up, Llama-3-70B MLP up and attention.
LAYERS = [(18944, 3584), (4096, 4096), (14336, 4096), (29568, 8192), (3584, 18944), (4096, 14336), (8192, 8192),
          (6144, 4096), (28672, 8192)]
MS = (128, 256, 1024, 512, 2048, 64)
LINE = re.compile(r"time gemm_cutlass (\S+) (\S+) g128 M=(\d+) N=(\d+) K=(\d+) tile (-?\d+) split (\d+): ([\d.]+) us")


def configurations(ms=MS) -> list[tuple[int, int, int, int, int]]:
    """(M, N, K, tile, split): the plan's choice (tile -1), every tile unsplit, at M <= 256 the splits of the
    persistent tiles that split and, M = 128..512, the stream-K tiles split in the kernel (plan.h
    kCutlassTiles; the selftest reports a split the tile cannot run as an error line, which --check skips); at
    M = 64 the tiles of 64 and 128 activation rows only. The 256-row weight tiles (5, 6) run unsplit; the 256 x 32
    one (7) serves M <= 32, below these rows."""
    out = []
    for M in ms:
        for N, K in LAYERS:
            if M <= 64:
                cfgs = [(-1, 0), (0, 1), (0, 2), (0, 4), (1, 1), (1, 2), (1, 4), (3, 1), (5, 1), (6, 1)]
            else:
                cfgs = [(-1, 0), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
                if M <= 256:
                    cfgs += [(0, 1), (1, 2), (1, 4), (0, 4), (3, 4), (4, 4)]
                if M <= 512:
                    cfgs += [(3, 2), (4, 2)]
            out += [(M, N, K, t, s) for t, s in cfgs]
    return out


def read_sweep(path: str, weights: str = "int4") -> dict:
    """{(N, K, M): {(tile, split): us}} of the fp16 lines of one weight format (what --list times; the plan's own
    line prints the tile it resolved to; a configuration timed twice keeps its first time)."""
    times: dict = {}
    for line in open(path):
        m = LINE.match(line)
        if m and m.group(1) == "fp16" and m.group(2) == weights:
            M, N, K, t, s, us = m.groups()[2:]
            times.setdefault((int(N), int(K), int(M)), {}).setdefault((int(t), int(s)), float(us))
    return times


def check(path: str, sms: int, tolerance: float, weights: str = "int4", in_kernel_split: bool = False) -> int:
    from bitblas_jax import _bitblas_plan, formats
    times = read_sweep(path, weights)
    if not times:
        print(f"no timings in {path}")
        return 1
    worst, untimed = 0.0, 0
    for (N, K, M), d in sorted(times.items()):
        best = min(d, key=d.get)
        tile, split = _bitblas_plan.gemm_cutlass_choice(M=M, N=N, K=K, mode=formats.MODE_IDS["scale"],
                                                        group_size=128, num_sms=sms,
                                                        w_format=formats.get_format(weights).id,
                                                        in_kernel_split=in_kernel_split)
        got = d.get((tile, split))
        if got is None:   # a choice the sweep did not time: nothing to compare it with
            untimed += 1
            print(f"{N}x{K} M={M}: chose t{tile} split {split}, not in the sweep")
            continue
        loss = got / d[best] - 1
        worst = max(worst, loss)
        print(f"{N}x{K} M={M}: chose t{tile} split {split} ({got:.1f} us), fastest t{best[0]} split {best[1]} "
              f"{d[best]:.1f} us: +{100 * loss:.1f}%")
    ok = worst <= tolerance and not untimed
    print(f"{'PASS' if ok else 'FAIL'}: the choice ran at most {100 * worst:.1f}% slower than the fastest "
          f"(tolerance {100 * tolerance:.0f}%) over {len(times)} points, {untimed} choices not in the sweep")
    return 0 if ok else 1


def fit_in_kernel_split(path: str, sms: int, weights: str = "int4") -> int:
    """Least-squares fit of plan.h's two in-kernel split constants to a sweep's lines of the stream-K tiles split
    in the kernel: measured = the model's parts + fixed + turn bytes / bytes_per_ns (plan module
    gemm_cutlass_in_kernel_split_terms). Prints the fit and each point's measured and refit time."""
    import numpy as np
    from bitblas_jax import _bitblas_plan as bp, formats, gpu_plan
    wf = formats.get_format(weights).id
    points = []   # (N, K, M, tile, split, measured ns, parts ns, turn bytes)
    for (N, K, M), d in sorted(read_sweep(path, weights).items()):
        for (t, s), us in d.items():
            if t in gpu_plan.GEMM_CUTLASS_STREAM_K_TILES and s > 1:
                parts, turn = bp.gemm_cutlass_in_kernel_split_terms(M=M, N=N, K=K, tile=t, split=s, num_sms=sms,
                                                                    w_format=wf)
                points.append((N, K, M, t, s, us * 1e3, parts, turn))
    if len(points) < 2:
        print(f"fewer than two in-kernel split lines in {path}")
        return 1
    X = np.array([[1.0, p[7]] for p in points])
    (fixed, inv_bw), *_ = np.linalg.lstsq(X, np.array([p[5] - p[6] for p in points]), rcond=None)
    print(f"fit over {len(points)} lines: fixed {fixed:.0f} ns, {1 / inv_bw if inv_bw > 0 else float('inf'):.0f} "
          f"bytes per ns (plan.h now: {bp.GEMM_CUTLASS_IN_KERNEL_SPLIT_FIXED_NS} ns, "
          f"{bp.GEMM_CUTLASS_IN_KERNEL_SPLIT_BYTES_PER_NS} bytes per ns)")
    for N, K, M, t, s, ns, parts, turn in points:
        print(f"{N}x{K} M={M} t{t} split {s}: {ns / 1e3:.1f} us measured, {(parts + fixed + turn * inv_bw) / 1e3:.1f} refit")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the sweep's input (g128 fp16)")
    ap.add_argument("--weights", default="int4", choices=("int4", "int8", "nf4", "fp4_e2m1"),
                    help="the weight format timed / checked (the self-test's format names)")
    ap.add_argument("--check", metavar="LOG", help="a --time-list output to check the plan's choice against")
    ap.add_argument("--sms", type=int, default=132, help="the SM count of the GPU that ran the sweep")
    ap.add_argument("--tolerance", type=float, default=0.15, help="largest slowdown of the choice accepted")
    ap.add_argument("--ms", default=",".join(map(str, MS)), help="the M values --list times (comma-separated)")
    ap.add_argument("--tiles", help="--list only these tiles (comma-separated ids; -1: the plan's choice)")
    ap.add_argument("--in-kernel-split", action="store_true",
                    help="--check: the choice may split K in the stream-K tiles' kernel (plan.h in_kernel_split)")
    ap.add_argument("--fit-in-kernel-split", metavar="LOG",
                    help="fit plan.h's kCutlassInKernelSplit* constants to a --time-list output")
    args = ap.parse_args(argv)
    if args.fit_in_kernel_split:
        return fit_in_kernel_split(args.fit_in_kernel_split, args.sms, args.weights)
    if args.list:
        tiles = None if args.tiles is None else {int(t) for t in args.tiles.split(",")}
        for M, N, K, t, s in configurations(tuple(int(m) for m in args.ms.split(","))):
            if tiles is None or t in tiles:
                print(M, N, K, "fp16", t, s, args.weights)
        return 0
    if args.check:
        return check(args.check, args.sms, args.tolerance, args.weights, args.in_kernel_split)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
