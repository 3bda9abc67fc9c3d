"""The case list compute-sanitizer runs (tools/gpu_sanitize.sh): every kernel (decode, decode_splitk,
gemm_mma, gemm_wgmma, gemm_cutlass, dequantize_then_dot), split-K from 1 to 32, every format family (int, uint with
zeros, nf4, fp4, fp8, 16-bit), both activation dtypes, through JAX and the torch shim (aligned and
misaligned activations; through JAX again on held group terms where a case can hold them), each result
checked against the float64 reference with poisoned outputs (tests/fuzz.py runs a case). The plan of each case comes from the rule or from the environment
overrides a case sets (BITBLAS_JAX_GEMM_MAX_M, BITBLAS_JAX_HOPPER=0 for gemm_mma on sm_90,
BITBLAS_JAX_NUM_SMS for other split-K values, BITBLAS_JAX_GEMM_CUTLASS=0 for gemm_wgmma where gemm_cutlass runs).

    python tests/cuda/sanitize_cases.py            # run (a GPU); exit 1 on a failure or missed coverage
    python tests/cuda/sanitize_cases.py --list     # the cases and their plans, nothing run (any machine;
                                                   # BITBLAS_JAX_HOPPER=1 plans for an sm_90 GPU)
    python tests/cuda/sanitize_cases.py --only 3,7 # a subset, by index (q2: quantized-activation case 2)
    python tests/cuda/sanitize_cases.py --device cpu   # the same cases on the CPU kernel

Prints one line per case (index, description, plan per path, ok / FAIL), then the coverage: the kernels
and split-K values reached per path. The list must reach every kernel (gemm_wgmma on sm_90 only, gemm_cutlass
where the install holds it too, on a persistent and a stream-K tile), split > 1 on decode_splitk, gemm_mma,
gemm_wgmma and gemm_cutlass, and the torch shim's decode, GEMM and misaligned paths; on sm_90 decode with K over a cluster and gemm_cutlass's
stream-K tiles with K split in the kernel.
Then the int8 / float8-activation cases (sanitize_qact_cases.py): every quantized-activation kernel
through JAX and the torch shim.

With BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT=1 (gpu_sanitize.sh sets it for initcheck) gemm_cutlass runs unsplit
and the coverage asks it for split 1 only: initcheck does not count TMA bulk stores (the gemm_cutlass
epilogue's) as writes, so the split-K reduction, reading the partials that epilogue stored, reads
"uninitialized" memory to it (`gemm_cutlass_selftest --one M N K TILE SPLIT fresh` under initcheck: every
element of C, stored by TMA and read back on the device, is reported, while C is right). Its stream-K tiles
still run there: the CTAs sharing a tile add their partials with ordinary loads and stores.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fuzz  # noqa: E402
import sanitize_qact_cases as qact  # noqa: E402

MMA = {"BITBLAS_JAX_HOPPER": "0", "BITBLAS_JAX_GEMM_MAX_M": "4096"}     # gemm_mma on every GPU
GEMM = {"BITBLAS_JAX_GEMM_MAX_M": "4096"}                                # the GEMM instead of dequantize + dot
DOT = {"BITBLAS_JAX_GEMM_MAX_M": "16"}                                   # dequantize_then_dot above 16
WGMMA = {"BITBLAS_JAX_GEMM_MAX_M": "4096", "BITBLAS_JAX_GEMM_CUTLASS": "0"}  # gemm_wgmma where gemm_cutlass runs
CLUSTER = {"BITBLAS_JAX_DECODE_CLUSTER_SPLIT": "1", "BITBLAS_JAX_NUM_SMS": "132"}  # decode's K over a cluster (sm_90)
IN_KERNEL = {"BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT": "1", "BITBLAS_JAX_GEMM_CUTLASS_STREAM_K": "2",
             "BITBLAS_JAX_NUM_SMS": "132"}                               # gemm_cutlass's stream-K tiles, K split in the kernel

# (format, mode, group, A dtype, accumulation, M, N, K, environment, torch element offset)
SPECS = [
    # decode: every format family, zeros through activation sums, 1..16 rows
    ("int4", "scale", 128, "float16", "float32", 1, 64, 1024, {}, 0),
    ("nf4", "scale", 128, "bfloat16", "float32", 5, 64, 1024, {}, 0),
    ("fp4_e2m1", "none", -1, "bfloat16", "float32", 16, 64, 1024, {}, 0),
    ("int8", "scale", 128, "bfloat16", "float32", 2, 64, 1024, {}, 0),
    ("float8_e4m3fn", "scale", -1, "float16", "float32", 1, 64, 1024, {}, 0),
    ("float16", "none", -1, "float16", "float32", 9, 64, 1024, {}, 3),
    ("uint4", "original", 128, "bfloat16", "float32", 3, 64, 1024, {}, 0),
    ("int2", "rescale", 256, "float16", "float32", 12, 64, 2048, {}, 0),
    # decode_splitk: float16 accumulation, groups inside packed tiles; split 4, 16, 8, 32
    ("int4", "scale", 128, "float16", "float16", 3, 64, 1024, {}, 0),
    ("int4", "scale", 128, "float16", "float16", 1, 64, 4096, {}, 0),
    ("uint2", "quantized", 32, "bfloat16", "float32", 8, 64, 4096, {}, 0),
    ("int1", "rescale", 32, "float16", "float32", 2, 64, 1024, {}, 0),
    ("float8_e5m2", "scale", 8, "bfloat16", "float32", 4, 64, 1024, {}, 0),
    ("int4", "scale", 128, "float16", "float16", 1, 256, 8192, {}, 0),
    # gemm_mma: forced on sm_90; per-8-column scales; float16 accumulation; other split-K counts
    ("int4", "scale", 128, "float16", "float32", 33, 272, 1024, MMA, 0),
    ("int8", "scale", 128, "bfloat16", "float32", 64, 272, 8192, MMA, 0),
    ("uint2", "quantized", 32, "bfloat16", "float32", 24, 64, 4096, {}, 1),
    ("int4", "scale", 128, "float16", "float16", 40, 272, 1024, {}, 0),
    ("int4", "scale", 32, "float16", "float32", 20, 272, 8192, {"BITBLAS_JAX_NUM_SMS": "8"}, 0),
    ("bfloat16", "none", -1, "bfloat16", "float32", 130, 64, 1024, MMA, 0),
    ("nf4", "scale", 64, "float16", "float32", 100, 272, 2048, MMA, 0),
    # gemm_wgmma (sm_90): split 4, 2, 1; the tall 256-row tile; partial tiles
    ("int4", "scale", 128, "float16", "float32", 33, 272, 4096, WGMMA, 0),
    ("int8", "scale", 128, "bfloat16", "float32", 64, 272, 8192, WGMMA, 0),
    ("nf4", "scale", 128, "float16", "float32", 130, 272, 1024, WGMMA, 0),
    ("fp4_e2m1", "scale", 128, "bfloat16", "float32", 300, 512, 2048, WGMMA, 0),
    ("int4", "scale", 128, "float16", "float32", 257, 28672, 512, WGMMA, 0),
    ("uint4", "quantized", 128, "bfloat16", "float32", 70, 272, 1024, WGMMA, 4),
    ("float8_e4m3fn", "scale", 128, "float16", "float32", 48, 64, 1024, GEMM, 2),
    # gemm_cutlass (sm_90, built with CUTLASS): its three persistent tiles, K split 8 / 4 / 1, zeros modes, both
    # dtypes, 4- and 8-bit codes
    ("int4", "original", 128, "float16", "float32", 300, 272, 1024, {}, 0),
    ("int4", "scale", 128, "float16", "float32", 128, 4096, 4096, {}, 0),
    ("uint4", "rescale", -1, "bfloat16", "float32", 96, 1024, 2048, {}, 0),
    ("int4", "none", -1, "bfloat16", "float32", 200, 8192, 1024, {}, 0),
    ("uint4", "quantized", 64, "bfloat16", "float32", 1000, 4096, 1024, {}, 0),
    ("int8", "scale", 128, "float16", "float32", 128, 4096, 2048, {}, 0),
    ("uint8", "original", 64, "bfloat16", "float32", 300, 1024, 1024, {}, 0),
    # ... its stream-K tiles (128 and 256 rows), 4- and 8-bit codes
    ("uint4", "original", 64, "bfloat16", "float32", 100, 8704, 4096, {}, 0),
    ("int8", "scale", 128, "float16", "float32", 65, 17408, 3072, {}, 0),
    ("int4", "scale", 128, "float16", "float32", 400, 8704, 3072, {}, 0),
    # ... its 64-row tile at M = 64, K split 2
    ("int4", "scale", 128, "float16", "float32", 64, 8192, 2048, {}, 0),
    # ... at decode sizes: from 6 rows on a layer of 2^27 4-bit weights (instead of decode), from 17 on any (split)
    ("int4", "scale", 128, "float16", "float32", 8, 16384, 8192, {}, 0),
    ("uint8", "quantized", 128, "bfloat16", "float32", 24, 4096, 4096, {}, 0),
    # dequantize_then_dot (and the torch shim's GEMM at the same M)
    ("int4", "scale", 128, "float16", "float32", 200, 64, 1024, {}, 0),
    ("float8_e5m2", "scale", -1, "bfloat16", "float32", 130, 64, 1024, DOT, 0),
    ("uint8", "quantized", 64, "float16", "float32", 90, 64, 1024, DOT, 5),
    # the torch shim's decode in 16-row launches (17..32 rows)
    ("int4", "scale", 128, "bfloat16", "float32", 24, 64, 1024, {"BITBLAS_JAX_GEMM_MAX_M": "16"}, 0),
    # gemm_cutlass on the 4-bit table formats (its register lookup): persistent, K split, stream-K
    ("nf4", "scale", 128, "float16", "float32", 300, 272, 1024, {}, 0),
    ("fp4_e2m1", "none", -1, "bfloat16", "float32", 128, 4096, 4096, {}, 0),
    ("nf4", "scale", 64, "bfloat16", "float32", 100, 8704, 4096, {}, 0),
    # decode with K over a cluster of 2 / 4 CTAs (sm_90): staged scales, zeros, misaligned activations (torch)
    ("int4", "scale", 128, "float16", "float32", 1, 4096, 4096, CLUSTER, 0),
    ("uint4", "original", 64, "bfloat16", "float32", 9, 512, 4096, CLUSTER, 3),
    ("int2", "scale", 128, "float16", "float32", 4, 1024, 8192, CLUSTER, 0),
    # gemm_cutlass's stream-K tiles with K split in the kernel: 4- and 8-bit codes, the table formats
    ("int4", "scale", 128, "float16", "float32", 128, 4096, 4096, IN_KERNEL, 0),
    ("uint8", "rescale", 128, "bfloat16", "float32", 200, 2048, 4096, IN_KERNEL, 0),
    ("nf4", "scale", 128, "bfloat16", "float32", 96, 1024, 4096, IN_KERNEL, 0),
    # gemm_cutlass's 256-row weight tiles (one wave of them where the 128-row tiles take two; a partial tile):
    # 4- and 8-bit codes, 64, 128 and 32 activation rows
    ("int4", "scale", 128, "float16", "float32", 64, 20496, 1024, {}, 0),
    ("uint8", "original", 128, "bfloat16", "float32", 128, 20496, 1024, {}, 0),
    ("uint4", "original", 64, "bfloat16", "float32", 24, 20496, 1024, {}, 0),
]


def cases(device: str = "gpu") -> list[fuzz.FuzzCase]:
    return [fuzz.FuzzCase(seed=0, index=i, device=device, force_plans=False, fmt=fmt, mode=mode, group=g,
                          lead=(M,), N=N, K=K, a_dtype=adt, accum=acc, out=adt, bias=i % 2 == 0,
                          a_special=0, bias_special=False, w_special=0, torch_offset=off,
                          env=tuple(sorted(env.items())))
            for i, (fmt, mode, g, adt, acc, M, N, K, env, off) in enumerate(SPECS)]


def missing_coverage(reached: dict, sm90: bool, cutlass: bool = False, cutlass_splits: bool = True) -> list[str]:
    """What the run was meant to reach and did not; reached: path -> {kernel: set of split-K}; cutlass: the
    install holds gemm_cutlass; cutlass_splits: it may split K (BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT above 1)."""
    hopper = ["gemm_wgmma"] * sm90 + ["gemm_cutlass"] * (sm90 and cutlass)
    want = {"jax": ["decode", "decode_splitk", "gemm_mma", "dequantize_then_dot"] + hopper,
            "torch": ["decode", "decode_splitk", "gemm_mma"] + hopper}
    miss = [f"{path} {k}" for path, ks in want.items() for k in ks if k not in reached.get(path, {})]
    for k in ("decode_splitk", "gemm_mma") + ("gemm_wgmma",) * sm90 + ("gemm_cutlass",) * (sm90 and cutlass):
        splits = set().union(*(reached.get(p, {}).get(k, set()) for p in ("jax", "torch")))
        if not any(s > 1 for s in splits) and (k != "gemm_cutlass" or cutlass_splits):
            miss.append(f"{k} with split-K > 1")
        if k == "gemm_cutlass" and 1 not in splits:
            miss.append(f"{k} without split-K")
    if sm90 and cutlass and cutlass_splits:
        stream_k = set().union(*(reached.get(p, {}).get("gemm_cutlass stream-K", set()) for p in ("jax", "torch")))
        if not stream_k:
            miss.append("gemm_cutlass stream-K")
        elif not any(s > 1 for s in stream_k):
            miss.append("gemm_cutlass stream-K with K split in the kernel")
    if sm90 and not any(s > 1 for p in ("jax", "torch") for s in reached.get(p, {}).get("decode", set())):
        miss.append("decode with K over a cluster")
    if len(set().union(*(s for ks in reached.values() for s in ks.values()))) < 5:
        miss.append("at least 5 distinct split-K values")
    return miss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the cases and plans only")
    ap.add_argument("--only", default="", help="comma-separated case indices")
    ap.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                    help="cpu: the same cases on the CPU kernel (a check of this script; no plans)")
    args = ap.parse_args(argv)
    todo = cases(args.device)
    only_qact = None
    if args.only:
        picks = args.only.split(",")
        keep = {int(x) for x in picks if not x.startswith("q")}
        only_qact = {int(x[1:]) for x in picks if x.startswith("q")}
        todo = [c for c in todo if c.index in keep]
    from bitblas_jax import _ext, gpu_plan
    sm90 = gpu_plan.hopper()
    reached = collections.defaultdict(lambda: collections.defaultdict(set))
    failed = 0
    for fc in todo:
        if args.list:
            res = {"plans": fuzz.plans(fc), "failures": [], "paths": ["jax", "torch"]}
        else:
            res = fuzz.run_case(fc)
        for path, (kernel, split) in res["plans"].items():
            reached[path][kernel].add(split)
        plans = ", ".join(f"{p} {k}/split{s}" for p, (k, s) in res["plans"].items())
        status = "FAIL " + "; ".join(res["failures"]) if res["failures"] else ("listed" if args.list else "ok")
        failed += bool(res["failures"])
        print(f"[{fc.index:2d}] {fc.describe()}: {plans}: {status}", flush=True)
    q_reached, q_failed = ({}, 0) if args.device == "cpu" else qact.run_cases(args.list, only_qact)
    failed += q_failed
    print("coverage:")
    for path, ks in sorted(reached.items()):
        print(f"  {path}: " + ", ".join(f"{k} split {sorted(s)}" for k, s in sorted(ks.items())))
    for path, ks in sorted(q_reached.items()):
        print(f"  {path} (int8 / float8 activations): " + ", ".join(sorted(ks)))
    miss = [] if args.only or args.device == "cpu" else (
        missing_coverage(reached, sm90, _ext.has_cutlass(), gpu_plan.gemm_cutlass_max_split() > 1)
        + qact.missing_coverage(q_reached, sm90, "torch" in q_reached))
    if miss:
        print("NOT REACHED: " + "; ".join(miss))
    print(f"{'PASS' if not failed and not miss else 'FAIL'} sanitize cases: {len(todo)} + "
          f"{len(qact.SPECS) if only_qact is None else len(only_qact)} cases, "
          f"{failed} failed{', coverage incomplete' if miss else ''}")
    return 1 if failed or miss else 0


if __name__ == "__main__":
    sys.exit(main())
