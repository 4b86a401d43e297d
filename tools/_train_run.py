"""One training run from a configuration: resume, progress, results.json, network, plots."""

from __future__ import annotations

import json
import platform
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from delgrad.runtime import ConfigError, save_network
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime._config import Config, config_from_dict, load_config
from delgrad.runtime._trainer import EpochStats, Trainer, host_observer

CONFIG_PACKAGE = "delgrad.tools"


def shipped_configs() -> list[str]:
    """Names of the configurations shipped with the package."""
    folder = resources.files(CONFIG_PACKAGE).joinpath("configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load a config from a path or a shipped name, then apply ``section.key=value`` overrides.

    Raises:
        ConfigError: unknown name, bad file, or bad override.
    """
    path = Path(name_or_path)
    if not path.is_file():
        shipped = resources.files(CONFIG_PACKAGE).joinpath("configs", f"{path.stem}.toml")
        if not shipped.is_file():
            raise ConfigError(
                f"no configuration file {name_or_path!r}; shipped: {', '.join(shipped_configs())}"
            )
        path = Path(str(shipped))
    config = load_config(path)
    if not overrides:
        return config
    data = config.to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word is a string
        target = data
        *sections, leaf = key.strip().split(".")
        for section in sections:
            if not isinstance(target.get(section), dict):
                raise ConfigError(f"override {item!r}: no section {section!r}")
            target = target[section]
        target[leaf] = value
    return config_from_dict(data)


def package_version() -> str:
    """Installed version of delgrad-runtime."""
    try:
        return version("delgrad-runtime")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "unknown"


class DriverObserver:
    """Chip in the loop: forward on a driver, which sees the current parameters.

    The driver is configured before every batch, so parameters are written back
    after each optimiser step; its quantisation acts on what it runs only.
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def __call__(self, net: Any, t_in: Any) -> tuple[list, list]:
        self.driver.configure(net)
        observation = self.driver.run(t_in)
        return observation.times, observation.arrivals


def observer_for(config: Config) -> Any:
    """The forward backend named by ``config.training.driver``."""
    if config.training.driver == "host":
        return host_observer
    from delgrad.drivers import driver_from_config

    name = {"ideal": "emulator-ideal", "bss2": "emulator-bss2"}[config.training.driver]
    options = {"chip_seed": config.training.chip_seed} if name == "emulator-bss2" else {}
    return DriverObserver(driver_from_config(name, **options))


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
        trainer = Trainer.from_checkpoint(checkpoint, observe=observe)
        if trainer.config != config:
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
    from delgrad.tools import _plots

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
    if trainer.config.network.input_repeat == 1:
        from delgrad.runtime import yinyang

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
