"""GPU check of int8 / float8 activations in the torch shim (issue 29).

bitblas_jax/torch/quantized_cuda.py and quantized_dot.py, on a machine with a CUDA GPU, torch with CUDA,
and a bitblas_jax install built with nvcc.

    python3 tools/gpu_torch_qact_check.py              # about 3-5 minutes on an H200 (mostly pytest)
    python3 tools/gpu_torch_qact_check.py --no-bench   # without the timing table

1. tests/test_torch_qact.py on the GPU: every path (decode_i8, gemm_wgmma_a8 on sm_90, the exact torch dots
   with torch._int_mm / float64 / float32) on CUDA tensors against the float64 / int64 reference through
   matmul.out into poisoned outputs, opcheck per path, side streams and CUDA graphs, Linear(A_dtype="int8")
   on fp16 inputs (eager, CUDA graph, torch.compile), plus the CPU tests of the same file. Then the torch
   shim's other GPU tests (tests/test_torch.py) and the torch tests of tests/test_activation_quant.py, to
   see that 16-bit activations and the CPU path are unchanged. A run that skips GPU tests fails.
2. torch against JAX on the same GPU: int8 activations, full range, int32 outputs bit for bit at M = 1,
   16 (decode_i8), 17, 300 (gemm_wgmma_a8 on sm_90, else the exact path), for int8 / int4 / uint4 / int2
   weights; float32 outputs of mode scale (decode_i8 and gemm_wgmma_a8 compute the same v in both: bit for
   bit expected there; the exact paths sum in their own order: the largest relative difference printed).
3. Timing (us per call, CUDA events over 50 calls after a warm-up, N = K = 4096): the op with int8
   activations (W8A8 per channel, W4A8 g128, W4A8 with quantized zeros: the exact path) and float8 (FP8 x
   FP8), torch's fp16 F.linear as the baseline, M = 1, 16, 300, 1024; each row names the path the plan took.

Prints a PASS/FAIL table last; exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tools")]
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")    # JAX and torch share the GPU here

from gpu_qact_check import run_tests  # noqa: E402  (pytest on the GPU; skipped GPU tests fail the check)


def torch_vs_jax() -> tuple[bool, str]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from bitblas_jax.torch import quantized_cuda as quantized
    from cases import check_quantized, make_qcase

    rng = np.random.default_rng(0)
    dev = jax.devices("gpu")[0]
    idx = torch.cuda.current_device()
    bad, notes = [], []
    for w in ("int8", "int4", "uint4", "int2"):
        for M in (1, 16, 17, 300):
            for mode, group, out in (("none", -1, "int32"), ("scale", -1, "float32"), ("scale", 128, "float32")):
                case = make_qcase(rng, "int8", w, mode, group, out, M=M, N=272, K=1024)
                c = case.cfg
                put = lambda x: None if x is None else jax.device_put(jnp.asarray(x), dev)  # noqa: E731
                want = np.asarray(jax.jit(lambda A, W, s: case.mm(A, W, scale=s))(
                    put(case.A), put(case.packed()), put(case.scale)))
                t = lambda x: None if x is None else torch.from_numpy(np.array(x)).cuda()  # noqa: E731
                got = torch.ops.bitblas_jax.matmul(t(case.A), t(case.packed()), t(case.scale), None, None, w, mode,
                                                   group, "int32", out).cpu().numpy()
                path = quantized.kernel_for(idx, M, 1024, w, "int8", mode, c.resolved_group_size)
                check_quantized(case, got)
                same = np.array_equal(got.view(np.uint32), want.view(np.uint32))
                if out == "int32" or path in ("decode_i8", "gemm_wgmma_a8"):
                    if not same:
                        bad.append(f"{w} M={M} {mode} g{group} ({path})")
                else:
                    rel = float(np.max(np.abs(got.astype(np.float64) - want) / (np.abs(want) + 1e-30)))
                    notes.append(f"{w} M={M} {mode} g{group} ({path}): max rel diff {rel:.2e}")
    print("\n".join(notes))
    return not bad, ("bit for bit where expected" if not bad else "differ: " + "; ".join(bad[:6]))


def bench(Ms=(1, 16, 300, 1024), size=4096) -> list[str]:
    import numpy as np
    import torch

    import bitblas_jax.torch as bbt
    from bitblas_jax.torch import quantized_cuda as quantized

    N = K = size
    rng = np.random.default_rng(0)
    idx = torch.cuda.current_device()

    def layer(A_dtype, W_dtype, group, zeros=False):
        lin = bbt.Linear(K, N, A_dtype=A_dtype, W_dtype=W_dtype, group_size=group, with_scaling=True,
                         with_zeros=zeros, zeros_mode="quantized" if zeros else None, out_dtype="float16",
                         device="cuda")
        fmt = lin.config.format
        G = lin.config.num_groups
        values = (rng.integers(*fmt.value_range, size=(N, K), endpoint=True) if fmt.is_integer
                  else rng.standard_normal((N, K)).astype(np.float32))
        lin.load_and_transform_weight(values, rng.uniform(0.5, 1.5, (N, G)).astype(np.float32) * 1e-3,
                                      rng.integers(*fmt.value_range, size=(N, G), endpoint=True).astype(
                                          fmt.zeros_dtype) if zeros else None)
        return lin

    layers = {"W8A8": layer("int8", "int8", -1), "W4A8 g128": layer("int8", "int4", 128),
              "W4A8 g128 qzeros": layer("int8", "uint4", 128, zeros=True),
              "FP8xFP8": layer("float8_e4m3fn", "float8_e4m3fn", -1)}
    w16 = torch.randn(N, K, dtype=torch.float16, device="cuda")

    def time_us(f, reps=50):
        for _ in range(3):
            f()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            f()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) * 1000 / reps

    rows = [f"{'M':>5} {'fp16 F.linear':>13} " + " ".join(f"{name:>26}" for name in layers) + "  (us per call)"]
    with torch.no_grad():
        for M in Ms:
            x16 = torch.randn(M, K, dtype=torch.float16, device="cuda")
            cells = [f"{time_us(lambda: torch.nn.functional.linear(x16, w16)):>13.1f}"]
            for lin in layers.values():
                q, _ = bbt.ops.quantize_activations(x16, lin.A_dtype)
                b = lin._buffers
                path = quantized.kernel_for(idx, M, K, lin.W_dtype, lin.A_dtype, lin._mode, lin._gs)
                us = time_us(lambda: torch.ops.bitblas_jax.matmul(q, b["qweight"], b["scales"], b["zeros"], None,
                                                                   lin.W_dtype, lin._mode, lin._gs,
                                                                   lin.accum_dtype, "float16"))
                cells.append(f"{us:>10.1f} {path:>15}")
            rows.append(f"{M:>5} " + " ".join(cells))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-bench", action="store_true")
    p.add_argument("--no-tests", action="store_true")
    args = p.parse_args()
    import torch

    import bitblas_jax.torch as bbt
    results = {"torch sees a CUDA GPU": (torch.cuda.is_available(),
                                         torch.cuda.get_device_name() if torch.cuda.is_available() else "none"),
               "bitblas_jax has its CUDA kernels": (bbt.has_cuda_kernels(), "built with nvcc" if bbt.has_cuda_kernels()
                                                   else "reinstall with nvcc on PATH")}
    if not args.no_tests:
        results["tests/test_torch_qact.py on the GPU"] = run_tests(["tests/test_torch_qact.py"])
        results["torch shim tests (16-bit A, CPU path)"] = run_tests(
            ["tests/test_torch.py", "tests/test_activation_quant.py", "-k", "torch or cuda"])
    for name, fn in (("torch = JAX on the GPU (int8 A)", torch_vs_jax),) + (
            () if args.no_bench else (("timing ran", lambda: (True, "\n".join(bench()))),)):
        try:
            ok, detail = fn()
            if "\n" in detail:
                print(detail)
                detail = f"{detail.count(chr(10))} rows"
            results[name] = (ok, detail)
        except Exception as e:  # noqa: BLE001 - reported in the table
            results[name] = (False, f"{type(e).__name__}: {e}"[:300])
    print("\nint8 / float8 activations in the torch shim on the GPU")
    for name, (ok, detail) in results.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
