"""A progress bar over layers for the quantize_model functions (Flax and torch)."""
from __future__ import annotations

import sys


class ProgressBar:
    """Layers done so far: tqdm when it is installed, else a bar on stderr (a line per tenth in logs)."""

    def __init__(self, total: int, enabled: bool = True, desc: str = "quantize"):
        self.total, self.n, self.enabled, self.bar, self.desc = total, 0, enabled and total > 0, None, desc
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if self.enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, unit="layer", file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, label: str):
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(label[-40:], refresh=False)
            self.bar.update(1)
            return
        if not self.tty:      # a log file: one line per tenth of the layers
            if self.n == self.total or (10 * self.n) // self.total != (10 * (self.n - 1)) // self.total:
                sys.stderr.write(f"{self.desc}: {self.n}/{self.total} layers ({label})\n")
            return
        width = 30
        done = int(width * self.n / self.total)
        sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                         f"{label[-40:]:<40}")
        sys.stderr.flush()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
