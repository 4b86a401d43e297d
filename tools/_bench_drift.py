"""``delgrad bench drift``: a drifting chip and a shifting world, a frozen and a learning
device side by side (issue 18).

One Mosquitto; two ``delgrad run`` processes on ``emulator-bss2`` started from the
same network file (trained offline on the undrifted chip), with the same chip seed and
the same drift: ``frozen`` (``mode = infer``) and ``online`` (``mode = train``); two
``delgrad sensor`` processes stream the same seeded Yin-Yang trials (every input sent
five times, as the hardware recipes need) at ``rate`` trials/s each. Device time is the
stream (``DriftSpec.clock = "stream"``), so both chips age alike. Compressed time: a
drift meant for months runs in minutes of trials.

Accuracy is the service's own prequential accuracy: each labelled trial is scored
before it is learned from, over the last ``window`` labelled trials (metric
``accuracy``). The figures per scenario and seed are read at evaluation points every
``eval_every`` trials of the stream; ``pre`` is the accuracy just before the drift
(or jump) begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.protocols import Metrics, ProtocolError, decode, topic, transport_from_url
from delgrad.runtime import atomic_write
from delgrad.tools._bench_e2e import DELGRAD, stop_process
from delgrad.tools._logging import stderr_line
from delgrad.tools._mosquitto import Mosquitto
from delgrad.tools._studies import StudyOutcome, StudyRun, run_study
from delgrad.tools._toml import write_toml

ARMS = ("frozen", "online")


@dataclass(frozen=True)
class Scenario:
    """A named drift or shift experiment.

    Attributes:
        recipe: the hardware recipe (network, neuron, optimiser).
        drift: ``[driver.drift]`` fields (``clock``, ``start_trials`` and, for walks,
            ``horizon_trials`` are set from ``pre`` and ``trials``).
        pre: stream trials before the drift or jump begins.
        trials: stream trials in all.
        eval_every: trials between evaluation points.
        window: labelled trials of the sliding accuracy.
        label_fraction: share of labelled trials.
        detail: one line for the table.
        shift: ``delgrad sensor --shift`` from ``pre`` on (e.g. ``late_class=2``).
        block: if > 0, each evaluation point (and ``pre``) is the accuracy over the
            ``block`` stream trials before it (from the service's ``scored.*`` totals)
            rather than the sliding window: a 2,000-trial window's own spread (0.6
            points at 90 %) is too close to the 1.5 points asked to judge by.
    """

    recipe: str
    drift: dict[str, Any]
    pre: int
    trials: int
    eval_every: int
    window: int = 2000
    label_fraction: float = 1.0
    detail: str = ""
    shift: str = ""
    block: int = 0


_WALK = {"threshold": 0.1, "tau_m": 0.1, "tau_s": 0.1, "gain": 0.1}
SCENARIOS: dict[str, Scenario] = {
    "drift-W": Scenario(
        "yinyang_hw_W", _WALK, 20_000, 220_000, 10_000, block=10_000,
        detail="thresholds, time constants, gains walk to 10 % spread, weights only",
    ),
    "drift-WA": Scenario(
        "yinyang_hw_WA", _WALK, 20_000, 220_000, 10_000, block=10_000,
        detail="the same drift, weights and axonal delays",
    ),
    "sparse-W": Scenario(
        "yinyang_hw_W", _WALK, 20_000, 220_000, 20_000, window=500, label_fraction=0.1,
        block=20_000,
        detail="drift-W with 10 % of the trials labelled",
    ),
    "jump-W": Scenario(
        "yinyang_hw_W", {"jump_threshold": [0.08]}, 30_000, 50_000, 500, window=500,
        detail="every threshold +8 % at once (a recalibration jump)",
    ),
    "late-class-W": Scenario(
        "yinyang_hw_W", {}, 60_000, 200_000, 20_000, shift="late_class=2",
        detail="class 2 held back for 60,000 trials, then streamed",
    ),
    "stationary-W": Scenario(
        "yinyang_hw_W", {}, 0, 1_000_000, 50_000,
        detail="no drift: the detector must stay quiet",
    ),
}  # fmt: skip


def drift_table(scenario: Scenario, seed: int) -> dict[str, Any]:
    """The ``[driver.drift]`` table of a scenario and seed."""
    drift = dict(scenario.drift)
    if not drift:
        return {}
    drift.update(clock="stream", seed=seed)
    if "jump_threshold" in drift:
        drift["jump_trials"] = [scenario.pre]
    else:
        horizon = scenario.trials - scenario.pre
        # a shortened run (--trials) keeps at least one walk step before its horizon
        drift.update(
            start_trials=scenario.pre, horizon_trials=horizon, step_trials=min(1000, horizon)
        )
    return drift


def sensor_args(scenario: Scenario, seed: int, rate: float) -> list[str]:
    """``delgrad sensor`` options of an arm: rate, batch, the hardware input repeat,
    the stream seed, the trial count, the labelled share and the world's shift."""
    shift = ["--shift", scenario.shift, "--shift-after-trials", str(scenario.pre)]
    if not scenario.shift:
        shift = []
    return [
        *("--rate", str(rate), "--batch", "200", "--input-repeat", "5", "--seed", str(seed)),
        *("--count", str(scenario.trials), "--label-fraction", str(scenario.label_fraction)),
        *shift,
        "--quiet",
    ]


