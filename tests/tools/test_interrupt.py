"""One Ctrl-C stops a batch command: exit 130, no traceback, no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_one_ctrl_c_stops_a_sweep_and_its_workers(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "delgrad.tools._cli", "sweep", "--out", str(tmp_path / "sw")]
    argv += ["--hidden", "5", "--delays", "none", "--seeds", "0", "1", "2", "3", "--jobs", "2"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:  # both workers spawned
            time.sleep(0.5)
            workers = {p for p in _descendants(proc.pid) if _alive(p)}
        time.sleep(3.0)  # into their training
        assert len(workers) >= 2 and proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"interrupted" in err, err.decode()
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)]  # no orphan worker


def test_run_outlives_a_closed_pipe_and_stops_with_0(tmp_path: Path) -> None:
    # `delgrad run | tee log`, then the reader goes first (Ctrl-C reaches tee too)
    argv = [sys.executable, "-m", "delgrad.tools._cli", "run", "--plain", "--demo-rate", "200"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the service is up and printing
        assert first, proc.stderr.read().decode() if proc.stderr else ""
        proc.stdout.close()  # the reader is gone: the next lines meet a broken pipe
        time.sleep(4.0)  # several ticks of 0.5-2 s
        assert proc.poll() is None  # the device goes on
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err.decode()
    assert b"Broken pipe" not in err and b"Traceback" not in err, err.decode()
