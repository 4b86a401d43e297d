"""Training configuration: TOML files mapped onto small frozen dataclasses.

Every field has a default, so an empty file is a valid configuration (the
4-30-3 synaptic-delay DelGrad recipe). Unknown sections or fields and values of
the wrong type raise :class:`ConfigError` naming the offending key. The field
reference is ``docs/training.md``; shipped recipes are in ``runtime/recipes/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from delgrad.errors import ConfigError
from delgrad.runtime._driver import DRIVER_ALIASES, DRIVER_NAMES
from delgrad.runtime._neuron import NeuronParams
from delgrad.runtime._schema import build_dataclass, read_toml


@dataclass(frozen=True)
class NetworkConfig:
    """Network structure.

    Attributes:
        hidden: sizes of the hidden layers.
        n_inputs: input channels before repetition (4 for Yin-Yang).
        n_outputs: output neurons (classes).
        input_repeat: each input channel is sent this many times (hardware recipe: 5),
            as channel k = coordinate k // input_repeat.
        delay: delay kind of every layer: none, axonal, dendritic or synaptic.
        delay_param: "bounded" (d = shift + scale * sigmoid(q)) or "plain" (d >= 0).
        delay_shift, delay_scale: of the bounded parametrisation, units of tau_s.
        share_input_delay: with axonal delays and input_repeat > 1, the copies of one
            input share one delay.
        bias_times: spike times of bias inputs fed into every layer (2021 recipe: [0.9]).
    """

    hidden: list[int] = field(default_factory=lambda: [30])
    n_inputs: int = 4
    n_outputs: int = 3
    input_repeat: int = 1
    delay: Literal["none", "axonal", "dendritic", "synaptic"] = "synaptic"
    delay_param: Literal["bounded", "plain"] = "bounded"
    delay_shift: float = 0.0
    delay_scale: float = 1.0
    share_input_delay: bool = False
    bias_times: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class InitConfig:
    """Initial parameters: w ~ N(w_mean[l], w_std[l]) per layer (one value = all layers);
    delays: raw q ~ N(q_mean, q_std) for bounded delays, d ~ N(d_mean, d_std) clipped
    at 0 for plain ones."""

    w_mean: list[float] = field(default_factory=lambda: [1.0])
    w_std: list[float] = field(default_factory=lambda: [1.0])
    q_mean: float = 0.0
    q_std: float = 0.25
    d_mean: float = 0.5
    d_std: float = 0.25


@dataclass(frozen=True)
class DataConfig:
    """Data set and input encoding (units of tau_s).

    ``yinyang``: t = t_early + (t_late - t_early) * v per feature (4 inputs, 3 classes).
    ``digits``: scikit-learn's 8x8 digits, time to first spike
    t = t_early + (t_late - t_early) * (1 - v) per pixel (64 inputs, 10 classes);
    the sizes must sum to at most 1,797 (standard 1257 / 180 / 360).
    ``stream``: no offline data; the inputs come from a sensor stream (``delgrad run``
    with ``delgrad sensor --source FILE``), any number of inputs.
    ``file``: trial files in the CSR layout (``offsets``, ``channels``, ``times`` in
    tau_s, ``labels``), e.g. cut from a recording with ``delgrad events trials``:
    ``train_file``, ``validation_file`` and ``test_file`` (the sizes are not used).
    """

    dataset: Literal["yinyang", "digits", "stream", "file"] = "yinyang"
    train_file: str = ""
    validation_file: str = ""
    test_file: str = ""
    train_size: int = 5000
    validation_size: int = 1000
    test_size: int = 1000
    t_early: float = 0.15
    t_late: float = 2.0


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation.

    Attributes:
        epochs, batch_size: as usual; the last batch of an epoch may be smaller.
        lr_w, lr_d: Adam learning rates of weights and delays.
        lr_gamma, lr_step: learning rate times lr_gamma every lr_step epochs.
        loss: "mse" (shift-invariant, delta_t) or "cross_entropy" (xi, alpha, beta).
        max_dw_norm: drop (sample, neuron) weight gradients above this; 0 disables.
        bump_start: first weight-bumping value; doubles while the same layer misses.
        bump_tolerances: tolerated fraction of missing spikes per layer (hidden..., output).
        weight_clip: |w| is clipped to this after every step; 0 disables.
        weight_grid: forward pass uses w rounded to this grid (e.g. 1/30); 0 disables.
        driver: where the forward pass runs: "host" (exact model) or a driver name
            (``DRIVER_NAMES``, e.g. "emulator-bss2"); "ideal" and "bss2" are read
            as "emulator-ideal" and "emulator-bss2".
        chip_seed: which emulated chip (driver emulator-bss2).
        checkpoint_every: epochs between checkpoints.
        backward_threshold: "observed" (1/V'(T) at the observed spike times, needs no
            threshold) or "nominal" (the DelGrad authors' hardware rule, 1/(a(1 + W0(z)))
            at the configured theta over the observed causal set; tau_m = tau_s only).
        select: which network the run ends with: "last" (after the last epoch) or
            "best_val" (the epoch with the highest validation accuracy, earliest on ties).
        threads: threads that share each batch's host forward and backward pass
            (0 = one per core of the machine). Results are the same for any count
            (gradients are summed in row order); not part of a run's identity, so a
            run may resume with another count.
    """

    epochs: int = 300
    batch_size: int = 150
    lr_w: float = 0.01
    lr_d: float = 0.003
    lr_gamma: float = 0.95
    lr_step: int = 20
    loss: Literal["mse", "cross_entropy"] = "mse"
    delta_t: float = 0.2
    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 1.0
    max_dw_norm: float = 0.2
    bump_start: float = 0.0005
    bump_tolerances: list[float] = field(default_factory=lambda: [0.3, 0.0])
    weight_clip: float = 0.0
    weight_grid: float = 0.0
    driver: str = "host"
    chip_seed: int = 0
    checkpoint_every: int = 1
    backward_threshold: Literal["observed", "nominal"] = "observed"
    select: Literal["last", "best_val"] = "last"
    threads: int = 0


