"""docs/sensors.md: the "your own sensor" example runs as written against a real
``delgrad run`` over Mosquitto, and its windows are predicted and labelled."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from delgrad.protocols import Metrics, Predictions

from ._e2e_helpers import RuntimeProcess, Subscriber, processes_fixture  # noqa: F401

pytestmark = [pytest.mark.broker, pytest.mark.slow]
DOC = Path(__file__).resolve().parents[2] / "docs" / "sensors.md"


def _example() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- sensors:example -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/sensors.md lost its example block"
    return match.group(1)


def test_the_example_is_about_20_lines():
    lines = [ln for ln in _example().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) <= 22


async def test_the_example_feeds_a_running_service(mosquitto, processes, tmp_path):
    rt = RuntimeProcess(
        processes, mosquitto.url, "demo", ingest={"us_per_tau": 6.0, "window_length": 2.5}
    )
    (tmp_path / "example.py").write_text(_example())
    async with Subscriber(mosquitto.port, "demo") as sub:
        rt.start()
        deadline = time.monotonic() + 60
        while not sub.of(Metrics):
            assert time.monotonic() < deadline, rt.output()
            await asyncio.sleep(0.2)
        env = {**os.environ, "DELGRAD_BROKER": mosquitto.url}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(tmp_path / "example.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while True:
            ids = [m.trial_ids for m in sub.of(Predictions)]
            seen = set(np.concatenate(ids).tolist()) if ids else set()
            metrics = sub.of(Metrics)
            labels = metrics[-1].values.get("labels.received", 0.0) if metrics else 0.0
            if set(range(199)) <= seen and labels >= 200:
                break
            assert time.monotonic() < deadline, (sorted(seen)[:5], labels, rt.output())
            await asyncio.sleep(0.2)
        assert metrics[-1].values.get("refused.channel_outside", 0.0) == 0.0
