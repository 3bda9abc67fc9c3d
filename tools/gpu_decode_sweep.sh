#!/usr/bin/env bash
# Kernel-alone timings of the decode regime's choices (decode, decode_splitk at each split-K) on small
# and large layers, for issue 28's plan rule (plan.h make_plan: which decode kernel and split at M = 1..16)
# and the per-GPU ring depth: one line per (layer, M), the CUDA-graph time of each choice and the
# fraction of the copy bandwidth its weight bytes reach.
#   ST=build/st/selftest bash tools/gpu_decode_sweep.sh
#   ST=... SPLITS="1 4 16" MS="1 16" FMT=1 BW_TBPS=4.1 bash tools/gpu_decode_sweep.sh "4096 4096" "28672 8192"
# Arguments (optional): "N K" layers. FMT is a WFormat id (1 int4, 0 int8, 8 nf4); group size 128.
set -uo pipefail
ST=${ST:-build/st/selftest}
SPLITS=${SPLITS:-"1 2 4 8 16"}
MS=${MS:-"1 16"}
FMT=${FMT:-1}
BW_TBPS=${BW_TBPS:-4.1}          # the H200's measured copy bandwidth (H200.md)
BITS=$(case $FMT in 0|4) echo 8;; 1|5|8|9) echo 4;; 2|6) echo 2;; 3|7) echo 1;; *) echo 8;; esac)
if [ $# -gt 0 ]; then
  LAYERS=("$@")
else   # small layers first (issue 28: <= 4096 x 4096), then 7B- and 70B-class MLP layers
  LAYERS=("2048 2048" "4096 4096" "3584 3584" "1024 4096" "11008 4096" "4096 11008" "14336 4096" "28672 8192" "8192 28672")
fi
printf '%-12s %-3s %18s' "N K" "M" "decode us (%BW)"
for s in $SPLITS; do printf ' %18s' "splitk $s us (%BW)"; done
echo
one() {   # M N K kernel split -> us/graph, or empty
  timeout 60 "$ST" --one "$@" "$FMT" 128 2>/dev/null | grep -oE '[0-9.]+ us/graph' | cut -d' ' -f1
}
cell() {  # us N K -> "us (pct)"
  if [ -n "$1" ]; then
    printf ' %9s (%5.1f%%)' "$1" "$(awk -v n="$2" -v k="$3" -v b="$BITS" -v t="$1" -v bw="$BW_TBPS" \
      'BEGIN {print 100 * n * k * b / 8 / (t * 1e-6) / (bw * 1e12)}')"
  else
    printf ' %18s' "failed"
  fi
}
for layer in "${LAYERS[@]}"; do
  read -r N K <<<"$layer"
  for M in $MS; do
    printf '%-12s %-3s' "$N $K" "$M"
    cell "$(one "$M" "$N" "$K" decode 1)" "$N" "$K"
    for s in $SPLITS; do cell "$(one "$M" "$N" "$K" decode_splitk "$s")" "$N" "$K"; done
    echo
  done
done
