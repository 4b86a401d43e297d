"""What the demo's terminal keeps after ``delgrad cmd`` (issue 27).

Log records written while a rich ``Live`` panel is drawn used to bypass the display
(rich's console writes past ``Live``'s stderr redirection), so every record, for example
the embedded broker's line for each ``delgrad cmd`` connection at ``-v``, left a
fragment of the panel in the scrollback. The test runs the demo in a pseudo-terminal,
sends commands from a second process, and reads the screen and scrollback through a
terminal emulator (pyte), as a user would scroll back.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from delgrad.tools import free_port

pyte = pytest.importorskip("pyte", reason="pyte (test extra) reads the terminal output")

DELGRAD = [sys.executable, "-m", "delgrad"]
COLUMNS, ROWS = 80, 40
TITLE = "delgrad run: device 'demo'"


def _read(fd: int, out: bytearray, seconds: float, until: bytes | None = None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            out.extend(chunk)
            if until is not None and until in out:
                return


def _scrollback_and_screen(raw: bytes) -> list[str]:
    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=5000)
    pyte.ByteStream(screen).feed(raw)
    lines = ["".join(line[x].data for x in range(COLUMNS)) for line in screen.history.top]
    return [*lines, *screen.display]


def test_cmd_connections_leave_no_panel_fragments_in_the_scrollback() -> None:
    port = free_port()
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    # -v: the embedded broker logs each client connection at INFO, above the panel
    proc = subprocess.Popen(
        [*DELGRAD, "-v", "run", "--port", str(port), "--duration", "60", "--demo-rate", "500"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    raw = bytearray()
    try:
        _read(leader, raw, 90, until=b"uptime")
        assert b"uptime" in raw, bytes(raw[-2000:]).decode(errors="replace")
        for name in ("status", "pause", "resume"):
            sent = subprocess.run(
                [*DELGRAD, "cmd", "demo", name, "--broker", f"mqtt://127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert sent.returncode == 0, sent.stderr
            _read(leader, raw, 1.0)
        os.killpg(proc.pid, signal.SIGINT)
        _read(leader, raw, 20)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(leader)
    lines = _scrollback_and_screen(bytes(raw))
    text = "\n".join(lines)
    # the commands' connections were logged (else the test would prove nothing) ...
    assert text.count("Connection from 127.0.0.1") >= 4, text
    # ... above one panel: its title and its top border once, not a fragment per record
    assert sum(TITLE in line for line in lines) == 1, text
    assert sum(line.startswith("┌") for line in lines) == 1, text
