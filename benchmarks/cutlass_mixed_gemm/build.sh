#!/usr/bin/env bash
# Builds ./cutlass_mixed_gemm (sm_90a only) and cutlass_mixed_gemm.gz.
#   ./build.sh            incremental (an object is rebuilt if older than its .cu, common.hpp or build.sh)
#   FORCE=1 ./build.sh    rebuild everything
#   JOBS=N  ./build.sh    parallel compile jobs (default: nproc)
# Per-TU ptxas register/spill info (-Xptxas -v) is saved in build/logs/<tu>.log; a summary goes to
# build/ptxas_summary.txt. Total wall time goes to build/compile_time.txt.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
NVCC=${NVCC:-nvcc}
JOBS=${JOBS:-$(nproc)}
# CUTLASS's headers: $CUTLASS (a CUTLASS source tree or the nvidia-cutlass wheel's cutlass_library/source),
# else the nvidia-cutlass 4.2 wheel unpacked into build/wheel.
CUTLASS=${CUTLASS:-$ROOT/build/wheel/cutlass_library/source}
if [ ! -d "$CUTLASS/include/cutlass" ]; then
  mkdir -p build/wheel
  python3 -m pip download -q nvidia-cutlass==4.2.0.0 --no-deps -d build/wheel
  (cd build/wheel && python3 -m zipfile -e nvidia_cutlass-4.2.0.0-py3-none-any.whl .)
fi

python3 gen_variants.py   # variants/: one translation unit per GEMM (generated, not kept in git)

FLAGS=(-std=c++17 -O3 --expt-relaxed-constexpr
       -gencode=arch=compute_90a,code=sm_90a
       -DNDEBUG
       -I"$ROOT/shim" -I"$ROOT/../../csrc/include" -I"$ROOT/../../csrc/cuda" -I"$CUTLASS/include" -I"$CUTLASS/tools/util/include"
       -Xptxas -v
       -diag-suppress 20012)
# shim/ (first on the path) provides an empty cutlass/util/reference/device/tensor_fill.h: the real one
# needs curand_kernel.h, which this CUDA 13 toolkit lacks, and mixed_dtype_utils.hpp uses nothing from it.

mkdir -p build/logs
SRCS=(cutlass_mixed_gemm.cu variants/v_*.cu)
T0=$(date +%s)

compile_one() {
  local src=$1 obj log
  obj=build/$(basename "${src%.cu}").o
  log=build/logs/$(basename "${src%.cu}").log
  if [ "${FORCE:-0}" != 1 ] && [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt common.hpp ] \
     && [ "$obj" -nt build.sh ] && [ "$obj" -nt variants/variant_list.hpp ]; then
    echo "up-to-date: $obj"; return 0
  fi
  local t0=$(date +%s)
  if "$NVCC" "${FLAGS[@]}" -c "$src" -o "$obj" >"$log" 2>&1; then
    echo "compiled  : $obj ($(( $(date +%s) - t0 )) s)"
  else
    echo "FAILED    : $src (see $log)"; tail -40 "$log"; return 1
  fi
}
export -f compile_one
export NVCC FORCE
export FLAGS_STR="${FLAGS[*]}"
# xargs runs compile_one in child bash processes; pass flags through an array re-built from a string
# (no flag contains spaces).
printf '%s\n' "${SRCS[@]}" | xargs -P "$JOBS" -I{} bash -c 'FLAGS=($FLAGS_STR); compile_one "$@"' _ {} \
  | tee build/last_compile.txt

"$NVCC" -gencode=arch=compute_90a,code=sm_90a -cudart static -o cutlass_mixed_gemm build/*.o
T1=$(date +%s)
gzip -9 -k -f cutlass_mixed_gemm

NCOMP=$(grep -c '^compiled' build/last_compile.txt || true)
MSG="build wall time: $((T1 - T0)) s for $NCOMP of ${#SRCS[@]} translation units (JOBS=$JOBS on $(nproc) cores, $(date -u +%FT%TZ))"
echo "$MSG"
# keep a record of real (re)compilations; a no-op incremental build does not overwrite it
if [ "$NCOMP" -gt 0 ]; then echo "$MSG" >> build/compile_time.txt; fi

# ptxas summary: registers / spills per kernel entry (GEMM kernels only, mangled names shortened)
{
  for log in build/logs/*.log; do
    tu=$(basename "${log%.log}")
    awk -v tu="$tu" '
      /Compiling entry function/ { name=$0; sub(/.*Compiling entry function ./, "", name); sub(/. for .sm_90a.*/, "", name) }
      /bytes stack frame/ { spill=$0; sub(/^ *ptxas info *: */, "", spill) }
      /Used [0-9]+ registers/ { regs=$0; sub(/.*Used /, "", regs);
        kind = (name ~ /GemmUniversal/) ? "GEMM" : "aux";
        printf "%-26s %-4s %s | %s\n", tu, kind, regs, spill }' "$log"
  done
} > build/ptxas_summary.txt
grep GEMM build/ptxas_summary.txt || true
ls -la cutlass_mixed_gemm cutlass_mixed_gemm.gz
