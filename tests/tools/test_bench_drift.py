"""``delgrad bench drift``'s pure parts: scenario configs that the service accepts, and
the figures read from constructed traces (the runs themselves are benchmarks)."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import numpy as np

from delgrad.runtime.service import run_config_from_dict
from delgrad.tools._bench_drift import (
    SCENARIOS,
    ArmTrace,
    drift_table,
    figures,
    sensor_args,
    write_toml,
)


def test_every_scenario_writes_a_config_the_service_accepts(tmp_path):
    for name, scenario in SCENARIOS.items():
        data = {
            "device": "online",
            "driver": {"name": "emulator-bss2", "chip_seed": 1},
            "model": {"recipe": scenario.recipe},
        }
        drift = drift_table(scenario, seed=2)
        if drift:
            data["driver"]["drift"] = drift
        path = write_toml(tmp_path / f"{name}.toml", data)
        config = run_config_from_dict(tomllib.loads(path.read_text()))
        spec = config.driver.drift
        assert spec.active == bool(scenario.drift), name
        if spec.active:
            assert spec.clock == "stream" and spec.seed == 2
    walk = run_config_from_dict(
        {"driver": {"name": "emulator-bss2", "drift": drift_table(SCENARIOS["drift-W"], 0)}}
    ).driver.drift
    assert walk.start_trials == 20_000 and walk.horizon_trials == 200_000
    assert (walk.threshold, walk.tau_m, walk.tau_s, walk.gain) == (0.1, 0.1, 0.1, 0.1)
    short = replace(SCENARIOS["drift-W"], pre=90, trials=1000)  # bench drift --trials 1000
    spec = run_config_from_dict(
        {"driver": {"name": "emulator-bss2", "drift": drift_table(short, 0)}}
    ).driver.drift
    assert (spec.horizon_trials, spec.step_trials) == (910, 910)
    jump = drift_table(SCENARIOS["jump-W"], 0)
    assert jump["jump_trials"] == [30_000] and jump["jump_threshold"] == [0.08]


def _trace(level_of) -> ArmTrace:
    return ArmTrace([(float(n), level_of(n), 0.0, 0.0) for n in range(0, 50_001, 250)])


def test_figures_of_a_jump_and_its_recovery():
    scenario = SCENARIOS["jump-W"]  # jump at 30,000 of 50,000, window 500
    frozen = _trace(lambda n: 0.92 if n <= 30_000 else 0.76)
    online = _trace(lambda n: 0.92 if n <= 30_000 or n >= 32_500 else 0.78)
    out = figures(scenario, {"frozen": frozen, "online": online})
    assert out["frozen_pre_fraction"] == 0.92 and out["frozen_end_drop_points"] == 16.0
    assert out["online_end_drop_points"] == 0.0 and out["online_worst_drop_points"] == 14.0
    assert out["online_recovery_trials"] == 2500


def test_late_class_figures_and_the_sensor_shift():
    scenario = SCENARIOS["late-class-W"]  # class 2 held back for 60,000 of 200,000 trials
    args = sensor_args(scenario, seed=3, rate=2000.0)
    at = args.index("--shift")
    assert args[at : at + 4] == ["--shift", "late_class=2", "--shift-after-trials", "60000"]
    assert "--shift" not in sensor_args(SCENARIOS["drift-W"], seed=3, rate=2000.0)

    def trace(old_after: float) -> ArmTrace:
        t = ArmTrace()
        for n in range(0, 200_001, 500):
            before = n <= 60_000
            # class 2 unseen before the point (NaN), learned to 0.8 after it
            t.per_class.append(
                (float(n), [0.95, 0.93 if before else old_after, np.nan if before else 0.8])
            )
        return t

    out = figures(scenario, {"frozen": trace(0.93), "online": trace(0.85)})
    assert out["frozen_old_classes_before_fraction"] == 0.94
    assert out["frozen_old_classes_drop_points"] == 0.0
    assert out["online_old_classes_end_fraction"] == 0.9  # (0.95 + 0.85) / 2
    assert out["online_old_classes_drop_points"] == 4.0
    assert out["online_new_class_end_fraction"] == 0.8


def test_drift_figures_are_block_accuracies_from_the_totals():
    scenario = SCENARIOS["drift-W"]  # blocks of 10,000 trials, drift from 20,000
    assert scenario.block == scenario.eval_every == 10_000

    def trace(rate_of) -> ArmTrace:
        t, scored, correct = ArmTrace(), 0.0, 0.0
        for n in range(0, 220_001, 500):
            t.totals.append((float(n), scored, correct))
            scored, correct = scored + 500, correct + 500 * rate_of(n)
        return t

    # 90 % correct, but 80 % over the 10,000 trials after 100,000 (one bad block)
    online = trace(lambda n: 0.8 if 100_000 <= n < 110_000 else 0.9)
    frozen = trace(lambda n: 0.9 if n < 20_000 else 0.6)
    out = figures(scenario, {"frozen": frozen, "online": online})
    assert out["online_pre_fraction"] == 0.9 and out["online_worst_drop_points"] == 10.0
    assert out["online_end_drop_points"] == 0.0
    assert out["frozen_worst_drop_points"] == 30.0
