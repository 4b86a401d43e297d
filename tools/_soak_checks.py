"""The soak's judgements, pure: what a long run's samples must show (issue 23).

:class:`SoakLedger` takes the observations of a soak (metrics of each boot of the
service, status details, RSS and checkpoint samples) and keeps the figures the
acceptance asks for:

* **counters never go backwards** (:func:`is_counter` says which metrics count):
  within one boot (one process, told by the boot epoch in the envelope numbers) each
  counter's value is >= its previous value in that boot; a new boot's first value
  of each counter is >= its value in the newest checkpoint that loaded when the boot
  started (what the service restores). Counts made after that checkpoint by the
  killed process are lost by design (a SIGKILL gives no chance to save them): they
  are summed in ``counts_lost_at_kills`` (last value seen in the old boot minus the
  restored value), not counted as going backwards. Counters a checkpoint does not
  hold (transport statistics, for instance) restart from 0 in each boot;
* **update numbers never go backwards**: parameter ``seq`` across the whole run,
  envelope numbers per topic;
* **RSS growth after warm-up**, per process (told by its start time, so a boot that
  publishes nothing yet is still its own): the largest resident size after the
  process's warm-up minus the size at its end of warm-up (the service is restarted
  every ten minutes, so growth is judged per process; the size after warm-up of each
  process is kept too, to show a drift across restarts);
* **checkpoints lost**: a sample in which no checkpoint loads after one did, or the
  newest loadable one holds fewer steps than an earlier sample's;
* **warnings**: every health warning raised and cleared, with times; those still
  active at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from delgrad.protocols import TransportStats
from delgrad.runtime.service import EPOCH_SHIFT

#: Metrics that only count up within a boot (and every transport statistic).
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
        "learning.rejected_steps",
        "trials.silent_output",
        "params.withheld",
    }
    | {f"transport.{f.name}" for f in fields(TransportStats)}
)
#: Families of counters (every metric under these names counts up).
COUNTER_PREFIXES = (
    "dropped.",
    "refused.",
    "join.joined",
    "tasks.",
    "checkpoints.",
    "commands.",
    "malformed.",
)


def is_counter(name: str) -> bool:
    """Whether metric ``name`` is a counter (never falls within one boot).

    Gauges (``accuracy``, ``queue.*``, ``health.*``, ``broker.outage_s``, ...) are
    recorded by the soak but not judged here.
    """
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
    #: The resident size of each process at the end of its warm-up (MB).
    rss_after_warm_up_mb: list[float] = field(default_factory=list)
    checkpoints_lost: int = 0
    #: Violations of the counter rule (module doc).
    counters_backwards: int = 0
    #: Parameter update or envelope numbers that went back.
    numbers_backwards: int = 0
    boots: int = 0
    _boot: int = -1
    _last: dict[str, float] = field(default_factory=dict)
    _floor: dict[str, float] = field(default_factory=dict)
    _param_seq: int = -1
    _envelope: dict[str, int] = field(default_factory=dict)
    _active: dict[str, float] = field(default_factory=dict)
    _rss_boot_s: float | None = None
    _rss_base_mb: float | None = None
    _rss_peak_mb: float = 0.0
    _ckpt_steps: int = -1
    _ckpt_seen: bool = False

    # -- boots ---------------------------------------------------------------------------

    def new_boot(self, now_s: float, restored: dict[str, int] | None) -> None:
        """The first metrics of a new process of the service; ``restored`` are the
        counters of the checkpoint it resumed from (None: none)."""
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

    def _close_rss(self) -> None:
        if self._rss_base_mb is not None:
            self.rss_growth_mb.append(max(0.0, self._rss_peak_mb - self._rss_base_mb))
            self.rss_after_warm_up_mb.append(self._rss_base_mb)
        self._rss_base_mb = None
        self._rss_peak_mb = 0.0

    def finish(self, now_s: float) -> None:
        """The run ended: close the last process."""
        self._close_rss()
        self._rss_boot_s = None

    # -- observations ------------------------------------------------------------------

    def metrics(self, now_s: float, values: dict[str, float]) -> list[str]:
        """One metrics message of the current boot; returns a line for each health
        warning raised or cleared by it (for the soak's event log)."""
        changes: list[str] = []
        for name, value in values.items():
            if not is_counter(name):
                continue
            before = self._last.get(name)
            if before is not None and value < before:
                self.counters_backwards += 1
                self.violations.append(
                    f"{now_s:.0f} s: {name} went back from {before:g} to {value:g} in boot "
                    f"{self._boot}"
                )
            elif before is None and value < self._floor.get(name, 0.0):
                self.counters_backwards += 1
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
                self.warnings.append(
                    {"warning": warning, "raised_s": round(now_s, 1), "cleared_s": None}
                )
                changes.append(f"warning {warning} raised")
            elif value < 1.0 and warning in self._active:
                del self._active[warning]
                changes.append(f"warning {warning} cleared")
                for item in reversed(self.warnings):
                    if item["warning"] == warning and item["cleared_s"] is None:
                        item["cleared_s"] = round(now_s, 1)
                        break
        return changes

    def parameter_seq(self, now_s: float, seq: int, *, retained: bool) -> None:
        """The update number of a live parameter snapshot or delta (retained copies of an
        older snapshot may arrive again on re-subscription and are not judged)."""
        if retained:
            return
        if seq < self._param_seq:
            self.numbers_backwards += 1
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
            self.numbers_backwards += 1
            self.violations.append(
                f"{now_s:.0f} s: envelope number on {topic} went back from {_seq(before)} to "
                f"{_seq(seq)} (boot epoch:number)"
            )
        self._envelope[topic] = max(before, seq)

    def rss(self, now_s: float, rss_mb: float, *, started_s: float) -> None:
        """A resident-size sample (MB) of the service process started at ``started_s``."""
        if started_s != self._rss_boot_s:
            self._close_rss()
            self._rss_boot_s = started_s
        if rss_mb <= 0 or now_s - started_s < self.warm_up_s:
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


def _seq(seq: int) -> str:
    """An envelope number as ``epoch:n`` (the will of a boot shows n = 2^40 - 1)."""
    return f"{seq >> EPOCH_SHIFT}:{seq & ((1 << EPOCH_SHIFT) - 1)}"