@dataclass
class ArmTrace:
    """What one arm's metrics said: (stream trials, accuracy, degraded, steps)."""

    points: list[tuple[float, float, float, float]] = field(default_factory=list)
    #: trials the device dropped as overload (its last metrics): a schedule that
    #: cannot keep up at the bench's rate shows here
    dropped_overload: float = 0.0
    #: (stream trials, labelled trials scored, correct ones) of every sample
    totals: list[tuple[float, float, float]] = field(default_factory=list)
    #: (stream trials, accuracy per class) of every sample (NaN: none in the window)
    per_class: list[tuple[float, list[float]]] = field(default_factory=list)

    def block_accuracy(self, trials: float, block: float) -> float | None:
        """Accuracy over the labelled trials scored between the samples at ``trials -
        block`` and ``trials`` (the first sample at or after each)."""
        ends = [next((x for x in self.totals if x[0] >= t), None) for t in (trials - block, trials)]
        if ends[0] is None or ends[1] is None or ends[1][1] <= ends[0][1]:
            return None
        return (ends[1][2] - ends[0][2]) / (ends[1][1] - ends[0][1])

    def classes_before(self, trials: float, span: float, classes: list[int]) -> float | None:
        """Mean over the samples in (``trials - span``, ``trials``] of the mean
        accuracy of ``classes``."""
        values = [
            float(np.mean([acc[k] for k in classes]))
            for t, acc in self.per_class
            if trials - span < t <= trials and all(k < len(acc) for k in classes)
        ]
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else None

    def at(self, trials: float) -> tuple[float, float, float, float] | None:
        """The first sample at or after ``trials`` processed trials."""
        for point in self.points:
            if point[0] >= trials:
                return point
        return None

    def before(self, trials: float, span: float) -> float | None:
        """Mean accuracy of the samples in (``trials - span``, ``trials``]: the level
        just before an event (whose samples hold no trial after it)."""
        values = [p[1] for p in self.points if trials - span < p[0] <= trials]
        return float(np.mean(values)) if values else None


