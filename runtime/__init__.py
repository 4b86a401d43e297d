"""DelGrad core: exact event-based spike times and gradients, training pieces, data.

Model time is in units of tau_s throughout.
"""

from delgrad.runtime._config import Config, load_config
from delgrad.runtime._errors import (
    ConfigError,
    DelgradError,
    NetworkFileError,
    ParameterError,
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
from delgrad.runtime._io import load_network, save_network
from delgrad.runtime._join import Joined, LabelJoin
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
from delgrad.runtime._online import OnlineLearner
from delgrad.runtime._optim import (
    Adam,
    DelayParametrisation,
    ParamGroup,
    StepSchedule,
    WeightBumper,
    clip_weights,
)
from delgrad.runtime._run_config import RunConfig, load_run_config
from delgrad.runtime._stats import Counters, LatencyTracker, RateMeter, RingBuffer, SlidingAccuracy
from delgrad.runtime._trainer import Learner, Trainer
from delgrad.runtime._warmup import warm_up
from delgrad.runtime._windowing import TrialWindower, WindowedTrials, WindowSpec
from delgrad.runtime._yinyang import (
    YINYANG_SPLITS,
    encode_yinyang,
    yinyang,
    yinyang_class,
    yinyang_split,
)

__all__ = [
    "DELAY_KINDS",
    "YINYANG_SPLITS",
    "Adam",
    "Config",
    "ConfigError",
    "Counters",
    "CsrEvents",
    "DelayKind",
    "DelayParametrisation",
    "DelgradError",
    "FirstSpikeCrossEntropy",
    "FirstSpikes",
    "Gradients",
    "Joined",
    "LabelJoin",
    "LatencyTracker",
    "Layer",
    "LayerGradient",
    "Learner",
    "LossResult",
    "Network",
    "NetworkFileError",
    "NeuronParams",
    "OnlineLearner",
    "PaddedEvents",
    "ParamGroup",
    "ParameterError",
    "RateMeter",
    "RingBuffer",
    "RunConfig",
    "Service",
    "ShiftMSELoss",
    "SlidingAccuracy",
    "StepSchedule",
    "Trainer",
    "TrialWindower",
    "WeightBumper",
    "WindowSpec",
    "WindowedTrials",
    "accuracy",
    "backward",
    "clip_weights",
    "cross_entropy_loss",
    "csr_to_padded",
    "encode_yinyang",
    "first_spike_inputs",
    "forward",
    "inputs_to_events",
    "load_config",
    "load_network",
    "load_run_config",
    "mse_loss",
    "padded_to_csr",
    "predict",
    "save_network",
    "warm_up",
    "yinyang",
    "yinyang_class",
    "yinyang_split",
]


def __getattr__(name: str) -> object:
    # The service imports delgrad.protocols, which imports this package's error
    # tree; loading it lazily keeps either package importable first.
    if name == "Service":
        from delgrad.runtime._service import Service

        return Service
    raise AttributeError(f"module 'delgrad.runtime' has no attribute {name!r}")
