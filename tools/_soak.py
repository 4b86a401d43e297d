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

A subscriber watches every message of the device; :class:`~._soak_checks.SoakLedger`
judges counters, update and envelope numbers, RSS per boot, checkpoints and health
warnings. With a short ``duration_s`` the schedule shrinks in proportion (each fault
at least once; SIGKILLs at least two), so ``--duration 240`` tries it out. Needs root
(mounts) and Mosquitto. ``delgrad bench soak``; figures in docs/security.md, "Soak".
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
from collections.abc import Callable
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

    def summary(self) -> dict[str, Any]:
        ledger = self.ledger
        accuracy = [s["accuracy"] for s in self.samples if s.get("accuracy") is not None]
        rss = [s["rss_mb"] for s in self.samples if s.get("rss_mb")]
        disk = [s["disk_used_fraction"] for s in self.samples if "disk_used_fraction" in s]
        counts = [s["checkpoints_count"] for s in self.samples if "checkpoints_count" in s]
        return {
            "duration_s": round(self.duration_s, 1),
            "rate_trials_per_s": self.rate,
            "faults": {k: sum(e["kind"] == k for e in self.events) for k in _KINDS},
            "boots_count": ledger.boots,
            "violations": ledger.violations[:50],
            "violations_count": len(ledger.violations),
            "rss_growth_after_warm_up_max_mb": round(max(ledger.rss_growth_mb, default=0.0), 2),
            "rss_max_mb": round(max(rss, default=0.0), 1),
            "checkpoints_lost_count": ledger.checkpoints_lost,
            "checkpoints_in_folder_min_max": [min(counts, default=0), max(counts, default=0)],
            "disk_used_max_fraction": round(max(disk, default=0.0), 3),
            "accuracy_min_after_first_600_s_fraction": _min_after(self.samples, 600.0),
            "accuracy_last_fraction": accuracy[-1] if accuracy else None,
            "counts_lost_at_kills": {
                k: int(v) for k, v in sorted(ledger.counts_lost_at_kills.items())
            },
            "warnings": ledger.warnings,
            "warnings_active_at_end": ledger.active_warnings,
            "service_exit_code": self.exit_code,
        }


_KINDS = ("kill", "fill", "freeze", "broker_restart", "read_only")


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

    def now(self) -> float:
        return time.monotonic() - self.started_s

    def config(self) -> Path:
        path = self.work / "run.toml"
        path.write_text(
            "\n".join(
                [
                    f'device = "{DEVICE}"',
                    "[broker]",
                    f'url = "{self.broker.url}"',
                    "[publish]",
                    "metrics_period_s = 1.0",
                    "[checkpoint]",
                    f'dir = "{self.ckpt}"',
                    "period_s = 10.0",
                ]
            )
            + "\n"
        )
        return path

    def start_runtime(self) -> None:
        state = _newest_checkpoint(self.ckpt)
        self.restored = None if state is None else dict(state.get("counters", {}))
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
                    values = dict(body.values)
                    self.ledger.metrics(now, values)
                    self.last_metrics = values
        finally:
            await transport.close()

    async def sample(self) -> dict[str, Any]:
        pid = self.runtime.pid if self.runtime is not None else 0
        rss_mb = rss_bytes(pid) / 1e6
        now = self.now()
        self.ledger.rss(now, rss_mb)
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
        return row

    async def fault(self, fault: Fault) -> None:
        self.log(f"{self.now():8.1f} s  {fault.kind} (hold {fault.hold_s:.0f} s)")
        if fault.kind == "kill":
            assert self.runtime is not None
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
        self.log(f"{self.now():8.1f} s  {fault.kind} over")


async def run_soak(
    *,
    duration_s: float = FULL_DURATION_S,
    rate: float = 2000.0,
    disk_mb: int = 16,
    warm_up_s: float = 120.0,
    sample_every_s: float = 10.0,
    folder: Path | None = None,
    log: Callable[[str], None] = print,
) -> SoakReport:
    """Run the soak (module doc) and return its report.

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
    tasks: list[asyncio.Task[Any]] = []
    try:
        soak.broker.start()
        soak.start_runtime()
        tasks.append(asyncio.create_task(soak.observe()))
        soak.start_sensor()
        pending = schedule(duration_s)
        next_sample = 0.0
        while soak.now() < duration_s:
            if pending and soak.now() >= pending[0].at_s:
                fault = pending.pop(0)
                report.events.append({"t_s": round(soak.now(), 1), "kind": fault.kind})
                await soak.fault(fault)
            if soak.now() >= next_sample:
                report.samples.append(await soak.sample())
                next_sample += sample_every_s
            if soak.sensor is not None and soak.sensor.poll() is not None:
                soak.start_sensor()  # it gave up on a broker gone too long: as a user would
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        report.samples.append(await soak.sample())
    finally:
        if soak.sensor is not None:
            stop_process(soak.sensor, signal.SIGINT)
        if soak.runtime is not None:
            report.exit_code = stop_process(soak.runtime, signal.SIGTERM, 60.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        soak.broker.stop()
        soak.ledger.finish(soak.now())
        subprocess.run(["umount", "-l", str(soak.fs)], check=False)
        with contextlib.suppress(OSError):
            (work / "samples.jsonl").write_text(
                "".join(json.dumps(s) + "\n" for s in report.samples)
            )
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return report
