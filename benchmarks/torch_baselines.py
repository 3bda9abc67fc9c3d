"""The PyTorch-side baselines of bench_matmul.py, each timed the same way:

    torch_bf16   torch bf16 matmul (cuBLAS)
    torch_int4   tinygemm, torch.ops.aten._weight_int4pack_mm: int4 g128, bf16 activations
    gemlite_w4   gemlite (Triton) A16W4: int4 g128, fp16 activations
    gemlite_w8   gemlite A16W8: int8 per output channel, fp16 activations

Protocol: one op per weight copy, `copies` copies (about 256 MB of weight per pass, > 2x the L2, as the
JAX side), each op with its own activations. After a warm-up pass (gemlite autotunes and compiles there):
  us      wall time per op: passes back to back for about `sample_s`, one synchronize; the median of
          `repeats` samples (what an eager PyTorch caller sees, host cost included)
  gpu_us  one pass captured in a CUDA graph, replayed back to back between two CUDA events; the median
          per op (kernel time without host cost, comparable with the profiler's GPU busy time of the
          JAX ops)
Each op's output is also checked once against a float32 product with the weight it encodes
(`<name>_relerr`: max |error| / max |reference|), so a mispacked baseline shows instead of a fast wrong
number. Anything that fails (no torch, no CUDA, gemlite not importable, an API mismatch) records
`<name>_error` and the run goes on.

bench_matmul.py runs these baselines in a child process (Worker: this file with --serve), one baseline
per request: the child has its own CUDA context, so a crash (a sticky CUDA error, an abort inside a
Triton compile) or a hang costs that baseline's column, never the JAX side's context or the run.

gemlite is imported from third_party/gemlite (a verbatim copy of its Python package: see README there).
Its autotune cache: gemlite ships configs for the H100 and looks them up by GPU name, which misses the
H200 (same GH100 chip), so load_gemlite() loads the H100 file explicitly (or --gemlite-config). The
cache is read by gemlite's config pruner, which Triton's autotuner calls only for a kernel with more
than one config. For a key the cache lacks, gemlite autotunes at the first call (the warm-up, outside
the timing); --gemlite-autotune picks how widely: "bounded" (BOUNDED: gemlite's 2-config "default"
lists for its GEMM kernels, its "fast" lists (12-17 small configs) for the GEMV kernels, whose
"default" lists hold a single config with which the cache would never be read), "fast" (gemlite's own
default, about 20 configs per GEMM kernel) or "max". Each row says which happened (`<name>_cfg`).
"""
from __future__ import annotations

import functools
import math
import multiprocessing
import multiprocessing.connection
import os
import statistics
import subprocess
import sys
import time

from weight_copies import copies_for as _copies_for

GROUP = 128
HERE = os.path.dirname(os.path.abspath(__file__))
GEMLITE_DIR = os.path.join(HERE, "third_party", "gemlite")
GEMLITE_H100_CONFIG = os.path.join(GEMLITE_DIR, "gemlite", "configs", "h100.json")
NAMES = ("torch_bf16", "torch_int4", "gemlite_w4", "gemlite_w8")
DEVICE = "cuda"

_gemlite = None          # the module once imported, or the error string
_gemlite_autotune = "bounded"
# gemlite's autotune list per matmul type for --gemlite-autotune bounded (see the module docstring)
BOUNDED = {"GEMV": "fast", "GEMV_REVSPLITK": "fast", "GEMV_SPLITK": "fast", "GEMM_SPLITK": "default", "GEMM": "default"}
# matmul type -> (module in gemlite.triton_kernels, its class): the kernels in use after set_autotune's reload
KERNEL_CLASSES = {"GEMV": ("gemv_kernels", "gemv"), "GEMV_REVSPLITK": ("gemv_revsplitK_kernels", "gemv_revsplitK"),
                  "GEMV_SPLITK": ("gemv_splitK_kernels", "gemv_splitK"),
                  "GEMM_SPLITK": ("gemm_splitK_kernels", "gemm_splitK"), "GEMM": ("gemm_kernels", "gemm")}


