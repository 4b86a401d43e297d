"""The public surface of delgrad.runtime is what is meant, and importing it is quiet."""

from __future__ import annotations

import subprocess
import sys

import delgrad.runtime as rt

EXPECTED = {
    "Adam",
    "ConfigError",
    "DELAY_KINDS",
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
    "YINYANG_SPLITS",
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
}


def test_all_is_complete():
    assert len(rt.__all__) == len(set(rt.__all__))  # order: ruff RUF022
    assert EXPECTED <= set(rt.__all__)
    for name in rt.__all__:
        assert hasattr(rt, name), name


def test_errors_form_one_tree():
    for cls in (rt.ParameterError, rt.ConfigError, rt.NetworkFileError):
        assert issubclass(cls, rt.DelgradError) and issubclass(cls, ValueError)


def test_import_prints_nothing_and_configures_no_logging():
    code = "import logging, delgrad.runtime; print(len(logging.getLogger().handlers))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0" and out.stderr == ""
