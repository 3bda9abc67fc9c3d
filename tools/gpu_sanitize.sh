#!/usr/bin/env bash
# compute-sanitizer over every kernel: memcheck, racecheck, synccheck and initcheck, each running
# tests/cuda/sanitize_cases.py (every kernel, the int8 / float8-activation ones too, split-K 1..32,
# every format family, both activation dtypes, JAX and the torch shim, aligned and misaligned
# activations; each result checked against the float64 reference). The successor of gpu_check.sh's
# sanitize step; run it whenever a kernel changes.
#   bash tools/gpu_sanitize.sh                        # the four tools, side by side on one GPU
#   SANITIZE_TOOLS="memcheck racecheck" bash tools/gpu_sanitize.sh
#   PARALLEL=0 bash tools/gpu_sanitize.sh             # one tool after the other
#   SANITIZE_CASE_ARGS="--only 3,21" bash tools/gpu_sanitize.sh     # a subset of the cases
#   CUTLASS_SELFTEST=build/selftest/gemm_cutlass_selftest bash tools/gpu_sanitize.sh   # + the split reduction
#                                                                  # under initcheck (see below)
# Needs the package installed with its CUDA kernels (gpu_check.sh's build step) and torch for the
# shim's cases. Logs go to $OUT (default ./gpu_sanitize_out). The last lines are a PASS / FAIL table;
# exit status 1 on any finding, failed case or missed coverage.
# racecheck and synccheck (shared memory, barriers) instrument only the bitblas_jax kernels
# (SANITIZE_KERNEL_FILTER; set it empty to instrument XLA's and cuBLAS's too); memcheck and initcheck
# instrument every kernel (initcheck must see XLA's writes, or our reads of them look uninitialized).
# initcheck runs gemm_cutlass unsplit (BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT=1): it does not count TMA bulk
# stores as writes, so the split-K reduction's reads of the partials the CUTLASS epilogue stored look
# uninitialized to it (`gemm_cutlass_selftest --one 128 2048 4096 1 1 fresh` under initcheck: every element
# of C reported, C right). The reduction itself runs under initcheck in `gemm_cutlass_selftest --one 128 2048
# 4096 1 4` (partials poisoned by a host copy first, so initcheck sees them written), below.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_sanitize_out}; mkdir -p "$OUT"
TOOLS=${SANITIZE_TOOLS:-"memcheck racecheck synccheck initcheck"}
FILTER=${SANITIZE_KERNEL_FILTER-"--kernel-name kns=bitblas_jax"}
TIMEOUT=${SANITIZE_TIMEOUT:-450}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# no autotuning under the sanitizer (hundreds of extra instrumented launches); plans do not use it
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0"
CASES=(python3 tests/cuda/sanitize_cases.py ${SANITIZE_CASE_ARGS:-})
declare -A RESULT
t_all=$SECONDS

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
compute-sanitizer --version | tail -1
# the cases without a sanitizer first: they pass and reach every kernel (else the tools prove little)
t0=$SECONDS
"${CASES[@]}" >"$OUT/plain.log" 2>&1
RESULT[plain]="rc=$? ($((SECONDS - t0)) s): $(grep -E '^(PASS|FAIL) sanitize cases' "$OUT/plain.log" | tail -1)"
sed -n '/^coverage:/,$p' "$OUT/plain.log"

run_tool() {
  local tool=$1 extra=() env=()
  case $tool in
    racecheck|synccheck) [ -n "$FILTER" ] && read -r -a extra <<<"$FILTER" ;;
    initcheck) env=(BITBLAS_JAX_GEMM_CUTLASS_MAX_SPLIT=1) ;;
  esac
  local t0=$SECONDS
  env "${env[@]}" timeout "$TIMEOUT" compute-sanitizer --tool "$tool" "${extra[@]}" --error-exitcode 9 \
    --target-processes all "${CASES[@]}" >"$OUT/$tool.log" 2>&1
  local rc=$?
  if [ "$tool" = initcheck ] && [ -n "${CUTLASS_SELFTEST:-}" ]; then   # the split-K reduction under initcheck
    timeout 120 compute-sanitizer --tool initcheck --error-exitcode 9 "$CUTLASS_SELFTEST" --one 128 2048 4096 1 4 \
      >>"$OUT/$tool.log" 2>&1 || rc=9
  fi
  echo "$rc $((SECONDS - t0))" >"$OUT/$tool.rc"
}

if [ "${PARALLEL:-1}" = 1 ]; then
  for tool in $TOOLS; do run_tool "$tool" & done
  wait
else
  for tool in $TOOLS; do run_tool "$tool"; done
fi

status=0
[[ ${RESULT[plain]} == rc=0* ]] || status=1
for tool in $TOOLS; do
  read -r rc secs <"$OUT/$tool.rc"
  log="$OUT/$tool.log"
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | awk '{s += $3} END {print s + 0}')
  hazards=$(grep -oE '[0-9]+ hazards? displayed \([0-9]+ errors?, [0-9]+ warnings?\)' "$log" | tail -1)
  ours=$(grep -cE '^=========.*bitblas_jax' "$log")
  cases=$(grep -E '^(PASS|FAIL) sanitize cases' "$log" | tail -1)
  if grep -qiE 'unrecognized option|unknown option|invalid option' "$log"; then
    note="the sanitizer refused an option (SANITIZE_KERNEL_FILTER?): see $log"
  elif [ "$rc" = 124 ]; then
    note="timed out after $TIMEOUT s"
  elif [ "$tool" = initcheck ] && [ -z "${CUTLASS_SELFTEST:-}" ]; then
    note="(gemm_cutlass unsplit; its split reduction not checked: CUTLASS_SELFTEST unset)"
  elif [ "$tool" = initcheck ]; then
    note="(gemm_cutlass unsplit; its split reduction in the self-test)"
  else
    note=""
  fi
  if [ "$rc" = 0 ] && [ "$errors" = 0 ]; then verdict=PASS; else verdict=FAIL; status=1; fi
  RESULT[$tool]="$verdict rc=$rc ($secs s): $errors errors${hazards:+, $hazards}, $ours report lines naming bitblas_jax; ${cases:-no case summary} ${note}"
done

echo
echo "== gpu_sanitize summary ($(cat "$OUT/gpu.txt"), $((SECONDS - t_all)) s) =="
printf '%-10s %s\n' "cases" "${RESULT[plain]}"
for tool in $TOOLS; do printf '%-10s %s\n' "$tool" "${RESULT[$tool]}"; done
echo "$([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
