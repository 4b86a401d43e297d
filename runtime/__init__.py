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
from delgrad.runtime._warmup import warm_up

__all__ = [
    "DELAY_KINDS",
    "ConfigError",
    "DelayKind",
    "DelgradError",
    "Gradients",
    "Layer",
    "LayerGradient",
    "Network",
    "NetworkFileError",
    "NeuronParams",
    "ParameterError",
    "backward",
    "forward",
    "load_network",
    "save_network",
    "warm_up",
]