async def run_arms(
    scenario: Scenario,
    seed: int,
    network_file: Path,
    *,
    rate: float,
    work: Path,
    log: Callable[[str], None],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, ArmTrace]:
    """Run both arms of one scenario and seed (``overrides``: further run-config
    fields of both, e.g. ``{"learning": {"lr_scale": 0.3}}``); their traces."""
    broker = Mosquitto(work, max_queued_messages=10_000)
    runtimes: list[subprocess.Popen[bytes]] = []
    sensors: list[subprocess.Popen[bytes]] = []
    traces = {arm: ArmTrace() for arm in ARMS}
    try:
        broker.start(timeout_s=10.0)
        for arm in ARMS:
            data: dict[str, Any] = {
                "device": arm,
                "broker": {"url": broker.url},
                "driver": {"name": "emulator-bss2", "chip_seed": seed},
                "model": {"recipe": scenario.recipe, "network_file": str(network_file)},
                "learning": {"mode": "infer" if arm == "frozen" else "train"},
                "publish": {
                    "metrics_period_s": 0.25,
                    "metrics_window": scenario.window,
                    "predictions": False,
                },
            }
            for section, fields in (overrides or {}).items():
                data.setdefault(section, {}).update(fields)
            data["learning"]["mode"] = "infer" if arm == "frozen" else "train"
            drift = drift_table(scenario, seed)
            if drift:
                data["driver"]["drift"] = drift
            config = write_toml(work / f"{arm}.toml", data)
            with open(work / f"{arm}.log", "ab") as out:
                runtimes.append(
                    subprocess.Popen(
                        [*DELGRAD, "run", "--config", str(config), "--quiet"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        transport = transport_from_url(broker.url, client_id="bench-drift", inbox_capacity=100_000)
        async with transport:
            for arm in ARMS:
                await transport.subscribe(topic(arm, "metrics"), qos=0)
            births: set[str] = set()
            deadline = time.monotonic() + 180
            while len(births) < len(ARMS) and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    msg = await transport.recv(timeout=0.5)
                    births.add(msg.topic.split("/")[2])
            for arm in ARMS:
                with open(work / f"sensor-{arm}.log", "ab") as out:
                    sensors.append(
                        subprocess.Popen(
                            [
                                *DELGRAD,
                                "sensor",
                                "--broker",
                                broker.url,
                                "--device",
                                arm,
                                *sensor_args(scenario, seed, rate),
                            ],
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                        )
                    )
            done: set[str] = set()
            last_log = time.monotonic()
            limit = time.monotonic() + 3 * scenario.trials / rate + 120
            while len(done) < len(ARMS) and time.monotonic() < limit:
                try:
                    msg = await transport.recv(timeout=1.0)
                except TimeoutError:
                    continue
                try:
                    body = decode(msg.payload).message
                except ProtocolError:
                    continue
                if not isinstance(body, Metrics):
                    continue
                arm = msg.topic.split("/")[2]
                v = body.values
                processed = v.get("trials.processed", 0.0)
                traces[arm].dropped_overload = v.get("dropped.overload", 0.0)
                if "scored.trials" in v:
                    traces[arm].totals.append(
                        (processed, v["scored.trials"], v.get("scored.correct", 0.0))
                    )
                classes = sorted(int(k[14:]) for k in v if k.startswith("accuracy.class"))
                if classes:
                    traces[arm].per_class.append(
                        (
                            processed,
                            [v.get(f"accuracy.class{k}", np.nan) for k in range(classes[-1] + 1)],
                        )
                    )
                if "accuracy" in v:
                    traces[arm].points.append(
                        (
                            processed,
                            v["accuracy"],
                            v.get("health.degraded", 0.0),
                            v.get("learning.steps", 0.0),
                        )
                    )
                if processed >= scenario.trials:
                    done.add(arm)
                if time.monotonic() - last_log > 30:
                    last_log = time.monotonic()
                    log(f"  {arm}: {processed:,.0f} of {scenario.trials:,} trials")
    finally:
        for proc in sensors:
            stop_process(proc, signal.SIGINT, 10.0)
        for proc in runtimes:
            stop_process(proc, signal.SIGTERM, 30.0)
        broker.stop(timeout_s=10.0)
    return traces


def figures(scenario: Scenario, traces: dict[str, ArmTrace]) -> dict[str, Any]:
    """The figures of one run (accuracies as fractions, trials as counts)."""
    out: dict[str, Any] = {}
    points = list(range(scenario.pre, scenario.trials + 1, scenario.eval_every))
    span = 5 * scenario.window / scenario.label_fraction
    for arm in ARMS:
        trace = traces[arm]
        if scenario.block:
            pre = trace.block_accuracy(scenario.pre, min(scenario.block, scenario.pre))
            blocks = [trace.block_accuracy(p, scenario.block) for p in points[1:]]
            accs = [a for a in blocks if a is not None]
        else:
            pre = trace.before(max(scenario.pre, span), span)
            values = [trace.at(p) for p in points[1:]]
            accs = [v[1] for v in values if v is not None]
        out[f"{arm}_pre_fraction"] = None if pre is None else round(pre, 4)
        out[f"{arm}_end_fraction"] = round(accs[-1], 4) if accs else None
        if pre is not None and accs:
            out[f"{arm}_worst_drop_points"] = round(100 * (pre - min(accs)), 2)
            out[f"{arm}_end_drop_points"] = round(100 * (pre - accs[-1]), 2)
        fired = [p for p in trace.points if p[2] >= 1.0 and p[0] > scenario.pre]
        out[f"{arm}_alarm_trials_after_start"] = (
            round(fired[0][0] - scenario.pre) if fired else None
        )
        early = [p for p in trace.points if p[2] >= 1.0 and p[0] <= scenario.pre]
        out[f"{arm}_alarms_before_start_count"] = len(early)
        out[f"{arm}_dropped_overload_count"] = round(trace.dropped_overload)
    if "late_class=" in scenario.shift:
        out.update(_late_class_figures(scenario, traces, span))
    online = traces["online"]
    level = online.before(scenario.pre, span)
    if "jump_threshold" in scenario.drift and level is not None:
        after = [p for p in online.points if p[0] > scenario.pre + scenario.window]
        back = [p for p in after if p[1] >= level - 0.02]
        out["online_recovery_trials"] = round(back[0][0] - scenario.pre) if back else None
        fired = [p for p in online.points if p[0] > scenario.pre and p[2] >= 1.0]
        if fired:
            cleared = [p for p in online.points if p[0] > fired[0][0] and p[2] < 1.0]
            out["online_alarm_cleared_trials_after_start"] = (
                round(cleared[0][0] - scenario.pre) if cleared else None
            )
    return out


def _late_class_figures(
    scenario: Scenario, traces: dict[str, ArmTrace], span: float
) -> dict[str, Any]:
    """Accuracy on the old classes just before the late one appears and at the end
    (after it is learned), and on the late one at the end."""
    late = [int(c) for c in scenario.shift.split("late_class=")[1].split(",")[0].split(":")]
    old = [k for k in range(3) if k not in late]  # the Yin-Yang stream's three classes
    out: dict[str, Any] = {}
    for arm in ARMS:
        trace = traces[arm]
        before = trace.classes_before(scenario.pre, span, old)
        after = trace.classes_before(scenario.trials, span, old)
        new = trace.classes_before(scenario.trials, span, late)
        out[f"{arm}_old_classes_before_fraction"] = None if before is None else round(before, 4)
        out[f"{arm}_old_classes_end_fraction"] = None if after is None else round(after, 4)
        out[f"{arm}_new_class_end_fraction"] = None if new is None else round(new, 4)
        if before is not None and after is not None:
            out[f"{arm}_old_classes_drop_points"] = round(100 * (before - after), 2)
    return out


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds of every numeric figure (None where any seed has none)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if len(numbers) == len(values):
            out[key] = round(float(np.median(numbers)), 4)
        else:
            out[key] = None
    return out


def plot_drift(path: Path, name: str, scenario: Scenario, runs: list[dict[str, ArmTrace]]) -> Path:
    """Accuracy over device time of both arms (every seed), the drift or jump marked."""
    from matplotlib.figure import Figure  # only when a plot is asked for

    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    colours = {"frozen": "tab:red", "online": "tab:blue"}
    for arm in ARMS:
        for index, traces in enumerate(runs):
            pts = np.array(traces[arm].points) if traces[arm].points else np.zeros((0, 4))
            if not len(pts):
                continue
            ax.plot(
                pts[:, 0] / 1000,
                100 * pts[:, 1],
                color=colours[arm],
                alpha=0.8,
                lw=1.2,
                label=f"{arm} (mode {'infer' if arm == 'frozen' else 'train'})"
                if index == 0
                else None,
            )
    if "jump_threshold" in scenario.drift:
        ax.axvline(scenario.pre / 1000, color="k", ls="--", lw=1)
        ax.text(scenario.pre / 1000, ax.get_ylim()[1], " thresholds +8 %", va="top")
    elif scenario.shift:
        ax.axvline(scenario.pre / 1000, color="k", ls="--", lw=1)
        ax.text(scenario.pre / 1000, ax.get_ylim()[1], f" --shift {scenario.shift}", va="top")
    elif scenario.drift:
        ax.axvspan(scenario.pre / 1000, scenario.trials / 1000, color="0.9", zorder=0)
        ax.text(scenario.pre / 1000, ax.get_ylim()[1], " chip drifting to 10 % spread", va="top")
    ax.set_xlabel("device time (thousands of trials of the stream)")
    ax.set_ylabel(f"prequential accuracy over {scenario.window} labelled trials (%)")
    ax.set_title(f"{name}: {scenario.detail} ({len(runs)} seeds)")
    ax.legend(loc="lower left")

    def write(fh: Any) -> None:
        fig.savefig(fh, format="png", dpi=110)

    return atomic_write(path, write)


def start_network(networks: Path, recipe: str, log: Callable[[str], None]) -> Path:
    """``networks/RECIPE/network.npz``, trained offline on the undrifted emulated chip
    first if it is not there (``delgrad train RECIPE --out networks/RECIPE``, about 20 s
    for a hardware recipe).

    Raises:
        RuntimeError: the training failed (its output says why).
    """
    network = networks / recipe / "network.npz"
    if network.is_file():
        return network
    log(f"training the start network: delgrad train {recipe} --out {networks / recipe}")
    done = subprocess.run(
        [*DELGRAD, "train", recipe, "--out", str(networks / recipe), "--plain", "--no-plots"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not network.is_file():
        raise RuntimeError(
            f"delgrad train {recipe} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return network


@dataclass(frozen=True)
class DriftRun:
    """One scenario and seed: a study run (its network travels as bytes, so a worker
    needs no shared disk, only Mosquitto and delgrad)."""

    name: str
    scenario: Scenario
    seed: int
    rate: float
    network: bytes
    overrides: dict[str, dict[str, Any]] | None = None


def run_seed(run: DriftRun, folder: Path) -> dict[str, Any]:
    """Both arms of one scenario and seed in a temporary work folder; the figures
    and traces, also written to ``folder/NAME_seedS.json``."""
    stderr_line(f"{run.name} seed {run.seed}: {run.scenario.trials:,} trials at {run.rate:g}/s")
    with tempfile.TemporaryDirectory(prefix=f"delgrad-drift-{run.name}-") as tmp:
        work = Path(tmp)
        network = work / "network.npz"
        network.write_bytes(run.network)
        traces = asyncio.run(
            run_arms(
                run.scenario,
                run.seed,
                network,
                rate=run.rate,
                work=work,
                log=stderr_line,
                overrides=run.overrides,
            )
        )
    row = {
        "scenario": run.name,
        "seed": run.seed,
        "trials": run.scenario.trials,
        "rate_trials_per_s": run.rate,
        "overrides": run.overrides or {},
        "figures": {"seed": run.seed, **figures(run.scenario, traces)},
        "traces": {arm: asdict(trace) for arm, trace in traces.items()},
    }
    atomic_write(
        folder / f"{run.name}_seed{run.seed}.json", lambda fh: fh.write(json.dumps(row).encode())
    )
    return row


def bench_drift(
    names: list[str],
    *,
    seeds: list[int],
    rate: float = 2000.0,
    trials: int | None = None,
    networks: Path,
    out: Path,
    plot_dir: Path | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    jobs: int | None = 1,
    scheduler: str | None = None,
) -> tuple[dict[str, Any], StudyOutcome]:
    """Run scenarios over seeds, a study on Dask; the medians, the per-seed figures,
    the plots written.

    Args:
        names: scenario names (:data:`SCENARIOS`).
        seeds: chip, drift and stream seeds.
        rate: trials/s each sensor streams.
        trials: shorten (or lengthen) every scenario to this many trials (pre and
            evaluation spacing scale with it).
        networks: folder with one trained network per recipe, ``RECIPE/network.npz``
            (``delgrad train RECIPE --out FOLDER/RECIPE`` makes it).
        out: one ``NAME_seedS.json`` per finished run (a rerun skips those).
        plot_dir: where to write ``drift_NAME.png`` (None: no plots).
        overrides: run-config fields for both arms (``delgrad bench drift --set``).
        jobs: runs at once on the local cluster (default 1: one run uses both cores
            of a small machine, and two at once would drop trials).
        scheduler: a running Dask scheduler instead.

    Returns:
        Per scenario its medians and per-seed figures; and the study's outcome.
    """
    runs: list[StudyRun] = []
    for name in names:
        scenario = SCENARIOS[name]
        if trials is not None:
            f = trials / scenario.trials
            scenario = replace(
                scenario,
                pre=int(scenario.pre * f),
                trials=trials,
                eval_every=max(100, int(scenario.eval_every * f)),
            )
        network = start_network(networks, scenario.recipe, log).read_bytes()
        for seed in seeds:
            config = DriftRun(name, scenario, seed, rate, network, overrides)
            runs.append(StudyRun(f"{name}_seed{seed}", run_seed, config, f"{name}_seed{seed}.json"))

    def load_done(run: StudyRun, path: Path) -> dict[str, Any] | None:
        row: dict[str, Any] = json.loads(path.read_text())
        same = (row["trials"], row["rate_trials_per_s"], row["overrides"]) == (
            run.config.scenario.trials,
            run.config.rate,
            run.config.overrides or {},
        )
        return row if same else None

    def describe(row: dict[str, Any]) -> str:
        return f"{row['scenario']} seed {row['seed']}: {json.dumps(row['figures'])}"

    outcome = run_study(
        runs,
        out,
        label="bench drift",
        describe=describe,
        scheduler=scheduler,
        jobs=jobs,
        load_done=load_done,
        stream=sys.stderr,
    )
    results: dict[str, Any] = {}
    for name in names:
        done = sorted((r for r in outcome.rows if r["scenario"] == name), key=lambda r: r["seed"])
        if not done:
            continue
        scenario = next(r.config.scenario for r in runs if r.config.name == name)
        per_seed = [r["figures"] for r in done]
        entry: dict[str, Any] = {
            "detail": scenario.detail,
            "trials": scenario.trials,
            "rate_trials_per_s": rate,
            "median": median_figures(
                [{k: v for k, v in r.items() if k != "seed"} for r in per_seed]
            ),
            "seeds": per_seed,
        }
        if plot_dir is not None:
            traces = [{arm: ArmTrace(**t) for arm, t in r["traces"].items()} for r in done]
            entry["plot"] = str(plot_drift(plot_dir / f"drift_{name}.png", name, scenario, traces))
        results[name] = entry
    return results, outcome
