"""Shared fixtures: the authors' reference data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
