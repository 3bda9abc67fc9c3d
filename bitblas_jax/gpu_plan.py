"""Which CUDA kernel runs a product, chosen from static shapes at trace time (no tuning, no device query
beyond the compute capability).

The kernels, by mechanism (docs/KERNELS.md):

  decode               small M: one CTA per 32 weight rows over all of K (or, where those CTAs leave
                       resident slots empty on sm_90, a cluster of CTAs sharing K, their sums added
                       through distributed shared memory), warp-private cp.async ring, group scales
                       on fp32 partial sums (M <= 16 per launch, larger M in slices)
  decode_splitk        small M where decode cannot run (float16 accumulation, groups that end inside
                       packed tiles): K split across CTAs
  gemm_mma             mma.sync tensor-core GEMM (any sm_80+ GPU)
  gemm_wgmma           Hopper GEMM (sm_90a): warp-specialized, wgmma with the weight in registers
  gemm_cutlass         Hopper GEMM (sm_90a) for int4 / uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights from M = 64:
                       CUTLASS's mixed-input collective (TMA, cooperative warpgroups, persistent tiles; the
                       table formats through a register lookup) on the packed weight;
                       where its tiles fill a fraction of a wave, K split into CUTLASS's batch mode and
                       the float32 partials added in order; where they fill a wave and a bit, CUTLASS's
                       stream-K scheduler deals the last waves' stages evenly to the SMs
  dequantize_then_dot  large M under JAX: the dequantize kernel writes the 16-bit weight, XLA's dot
                       (cuBLAS) multiplies

and, for int8 / float8 activations (quantized_activation_kernel):

  decode_i8            int8 activations, M <= 16: int8 tensor cores (mma.m16n8k32.s8) on the same packed
                       weight, exact int32 group sums
  gemm_wgmma_a8        int8 activations above (sm_90a): wgmma m64nNk32 s8 with the weight in registers,
                       int8 / int4 / uint4 weights, mode none or per-channel scales
  widened_f16          float8 activations (sm_80+), mode none or one group per row: A widened to float16
                       (exact), plan_cuda's 16-bit kernels with float32 accumulation and output, the
                       per-channel term and the epilogue in XLA
  gemm_mma_a8          int8 activations above decode sizes where gemm_wgmma_a8 does not take the call
                       (sm_80+): mma.m16n8k32.s8, what decode_i8 computes
  xla_dot              the rest: XLA's exact dots and the float32 epilogue (quantized_dot.py)

All plan arithmetic (tiles, stage k, split-K, workspace bytes, what fits) lives in C++,
csrc/include/bitblas_jax/plan.h, which the dispatcher launches from; this module asks it through the
`_bitblas_plan` extension and owns only what C++ cannot know: the measured M thresholds between the
kernels, the environment overrides and the GPU's compute capability and SM count.

The thresholds (H100 and H200 measurements, docs/KERNELS.md): decode up to 16 rows under JAX (32 under
the torch shim, which has no XLA dot; decode_splitk up to 8 rows under JAX where decode cannot run);
then the GEMM up to gemm_max_m() rows (gemm_wgmma on sm_90: 1024 on layers of 4096 x 8192 weights and
up, 512 from 4096 x 4096, 64 below; gemm_mma elsewhere: 64); larger M dequantize_then_dot, since
writing and re-reading a 16-bit weight costs less than those GEMMs' mainloops there. On sm_90, int4 /
uint4 / int8 / uint8 / nf4 / fp4_e2m1 weights with 16-bit output run gemm_cutlass from gemm_cutlass_min_m() rows (above
decode sizes; 4-bit codes from 6 rows on the largest layers, instead of decode) to GEMM_CUTLASS_MAX_M rows instead
(where it computes the call: plan.h gemm_cutlass_takes).

Environment: BITBLAS_JAX_GEMM_MAX_M (the GEMM's largest M on every layer), BITBLAS_JAX_HOPPER (0 / 1:
whether gemm_wgmma may run), BITBLAS_JAX_DECODE_I8 / BITBLAS_JAX_GEMM_A8 / BITBLAS_JAX_GEMM_MMA_A8 /
BITBLAS_JAX_WIDENED_F16 (0 / 1: whether decode_i8 / gemm_wgmma_a8 / gemm_mma_a8 / widened_f16 may run),
BITBLAS_JAX_NUM_SMS (the SM count the split-K rules and gemm_cutlass's tiles plan for; default: the GPU's,
num_sms()), BITBLAS_JAX_GEMM_CUTLASS (0 / 1: whether gemm_cutlass may run),
BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT (the most parts gemm_cutlass may split K into, 1 to
GEMM_CUTLASS_MAX_SPLIT; 1: never split), BITBLAS_JAX_GEMM_CUTLASS_STREAM_K (0: gemm_cutlass's
persistent tiles only, 1: every tile by the model, 2: its stream-K tiles only),
BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT (0 / 1: whether its stream-K tiles may split K in the kernel),
BITBLAS_JAX_DECODE_CLUSTER_SPLIT (0 / 1: whether decode may split K over a cluster of CTAs).
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

from . import _bitblas_plan, formats

KERNELS = tuple(_bitblas_plan.KERNELS)

DECODE_MAX_M = 16           # JAX: decode up to here, then the GEMMs (they beat 16-row slices)
TORCH_DECODE_MAX_M = 32     # the torch shim: decode in 16-row slices beats the GEMMs up to here
DECODE_SPLITK_MAX_M = 8     # JAX: decode_splitk (where decode cannot run) beats the GEMMs up to here
MMA_MAX_M = 64              # JAX, gemm_mma: up to here it beats dequantize_then_dot
WGMMA_SMALL_MAX_M = 64      # JAX, gemm_wgmma on layers under WGMMA_LAYER weights
WGMMA_MAX_M = 512           # ... from WGMMA_LAYER weights
WGMMA_BIG_MAX_M = 1024      # ... from WGMMA_BIG_LAYER weights
WGMMA_LAYER = 4096 * 4096
WGMMA_BIG_LAYER = 4096 * 8192
# gemm_cutlass (Hopper, 4- and 8-bit integer weights, nf4 / fp4_e2m1) from gemm_cutlass_min_m() rows (the measurements:
# docs/KERNELS.md, gemm_cutlass, Decode sizes). Integer codes from GEMM_CUTLASS_MIN_M: above decode sizes its 64-row
# tiles beat gemm_wgmma on every layer measured. 4-bit codes from GEMM_CUTLASS_DECODE_MIN_M (where decode moves to two
# n8 blocks) on layers of GEMM_CUTLASS_DECODE_LAYER weights and up: one wave of 256-row tiles streams the weight
# faster than decode there; below that size, and for 8-bit codes (not measured), decode keeps M <= 16. The table
# formats (a register lookup per code) from GEMM_CUTLASS_TABLE_MIN_M, the range measured. From M = 128 to 1024
# gemm_cutlass took less time than the plan without it on every layer measured (H200 int4).
GEMM_CUTLASS_MIN_M = 17
GEMM_CUTLASS_DECODE_MIN_M = 6
GEMM_CUTLASS_DECODE_LAYER = 16384 * 8192
GEMM_CUTLASS_TABLE_MIN_M = 64
# ... up to here under JAX, dequantize_then_dot above: at M = 4096 it ran level with the bare fp16 dot
# (0.97-1.13x, H200), which dequantize_then_dot can only trail; larger M is not measured.
GEMM_CUTLASS_MAX_M = 4096
_NO_LIMIT = 1 << 62
GEMM_CUTLASS_MAX_SPLIT = int(_bitblas_plan.GEMM_CUTLASS_MAX_SPLIT)   # plan.h kCutlassMaxSplit
GEMM_CUTLASS_STREAM_K_TILES = tuple(_bitblas_plan.GEMM_CUTLASS_STREAM_K_TILES)   # ... kCutlassTiles' stream_k

class CudaPlan(NamedTuple):
    kernel: str            # one of KERNELS
    tile: int              # the kernel's tile id (plan.h: MmaTileId / WgmmaTileId / decode shape)
    split_k: int
    workspace_bytes: int
    stage_k: int = 0
    tail_tile: int = -1    # decode: the shape of the last launch of M % 16 rows

    @property
    def kernel_id(self) -> int:
        return KERNELS.index(self.kernel)


# The SM count planned for where nothing says otherwise: an H100 SXM / H200.
DEFAULT_NUM_SMS = 132


@functools.lru_cache(maxsize=None)
def _jax_gpu_sm_count() -> int | None:
    """The fewest SMs among JAX's GPUs (their `core_count`), None without a GPU backend or a count."""
    try:
        import jax
        counts = [getattr(d, "core_count", None) for d in jax.devices("gpu")]
    except Exception:  # no GPU backend
        return None
    counts = [int(c) for c in counts if isinstance(c, int) and c > 0]
    return min(counts) if counts else None


