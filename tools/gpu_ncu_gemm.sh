#!/usr/bin/env bash
# The limiter of the Hopper GEMMs (issue 27: gemm_wgmma; issue 29: gemm_wgmma_a8), from Nsight Compute:
# one profiled launch per case (after the warm-up launches), the GPU's clocks as they are, the sections
# that tell memory-, issue- and latency-bound apart (speed of light, warp states, occupancy, pipes).
#   ST=build/st/selftest A8=build/gemm_a8_selftest bash tools/gpu_ncu_gemm.sh > ncu.txt
# Arguments (optional): cuda_selftest --one's "M N K kernel split fmt" cases; A8_CASES: gemm_a8_selftest
# --time's "M N K KIND" cases. Each case prints its time, then ncu's sections for the kernel.
set -uo pipefail
ST=${ST:-build/st/selftest}
A8=${A8:-build/gemm_a8_selftest}
NCU=(ncu --clock-control none --launch-skip 3 --launch-count 1 --section SpeedOfLight
     --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats
     --section Occupancy --section LaunchStats)
if [ $# -gt 0 ]; then CASES=("$@"); else
  CASES=("256 8192 8192 gemm_wgmma_tall 1 1" "1024 8192 8192 gemm_wgmma_tall 1 1" "64 8192 8192 gemm_wgmma 2 1")
fi
IFS=';' read -r -a A8_LIST <<< "${A8_CASES:-1024 8192 8192 int8;1024 8192 8192 e4m3;1024 8192 8192 int4}"
for c in "${CASES[@]}"; do
  echo "=== gemm_wgmma: $c"
  "${NCU[@]}" -k regex:gemm_wgmma "$ST" --one $c 2>&1 | grep -vE "^==PROF==|^\s*$"
done
if [ -x "$A8" ]; then
  for c in "${A8_LIST[@]}"; do
    echo "=== gemm_wgmma_a8: $c"
    "${NCU[@]}" -k regex:gemm_wgmma_a8 "$A8" --time $c 2>&1 | grep -vE "^==PROF==|^\s*$"
  done
fi
