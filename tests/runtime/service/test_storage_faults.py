"""Issue 23: a full, read-only or slow filesystem degrades the device, never kills it.

The faults are real: a small tmpfs made in the test and filled until ENOSPC, and a
read-only bind mount over the checkpoint folder (root ignores permission bits, so a
mount is the only honest read-only folder). Both need root and skip without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from delgrad.errors import StorageError
from delgrad.protocols import InProcessBus, ParameterDelta, ParameterSnapshot, Reply, Status
from delgrad.runtime.service import Storage
from delgrad.runtime.service._checkpoints import Checkpoints, read_checkpoint
from delgrad.runtime.service._outbox import _EPOCH_ORIGIN_S, EPOCH_NAME, Outbox, next_boot_epoch
from delgrad.runtime.service._param_stream import (
    HIGHWATER_NAME,
    UNRECORDED_BUDGET,
    UNRECORDED_NAME,
    ParameterStream,
)
from delgrad.runtime.service._run_state import RunState
from delgrad.runtime.service._stats import Counters
from delgrad.tools._run_app import build_online
from delgrad.tools._soak import fill_filesystem as fill

from .test_hardening import _answered, _command
from .test_service import DEVICE, Client, make_config, start_service, stream


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (root only)."""
    point = tmp_path / "fs"
    point.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root; CI runs as root): {exc}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only for the block (a read-only bind mount over itself)."""
    _mount("--bind", str(folder), str(folder))
    try:
        _mount("-o", "remount,bind,ro", str(folder))
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextlib.contextmanager
def fault(kind: str, fs: Path, folder: Path) -> Iterator[None]:
    if kind == "full":
        filler = fill(fs)
        try:
            yield
        finally:
            filler.unlink()
    else:
        with read_only(folder):
            yield


# -- the write path ------------------------------------------------------------------------


def test_a_failed_write_is_counted_backs_off_and_clears_when_space_returns(small_fs):
    counters = Counters()
    now = [0.0]
    storage = Storage(counters, clock=lambda: now[0], retry_min_s=1.0, retry_max_s=8.0)
    target = small_fs / "state.json"
    assert storage.write(target, lambda fh: fh.write(b"old"), what="state")
    filler = fill(small_fs)
    delays = []
    for _ in range(5):
        assert not storage.write(target, lambda fh: fh.write(b"new" * 10_000), what="state")
        delays.append(storage.retry_delay_s)
        assert not storage.due()
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert "state not written: No space left on device" in (storage.problem or "")
    assert counters["storage.failures"] == 5
    assert target.read_bytes() == b"old"  # the old file is whole, no temporary left over
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler", "state.json"]
    with pytest.raises(StorageError) as info:
        storage.write_or_raise(target, lambda fh: fh.write(b"new" * 10_000), what="state")
    assert isinstance(info.value, OSError)
    filler.unlink()
    now[0] += 8.0
    assert storage.due()
    assert storage.write(target, lambda fh: fh.write(b"new"), what="state")
    assert storage.problem is None and storage.retry_delay_s == 0.0
    assert counters["storage.writes"] == 2


def test_a_slow_write_raises_the_problem_and_a_fast_one_clears_it(tmp_path):
    now = [0.0]

    def slow(fh):
        now[0] += 12.0
        fh.write(b"x")

    storage = Storage(Counters(), clock=lambda: now[0], slow_s=10.0)
    assert storage.write(tmp_path / "a", slow, what="checkpoint")
    assert (storage.problem or "").startswith("slow: writing the checkpoint took 12.0 s")
    assert storage.write(tmp_path / "a", lambda fh: fh.write(b"y"), what="checkpoint")
    assert storage.problem is None


def test_a_checkpoint_that_cannot_be_written_leaves_the_older_ones_whole(small_fs):
    config = make_config(small_fs / "ck")
    online = build_online(config)
    counters = Counters()
    store = _checkpoints(config, online, counters, small_fs / "ck")
    store.save()
    store.save()
    before = {p: p.read_bytes() for p in store.paths if p.is_file()}
    assert len(before) == 2
    filler = fill(small_fs)
    with pytest.raises(StorageError, match="No space left"):
        store.save()
    assert {p: p.read_bytes() for p in store.paths if p.is_file()} == before
    assert counters["checkpoints.failed"] == 1 and counters["checkpoints.written"] == 2
    filler.unlink()
    store.save()
    assert read_checkpoint(store.path)[1]["param_seq"] >= 0


def _stream(config, online, folder, counters, *, epoch):
    outbox = Outbox(InProcessBus().transport("x"), DEVICE, counters, lambda: 0.0, epoch=epoch)
    params = ParameterStream(
        online,
        outbox,
        config.publish,
        folder,
        storage=Storage(counters),
        counters=counters,
        epoch=epoch,
    )
    return params, outbox


def _checkpoints(config, online, counters, folder):
    params, outbox = _stream(config, online, folder, counters, epoch=1)
    return Checkpoints(
        folder,
        online=online,
        params=params,
        outbox=outbox,
        counters=counters,
        state=RunState("train"),
        storage=Storage(counters),
    )


# -- the boot epoch --------------------------------------------------------------------------


def test_a_boot_epoch_that_cannot_be_recorded_waits_for_the_next_minute(small_fs):
    folder = small_fs / "ck"
    now = _EPOCH_ORIGIN_S + 60 * 1_000_000 + 20.0  # 20 s into a minute
    first = next_boot_epoch(folder, now_s=now)
    assert json.loads((folder / EPOCH_NAME).read_text())["epoch"] == first
    filler = fill(small_fs)
    waits: list[float] = []
    second = next_boot_epoch(folder, now_s=now + 1.0, sleep=waits.append)
    assert second == first + 1
    # the record still says `first`: the start after this one, at the earliest when the
    # wait is over, must take a larger epoch from the clock alone
    assert json.loads((folder / EPOCH_NAME).read_text())["epoch"] == first
    (wait_s,) = waits
    third = next_boot_epoch(folder, now_s=now + 1.0 + wait_s, sleep=waits.append)
    assert third > second
    filler.unlink()
    later = now + 1.0 + wait_s + waits[-1]  # after the third start's wait
    assert next_boot_epoch(folder, now_s=later, sleep=waits.append) > third
    assert len(waits) == 2  # space is back: recorded, no wait


# -- the service -----------------------------------------------------------------------------


async def _start(bus, config, epoch):
    return await start_service(bus, config, epoch=epoch)


async def _kill(service, transport, task):
    """A SIGKILL, as far as the bus can tell: no final checkpoint, no dead status."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    transport.abort()