def num_sms(detect=_jax_gpu_sm_count) -> int:
    """The SM count the split-K rules plan for (plan.h): BITBLAS_JAX_NUM_SMS, else detect()
    (default: the fewest SMs among JAX's GPUs; the torch shim passes its device's count), else
    DEFAULT_NUM_SMS. A wave of tiles is this many CTAs (times the CTAs per SM), so an A100 (108 SMs) or an
    H100 PCIe (114) plans its own waves."""
    env = os.environ.get("BITBLAS_JAX_NUM_SMS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"BITBLAS_JAX_NUM_SMS must be a positive integer, not {env!r}") from None
    try:
        n = detect()
    except Exception:
        n = None
    return int(n) if n and int(n) > 0 else DEFAULT_NUM_SMS


@functools.lru_cache(maxsize=None)
def _jax_gpu_is_sm90() -> bool:
    try:
        import jax
        return any(getattr(d, "compute_capability", None) == "9.0" for d in jax.devices("gpu"))
    except Exception:  # no GPU backend
        return False


def hopper(detect=_jax_gpu_is_sm90) -> bool:
    """Whether gemm_wgmma (sm_90a) can run: detect() (default: JAX's GPU is compute capability 9.0).
    BITBLAS_JAX_HOPPER=0 / 1 overrides it (A/B timing, plan tests)."""
    env = os.environ.get("BITBLAS_JAX_HOPPER")
    if env in ("0", "1"):
        return env == "1"
    return bool(detect())


def _env_gemm_max_m() -> int | None:
    env = os.environ.get("BITBLAS_JAX_GEMM_MAX_M")
    if env is not None:
        try:
            return int(env)
        except ValueError:
            pass
    return None


def gemm_max_m(N: int, K: int, wgmma: bool = False) -> int:
    """Largest M that runs the GEMM (gemm_wgmma where it runs, else gemm_mma) under JAX; larger M runs
    dequantize_then_dot. BITBLAS_JAX_GEMM_MAX_M overrides it for every layer size (16 or less: never)."""
    env = _env_gemm_max_m()
    if env is not None:
        return env
    if not wgmma:
        return MMA_MAX_M
    if N * K >= WGMMA_BIG_LAYER:
        return WGMMA_BIG_MAX_M
    return WGMMA_MAX_M if N * K >= WGMMA_LAYER else WGMMA_SMALL_MAX_M


def gemm_cutlass_min_m(N: int, K: int, W_dtype: str) -> int:
    """The fewest rows gemm_cutlass runs (where it takes the call; plan.h make_plan weighs it before decode)."""
    fmt = formats.get_format(W_dtype)
    if fmt.kind == "table":
        return GEMM_CUTLASS_TABLE_MIN_M
    return GEMM_CUTLASS_DECODE_MIN_M if fmt.bits == 4 and N * K >= GEMM_CUTLASS_DECODE_LAYER else GEMM_CUTLASS_MIN_M


def gemm_cutlass_runs(built=None) -> bool:
    """Whether gemm_cutlass may run: built() (default: this install's CUDA module was compiled with
    CUTLASS). BITBLAS_JAX_GEMM_CUTLASS=0 / 1 overrides it (A/B timing, plan tests)."""
    env = os.environ.get("BITBLAS_JAX_GEMM_CUTLASS")
    if env in ("0", "1"):
        return env == "1"
    if built is None:
        from . import _ext
        built = lambda: _ext.has_cutlass()  # noqa: E731
    return bool(built())


def gemm_cutlass_max_split() -> int:
    """The most parts gemm_cutlass may split K into: GEMM_CUTLASS_MAX_SPLIT, or
    BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT (A/B timing, the fuzz's forced plans)."""
    env = os.environ.get("BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT")
    if env is None:
        return GEMM_CUTLASS_MAX_SPLIT
    try:
        v = int(env)
    except ValueError:
        v = 0
    if not 1 <= v <= GEMM_CUTLASS_MAX_SPLIT:
        raise ValueError(f"BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT must be an integer from 1 to "
                         f"{GEMM_CUTLASS_MAX_SPLIT}, not {env!r}")
    return v


def gemm_cutlass_stream_k() -> int:
    """Which of gemm_cutlass's tiles the plan weighs (plan.h CutlassStreamK): 1, every tile by the model
    (default); BITBLAS_JAX_GEMM_CUTLASS_STREAM_K=0 the persistent ones only (A/B timing, tests of K split), =2
    the stream-K ones only (tests, the fuzz's forced plans)."""
    env = os.environ.get("BITBLAS_JAX_GEMM_CUTLASS_STREAM_K")
    if env is None:
        return 1
    if env not in ("0", "1", "2"):
        raise ValueError(f"BITBLAS_JAX_GEMM_CUTLASS_STREAM_K must be 0, 1 or 2, not {env!r}")
    return int(env)


def _env_switch(name: str, default: bool) -> bool:
    """The 0 / 1 environment variable `name`, else `default`."""
    env = os.environ.get(name)
    if env is None:
        return default
    if env not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, not {env!r}")
    return env == "1"


def gemm_cutlass_in_kernel_split() -> bool:
    """Whether gemm_cutlass's stream-K tiles may split K in the kernel (plan.h gemm_cutlass_choice's
    in_kernel_split): off by default, being slower through JAX than the persistent split (docs/KERNELS.md);
    BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT=1 weighs it (A/B timing)."""
    return _env_switch("BITBLAS_JAX_GEMM_CUTLASS_IN_KERNEL_SPLIT", False)


def decode_cluster_split() -> bool:
    """Whether decode may split K over a thread-block cluster where its grid leaves resident slots empty
    (plan.h decode_cluster_split; sm_90): off by default, being slower through JAX than the whole-K grid
    (docs/KERNELS.md); BITBLAS_JAX_DECODE_CLUSTER_SPLIT=1 turns it on (A/B timing)."""
    return _env_switch("BITBLAS_JAX_DECODE_CLUSTER_SPLIT", False)


def plan_cuda(M: int, N: int, K: int, W_dtype: str, A_dtype: str, accum_dtype: str, out_dtype: str,
              mode: str, group_size: int, allow_xla_dot: bool = True, sm90: bool | None = None,
              a_aligned: bool = True, sms: int | None = None, gemm_cutlass: bool | None = None) -> CudaPlan:
    """The plan for C[M, N] = A[M, K] x dequant(W)[N, K]^T on the GPU (plan.h make_plan).

    allow_xla_dot: whether dequantize_then_dot is possible (the torch shim, which runs the custom
    kernels only, says no). sm90: whether the GPU is an sm_90 one; None asks hopper(). a_aligned:
    whether A (and C, bias) are 16-byte aligned (XLA's buffers always are; a torch slice may not be).
    sms: the GPU's SM count; None asks num_sms(). gemm_cutlass: whether gemm_cutlass may run; None asks
    gemm_cutlass_runs().
    """
    M, N, K = int(M), int(N), int(K)
    if sm90 is None:
        sm90 = hopper()
    if gemm_cutlass is None:
        gemm_cutlass = gemm_cutlass_runs()
    env_max = _env_gemm_max_m()
    if allow_xla_dot:
        limits = dict(decode_max_m=DECODE_MAX_M, decode_splitk_max_m=DECODE_SPLITK_MAX_M,
                      mma_max_m=gemm_max_m(N, K, False), wgmma_max_m=gemm_max_m(N, K, True),
                      cutlass_max_m=GEMM_CUTLASS_MAX_M if env_max is None else env_max)
    else:
        limits = dict(decode_max_m=TORCH_DECODE_MAX_M, decode_splitk_max_m=TORCH_DECODE_MAX_M,
                      mma_max_m=_NO_LIMIT, wgmma_max_m=_NO_LIMIT, cutlass_max_m=_NO_LIMIT)
    fmt = formats.get_format(W_dtype)
    p = _bitblas_plan.make_plan(
        M=M, N=N, K=K, bits=fmt.bits, accum_f32=accum_dtype == "float32",
        mode=formats.MODE_IDS[mode], group_size=int(group_size), sm90=bool(sm90), a_aligned=bool(a_aligned),
        num_sms=int(sms) if sms else num_sms(), w_format=fmt.id, out_is_act=out_dtype == A_dtype,
        gemm_cutlass=bool(gemm_cutlass), cutlass_min_m=gemm_cutlass_min_m(N, K, W_dtype),
        cutlass_max_split=gemm_cutlass_max_split(), cutlass_stream_k=gemm_cutlass_stream_k(),
        cutlass_in_kernel_split=gemm_cutlass_in_kernel_split(), decode_cluster_split=decode_cluster_split(),
        **limits)
    return CudaPlan(p["kernel"], p["tile"], p["split_k"], p["workspace_bytes"], p["stage_k"], p["tail_tile"])


# ---- int8 / float8 activations ------------------------------------------------------------------
# Their GPU path (plan.h quantized_activation_kernel): "decode_i8", the int8 tensor-core decode kernel,
# for int8 activations at decode sizes where it computes the mode; "gemm_wgmma_a8", the Hopper 8-bit
# GEMM, above them (int8 A with int8 / int4 / uint4 weights, float8 A with float8 / int4 weights; mode
# none, per-channel scales or groups of whole 128-k stages); "gemm_mma_a8", the sm_80+ int8 GEMM, above
# decode sizes for what gemm_wgmma_a8 does not take (decode_i8's formats and modes); "widened_f16",
# float8 activations widened to float16 on the 16-bit kernels (mode none, one group per row) where
# gemm_wgmma_a8 does not run; else "xla_dot",
# bitblas_jax/quantized_dot.py (XLA's exact dots and the float32 epilogue, fused and partitioned by XLA).
QUANTIZED_ACTIVATION_KERNELS = tuple(_bitblas_plan.QUANTIZED_ACTIVATION_KERNELS)


def a8_kernel_scales(mode: str, group_size: int, K: int) -> bool:
    """Whether the 8-bit kernels (decode_i8, gemm_mma_a8, gemm_wgmma_a8) apply mode scale's group scales
    in their main loop (groups smaller than K); else a per-channel scale is their epilogue's
    (plan.h a8_kernel_scales)."""
    return bool(_bitblas_plan.a8_kernel_scales(mode=formats.MODE_IDS[mode], group_size=int(group_size), K=int(K)))


DECODE_I8_MAX_M = 16        # decode_i8 up to here (the decode regime of the 16-bit kernels), XLA's dots above


@functools.lru_cache(maxsize=None)
def _jax_gpus_are_sm80() -> bool:
    try:
        import jax
        gpus = jax.devices("gpu")
    except Exception:  # no GPU backend
        return False

    def major(d) -> int:
        try:
            return int(str(getattr(d, "compute_capability", "0")).split(".")[0])
        except ValueError:
            return 0
    return bool(gpus) and all(major(d) >= 8 for d in gpus)


def _sm80_kernel_runs(env_name: str, detect) -> bool:
    """Whether a kernel that needs sm_80+ can run: this install has the CUDA kernels and detect() (every
    JAX GPU is sm_80 or newer); the environment variable env_name = 0 / 1 overrides it."""
    env = os.environ.get(env_name)
    if env in ("0", "1"):
        return env == "1"
    from . import _ext
    return _ext.has_cuda() and bool(detect())


def decode_i8_runs(detect=_jax_gpus_are_sm80) -> bool:
    """Whether decode_i8 can run: this install has the CUDA kernels and detect() (default: every JAX GPU
    is sm_80 or newer; mma.m16n8k32.s8 needs sm_80). BITBLAS_JAX_DECODE_I8=0 / 1 overrides it (A/B
    timing against XLA's dots; lowering tests on machines without a GPU)."""
    return _sm80_kernel_runs("BITBLAS_JAX_DECODE_I8", detect)


def gemm_mma_a8_runs(detect=_jax_gpus_are_sm80) -> bool:
    """Whether gemm_mma_a8 can run: as decode_i8_runs (sm_80+ and the CUDA kernels).
    BITBLAS_JAX_GEMM_MMA_A8=0 / 1 overrides it (A/B timing against XLA's dots; lowering tests on machines
    without a GPU; with BITBLAS_JAX_GEMM_A8=0, the kernel on an sm_90 GPU)."""
    return _sm80_kernel_runs("BITBLAS_JAX_GEMM_MMA_A8", detect)


def gemm_a8_runs(detect=_jax_gpu_is_sm90) -> bool:
    """Whether gemm_wgmma_a8 can run: this install has the CUDA kernels and the GPU is an sm_90 one
    (hopper(detect); default: JAX's GPU). BITBLAS_JAX_GEMM_A8=0 / 1 overrides it (A/B timing against
    XLA's dots; lowering tests on machines without a GPU)."""
    env = os.environ.get("BITBLAS_JAX_GEMM_A8")
    if env in ("0", "1"):
        return env == "1"
    from . import _ext
    return _ext.has_cuda() and hopper(detect)


def widened_f16_runs(detect=_jax_gpus_are_sm80) -> bool:
    """Whether widened_f16 can run: this install has the CUDA kernels and detect() (default: every JAX
    GPU is sm_80 or newer, where the 16-bit kernels run). BITBLAS_JAX_WIDENED_F16=0 / 1 overrides it
    (A/B timing against XLA's dots; lowering tests on machines without a GPU)."""
    return _sm80_kernel_runs("BITBLAS_JAX_WIDENED_F16", detect)


def quantized_activation_kernel(A_dtype: str, W_dtype: str, mode: str, group_size: int, M: int, K: int,
                                decode_i8: bool | None = None, sm90: bool | None = None,
                                gemm_mma_a8: bool | None = None, widened_f16: bool | None = None) -> str:
    """The GPU path of int8 / float8 activations for C[M, N] (plan.h quantized_activation_kernel):
    "decode_i8", "gemm_wgmma_a8", "gemm_mma_a8", "widened_f16" or "xla_dot". group_size: resolved (K for
    per-channel); decode_i8: whether the GPU can run it (None asks decode_i8_runs()); sm90: whether it
    can run gemm_wgmma_a8 (None asks gemm_a8_runs()); gemm_mma_a8: whether it can run gemm_mma_a8 (None
    asks gemm_mma_a8_runs()); widened_f16: whether it can run the 16-bit kernels for float8 activations
    (None asks widened_f16_runs())."""
    if not formats.is_quantized_activation(A_dtype):
        raise ValueError(f"quantized_activation_kernel: A_dtype={A_dtype!r} is not int8 / float8")
    if decode_i8 is None:
        decode_i8 = decode_i8_runs()
    if sm90 is None:
        sm90 = gemm_a8_runs()
    if gemm_mma_a8 is None:
        gemm_mma_a8 = gemm_mma_a8_runs()
    if widened_f16 is None:
        widened_f16 = widened_f16_runs()
    return _bitblas_plan.quantized_activation_kernel(
        M=int(M), K=int(K), a_dtype=formats.DTYPE_IDS[A_dtype], w_format=formats.get_format(W_dtype).id,
        mode=formats.MODE_IDS[mode], group_size=int(group_size), decode_i8=bool(decode_i8),
        decode_i8_max_m=DECODE_I8_MAX_M, sm90=bool(sm90), gemm_mma_a8=bool(gemm_mma_a8),
        widened_f16=bool(widened_f16))


def tile_dims(plan: CudaPlan) -> tuple[int, int]:
    """GEMM tiles: (weight rows, activation rows); decode: (n8 blocks, tiles per warp and chunk)."""
    return tuple(_bitblas_plan.tile_dims(plan.kernel, plan.tile))


def stream_k(plan: CudaPlan) -> bool:
    """Whether the plan runs gemm_cutlass on a stream-K tile (CUTLASS's stream-K scheduler)."""
    return plan.kernel == "gemm_cutlass" and plan.tile in GEMM_CUTLASS_STREAM_K_TILES


def kernel_label(plan: CudaPlan) -> str:
    """The kernel's name, "gemm_cutlass stream-K" for gemm_cutlass on a stream-K tile (what coverage counts)."""
    return "gemm_cutlass stream-K" if stream_k(plan) else plan.kernel
