"""Public API surface and import hygiene."""

from __future__ import annotations

import subprocess
import sys

import delgrad.protocols as p
from delgrad.errors import DelgradError
from delgrad.protocols import ProtocolError, TransportError


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_all_is_sorted_unique_and_resolvable() -> None:
    assert p.__all__ == sorted(p.__all__, key=_isort_key)
    assert len(set(p.__all__)) == len(p.__all__)
    for name in p.__all__:
        assert hasattr(p, name), name
    public = {n for n in vars(p) if not n.startswith("_")}
    assert public - set(p.__all__) == set(), "public names missing from __all__"


def test_error_tree() -> None:
    assert issubclass(ProtocolError, DelgradError) and issubclass(ProtocolError, ValueError)
    assert issubclass(TransportError, DelgradError)
    assert issubclass(TransportError, ConnectionError)
    for sub in (p.VersionError, p.SchemaError, p.ArrayError, p.SizeLimitError, p.ChecksumError):
        assert issubclass(sub, ProtocolError)
    assert p.SchemaError("why").reason == "why"


def test_import_is_quiet_and_lazy() -> None:
    code = (
        "import sys, warnings; warnings.simplefilter('error');"
        "import delgrad.protocols;"
        "print(sorted(m for m in ('aiomqtt', 'amqtt', 'paho') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    assert out.stderr == ""
