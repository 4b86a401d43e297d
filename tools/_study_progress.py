"""Progress over the runs of a study: a rich bar on a terminal, plain lines when piped."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["StudyProgress"]


class StudyProgress:
    """One line per finished (or failed) run; on a terminal a bar of runs done below.

    Args:
        label: what the bar counts, e.g. ``"sweep"``.
        total: runs in the study; ``done``: of which already finished.
        plain: plain lines only (default: when ``stream`` is not a terminal).
    """

    def __init__(
        self,
        label: str,
        total: int,
        done: int = 0,
        *,
        plain: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.done, self.total = done, total
        self.plain = (not self.stream.isatty()) if plain is None else plain
        self._progress: Progress | None = None
        if not self.plain:
            self._progress = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._task = self._progress.add_task(label, total=total, completed=done)

    def __enter__(self) -> StudyProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def line(self, text: str, *, advance: bool = False) -> None:
        """Print ``text`` (above the bar); ``advance``: one more run is over, the line
        gets a ``[done/total]`` prefix."""
        if advance:
            self.done += 1
            text = f"[{self.done:{len(str(self.total))}d}/{self.total}] {text}"
        if self._progress is None:
            print(text, file=self.stream, flush=True)
            return
        self._progress.console.print(text, markup=False, highlight=False)
        if advance:
            self._progress.advance(self._task)