def _seqs(client, since=0):
    """Update numbers of the parameter messages received after index ``since``."""
    return [
        m.seq
        for _, m in client.messages[since:]
        if isinstance(m, ParameterSnapshot | ParameterDelta)
    ]


@pytest.mark.parametrize("kind", ["full", "read-only"])
async def test_a_storage_fault_degrades_the_device_loudly_and_restarts_never_go_back(
    small_fs, kind, caplog
):
    folder = small_fs / "ck"
    config = make_config(
        folder,
        checkpoint={"period_s": 0.5},
        publish={"metrics_period_s": 0.2, "snapshot_every": 2, "delta_every": 1},
    )
    bus = InProcessBus()
    async with Client(bus) as client:
        service, transport, task = await _start(bus, config, epoch=10)
        await stream(client, 300)
        await client.wait_for(lambda: service.counters["checkpoints.written"] >= 1, 60)
        with fault(kind, small_fs, folder):
            steps = service.online.steps
            await stream(client, 3000)
            await client.wait_for(lambda: service.last_metrics.get("health.storage") == 1.0, 10)
            await client.wait_for(lambda: service.online.steps > steps + 20, 60)
            await client.wait_for(lambda: any("storage" in s.detail for s in client.of(Status)), 10)
            await _command(client, "checkpoint", "during")
            reply = await _answered(client, "during")
            assert not reply.ok and "checkpoint not written" in reply.error
            published = _seqs(client)
            # withheld or not, every number published so far is still above the start
            assert published == sorted(published)
            # a restart while the fault lasts: the new boot cannot record anything either
            await _kill(service, transport, task)
            mark = len(client.messages)
            service, transport, task = await _start(bus, config, epoch=11)
            await stream(client, 300)
            await client.wait_for(lambda: len(_seqs(client, mark)) >= 2, 30)  # snapshot + a delta
            assert min(_seqs(client, mark)) > max(published)
            published = _seqs(client)
            assert service.counters["tasks.failed.inference"] == 0
        # space back: the warning clears within one checkpoint period (and a metrics tick)
        await client.wait_for(lambda: service.last_metrics.get("health.storage") == 0.0, 5)
        await client.wait_for(
            lambda: service.counters["checkpoints.written"] >= 1 and _newest_loads(folder), 5
        )
        await _kill(service, transport, task)
        mark = len(client.messages)
        service, transport, task = await _start(bus, config, epoch=12)
        await stream(client, 300)
        await client.wait_for(lambda: len(_seqs(client, mark)) >= 2, 30)  # snapshot + a delta
        assert min(_seqs(client, mark)) > max(published)
        service.request_stop()
        await asyncio.wait_for(task, 30)
        await transport.__aexit__(None, None, None)
    assert not [r for r in client.of(Reply) if r.correlation_id != "during" and not r.ok]
    # one line when the episode starts and one when it ends, no traceback per attempt
    starts = [r for r in caplog.records if "health: storage:" in r.getMessage()]
    assert 1 <= len(starts) <= 2  # one per boot that met the fault
    assert not [r for r in caplog.records if r.exc_info and "storage" in r.getMessage()]


def _newest_loads(folder: Path) -> bool:
    try:
        read_checkpoint(folder / "service_checkpoint.npz")
    except Exception:
        return False
    return True


def test_the_unrecorded_budget_is_the_documented_jump(small_fs):
    """A boot that finds the marker starts a whole budget per epoch above the record."""
    folder = small_fs / "ck"
    config = make_config(folder)
    online = build_online(config)
    first, _ = _stream(config, online, folder, Counters(), epoch=1)
    record = json.loads((folder / HIGHWATER_NAME).read_text())
    assert record["epoch"] == 1 and record["param_seq"] > first.seq
    filler = fill(small_fs)
    first.retry()  # nothing pending: no write
    first._write_highwater()  # as the next snapshot does; it fails
    assert (folder / UNRECORDED_NAME).is_file() and not (folder / HIGHWATER_NAME).exists()
    filler.unlink()
    later, _ = _stream(config, online, folder, Counters(), epoch=4)
    assert later.seq == record["param_seq"] + 3 * UNRECORDED_BUDGET
    assert not (folder / UNRECORDED_NAME).exists()  # its own record supersedes the marker
    assert json.loads((folder / HIGHWATER_NAME).read_text())["param_seq"] > later.seq
