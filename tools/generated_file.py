"""The command line every generator in tools/ shares: write the generated file, or print it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


def main(render: Callable[[], str], out: Path, argv: list[str] | None = None) -> None:
    """`python3 tools/gen_X.py` writes `out`; `--stdout` prints the text instead (to diff)."""
    text = render()
    if "--stdout" in (sys.argv[1:] if argv is None else argv):
        sys.stdout.write(text)
    else:
        out.write_text(text)
