"""Progress over the scenes of a batch: done / failed / running / queued and scenes per minute.

On a terminal it is a live line (rich) with the finished scenes printed above it; where
output is not a terminal, ``TERM=dumb`` or ``CI`` is set, it is plain log lines: one per
finished scene and a heartbeat every ``heartbeat_s`` seconds while nothing finishes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def interactive(stream: TextIO) -> bool:
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not ci and os.environ.get("TERM") != "dumb"


class BatchProgress:
    def __init__(self, total: int, reused: int = 0, stream: TextIO | None = None, live: bool | None = None,
                 enabled: bool = True, heartbeat_s: float = 60.0, refresh_s: float = 1.0):
        self.total, self.reused = total, reused
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = interactive(self.stream) if live is None else live
        self.heartbeat_s, self.refresh_s = heartbeat_s, refresh_s
        self.counts = {"ok": 0, "unstable": 0, "failed": 0}
        self.running: list[str] = []
        self.queued = 0
        self.t0 = time.monotonic()
        self._last_line = self.t0
        self._live = None
        self._console = None

    # -- numbers ---------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def per_minute(self) -> float:
        minutes = (time.monotonic() - self.t0) / 60.0
        return self.finished / minutes if minutes > 0 else 0.0

    def status_line(self) -> str:
        done = self.finished + self.reused
        rate = self.per_minute()
        left = self.total - done
        eta = f", about {left / rate:.0f} min left" if rate > 0 and left else ""
        reused = f" ({self.reused} from an earlier run)" if self.reused else ""
        running = f" [{', '.join(self.running[:4])}{', ...' if len(self.running) > 4 else ''}]" if self.running else ""
        return (f"{done}/{self.total} scenes done{reused}: {self.counts['ok']} ok, {self.counts['unstable']} unstable, "
                f"{self.counts['failed']} failed; {len(self.running)} running{running}, {self.queued} queued; "
                f"{rate:.2f} scenes/min{eta}")

    # -- events ----------------------------------------------------------------------------
    def start(self) -> None:
        self.t0 = self._last_line = time.monotonic()
        if not self.enabled:
            return
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream)
            self._live = Live(self._renderable(), console=self._console, refresh_per_second=2, transient=True)
            self._live.start()
        else:
            self._print(f"batch: {self.total} scene(s), {self.reused} already done with the same inputs and parameters")

    def update(self, running: list[str], queued: int) -> None:
        self.running, self.queued = list(running), max(0, queued)
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._renderable())
        elif time.monotonic() - self._last_line >= self.heartbeat_s:
            self._print(f"batch: {self.status_line()}")

    def scene_finished(self, record: dict) -> None:
        status = record.get("status", "failed")
        self.counts[status] = self.counts.get(status, 0) + 1
        self.running = [n for n in self.running if n != record.get("name")]
        if not self.enabled:
            return
        secs = (record.get("seconds") or {}).get("total")
        took = f" in {secs:.0f} s" if isinstance(secs, (int, float)) else ""
        extra = ""
        if status == "failed":
            extra = f": {record.get('error')}"
        elif record.get("variants_requested"):
            extra = f", variants {record.get('variants_kept')}/{record.get('variants_requested')} kept"
        line = f"{record.get('name')} {status}{took}{extra}"
        if self._live is not None:
            from rich.text import Text

            colour = {"ok": "green", "unstable": "yellow", "failed": "red"}.get(status, "white")
            self._console.print(Text.assemble((f"{status:8s} ", colour), f"{record.get('name')}{took}{extra}"), highlight=False)
            self._live.update(self._renderable())
        else:
            self._print(f"batch [{self.finished + self.reused}/{self.total}] {line} | {self.status_line()}")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.enabled:
            self._print(f"batch: {self.status_line()}")

    # -- output ----------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        self._last_line = time.monotonic()
        if self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def _renderable(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=max(self.total, 1), completed=self.finished + self.reused, width=30), Text(self.status_line()))
        return grid
