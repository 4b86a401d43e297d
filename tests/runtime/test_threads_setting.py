"""The threads setting: training and online learning share batches over threads with
the same result, and a run may resume with another thread count."""

from __future__ import annotations

import numpy as np
import pytest

from delgrad.errors import ConfigError
from delgrad.runtime import HostObserver, Trainer, config_from_dict, resolve_threads
from delgrad.runtime.service import run_config_from_dict

SMALL = {
    "network": {"hidden": [40], "delay": "axonal"},
    "data": {"train_size": 600, "validation_size": 200, "test_size": 200},
    "training": {"epochs": 2, "batch_size": 100},
}


def small(threads: int):
    data = {k: dict(v) for k, v in SMALL.items()}
    data["training"]["threads"] = threads
    return config_from_dict(data)


def test_zero_threads_means_one_per_core_the_process_may_use(monkeypatch):
    # the CPU affinity (a container's or taskset's cores), not the machine's count
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 2, 4, 5, 7, 9}, raising=False)
    assert resolve_threads(0) == 6
    assert resolve_threads(3) == 3
    assert Trainer(small(0)).threads == 6
    monkeypatch.delattr("os.sched_getaffinity", raising=False)  # not on Linux
    assert resolve_threads(0) == 64


@pytest.mark.usefixtures("always_split")
def test_training_with_two_and_three_threads_equals_one_thread():
    runs = {}
    for threads in (1, 2, 3):
        trainer = Trainer(small(threads))
        assert isinstance(trainer.observe, HostObserver)
        assert trainer.observe.threads == threads == trainer.threads
        trainer.fit()
        runs[threads] = trainer
    # the same up to rounding (the chunks' delay gradients are summed in another
    # order): 12 steps later the parameters agree to ~1e-15
    for threads in (2, 3):
        for a, b in zip(runs[1].net.w, runs[threads].net.w, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        for a, b in zip(runs[1].raw, runs[threads].raw, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        assert runs[1].history[-1]["train_loss"] == pytest.approx(
            runs[threads].history[-1]["train_loss"], rel=1e-10
        )


def test_a_run_resumes_with_another_thread_count(tmp_path):
    from delgrad.tools._train_run import run_training

    out = tmp_path / "run"
    first = small(1)
    one_epoch = config_from_dict(
        {**first.to_dict(), "training": {**first.to_dict()["training"], "epochs": 1}}
    )
    run_training(one_epoch, out, plots=False)
    # more epochs is another configuration; another thread count is not
    with pytest.raises(ConfigError, match="another configuration"):
        run_training(small(1), out, plots=False)
    again = config_from_dict(
        {**one_epoch.to_dict(), "training": {**one_epoch.to_dict()["training"], "threads": 2}}
    )
    results = run_training(again, out, plots=False)
    assert results["epochs"] == 1


def test_thread_counts_are_checked():
    with pytest.raises(ConfigError, match="threads"):
        small(-1)
    with pytest.raises(ConfigError, match=r"learning\.threads"):
        run_config_from_dict({"learning": {"threads": -2}})
    assert run_config_from_dict({}).learning.threads == 0  # one per core
