"""Soak: ``delgrad run`` for hours under the faults of a device left alone (issue 23).

Mosquitto, ``delgrad run`` (checkpoints on a small tmpfs made here) and ``delgrad
sensor`` (Yin-Yang at ``rate`` trials/s, every trial labelled) on loopback, and a
schedule of faults spread over ``duration_s``:

* SIGKILL of the service and a restart from its checkpoints every ``kill_every_s``;
* the checkpoint filesystem filled to ENOSPC and freed again, twice (``fill_s`` each);
* the broker frozen (SIGSTOP, then SIGCONT) for ``freeze_s``, twice;
* the broker restarted (SIGKILL, start on the same port) five times;
* the checkpoint folder made read-only once (``read_only_s``; a read-only bind mount,
  since root ignores permission bits).

A fault with a hold runs beside the rest (samples go on while the disk is full);
faults on the same thing (the broker; the checkpoint filesystem) wait for each
other, so a SIGKILL may land while the disk is full, as it would on a device.

A subscriber watches every message of the device; :class:`~._soak_checks.SoakLedger`
judges counters, update and envelope numbers, RSS per boot, checkpoints and health
warnings. Every ``sample_every_s`` a sample records RSS (/proc), the newest checkpoint
that loads, the files in the folder, disk use, accuracy and every ``health.*``,
``storage.*``, ``broker.*`` and ``transport.*`` metric. A service that exits by itself
(not a scheduled SIGKILL) is reported (``service_exits``) and started again, as a
process supervisor would. With a short ``duration_s`` the schedule shrinks in
proportion (each fault at least once; SIGKILLs at least two), so
``--duration-s 240`` tries it out. Needs root (mounts) and Mosquitto.
``delgrad bench soak``; figures in docs/security.md, "Soak".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delgrad.errors import DelgradError
from delgrad.protocols import (
    Metrics,
    MqttTransport,
    ParameterDelta,
    ParameterSnapshot,
    decode,
    subscription,
)
from delgrad.runtime.service import EPOCH_SHIFT, checkpoint_paths, read_checkpoint
from delgrad.tools._bench_e2e import DELGRAD, rss_bytes, stop_process
from delgrad.tools._mosquitto import Mosquitto
from delgrad.tools._soak_checks import SoakLedger
from delgrad.tools._toml import write_toml

DEVICE = "soak"
#: The full soak of issue 23 (s): two hours.
FULL_DURATION_S = 7200.0


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: ``kind`` at ``at_s`` for ``hold_s`` seconds (0: instant)."""

    at_s: float
    kind: str
    hold_s: float = 0.0


def schedule(duration_s: float, *, kill_every_s: float = 600.0) -> list[Fault]:
    """The faults of a soak of ``duration_s`` (see the module doc), in time order.

    The two-hour schedule scaled by ``duration_s / 7200``: holds of 120 s (full disk),
    60 s (frozen broker) and 120 s (read-only folder), at least 5 s each.
    """
    scale = duration_s / FULL_DURATION_S
    kill_every = max(kill_every_s * scale, duration_s / 12) if scale < 1 else kill_every_s
    faults = [Fault(k * kill_every, "kill") for k in range(1, int(duration_s / kill_every))]
    hold = lambda s: max(5.0, s * scale)  # noqa: E731
    faults += [Fault(duration_s * f, "fill", hold(120.0)) for f in (0.17, 0.57)]
    faults += [Fault(duration_s * f, "freeze", hold(60.0)) for f in (0.32, 0.72)]
    faults += [Fault(duration_s * f, "broker_restart") for f in (0.12, 0.42, 0.52, 0.82, 0.92)]
    faults.append(Fault(duration_s * 0.64, "read_only", hold(120.0)))
    return sorted(faults, key=lambda f: f.at_s)


