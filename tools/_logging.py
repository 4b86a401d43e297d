"""One logging set-up for every ``delgrad`` command.

Standard :mod:`logging` throughout; this module only attaches one handler to the
root logger, so third-party loggers (amqtt, aiomqtt, numba) go through it too:

* on a terminal, rich's handler (colour, aligned, wrapped);
* otherwise (pipes, files, slurm, ``tee``) plain lines
  ``2026-11-30 14:05:01 WARNING delgrad.runtime.service: text``.

Levels: ``delgrad`` loggers at INFO, others at WARNING by default; ``-v`` gives
DEBUG for ``delgrad`` and INFO for the rest, ``-vv`` DEBUG for all; ``-q`` shows
warnings and errors only, ``-qq`` errors only; ``--log-level`` sets one level for
all. Tracebacks attached by third-party loggers (amqtt logs its own failures
with them) are shown only with ``-v``: the command reports the failure in one line.

Importing ``delgrad`` configures nothing; only the command calls :func:`setup_logging`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["LEVELS", "PLAIN_FORMAT", "logging_above", "setup_logging", "stderr_line"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARK = "_delgrad_handler"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (as the
    standard library's last-resort handler does), so a replaced ``sys.stderr``
    (pytest's capture, a redirect) is followed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


class _ThirdPartyTracebacks(logging.Filter):
    """Drops the traceback of a third-party record (the message stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("delgrad") and record.exc_info:
            record.exc_info = None
            record.exc_text = None
        return True


def stderr_line(line: str) -> None:
    """Print one progress line to stderr at once (benchmarks: stdout holds the result)."""
    print(line, file=sys.stderr, flush=True)


def setup_logging(
    verbosity: int = 0,
    *,
    level: str | None = None,
    stream: TextIO | None = None,
    terminal: bool | None = None,
) -> logging.Handler:
    """Attach the one handler to the root logger (replacing an earlier one of ours).

    Args:
        verbosity: ``-v`` count minus ``-q`` count.
        level: One of :data:`LEVELS` for every logger (overrides ``verbosity``).
        stream: Where to write (default ``sys.stderr``).
        terminal: Rich output (default: whether ``stream`` is a terminal).

    Returns:
        The handler.
    """
    current = sys.stderr if stream is None else stream
    if terminal is None:
        terminal = bool(getattr(current, "isatty", lambda: False)())
    handler: logging.Handler
    if terminal:
        # file=None: rich looks up sys.stderr at each write (it may be replaced later)
        console = Console(stderr=True) if stream is None else Console(file=stream)
        handler = RichHandler(
            console=console, show_path=False, rich_tracebacks=False, log_time_format="%H:%M:%S"
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, "%Y-%m-%d %H:%M:%S"))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        ours = others = logging.getLevelNamesMapping()[level.upper()]
    else:
        v = max(-2, min(2, verbosity))
        ours = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(v, logging.DEBUG)
        others = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.WARNING, 1: logging.INFO}.get(
            v, logging.DEBUG
        )
    root.setLevel(min(ours, others))
    logging.getLogger("delgrad").setLevel(ours)
    if level is None and verbosity < 1:
        handler.addFilter(_ThirdPartyTracebacks())
    handler.addFilter(_LevelFloor(others))  # third-party records below their floor stop here
    return handler


@contextmanager
def logging_above(console: Console) -> Iterator[None]:
    """While a rich ``Live`` display draws on ``console``, print log records through it.

    rich's own console writes past ``Live``'s stderr redirection to the real stream, so
    a record logged while the display runs (a client connecting to the embedded broker
    at ``-v``, a warning from another thread) lands below the cursor and leaves a piece
    of the panel in the scrollback. Through the display's console, records are printed
    above the panel, which is redrawn below them.
    """
    handlers = [
        h
        for h in logging.getLogger().handlers
        if getattr(h, _MARK, False) and isinstance(h, RichHandler)
    ]
    before = [h.console for h in handlers]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler, old in zip(handlers, before, strict=True):
            handler.console = old


#: Third-party loggers that narrate every state change at INFO: shown from ``-vv`` on.
CHATTY = ("transitions",)


class _LevelFloor(logging.Filter):
    """Passes ``delgrad`` records (their logger's level decides) and others >= ``floor``
    (the chatty ones at INFO only when ``floor`` is DEBUG)."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("delgrad"):
            return True
        if record.name.startswith(CHATTY) and self.floor > logging.DEBUG:
            return record.levelno >= max(self.floor, logging.WARNING)
        return record.levelno >= self.floor
