"""One training run from a configuration: resume, progress, results.json, network, plots."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from delgrad.drivers import driver_from_config
from delgrad.runtime import (
    Config,
    ConfigError,
    DriverObserver,
    EpochStats,
    Observer,
    Trainer,
    atomic_write,
    save_network,
    yinyang,
)
from delgrad.tools import _plots


def package_version() -> str:
    """Installed version of delgrad-runtime."""
    try:
        return version("delgrad-runtime")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "unknown"


def observer_for(config: Config) -> Observer | None:
    """The forward backend named by ``config.training.driver`` (None: the host model)."""
    name = config.training.driver
    if name == "host":
        return None
    options = {"chip_seed": config.training.chip_seed} if name == "emulator-bss2" else {}
    return DriverObserver(driver_from_config(name, **options))


def _identity(config: Config) -> Config:
    """The configuration without what may change between sessions of one run."""
    return dataclasses.replace(config, training=dataclasses.replace(config.training, threads=0))


def run_training(
    config: Config,
    out: Path,
    *,
    fresh: bool = False,
    on_epoch: Callable[[EpochStats, int], None] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Train (or resume) into ``out`` and write the results; returns the results dict.

    Raises:
        ConfigError: if ``out`` holds a checkpoint of a different configuration.
    """
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.npz"
    observe = observer_for(config)
    if checkpoint.is_file() and not fresh:
        trainer = Trainer.from_checkpoint(
            checkpoint, observe=observe, threads=config.training.threads
        )
        if _identity(trainer.config) != _identity(config):
            raise ConfigError(
                f"{checkpoint} belongs to another configuration; use --fresh to start over"
            )
    else:
        trainer = Trainer(config, observe=observe)
    if on_epoch is not None and trainer.epoch:
        on_epoch(None, trainer.epoch)  # type: ignore[arg-type]
    start = time.perf_counter()
    trainer.fit(
        checkpoint=checkpoint,
        on_epoch=None if on_epoch is None else (lambda s: on_epoch(s, trainer.epoch)),
    )
    test_acc, test_times = trainer.evaluate("test")
    val_acc, _ = trainer.evaluate("validation")
    results = {
        "config_name": config.name,
        "seed": config.seed,
        "test_accuracy": test_acc,
        "validation_accuracy": val_acc,
        "n_parameters": trainer.net.n_parameters(),
        "n_trainable": int(
            sum(w.size for w in trainer.net.w)
            + sum(r.size for r in trainer.raw) * trainer.has_delays
        ),
        "epochs": trainer.epoch,
        "wall_time_s": trainer.wall_time_s,
        "this_session_s": time.perf_counter() - start,
        "curves": {
            k: [h[k] for h in trainer.history]
            for k in (trainer.history[0] if trainer.history else {})
        },
        "config": config.to_dict(),
        "package_version": package_version(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    save_network(
        trainer.net_forward,
        out / "network.npz",
        metadata={"config": config.name, "seed": config.seed, "test_accuracy": test_acc},
    )
    atomic_write(out / "results.json", lambda fh: fh.write(json.dumps(results, indent=1).encode()))
    if plots:
        write_plots(trainer, out, test_times)
    return results


def write_plots(trainer: Trainer, out: Path, test_times: list) -> list[Path]:
    """The report figures of a finished run."""
    t_test, labels = trainer.data("test")
    curves = {
        k: [h[k] for h in trainer.history]
        for k in ("train_loss", "train_accuracy", "validation_accuracy", "silent_hidden")
    }
    features = trainer.data("test")[0]
    written = [
        _plots.plot_learning_curves(out / "learning_curves.png", curves),
        _plots.plot_output_time_distributions(out / "output_times.png", test_times[-1], labels),
        _plots.plot_delay_histograms(out / "delays.png", trainer.net),
        _plots.plot_raster(out / "raster.png", test_times, t_test, labels),
    ]
    if trainer.config.network.input_repeat == 1 and trainer.config.data.dataset == "yinyang":
        feats, labs = yinyang(trainer.config.data.test_size, 40)
        written.append(
            _plots.plot_yinyang_plane(
                out / "yinyang_plane.png",
                trainer.net_forward,
                t_early=trainer.config.data.t_early,
                t_late=trainer.config.data.t_late,
                test_features=feats,
                test_labels=labs,
            )
        )
    del features
    return written
