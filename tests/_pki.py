"""A throw-away PKI for TLS tests: a CA, a broker certificate for 127.0.0.1 and
localhost, client certificates, and a rogue CA nobody trusts (openssl CLI); a
Mosquitto password file and the mqtts URL of a user."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-subj",
        f"/CN={name}",
        cwd=folder,
    )


def _signed(folder: Path, name: str, ca: str, *, server: bool = False) -> None:
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=folder,
    )
    ext = folder / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        f"{name}.pem",
        "-extfile",
        ext.name,
        cwd=folder,
    )


def make_pki(folder: Path) -> Path:
    """``ca``, ``broker`` (server), ``dev1``/``operator``/``intruder`` (clients) and a
    ``rogue`` CA with its own ``rogue-client``: each ``NAME.pem`` + ``NAME.key``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "rogue")
    _signed(folder, "broker", "ca", server=True)
    for client in ("dev1", "operator", "intruder"):
        _signed(folder, client, "ca")
    _signed(folder, "rogue-client", "rogue")
    return folder


def write_passwords(path: Path, passwords: dict[str, str]) -> Path:
    """A Mosquitto password file with ``user: password`` entries (mosquitto_passwd)."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    path.touch()
    for user, password in passwords.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(path), user, password], check=True, timeout=30
        )
    return path


def tls_url(
    port: int, user: str, password: str, pki: Path, *, cert: str | None = None, ca: str = "ca"
) -> str:
    """An mqtts URL on 127.0.0.1 with password, CA and a client certificate (``user``'s
    own unless ``cert`` names another of the PKI's)."""
    cert = cert or user
    return (
        f"mqtts://{user}:{password}@127.0.0.1:{port}"
        f"?ca={pki / (ca + '.pem')}&cert={pki / (cert + '.pem')}&key={pki / (cert + '.key')}"
    )
