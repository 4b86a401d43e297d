"""The shutdown bound of ``delgrad run`` (issue 10, supervision): once a signal (or a
failure) starts the shutdown, the process ends within the bound whatever its tasks do."""

from __future__ import annotations

import subprocess
import sys
import time


def test_watchdog_ends_a_stuck_process_within_the_bound() -> None:
    script = (
        "import threading, time\n"
        "from delgrad.tools._run_app import arm_shutdown_watchdog\n"
        "arm_shutdown_watchdog(0.5)\n"
        # a non-daemon thread stuck in a 'driver call' would keep the process alive
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert time.monotonic() - started < 15
    assert proc.returncode == 1
    assert "shutdown took longer than 0.5 s" in proc.stderr