@dataclass
class SoakReport:
    """What a soak measured (``summary()`` names every unit)."""

    duration_s: float
    rate: float
    ledger: SoakLedger
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    #: Exits of the service that were not a scheduled SIGKILL: time (s) and exit code.
    service_exits: list[dict[str, Any]] = field(default_factory=list)

    def acceptance(self) -> dict[str, Any]:
        """The figures issue 23 accepts a soak by (units in the keys)."""
        ledger = self.ledger
        return {
            "rss_growth_after_warm_up_max_mb": round(max(ledger.rss_growth_mb, default=0.0), 2),
            "counters_backwards_count": ledger.counters_backwards,
            "numbers_backwards_count": ledger.numbers_backwards,
            "checkpoints_lost_count": ledger.checkpoints_lost,
            "warnings_not_cleared_at_end": ledger.active_warnings,
            "service_exits_count": len(self.service_exits),
        }

    def passed(self, *, rss_bound_mb: float = 10.0) -> bool:
        """Whether every acceptance figure holds (RSS growth below ``rss_bound_mb``)."""
        a = self.acceptance()
        return (
            a["rss_growth_after_warm_up_max_mb"] < rss_bound_mb
            and not self.ledger.violations
            and not a["warnings_not_cleared_at_end"]
            and not self.service_exits
            and self.exit_code == 0
        )

    def timeline(self, rows: int = 25) -> list[dict[str, Any]]:
        """About ``rows`` samples spread evenly over the run (the first and last included)."""
        if len(self.samples) <= rows:
            return list(self.samples)
        step = (len(self.samples) - 1) / (rows - 1)
        return [self.samples[round(i * step)] for i in range(rows)]

    def summary(self) -> dict[str, Any]:
        ledger = self.ledger
        accuracy = [s["accuracy"] for s in self.samples if s.get("accuracy") is not None]
        rss = [s["rss_mb"] for s in self.samples if s.get("rss_mb")]
        disk = [s["disk_used_fraction"] for s in self.samples if "disk_used_fraction" in s]
        counts = [s["checkpoints_count"] for s in self.samples if "checkpoints_count" in s]
        return {
            "acceptance": self.acceptance(),
            "duration_s": round(self.duration_s, 1),
            "rate_trials_per_s": self.rate,
            "faults": {k: sum(e["kind"] == k for e in self.events) for k in _KINDS},
            "boots_count": ledger.boots,
            "violations": ledger.violations[:50],
            "violations_count": len(ledger.violations),
            "rss_growth_after_warm_up_max_mb": round(max(ledger.rss_growth_mb, default=0.0), 2),
            "rss_max_mb": round(max(rss, default=0.0), 1),
            "rss_after_warm_up_first_last_mb": [
                round(x, 1)
                for x in ledger.rss_after_warm_up_mb[:1] + ledger.rss_after_warm_up_mb[-1:]
            ],
            "checkpoints_lost_count": ledger.checkpoints_lost,
            "checkpoints_in_folder_min_max": [min(counts, default=0), max(counts, default=0)],
            "disk_used_max_fraction": round(max(disk, default=0.0), 3),
            "accuracy_min_after_first_tenth_fraction": _min_after(
                self.samples, self.duration_s / 10
            ),
            "accuracy_last_fraction": accuracy[-1] if accuracy else None,
            "counts_lost_at_kills": {
                k: int(v) for k, v in sorted(ledger.counts_lost_at_kills.items())
            },
            "warnings": ledger.warnings,
            "warnings_active_at_end": ledger.active_warnings,
            "service_exits": self.service_exits,
            "service_exit_code": self.exit_code,
        }


_KINDS = ("kill", "fill", "freeze", "broker_restart", "read_only")
#: What each fault acts on: faults on one thing wait for each other.
_RESOURCE = {
    "kill": "service",
    "fill": "disk",
    "read_only": "disk",
    "freeze": "broker",
    "broker_restart": "broker",
}
#: Metric families every sample records in full.
SAMPLED_PREFIXES = ("health.", "storage.", "broker.", "transport.")


