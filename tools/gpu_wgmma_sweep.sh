#!/usr/bin/env bash
# Kernel-alone timings of gemm_wgmma's choices (tile, split-K, CTAs per cluster) on layer shapes, for
# the plan rule in plan.h: one line per (case, format), the time of each cluster size and its TFLOP/s.
#   ST=build/st/selftest bash tools/gpu_wgmma_sweep.sh                # the cases below
#   ST=... CLUSTERS="1 2" FMTS="1" bash tools/gpu_wgmma_sweep.sh "256 8192 8192 gemm_wgmma_tall 2" ...
# Arguments (optional): cuda_selftest --one's "M N K kernel split" without the format. FMTS are WFormat
# ids (1 int4, 8 nf4, 0 int8); BITBLAS_JAX_WGMMA_CLUSTER sets the cluster size of each run.
set -uo pipefail
ST=${ST:-build/st/selftest}
CLUSTERS=${CLUSTERS:-"1 2 4"}
FMTS=${FMTS:-"1 8"}
if [ $# -gt 0 ]; then
  CASES=("$@")
else
  CASES=(
    "64 8192 8192 gemm_wgmma 2" "128 8192 8192 gemm_wgmma 2"
    "256 8192 8192 gemm_wgmma 1" "256 8192 8192 gemm_wgmma_tall 2"
    "512 8192 8192 gemm_wgmma_tall 1" "1024 8192 8192 gemm_wgmma_tall 1" "4096 8192 8192 gemm_wgmma_tall 1"
    "256 4096 4096 gemm_wgmma 1" "256 4096 4096 gemm_wgmma_tall 4"
    "1024 4096 4096 gemm_wgmma_tall 1"
    "64 28672 8192 gemm_wgmma 1" "256 28672 8192 gemm_wgmma_tall 1" "1024 28672 8192 gemm_wgmma_tall 1"
    "256 8192 28672 gemm_wgmma 1" "256 8192 28672 gemm_wgmma_tall 2"
  )
fi
printf '%-36s %-4s' "M N K kernel split" "fmt"
for cl in $CLUSTERS; do printf ' %16s' "cluster $cl us (TF)"; done
echo
for c in "${CASES[@]}"; do
  read -r M N K _ _ <<<"$c"
  for f in $FMTS; do
    printf '%-36s %-4s' "$c" "$f"
    for cl in $CLUSTERS; do
      us=$(BITBLAS_JAX_WGMMA_CLUSTER=$cl timeout 60 "$ST" --one $c $f 2>/dev/null | grep -oE '[0-9.]+ us/graph' | cut -d' ' -f1)
      if [ -n "$us" ]; then
        printf ' %8s (%5.0f)' "$us" "$(awk -v m="$M" -v n="$N" -v k="$K" -v t="$us" 'BEGIN {print 2 * m * n * k / t / 1e6}')"
      else
        printf ' %16s' "failed"
      fi
    done
    echo
  done
done
