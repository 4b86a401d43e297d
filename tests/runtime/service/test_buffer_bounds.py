"""Trial buffers bounded in bytes as well as in trials: at sensor-sized inputs the
MiB budgets (``ingest.max_pending_mb``, ``join.max_mb``) cap the counts."""

from __future__ import annotations

import pytest

from delgrad.errors import ConfigError
from delgrad.protocols import InProcessBus
from delgrad.runtime.service._limits import (
    byte_bounds_note,
    join_capacity,
    pending_bound,
    trials_within,
)
from delgrad.runtime.service._run_config import run_config_from_dict

from .test_service import Client, make_config, overload_while_paused, start_service, stop_service


def test_trials_within_takes_the_smaller_bound() -> None:
    # 1 MiB of rows of 127 inputs: 1,048,576 // (8 * 128) = 1,024 trials
    assert trials_within(20_000, 1.0, 127) == 1_024
    assert trials_within(500, 1.0, 127) == 500
    assert trials_within(20_000, 1e-9, 100_000) == 1  # never zero


def test_defaults_keep_the_counts_at_small_inputs_and_cap_them_at_sensor_sizes() -> None:
    config = run_config_from_dict({})
    assert (pending_bound(config.ingest, 4), join_capacity(config.join, 4)) == (20_000, 10_000)
    assert byte_bounds_note(config, 4) is None
    # a 34 x 34 x 2 sensor: 64 MiB // (8 * 2313) = 3,626 trials on each side
    assert (pending_bound(config.ingest, 2312), join_capacity(config.join, 2312)) == (3_626, 3_626)
    note = byte_bounds_note(config, 2312)
    assert note is not None and "3,626 pending trials" in note and "join.max_mb = 64" in note


@pytest.mark.parametrize("key", [("ingest", "max_pending_mb"), ("join", "max_mb")])
def test_budgets_must_be_positive(key: tuple[str, str]) -> None:
    section, name = key
    with pytest.raises(ConfigError, match=f"{section}.{name} must be > 0"):
        run_config_from_dict({section: {name: 0}})


async def test_pending_queue_drops_beyond_its_byte_budget() -> None:
    bus = InProcessBus()
    config = make_config(ingest={"max_pending_mb": 0.01}, join={"max_mb": 0.02})
    async with Client(bus) as client:
        service, transport, task = await start_service(bus, config)
        n_inputs = service.online.n_inputs
        kept = pending_bound(config.ingest, n_inputs)
        assert kept == int(0.01 * 2**20) // (8 * (n_inputs + 1)) < 1000
        assert service.join.capacity == join_capacity(config.join, n_inputs) < 10_000
        m = await overload_while_paused(client, service, 1000)
        assert m["queue.pending_trials"] == kept
        assert m["dropped.overload"] == 1000 - kept
        await stop_service(service, transport, task)
