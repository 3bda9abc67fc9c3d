#!/usr/bin/env bash
# Run on the H100/H200 machine:  bash run_gpu.sh [cutlass_mixed_gemm args...]
# Unpacks cutlass_mixed_gemm.gz (next to this script) into /tmp and runs it; the log goes to
# $OUT/cutlass_mixed_gemm.log when $OUT is set (device runner), else ./cutlass_mixed_gemm.log.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=/tmp/cutlass_mixed_gemm
gunzip -c "$HERE/cutlass_mixed_gemm.gz" > "$BIN" && chmod +x "$BIN" || exit 1
LOG=${OUT:-.}/cutlass_mixed_gemm.log
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv 2>/dev/null | tee "$LOG"
timeout ${TIMEOUT_S:-150} "$BIN" "$@" 2>&1 | tee -a "$LOG"
echo "exit code: ${PIPESTATUS[0]}" | tee -a "$LOG"
