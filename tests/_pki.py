"""A throw-away PKI for TLS tests: a CA, a broker certificate for 127.0.0.1 and
localhost, client certificates, and a rogue CA nobody trusts (openssl CLI)."""

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
