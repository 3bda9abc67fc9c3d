#!/usr/bin/env bash
# On a bare GPU machine (CUDA 13, nvcc, python3 with jax[cuda] and torch, no package registry):
# build, run the test suite on the GPU, sanitize every kernel (tools/gpu_sanitize.sh), run a short benchmark, print a summary last.
#   bash tools/gpu_check.sh            # everything
#   STEPS="build tests" bash tools/gpu_check.sh   (steps: build selftest tests sanitize bench)
#   SELFTEST_PDL_AB=1: the selftest timings once more with BITBLAS_JAX_PDL=0
#   SANITIZE_TOOLS="memcheck": the compute-sanitizer tools the sanitize step runs (tools/gpu_sanitize.sh;
#   default: memcheck racecheck synccheck initcheck)
#   BENCH_ARGS: bench_matmul.py's arguments (default --quick); BENCH_DEADLINE_S (default 540): seconds from
#   this script's start by which the benchmark stops starting new (shape, M) points
# Logs go to $OUT (or ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}; mkdir -p "$OUT"
STEPS=${STEPS:-"build tests sanitize bench"}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
declare -A RESULT
has() { [[ " $STEPS " == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
if has build; then
  t0=$SECONDS
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install --no-build-isolation --no-deps -v -e . \
    >"$OUT/build.log" 2>&1 && RESULT[build]="ok ($((SECONDS - t0)) s)" || { RESULT[build]="FAILED"; tail -50 "$OUT/build.log"; }
  grep -E "ptxas info|bytes stack|spill" "$OUT/build.log" | sort | uniq -c | sort -rn | head -20 > "$OUT/ptxas.txt"
fi
python3 -c "import jax, bitblas_jax._ext as e; print('jax', jax.__version__, jax.devices(), 'cuda kernels:', e.has_cuda())"
if has selftest; then  # the standalone kernel test + kernel-only timings (CUDA graphs), files compiled in parallel
  t0=$SECONDS; mkdir -p build/selftest
  for f in csrc/cuda/*.cu tests/cuda/selftest.cu; do
    [[ $f == *inst_gemm_cutlass_* ]] && continue   # gemm_cutlass: its own self-test below (CUTLASS headers)
    nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc/cuda -Xcompiler -fopenmp \
      -c "$f" -o "build/selftest/$(basename "$f").o" &
  done
  wait
  nvcc -gencode=arch=compute_90a,code=sm_90a build/selftest/*.o -o build/selftest/cuda_selftest -lgomp \
    >"$OUT/selftest_build.log" 2>&1 || echo "selftest link failed"
  build/selftest/cuda_selftest ${SELFTEST_ARGS:-} >"$OUT/selftest.log" 2>&1
  RESULT[selftest]="rc=$? ($((SECONDS - t0)) s): $(grep -m1 -E 'passed|FAIL' "$OUT/selftest.log")"
  sed -n '/^ *fmt /,$p' "$OUT/selftest.log" | head -60
  # gemm_cutlass's self-test (tests/cuda/gemm_cutlass_selftest.cu), against the nvidia-cutlass headers
  cutlass=$(python3 -c "import importlib.util, os; s = importlib.util.find_spec('cutlass_library'); print(os.path.join(list(s.submodule_search_locations)[0], 'source') if s else '')")
  if [ -n "$cutlass" ]; then
    nvcc -std=c++17 -O3 -DNDEBUG -DBITBLAS_JAX_CUTLASS --expt-relaxed-constexpr -diag-suppress 20012 -Xcompiler -fopenmp \
      -gencode=arch=compute_90a,code=sm_90a -Icsrc/include -Icsrc/cuda -I"$cutlass/include" \
      -I"$cutlass/tools/util/include" tests/cuda/gemm_cutlass_selftest.cu csrc/cuda/gemm_cutlass.cu \
      csrc/cuda/inst_gemm_cutlass_*.cu -lgomp -o build/selftest/gemm_cutlass_selftest \
      >"$OUT/gemm_cutlass_selftest_build.log" 2>&1 || echo "gemm_cutlass selftest build failed"
    build/selftest/gemm_cutlass_selftest >"$OUT/gemm_cutlass_selftest.log" 2>&1
    RESULT[selftest]+="; gemm_cutlass rc=$?: $(tail -1 "$OUT/gemm_cutlass_selftest.log")"
    # CUTLASS issue 1917's shape (a reported stream-K hang: 16 weight rows, 2560 activation rows, K = 8192) on
    # both stream-K tiles, each under a time limit (a hang fails the step instead of stopping the run)
    for t in 3 4; do
      timeout 60 build/selftest/gemm_cutlass_selftest --one 2560 16 8192 $t 1 >>"$OUT/gemm_cutlass_selftest.log" 2>&1
      RESULT[selftest]+="; stream-K tile $t at 16 x 2560 x 8192 rc=$?"
    done
  fi
  if [ -n "${SELFTEST_PDL_AB:-}" ]; then  # the timings again, launched without programmatic dependent launch
    BITBLAS_JAX_PDL=0 build/selftest/cuda_selftest --time-only >"$OUT/selftest_nopdl.log" 2>&1
    echo "-- without PDL --"; sed -n '/^ *fmt /,$p' "$OUT/selftest_nopdl.log" | head -60
  fi
fi
if has tests; then
  python3 -m pytest -q -p no:cacheprovider ${PYTEST_PATHS:-tests} ${PYTEST_ARGS:-} >"$OUT/pytest.log" 2>&1
  RESULT[tests]=$(grep -E "[0-9]+ (passed|failed)" "$OUT/pytest.log" | tail -1)
  grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -30
fi
if has sanitize; then  # memcheck, racecheck, synccheck, initcheck over every kernel (tools/gpu_sanitize.sh)
  # the gemm_cutlass self-test (step selftest builds it) adds the split reduction under initcheck
  sel=build/selftest/gemm_cutlass_selftest
  CUTLASS_SELFTEST=$([ -x "$sel" ] && echo "$PWD/$sel") OUT="$OUT/sanitize" bash tools/gpu_sanitize.sh \
    >"$OUT/sanitize.log" 2>&1
  RESULT[sanitize]="rc=$?: $(tail -1 "$OUT/sanitize.log")"
  sed -n '/^== gpu_sanitize summary/,$p' "$OUT/sanitize.log"
fi
if has bench; then  # --max-minutes: what is left of BENCH_DEADLINE_S (a 600 s device command, less a margin)
  bench_min=$(awk "BEGIN{m=(${BENCH_DEADLINE_S:-540} - $SECONDS) / 60; print (m > 1 ? m : 1)}")
  python3 benchmarks/bench_matmul.py --max-minutes "$bench_min" ${BENCH_ARGS:---quick} --out "$OUT/bench" \
    >"$OUT/bench.log" 2>&1 && RESULT[bench]="ok (--max-minutes $bench_min)" || RESULT[bench]="FAILED"
  sed -n '/^| N x K/,$p' "$OUT/bench.log"
fi
echo
echo "== gpu_check summary ($(cat "$OUT/gpu.txt")) =="
for k in build selftest tests sanitize bench; do
  if [ -n "${RESULT[$k]:-}" ]; then printf '%-10s %s\n' "$k" "${RESULT[$k]}"; fi
done
