"""The soak's judgements, pure: what a long run's samples must show (issue 23).

:class:`SoakLedger` takes the observations of a soak (metrics of each boot of the
service, status details, RSS and checkpoint samples) and keeps the figures the
acceptance asks for:

* **counters never go backwards**: within one boot every counter (a metric whose
  name is in :data:`COUNTERS` or starts with one of :data:`COUNTER_PREFIXES`) only
  grows; across a restart each counter starts at or above its value in the newest
  checkpoint the new boot restored from (counts after the last checkpoint before a
  SIGKILL are lost by design and reported as ``counts_lost_at_kills``, not as
  going backwards);
* **update numbers never go backwards**: parameter ``seq`` across the whole run,
  envelope numbers per topic;
* **RSS growth after warm-up**, per boot: the largest resident size after the boot's
  warm-up minus the size at its end of warm-up (the service is restarted every ten
  minutes, so growth is judged per boot);
* **checkpoints lost**: a sample in which no checkpoint loads after one did, or the
  newest loadable one holds fewer steps than an earlier sample's;
* **warnings**: every health warning raised and cleared, with times; those still
  active at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Metrics that only count up within a boot.
COUNTERS = frozenset(
    {
        "trials.received",
        "trials.processed",
        "learning.steps",
        "learning.bumps",
        "labels.received",
        "events.received",
        "published.messages",
        "published.bytes",
        "checkpoints.written",
        "storage.failures",
        "storage.writes",
    }
)
COUNTER_PREFIXES = ("dropped.", "refused.", "join.joined", "tasks.", "transport.reconnects")


def is_counter(name: str) -> bool:
    """Whether metric ``name`` is a counter (never falls within one boot)."""
    return name in COUNTERS or name.startswith(COUNTER_PREFIXES)


@dataclass
class SoakLedger:
    """Running judgement of a soak (see the module doc).

    Args:
        warm_up_s: seconds of each boot before its RSS baseline is taken.
    """

    warm_up_s: float = 120.0
    violations: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    counts_lost_at_kills: dict[str, float] = field(default_factory=dict)
    rss_growth_mb: list[float] = field(default_factory=list)
    checkpoints_lost: int = 0
    boots: int = 0
    _boot: int = -1
    _last: dict[str, float] = field(default_factory=dict)
    _floor: dict[str, float] = field(default_factory=dict)
    _param_seq: int = -1
    _envelope: dict[str, int] = field(default_factory=dict)
    _active: dict[str, float] = field(default_factory=dict)
    _boot_start_s: float = 0.0
    _rss_base_mb: float | None = None
    _rss_peak_mb: float = 0.0
    _ckpt_steps: int = -1
    _ckpt_seen: bool = False

    # -- boots ---------------------------------------------------------------------------

    def new_boot(self, now_s: float, restored: dict[str, int] | None) -> None:
        """A new process of the service starts; ``restored`` are the counters of the
        checkpoint it will resume from (None: none)."""
        self._close_boot()
        if self._last:
            for name, value in self._last.items():
                if is_counter(name):
                    lost = value - float((restored or {}).get(name, 0))
                    if lost > 0:
                        self.counts_lost_at_kills[name] = (
                            self.counts_lost_at_kills.get(name, 0.0) + lost
                        )
        self._boot += 1
        self.boots += 1
        self._floor = {k: float(v) for k, v in (restored or {}).items()}
        self._last = {}
        self._boot_start_s = now_s
        self._rss_base_mb = None
        self._rss_peak_mb = 0.0

    def _close_boot(self) -> None:
        if self._rss_base_mb is not None:
            self.rss_growth_mb.append(max(0.0, self._rss_peak_mb - self._rss_base_mb))

    def finish(self, now_s: float) -> None:
        """The run ended: close the last boot."""
        self._close_boot()
        self._rss_base_mb = None

    # -- observations ------------------------------------------------------------------

    def metrics(self, now_s: float, values: dict[str, float]) -> None:
        """One metrics message of the current boot."""
        for name, value in values.items():
            if not is_counter(name):
                continue
            before = self._last.get(name)
            if before is not None and value < before:
                self.violations.append(
                    f"{now_s:.0f} s: {name} went back from {before:g} to {value:g} in boot "
                    f"{self._boot}"
                )
            elif before is None and value < self._floor.get(name, 0.0):
                self.violations.append(
                    f"{now_s:.0f} s: {name} started at {value:g}, below the checkpoint's "
                    f"{self._floor[name]:g}"
                )
            self._last[name] = value
        for name, value in values.items():
            if not name.startswith("health.") or name == "health.warnings":
                continue
            warning = name.removeprefix("health.")
            if value >= 1.0 and warning not in self._active:
                self._active[warning] = now_s
                self.warnings.append({"warning": warning, "raised_s": now_s, "cleared_s": None})
            elif value < 1.0 and warning in self._active:
                del self._active[warning]
                for item in reversed(self.warnings):
                    if item["warning"] == warning and item["cleared_s"] is None:
                        item["cleared_s"] = now_s
                        break

    def parameter_seq(self, now_s: float, seq: int, *, retained: bool) -> None:
        """The update number of a live parameter snapshot or delta (retained copies of an
        older snapshot may arrive again on re-subscription and are not judged)."""
        if retained:
            return
        if seq < self._param_seq:
            self.violations.append(
                f"{now_s:.0f} s: parameter update number went back from {self._param_seq} to {seq}"
            )
        self._param_seq = max(self._param_seq, seq)

    def envelope_seq(self, now_s: float, topic: str, seq: int, *, retained: bool) -> None:
        """The envelope sequence number of a live message on ``topic``."""
        if retained:
            return
        before = self._envelope.get(topic, -1)
        if seq < before:
            self.violations.append(f"{now_s:.0f} s: envelope number on {topic} went back")
        self._envelope[topic] = max(before, seq)

    def rss(self, now_s: float, rss_mb: float) -> None:
        """A resident-size sample of the current boot's process (MB)."""
        if rss_mb <= 0:
            return
        if now_s - self._boot_start_s < self.warm_up_s:
            return
        if self._rss_base_mb is None:
            self._rss_base_mb = rss_mb
        self._rss_peak_mb = max(self._rss_peak_mb, rss_mb)

    def checkpoints(self, now_s: float, newest_steps: int | None) -> None:
        """A look at the checkpoint folder: the steps of the newest checkpoint that loads
        (None: none loads)."""
        if newest_steps is None:
            if self._ckpt_seen:
                self.checkpoints_lost += 1
                self.violations.append(f"{now_s:.0f} s: no checkpoint loads")
            return
        if newest_steps < self._ckpt_steps:
            self.checkpoints_lost += 1
            self.violations.append(
                f"{now_s:.0f} s: newest checkpoint went back from {self._ckpt_steps} to "
                f"{newest_steps} steps"
            )
        self._ckpt_seen = True
        self._ckpt_steps = max(self._ckpt_steps, newest_steps)

    @property
    def active_warnings(self) -> list[str]:
        """Warnings raised and not cleared."""
        return sorted(self._active)