@dataclass(frozen=True)
class Config:
    """A whole training configuration (one TOML file)."""

    name: str = "unnamed"
    seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    neuron: NeuronParams = field(default_factory=NeuronParams)  # the [neuron] table
    init: InitConfig = field(default_factory=InitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def replace(self, **changes: Any) -> Config:
        """A copy with top-level fields replaced (e.g. ``seed``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON and TOML friendly)."""
        return dataclasses.asdict(self)


_POSITIVE = frozenset(
    {
        "tau_s",
        "tau_m",
        "theta",
        "epochs",
        "batch_size",
        "lr_step",
        "delta_t",
        "xi",
        "alpha",
        "beta",
        "n_inputs",
        "n_outputs",
        "input_repeat",
        "train_size",
        "validation_size",
        "test_size",
        "checkpoint_every",
    }
)
_NON_NEGATIVE = frozenset(
    {
        "eps",
        "lr_w",
        "lr_d",
        "max_dw_norm",
        "bump_start",
        "weight_clip",
        "weight_grid",
        "delay_shift",
        "q_std",
        "d_std",
        "chip_seed",
        "seed",
        "threads",
    }
)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate a nested mapping (as read from TOML) into a :class:`Config`.

    Raises:
        ConfigError: for unknown sections or fields and for invalid values.
    """
    config: Config = build_dataclass(
        Config, data, "top level", positive=_POSITIVE, non_negative=_NON_NEGATIVE
    )
    net = config.network
    if any(h < 1 for h in net.hidden):
        raise ConfigError(f"network.hidden sizes must be >= 1, got {net.hidden}")
    n_layers = len(net.hidden) + 1
    for key in ("w_mean", "w_std"):
        values = getattr(config.init, key)
        if len(values) not in (1, n_layers):
            raise ConfigError(f"init.{key} needs 1 or {n_layers} values, got {len(values)}")
    if net.share_input_delay and net.delay != "axonal":
        raise ConfigError("network.share_input_delay needs network.delay = 'axonal'")
    expected = {"yinyang": (4, 3), "digits": (64, 10)}.get(config.data.dataset)
    if expected is not None and (net.n_inputs, net.n_outputs) != expected:
        raise ConfigError(
            f"data.dataset = {config.data.dataset!r} has {expected[0]} inputs and "
            f"{expected[1]} classes; set network.n_inputs = {expected[0]} and "
            f"network.n_outputs = {expected[1]} (got {net.n_inputs} and {net.n_outputs})"
        )
    if config.data.dataset == "file":
        missing = [
            f"data.{k}" for k in ("train_file", "validation_file", "test_file")
            if not getattr(config.data, k)
        ]  # fmt: skip
        if missing:
            raise ConfigError(
                f"data.dataset = 'file' needs {', '.join(missing)} (trial files, e.g. from "
                "delgrad events trials)"
            )
    if config.data.t_late <= config.data.t_early:
        raise ConfigError("data.t_late must be later than data.t_early")
    driver = DRIVER_ALIASES.get(config.training.driver, config.training.driver)
    if driver not in DRIVER_NAMES:
        raise ConfigError(
            f"training.driver must be one of {', '.join(DRIVER_NAMES)}, "
            f"got {config.training.driver!r}"
        )
    if driver != config.training.driver:
        config = dataclasses.replace(
            config, training=dataclasses.replace(config.training, driver=driver)
        )
    if (
        config.training.backward_threshold == "nominal"
        and config.neuron.tau_m != config.neuron.tau_s
    ):
        raise ConfigError(
            "training.backward_threshold = 'nominal' needs neuron.tau_m == neuron.tau_s "
            "(the authors' Lambert-W closed form)"
        )
    if not config.training.bump_tolerances:
        raise ConfigError("training.bump_tolerances needs at least one value")
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file.

    Raises:
        ConfigError: if the file is missing, not TOML, or invalid.
    """
    data = read_toml(path)
    data.setdefault("name", Path(path).stem)
    return config_from_dict(data)
