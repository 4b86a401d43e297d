"""``delgrad broker``: a remote bind is refused without a password file (exit 2,
one line) and, with ``--password-file``, accepts only the listed user."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pwdlib import PasswordHash

from delgrad.errors import TransportError
from delgrad.protocols import MqttTransport
from delgrad.tools import free_port
from delgrad.tools._exit import ExitCode

pytestmark = [pytest.mark.broker]

DELGRAD = [sys.executable, "-m", "delgrad", "broker"]


def test_remote_bind_without_password_file_is_one_line() -> None:
    out = subprocess.run(
        [*DELGRAD, "--host", "0.0.0.0", "--allow-remote", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == ExitCode.USAGE
    assert "without authentication" in out.stderr
    assert "Traceback" not in out.stderr


def test_password_file_flag_admits_only_its_users(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("dev1:" + PasswordHash.recommended().hash("pw") + "\n")
    port = free_port()
    argv = ["--host", "0.0.0.0", "--allow-remote", "--port", str(port)]
    proc = subprocess.Popen(
        [*DELGRAD, *argv, "--password-file", str(passwd)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TERM": "dumb"},
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f":{port}, password file" in line, proc.stderr.read()  # type: ignore[union-attr]

        async def attach(user: str | None, password: str | None) -> bool:
            link = MqttTransport(
                "127.0.0.1", port, username=user, password=password, timeout_s=3, protocol="3.1.1"
            )
            try:
                await link.connect()
            except TransportError:
                return False
            await link.close()
            return True

        assert asyncio.run(attach("dev1", "pw"))
        assert not asyncio.run(attach(None, None))
        assert not asyncio.run(attach("dev1", "wrong"))
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "broker stopped" in out