def _min_after(samples: list[dict[str, Any]], t_s: float) -> float | None:
    values = [s["accuracy"] for s in samples if s["t_s"] >= t_s and s.get("accuracy") is not None]
    return round(min(values), 4) if values else None


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def fill_filesystem(fs: Path) -> Path:
    """Fill the filesystem of folder ``fs`` until ENOSPC; returns the filler file (delete
    it to free the space)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _newest_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The service state of the newest checkpoint that loads, or None."""
    for path in checkpoint_paths(folder, 3):
        if path.is_file():
            try:
                return read_checkpoint(path)[1]
            except (DelgradError, OSError):
                continue
    return None


class _Soak:
    def __init__(self, work: Path, *, rate: float, warm_up_s: float, log: Callable[[str], None]):
        self.work = work
        self.fs = work / "fs"
        self.ckpt = self.fs / "checkpoints"
        self.rate = rate
        self.log = log
        self.broker = Mosquitto(work)
        self.ledger = SoakLedger(warm_up_s=warm_up_s)
        self.runtime: subprocess.Popen[bytes] | None = None
        self.sensor: subprocess.Popen[bytes] | None = None
        self.started_s = time.monotonic()
        self.epoch = -1
        self.restored: dict[str, int] | None = None
        self.last_metrics: dict[str, float] = {}
        self.runtime_started_s = 0.0
        self.events: list[dict[str, Any]] = []
        self.service_exits: list[dict[str, Any]] = []
        self.locks = {name: asyncio.Lock() for name in set(_RESOURCE.values())}

    def event(self, kind: str, **more: Any) -> dict[str, Any]:
        """Log and keep one event of the run (times in s since the start)."""
        item = {"t_s": round(self.now(), 1), "kind": kind, **more}
        self.events.append(item)
        extra = " ".join(f"{k}={v}" for k, v in more.items())
        self.log(f"{item['t_s']:8.1f} s  {kind} {extra}".rstrip())
        return item

    def now(self) -> float:
        return time.monotonic() - self.started_s

    def config(self) -> Path:
        return write_toml(
            self.work / "run.toml",
            {
                "device": DEVICE,
                "broker": {"url": self.broker.url},
                "publish": {"metrics_period_s": 1.0},
                "checkpoint": {"dir": str(self.ckpt), "period_s": 10.0},
            },
        )

    def start_runtime(self) -> None:
        state = _newest_checkpoint(self.ckpt)
        self.restored = None if state is None else dict(state.get("counters", {}))
        self.runtime_started_s = self.now()
        with open(self.work / "runtime.log", "ab") as out:
            self.runtime = subprocess.Popen(
                [*DELGRAD, "run", "--config", str(self.config()), "--quiet"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def _rate(self) -> list[str]:
        return ["--rate", str(self.rate), "--quiet"]

    def start_sensor(self) -> None:
        with open(self.work / "sensor.log", "ab") as out:
            self.sensor = subprocess.Popen(
                [
                    *DELGRAD,
                    "sensor",
                    "--broker",
                    self.broker.url,
                    "--device",
                    DEVICE,
                    "--rate",
                    str(self.rate),
                    "--quiet",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def observe(self) -> None:
        transport = MqttTransport(
            "127.0.0.1", self.broker.port, client_id="soak-observer", reconnect_max_s=1.0
        )
        await transport.connect()
        await transport.subscribe(subscription(DEVICE), qos=1)
        try:
            while True:
                msg = await transport.recv()
                try:
                    env = decode(msg.payload)
                except DelgradError:
                    continue
                now = self.now()
                if env.sender == DEVICE:
                    self.ledger.envelope_seq(now, msg.topic, env.seq, retained=msg.retain)
                body = env.message
                if isinstance(body, ParameterSnapshot | ParameterDelta):
                    self.ledger.parameter_seq(now, body.seq, retained=msg.retain)
                if isinstance(body, Metrics) and not msg.retain:
                    epoch = env.seq >> EPOCH_SHIFT
                    if epoch < self.epoch:
                        continue  # a late message of a killed boot
                    if epoch > self.epoch:
                        self.epoch = epoch
                        self.ledger.new_boot(now, self.restored)
                        steps = (
                            None if self.restored is None else self.restored.get("learning.steps")
                        )
                        self.event("boot", epoch=epoch, restored_steps=steps)
                    values = dict(body.values)
                    for change in self.ledger.metrics(now, values):
                        self.event(change)
                    self.last_metrics = values
        finally:
            await transport.close()

    async def sample(self) -> dict[str, Any]:
        pid = self.runtime.pid if self.runtime is not None else 0
        rss_mb = rss_bytes(pid) / 1e6
        now = self.now()
        self.ledger.rss(now, rss_mb, started_s=self.runtime_started_s)
        state = await asyncio.to_thread(_newest_checkpoint, self.ckpt)
        self.ledger.checkpoints(now, None if state is None else int(state["steps"]))
        row: dict[str, Any] = {"t_s": round(now, 1), "rss_mb": round(rss_mb, 1)}
        with contextlib.suppress(OSError):
            vfs = os.statvfs(self.fs)
            row["disk_used_fraction"] = round(1 - vfs.f_bavail / vfs.f_blocks, 4)
            row["checkpoints_count"] = sum(p.is_file() for p in checkpoint_paths(self.ckpt, 3))
        m = self.last_metrics
        row["accuracy"] = m.get("accuracy")
        row["steps"] = m.get("learning.steps")
        row["warnings"] = [k[7:] for k, v in m.items() if k.startswith("health.") and v >= 1][:8]
        row["metrics"] = {k: v for k, v in sorted(m.items()) if k.startswith(SAMPLED_PREFIXES)}
        return row

    async def fault(self, fault: Fault) -> None:
        """Apply ``fault``, hold it, undo it; waits for faults on the same thing."""
        async with self.locks[_RESOURCE[fault.kind]]:
            item = self.event(fault.kind, hold_s=fault.hold_s, scheduled_s=round(fault.at_s, 1))
            try:
                await self._apply(fault)
            except (OSError, subprocess.CalledProcessError) as exc:
                item["error"] = str(exc)
                self.log(f"{self.now():8.1f} s  {fault.kind} failed: {exc}")
            item["end_s"] = round(self.now(), 1)
            if fault.hold_s:
                self.log(f"{self.now():8.1f} s  {fault.kind} over")

    async def _apply(self, fault: Fault) -> None:
        if fault.kind == "kill":
            if self.runtime is not None and not self._exited():
                self.runtime.send_signal(signal.SIGKILL)
                await asyncio.to_thread(self.runtime.wait, 10)
            self.start_runtime()
        elif fault.kind == "broker_restart":
            self.broker.kill()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.broker.start)
        elif fault.kind == "freeze":
            os.kill(self.broker.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(fault.hold_s)
            finally:
                os.kill(self.broker.pid, signal.SIGCONT)
        elif fault.kind == "fill":
            filler = await asyncio.to_thread(fill_filesystem, self.fs)
            try:
                await asyncio.sleep(fault.hold_s)
            finally:
                filler.unlink()
        elif fault.kind == "read_only":
            _mount("--bind", str(self.ckpt), str(self.ckpt))
            try:
                _mount("-o", "remount,bind,ro", str(self.ckpt))
                await asyncio.sleep(fault.hold_s)
            finally:
                subprocess.run(["umount", str(self.ckpt)], check=False)

    def _exited(self) -> bool:
        """Whether the service exited by itself (recorded as an event if so)."""
        code = None if self.runtime is None else self.runtime.poll()
        if code is None:
            return False
        self.runtime = None
        self.service_exits.append({"t_s": round(self.now(), 1), "exit_code": code})
        self.event("service_exit", exit_code=code)
        return True

    async def watch_service(self) -> None:
        """Report a service that exited by itself and start it again."""
        if self.locks["service"].locked():
            return  # a scheduled kill is under way
        async with self.locks["service"]:
            if self._exited():
                self.start_runtime()


async def run_soak(
    *,
    duration_s: float = FULL_DURATION_S,
    rate: float = 2000.0,
    disk_mb: int = 16,
    warm_up_s: float = 120.0,
    sample_every_s: float = 10.0,
    faults: Sequence[Fault] | None = None,
    folder: Path | None = None,
    log: Callable[[str], None] = print,
) -> SoakReport:
    """Run the soak (module doc) and return its report.

    Args:
        duration_s: length of the run (s); the schedule scales with it.
        rate: trials/s the sensor offers (every trial labelled).
        disk_mb: size of the checkpoint tmpfs (MiB).
        warm_up_s: seconds of each boot before its RSS baseline (at most 1/20 of the run).
        sample_every_s: seconds between samples.
        faults: the faults to apply instead of :func:`schedule` ``(duration_s)``.
        folder: keep the work folder (logs, samples.jsonl, events.jsonl) here.
        log: where the event lines go.

    Raises:
        PermissionError: not root (the tmpfs and the read-only bind mount need it).
    """
    if os.geteuid() != 0:
        raise PermissionError("the soak mounts a tmpfs and a read-only bind mount: run as root")
    own = folder is None
    work = Path(tempfile.mkdtemp(prefix="delgrad-soak-")) if folder is None else folder
    work.mkdir(parents=True, exist_ok=True)
    soak = _Soak(work, rate=rate, warm_up_s=min(warm_up_s, duration_s / 20), log=log)
    soak.fs.mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={disk_mb}m", "tmpfs", str(soak.fs))
    report = SoakReport(duration_s, rate, soak.ledger)
    observer: asyncio.Task[None] | None = None
    running: list[asyncio.Task[None]] = []
    try:
        soak.broker.start()
        soak.start_runtime()
        observer = asyncio.create_task(soak.observe())
        soak.start_sensor()
        pending = sorted(schedule(duration_s) if faults is None else faults, key=lambda f: f.at_s)
        next_sample = 0.0
        while soak.now() < duration_s:
            while pending and soak.now() >= pending[0].at_s:
                running.append(asyncio.create_task(soak.fault(pending.pop(0))))
            if soak.now() >= next_sample:
                report.samples.append(await soak.sample())
                next_sample += sample_every_s
            await soak.watch_service()
            if soak.sensor is not None and soak.sensor.poll() is not None:
                soak.start_sensor()  # it gave up on a broker gone too long: as a user would
            if observer.done():
                soak.event("observer_restart", error=repr(observer.exception()))
                observer = asyncio.create_task(soak.observe())
            await asyncio.sleep(0.2)
        await asyncio.gather(*running)  # holds end (their undo runs) before the last look
        await asyncio.sleep(2.0)
        await soak.watch_service()
        report.samples.append(await soak.sample())
    finally:
        for task in running:
            task.cancel()  # only on an error: each undoes its fault in a finally
        await asyncio.gather(*running, return_exceptions=True)
        if soak.sensor is not None:
            stop_process(soak.sensor, signal.SIGINT)
        if soak.runtime is not None:
            report.exit_code = stop_process(soak.runtime, signal.SIGTERM, 60.0)
        if observer is not None:
            observer.cancel()
            await asyncio.gather(observer, return_exceptions=True)
        soak.broker.stop()
        soak.ledger.finish(soak.now())
        report.events = soak.events
        report.service_exits = soak.service_exits
        subprocess.run(["umount", "-l", str(soak.fs)], check=False)
        with contextlib.suppress(OSError):
            for name, rows in (("samples", report.samples), ("events", report.events)):
                (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return report
