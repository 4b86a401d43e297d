"""Loopback helpers shared by the broker tests: the mosquitto binary and free ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path


def mosquitto_binary() -> str | None:
    """Path of the mosquitto binary (also looked for in /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
