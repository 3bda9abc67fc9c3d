#!/usr/bin/env bash
# A/B of the kernel-only timings on the GPU machine: this tree against headsrc/, a base commit's kernels
# (make it here first: mkdir headsrc && git archive BASE csrc tests/cuda/selftest.cu | tar -x -C headsrc;
# it travels as an untracked folder). Both are built as cuda_selftest; each case runs old, new, twice.
# AB_TREES="old=headsrc new=. x=expdir" times more variants (label=source root, in that order).
# AB_PREBUILT=1 takes build/ab_<label>/st as they are (built on the CPU machine and carried).
# Usage: bash tools/ab_selftest.sh "M N K kernel split fmt_id [gs]" ...   (cuda_selftest --one's arguments; kernel: decode, decode_splitk, gemm_mma, gemm_mma_wide, gemm_wgmma, gemm_wgmma_tall)
set -uo pipefail
NV="nvcc -std=c++17 -O3 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fopenmp"
TREES=${AB_TREES:-"old=headsrc new=."}
build() {  # $1: source root, $2: out dir
  mkdir -p "$2"
  for f in "$1"/csrc/cuda/*.cu "$1"/tests/cuda/selftest.cu; do
    $NV -I"$1"/csrc/include -I"$1"/csrc/cuda -c "$f" -o "$2/$(basename "$f").o" &
  done
}
if [ -z "${AB_PREBUILT:-}" ]; then
  for t in $TREES; do build "${t#*=}" "build/ab_${t%%=*}"; done
  wait
  for t in $TREES; do
    nvcc -gencode=arch=compute_90a,code=sm_90a build/ab_${t%%=*}/*.o -o build/ab_${t%%=*}/st -lgomp || exit 1
  done
fi
for rep in 1 2; do
  for c in "$@"; do
    for t in $TREES; do v=${t%%=*}; echo -n "$v "; build/ab_$v/st --one $c | sed 's/^one: //'; done
  done
done