def cuda_torch():
    """torch if it is installed and sees a CUDA GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def load_gemlite(config: str | None = GEMLITE_H100_CONFIG, autotune: str = "bounded"):
    """Import the vendored gemlite once; load its autotune cache `config`; set its autotune breadth.
    Returns the module, or the error string."""
    global _gemlite, _gemlite_autotune
    if _gemlite is not None:
        return _gemlite
    try:
        if GEMLITE_DIR not in sys.path:
            sys.path.insert(0, GEMLITE_DIR)
        import gemlite
        gemlite.reset_config()
        if config and not gemlite.load_config(config, print_error=False):
            # a file saved by an earlier run (--gemlite-save) that is not there: the file gemlite ships
            print(f"gemlite: no autotune cache at {config}; loading {GEMLITE_H100_CONFIG}", flush=True)
            if not gemlite.load_config(GEMLITE_H100_CONFIG):
                raise RuntimeError(f"gemlite could not load its config {GEMLITE_H100_CONFIG}")
        if autotune != "fast":   # "fast" is gemlite's default; set_autotune reloads its kernel modules
            gemlite.set_autotune(BOUNDED if autotune == "bounded" else autotune)
        _gemlite, _gemlite_autotune = gemlite, autotune
    except Exception as e:  # noqa: BLE001 - no GPU, triton missing or too old, an API change
        _gemlite = f"{type(e).__name__}: {e}"[:200]
    return _gemlite


def _gemlite_cfg(gl, M, N, K, lin) -> str:
    """'<matmul type> cached' where gemlite's loaded config has this call's key (its pruners' signature)
    and the kernel has more than one config (else Triton never calls the pruner: 'single config'), else
    '<matmul type> autotune-<breadth>'."""
    import importlib
    from gemlite.core import GEMLITE_TRITON_CONFIG_CACHE, get_matmul_type
    from gemlite.triton_kernels.utils import get_closest_m
    meta = lin.get_meta_args()
    W_nbits, group, e, in_dtype = meta[1], meta[2], meta[4], meta[5]
    sig = str((get_closest_m(M), N, K, group, e, in_dtype * 100 + W_nbits))
    kind = get_matmul_type(M, W_nbits)
    module, cls = KERNEL_CLASSES[kind]
    kernel = getattr(importlib.import_module("gemlite.triton_kernels." + module), cls).kernel[0]
    if len(kernel.configs) < 2:
        return f"{kind} single config"
    return f"{kind} " + ("cached" if sig in GEMLITE_TRITON_CONFIG_CACHE.get(kind, {}) else f"autotune-{_gemlite_autotune}")


def time_ops(torch, ops, repeats: int, sample_s: float) -> dict:
    """Wall and CUDA-graph time per op of `ops` (no-argument callables, one per weight copy)."""
    n = len(ops)

    def one_pass():
        return [op() for op in ops]

    one_pass()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    one_pass()
    torch.cuda.synchronize()
    t_pass = max(time.perf_counter() - t0, 1e-6)
    passes = int(min(200, max(2, math.ceil(sample_s / t_pass))))
    repeats = max(3, min(repeats, int(1.0 / (t_pass * passes)) + 1))   # bounded seconds for slow ops
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(passes):
            one_pass()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1e6 / (passes * n))
    r = dict(us=float(statistics.median(walls)))
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):      # capture's warm-up belongs on a side stream (torch docs)
            one_pass()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            one_pass()
        graph.replay()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        gpus = []
        for _ in range(repeats):
            start.record()
            for _ in range(passes):
                graph.replay()
            end.record()
            end.synchronize()
            gpus.append(start.elapsed_time(end) * 1e3 / (passes * n))
        r["gpu_us"] = float(statistics.median(gpus))
        del graph
    except Exception as e:  # noqa: BLE001 - an op that cannot be captured keeps its wall time
        r["graph_error"] = f"{type(e).__name__}: {e}"[:160]
    return r


def _relerr(torch, out, A, W_float) -> float:
    ref = A.float() @ W_float.t()
    return float((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def _activations(torch, M, K, dtype, n):
    A = torch.randn(M, K, dtype=torch.float32, device=DEVICE)
    return [(A * (1 + 1e-3 * j)).to(dtype) for j in range(n)]


def _torch_bf16(torch, M, N, K, copies_for):
    W = torch.randn(N, K, dtype=torch.bfloat16, device=DEVICE)
    n = copies_for(W.nbytes)
    Ws = [W * (1 + 1e-3 * i) for i in range(n)]
    As = _activations(torch, M, K, torch.bfloat16, n)
    return [lambda a=a, w=w: a @ w.t() for a, w in zip(As, Ws)], None, None


def _int4_values(torch, N, K, scale_dtype):
    """Values v in [-8, 7] and group-128 scales s: the weight v * s of bitblas_jax's int4 g128."""
    v = torch.randint(-8, 8, (N, K), dtype=torch.int32, device=DEVICE)
    s = (torch.rand(N, K // GROUP, device=DEVICE) * 0.01 + 0.005).to(scale_dtype)
    return v, s


def _torch_int4(torch, M, N, K, copies_for):
    from bench_torch import make_tinygemm, tinygemm_mm
    v, s = _int4_values(torch, N, K, torch.bfloat16)
    wq, sz = make_tinygemm(v.to(torch.int8), s, N, K, DEVICE)
    n = copies_for(wq.nbytes + sz.nbytes)
    copies = [(wq.clone(), sz * (1 + 1e-3 * i)) for i in range(n)]
    As = _activations(torch, M, K, torch.bfloat16, n)
    check = (tinygemm_mm(As[0], wq, sz), As[0], v.float() * s.float().repeat_interleave(GROUP, 1))
    return [lambda a=a, c=c: tinygemm_mm(a, *c) for a, c in zip(As, copies)], check, None


def _gemlite_w4(torch, M, N, K, copies_for, gl):
    """A16W4 through GemLiteLinear.pack with the integer zero point 8: gemlite dequantizes
    (q - 8) * s with q = v + 8 in 0..15, i.e. v * s, bitblas_jax's int4 g128 (symmetric)."""
    v, s = _int4_values(torch, N, K, torch.float16)
    lin = gl.GemLiteLinear(4, group_size=GROUP, in_features=K, out_features=N,
                           input_dtype=gl.DType.FP16, output_dtype=gl.DType.FP16)
    lin.pack((v + 8).to(torch.uint8), s, 8)
    return _gemlite_ops(torch, M, N, K, copies_for, gl, lin, v.float() * s.float().repeat_interleave(GROUP, 1))


def _gemlite_w8(torch, M, N, K, copies_for, gl):
    """A16W8 (gemlite.helper.A16W8_INT8): int8 values times one fp16 scale per output row, bitblas_jax's w8."""
    v = torch.randint(-128, 128, (N, K), dtype=torch.int8, device=DEVICE)
    s = (torch.rand(N, 1, device=DEVICE) * 1e-3 + 5e-4).half()
    lin = gl.helper.A16W8_INT8(device=DEVICE, dtype=torch.float16).from_weights(v, scales=s)
    return _gemlite_ops(torch, M, N, K, copies_for, gl, lin, v.float() * s.float())


def _gemlite_ops(torch, M, N, K, copies_for, gl, lin, W_float):
    """One gemlite.forward_functional call (the op GemLiteLinear.forward runs) per copy of lin's packed
    weight and scales."""
    tensors, meta = lin.get_tensor_args(), lin.get_meta_args()
    W_q, scales, rest = tensors[0], tensors[1], tensors[2:]
    n = copies_for(W_q.nbytes + scales.nbytes)
    copies = [[W_q.clone(), scales * (1 + 1e-3 * i), *rest] for i in range(n)]
    As = _activations(torch, M, K, torch.float16, n)
    ops = [lambda a=a, c=c: gl.forward_functional(a, None, c, meta) for a, c in zip(As, copies)]
    return ops, (ops[0](), As[0], W_float), _gemlite_cfg(gl, M, N, K, lin)


def run(M: int, N: int, K: int, names, copies_for, repeats: int, sample_s: float) -> dict:
    """{name: us, name_gpu: gpu_us, name_relerr, name_cfg (gemlite)} for each baseline in `names`;
    {} without torch + CUDA; `name_error` for one that fails."""
    torch = cuda_torch()
    if torch is None:
        return {}
    res = {}
    for name in names:
        try:
            if name == "torch_bf16":
                ops, check, cfg = _torch_bf16(torch, M, N, K, copies_for)
            elif name == "torch_int4":
                ops, check, cfg = _torch_int4(torch, M, N, K, copies_for)
            else:
                gl = load_gemlite()
                if isinstance(gl, str):
                    res[name + "_error"] = gl
                    continue
                build = _gemlite_w4 if name == "gemlite_w4" else _gemlite_w8
                ops, check, cfg = build(torch, M, N, K, copies_for, gl)
            if check is not None:
                res[name + "_relerr"] = _relerr(torch, *check)
            if cfg is not None:
                res[name + "_cfg"] = cfg
            r = time_ops(torch, ops, repeats, sample_s)
            res[name] = r["us"]
            if "gpu_us" in r:
                res[name + "_gpu"] = r["gpu_us"]
            if "graph_error" in r:
                res[name + "_graph_error"] = r["graph_error"]
        except Exception as e:  # noqa: BLE001 - API differences across torch / triton / gemlite versions
            res[name + "_error"] = f"{type(e).__name__}: {e}"[:200]
        finally:
            ops = check = None
            torch.cuda.empty_cache()
    return res


class WorkerLost(Exception):
    """The child process died or did not answer in time."""


class Worker:
    """run() in a child process: `python torch_baselines.py --serve FD`, asked over a pipe one baseline
    at a time. A baseline whose request kills the child or outlasts timeout_s is killed with it, recorded
    as `<name>_error` and not asked again; the next request starts a fresh child."""

    def __init__(self, call_bytes: int, gemlite_config: str | None, gemlite_autotune: str, load_gemlite: bool,
                 timeout_s: float = 180.0, command: list[str] | None = None):
        self.settings = dict(call_bytes=call_bytes, gemlite_config=gemlite_config,
                             gemlite_autotune=gemlite_autotune, load_gemlite=load_gemlite)
        self.command = command or [sys.executable, os.path.abspath(__file__), "--serve"]
        self.timeout_s = timeout_s
        self.proc = self.conn = None
        self.dead: dict[str, str] = {}   # baseline -> why it is not asked again
        self.errors_in_a_row: dict[str, int] = {}

    def _start(self) -> dict:
        parent, child = multiprocessing.Pipe()
        self.proc = subprocess.Popen(self.command + [str(child.fileno())], pass_fds=[child.fileno()])
        child.close()
        self.conn = parent
        self.conn.send(("init", self.settings))
        return self._answer(self.timeout_s)

    def _answer(self, timeout_s: float):
        try:
            if not self.conn.poll(timeout_s):
                self.stop()
                raise WorkerLost(f"no answer in {timeout_s:.0f} s (killed)")
            return self.conn.recv()
        except (EOFError, OSError):
            rc = self.proc.wait(timeout=30)
            self.stop()
            raise WorkerLost(f"the baseline process exited with status {rc}") from None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def hello(self) -> dict:
        """The child's torch / CUDA / gemlite facts ({'error': ...} where it could not start)."""
        try:
            return self._start()
        except WorkerLost as e:
            return dict(error=str(e))

    def run(self, M: int, N: int, K: int, names, repeats: int, sample_s: float) -> dict:
        """run()'s dict for the baselines in `names` not yet given up."""
        res = {}
        for name in names:
            if name in self.dead:
                continue
            try:
                if self.conn is None:
                    info = self._start()
                    if info.get("error") or not info.get("cuda"):
                        raise WorkerLost(f"restart failed: {info}")
                self.conn.send(("run", M, N, K, name, repeats, sample_s))
                r = self._answer(self.timeout_s)
                res.update(r)
                # an error that repeats (an API mismatch, a compile failure) would cost every later point
                self.errors_in_a_row[name] = self.errors_in_a_row.get(name, 0) + 1 if name + "_error" in r else 0
                if self.errors_in_a_row[name] >= 2:
                    self.dead[name] = f"failed twice in a row, last: {r[name + '_error']}"
                    print(f"  {name}: {self.dead[name]}; not run again", flush=True)
            except WorkerLost as e:
                self.dead[name] = f"{e} during {name} at M={M} N={N} K={K}"
                res[name + "_error"] = self.dead[name]
                print(f"  {name}: {self.dead[name]}; not run again", flush=True)
        return res

    def save_gemlite(self, path: str):
        """gemlite's autotune cache (loaded + tuned in this run) to path, for a later --gemlite-config."""
        try:
            if self.conn is None:
                raise WorkerLost("no baseline process")
            self.conn.send(("save_gemlite", path))
            print("gemlite configs:", self._answer(self.timeout_s), flush=True)
        except (WorkerLost, OSError) as e:
            print(f"gemlite configs not written: {e}", flush=True)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.send(("exit",))
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.stop()


def serve(fd: int):
    """The child's loop (Worker): settings, then one reply per request until "exit" or the pipe closes."""
    conn = multiprocessing.connection.Connection(fd)
    settings = conn.recv()[1]
    torch = cuda_torch()
    info = dict(torch=sys.modules["torch"].__version__ if "torch" in sys.modules else None,
                cuda=torch.cuda.get_device_name() if torch is not None else None)
    if torch is not None and settings["load_gemlite"]:
        gl = load_gemlite(settings["gemlite_config"], settings["gemlite_autotune"])
        info["gemlite" if not isinstance(gl, str) else "gemlite_error"] = getattr(gl, "__version__", gl)
    conn.send(info)
    copies_for = functools.partial(_copies_for, call_bytes=settings["call_bytes"])
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "run":
            _, M, N, K, name, repeats, sample_s = msg
            conn.send(run(M, N, K, [name], copies_for, repeats, sample_s))
        elif msg[0] == "save_gemlite":
            gl = load_gemlite()
            try:
                if isinstance(gl, str):
                    raise RuntimeError(gl)
                os.makedirs(os.path.dirname(os.path.abspath(msg[1])), exist_ok=True)
                gl.cache_config(msg[1])
                conn.send(f"written to {msg[1]}")
            except Exception as e:  # noqa: BLE001 - the run's results are written already
                conn.send(f"not written ({type(e).__name__}: {e})"[:300])
        else:
            return


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        raise SystemExit("usage: torch_baselines.py --serve FD (started by bench_matmul.py)")
