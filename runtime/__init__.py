"""DelGrad core: exact event-based spike times and gradients, training pieces, data.

Model time is in units of tau_s throughout.
"""

from delgrad.runtime._errors import (
    ConfigError,
    DelgradError,
    NetworkFileError,
    ParameterError,
)
from delgrad.runtime._io import load_network, save_network
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
from delgrad.runtime._optim import (
    Adam,
    DelayParametrisation,
    ParamGroup,
    StepSchedule,
    WeightBumper,
    clip_weights,
)
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
    "YINYANG_SPLITS",
    "Adam",
    "ConfigError",
    "DelayKind",
    "DelayParametrisation",
    "DelgradError",
    "FirstSpikeCrossEntropy",
    "Gradients",
    "Layer",
    "LayerGradient",
    "LossResult",
    "Network",
    "NetworkFileError",
    "NeuronParams",
    "ParamGroup",
    "ParameterError",
    "ShiftMSELoss",
    "StepSchedule",
    "WeightBumper",
    "accuracy",
    "backward",
    "clip_weights",
    "cross_entropy_loss",
    "encode_yinyang",
    "forward",
    "load_network",
    "mse_loss",
    "predict",
    "save_network",
    "warm_up",
    "yinyang",
    "yinyang_class",
    "yinyang_split",
]
