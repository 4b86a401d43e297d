"""A Mosquitto broker process on loopback, for the end-to-end benchmarks and the tests.

:class:`Mosquitto` writes a throw-away configuration (one listener on 127.0.0.1 and
a free port, anonymous access, no persistence) into a work folder, starts the
``mosquitto`` binary in its own process group and waits until the port accepts
connections. It can be killed and started again on the same port (broker-restart
tests). Every wait is bounded; :meth:`Mosquitto.stop` always leaves no process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["Mosquitto", "free_port", "mosquitto_binary"]

#: Where Debian and Ubuntu install the broker (not on a normal user's PATH).
_SBIN = Path("/usr/sbin/mosquitto")


def mosquitto_binary() -> str | None:
    """Path of the ``mosquitto`` binary (PATH, then /usr/sbin), or None if absent."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return str(_SBIN) if _SBIN.is_file() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGKILL ``proc``'s process group if it still runs, and wait for it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout_s)


class Mosquitto:
    """A mosquitto process on 127.0.0.1 with a generated config; restartable on one port.

    Also a context manager: ``with Mosquitto(folder) as broker:`` starts it and
    stops it on exit.

    Args:
        workdir: folder for ``mosquitto.conf`` and ``mosquitto.log`` (must exist).
        binary: the mosquitto executable (default: :func:`mosquitto_binary`).
        max_queued_messages: the broker's per-client queue bound (its default, 1000,
            when None).

    Raises:
        FileNotFoundError: if no mosquitto binary is given or found.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str | None = None,
        max_queued_messages: int | None = None,
    ) -> None:
        found = binary or mosquitto_binary()
        if found is None:
            raise FileNotFoundError("mosquitto not found (apt-get install mosquitto)")
        self.binary = found
        self.port = free_port()
        self.conf = Path(workdir) / "mosquitto.conf"
        self.log = Path(workdir) / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if max_queued_messages is not None:
            lines.append(f"max_queued_messages {max_queued_messages}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running broker.

        Raises:
            RuntimeError: if it is not started.
        """
        if self.proc is None:
            raise RuntimeError("mosquitto is not running")
        return self.proc.pid

    def start(self, timeout_s: float = 15.0) -> None:
        """Start and wait until the port accepts connections (retries a port not free yet).

        Raises:
            RuntimeError: if it does not listen within ``timeout_s`` (see :attr:`log`).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "-c", str(self.conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # e.g. the port is not free again yet after a kill
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1.0),
                ):
                    return
                time.sleep(0.05)
            _reap(self.proc)
            self.proc = None
            if time.monotonic() >= deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}: see {self.log}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the broker (clients see the link drop) and wait for it."""
        if self.proc is not None:
            _reap(self.proc)
            self.proc = None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the broker, wait up to ``timeout_s``, then SIGKILL it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                _signal_group(self.proc, signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    _reap(self.proc)
            self.proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
