"""Shared fixtures: the authors' reference data beside the repository, and Mosquitto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from delgrad.tools import Mosquitto, mosquitto_binary

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """``../shared/delgrad_reference`` beside the repository (or $DELGRAD_REFERENCE)."""
    env = os.environ.get("DELGRAD_REFERENCE")
    return Path(env) if env else REPO.parent / "shared" / "delgrad_reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    """Folder of the DelGrad authors' networks; skips the test when it is absent."""
    path = reference_dir()
    if not (path / "yin_yang_H30_W.npz").is_file():
        pytest.skip(f"DelGrad reference data not found at {path} (set DELGRAD_REFERENCE)")
    return path


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running Mosquitto on 127.0.0.1 and a free port, stopped after the test.

    Skips the test when the ``mosquitto`` binary is neither on PATH nor in /usr/sbin.
    The test may :meth:`~Mosquitto.kill` and :meth:`~Mosquitto.start` it again (same port).
    """
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto); CI always has it")
    server = Mosquitto(tmp_path, binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def always_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split every forward and backward pass over the threads asked for, however
    small the batch: test networks are below the sizes where a split pays
    (``delgrad.runtime._network.FORWARD_SPLIT``), and the split is what is tested."""
    from delgrad.runtime import _network

    split = _network.SplitCost(row_s=1.0, synapse_s=0.0, min_chunk_s=1e-9)
    monkeypatch.setattr(_network, "FORWARD_SPLIT", split)
    monkeypatch.setattr(_network, "BACKWARD_SPLIT", split)
