"""DelGrad core: a synchronous library of exact event-based spike times and gradients.

Spike-time kernels, networks, losses, the optimiser and stabilisers, offline
training, recipes, the driver contract and the chip-in-the-loop adapter. It
imports no other delgrad package but the error tree; the asyncio service is
``delgrad.runtime.service``. Model time is in units of tau_s throughout.
"""

from delgrad.errors import (
    ConfigError,
    DelgradError,
    NetworkFileError,
    ParameterError,
)
from delgrad.runtime._adam import Adam, ParamGroup, StepSchedule
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime._config import Config, config_from_dict, load_config
from delgrad.runtime._delays import DelayParametrisation
from delgrad.runtime._digits import DIGITS_SPLITS, digits_split, encode_digits
from delgrad.runtime._drift_spec import DriftSpec
from delgrad.runtime._driver import (
    DRIVER_ALIASES,
    DRIVER_NAMES,
    RANGE_RULES,
    Capabilities,
    Driver,
    Observation,
    RangeRule,
    check_input,
)
from delgrad.runtime._events import (
    CsrEvents,
    FirstSpikes,
    PaddedEvents,
    csr_to_padded,
    first_spike_inputs,
    inputs_to_events,
    padded_to_csr,
)
from delgrad.runtime._in_the_loop import DriverObserver
from delgrad.runtime._io import load_network, save_network
from delgrad.runtime._learner import HostObserver, Learner, Observer, host_observer, resolve_threads
from delgrad.runtime._losses import (
    FirstSpikeCrossEntropy,
    LossResult,
    ShiftMSELoss,
    accuracy,
    cross_entropy_loss,
    mse_loss,
    predict,
)
from delgrad.runtime._network import (
    DELAY_KINDS,
    DelayKind,
    Gradients,
    Layer,
    LayerGradient,
    Network,
    backward,
    forward,
)
from delgrad.runtime._neuron import NeuronParams
from delgrad.runtime._recipes import resolve_config, shipped_configs
from delgrad.runtime._schema import apply_overrides, read_toml
from delgrad.runtime._stabilisers import WeightBumper, clip_weights
from delgrad.runtime._trainer import EpochStats, Trainer, load_split
from delgrad.runtime._trial_file import TrialArrays, load_trial_arrays, read_trial_file
from delgrad.runtime._warmup import warm_up
from delgrad.runtime._yinyang import (
    YINYANG_SPLITS,
    encode_yinyang,
    yinyang,
    yinyang_class,
    yinyang_split,
)

__all__ = [
    "DELAY_KINDS",
    "DIGITS_SPLITS",
    "DRIVER_ALIASES",
    "DRIVER_NAMES",
    "RANGE_RULES",
    "YINYANG_SPLITS",
    "Adam",
    "Capabilities",
    "Config",
    "ConfigError",
    "CsrEvents",
    "DelayKind",
    "DelayParametrisation",
    "DelgradError",
    "DriftSpec",
    "Driver",
    "DriverObserver",
    "EpochStats",
    "FirstSpikeCrossEntropy",
    "FirstSpikes",
    "Gradients",
    "HostObserver",
    "Layer",
    "LayerGradient",
    "Learner",
    "LossResult",
    "Network",
    "NetworkFileError",
    "NeuronParams",
    "Observation",
    "Observer",
    "PaddedEvents",
    "ParamGroup",
    "ParameterError",
    "RangeRule",
    "ShiftMSELoss",
    "StepSchedule",
    "Trainer",
    "TrialArrays",
    "WeightBumper",
    "accuracy",
    "apply_overrides",
    "atomic_write",
    "backward",
    "check_input",
    "clip_weights",
    "config_from_dict",
    "cross_entropy_loss",
    "csr_to_padded",
    "digits_split",
    "encode_digits",
    "encode_yinyang",
    "first_spike_inputs",
    "forward",
    "host_observer",
    "inputs_to_events",
    "load_config",
    "load_network",
    "load_split",
    "load_trial_arrays",
    "mse_loss",
    "padded_to_csr",
    "predict",
    "read_toml",
    "read_trial_file",
    "resolve_config",
    "resolve_threads",
    "save_network",
    "shipped_configs",
    "warm_up",
    "yinyang",
    "yinyang_class",
    "yinyang_split",
]
