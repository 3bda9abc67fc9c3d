"""Writes the Speed table of README.md from benchmarks/results/h200-table.json.

The benchmark's JSON is the one record of what was measured; the README shows a selection of its
columns, regenerated here so the two cannot disagree. tests/test_generated.py fails when the README's
table is stale (after a new benchmark run or a --replot join).
    python3 tools/gen_speed_table.py            # rewrite the table inside README.md
    python3 tools/gen_speed_table.py --stdout   # print the whole README instead
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "README.md"
SOURCE = ROOT / "benchmarks" / "results" / "h200-table.json"
BEGIN = "<!-- speed table: tools/gen_speed_table.py writes it from benchmarks/results/h200-table.json -->"
END = "<!-- end of speed table -->"

# (heading, benchmark formats, row key): the int4 g128 row's own figures, then each format's GPU-time ratio
# against XLA's fp16 dot (the first of the formats measured at the point: the held-terms rows where a run timed
# them, M >= 64; below that no kernel reads held terms), then int4 g128 against XLA's int4 path and tinygemm
# (wall time)
COLUMNS = [
    ("int4 g128 plan", ("w4g128",), "plan"),
    ("int4 g128 GPU us", ("w4g128",), "gpu_us"),
    ("x fp16 dot: int4 g128", ("w4g128",), "x_fp16_gpu"),
    ("int4 g128 held terms", ("w4g128-held",), "x_fp16_gpu"),
    ("int4 g128 bf16", ("w4g128-bf16-held", "w4g128-bf16"), "x_fp16_gpu"),
    ("nf4 g128", ("nf4g128-held", "nf4g128"), "x_fp16_gpu"),
    ("int8", ("w8",), "x_fp16_gpu"),
    ("W8A8", ("w8a8",), "x_fp16_gpu"),
    ("W4A8 g128", ("w4a8g128",), "x_fp16_gpu"),
    ("W_FP8A_FP8", ("fp8a8",), "x_fp16_gpu"),
    ("int4 g128 x XLA int4 g128", ("w4g128",), "x_xla_int4"),
    ("int4 g128 x torch int4", ("w4g128",), "x_torch_int4"),
]


def _cell(row: dict | None, key: str) -> str:
    if row is None or row.get(key) is None:
        return "-"
    value = row[key]
    if isinstance(value, str):
        return value
    return f"{value:.1f}" if key.endswith("us") else f"{value:.2f}"


def table(rows: list[dict]) -> str:
    """One line per (layer, M), layers by size then M; '-' where a format was not measured there."""
    by_point: dict[tuple, dict] = {}
    for r in rows:
        by_point.setdefault((r["N"], r["K"], r["M"]), {})[r["format"]] = r
    points = sorted(by_point, key=lambda p: (p[0] * p[1], p[0], p[2]))
    out = ["| N x K | M | " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for N, K, M in points:
        at = by_point[N, K, M]
        cells = [_cell(next((at[f] for f in fmts if f in at), None), key) for _, fmts, key in COLUMNS]
        out.append(f"| {N}x{K} | {M} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def render() -> str:
    readme = OUT.read_text()
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{OUT}: the markers {BEGIN!r} ... {END!r} are missing")
    rows = json.loads(SOURCE.read_text())["rows"]
    return head + BEGIN + "\n" + table(rows) + "\n" + END + tail


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generated_file import main
    main(render, OUT)
