"""The recording fake: what it records, and that it delegates."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from delgrad.drivers import Capabilities, CapabilityError, EmulatorDriver, RecordingDriver
from delgrad.runtime import ParameterError, forward

from ._helpers import hardware_like_network


def test_records_calls_in_order_with_copies():
    net = hardware_like_network()
    rec = RecordingDriver()
    rec.configure(net)
    t = np.ones((3, net.n_inputs))
    obs = rec.run(t)
    t[:] = 0.0
    net.w[0][:] = 0.0
    rec.close()
    assert rec.methods() == ["configure", "run", "close"]
    np.testing.assert_array_equal(rec.calls[1].t_in, np.ones((3, net.n_inputs)))
    assert np.all(rec.calls[0].network.w[0] != 0.0)  # a copy, not the live network
    assert rec.calls[1].thread == threading.current_thread().name
    assert rec.inner.closed
    np.testing.assert_array_equal(obs.output, forward(rec.calls[0].network, np.ones((3, 8)))[-1])


def test_rejected_calls_are_not_recorded():
    rec = RecordingDriver(capabilities=Capabilities(backend="narrow", delay_kinds=("none",)))
    with pytest.raises(CapabilityError):
        rec.configure(hardware_like_network())
    assert rec.calls == []


def test_delegates_to_the_given_driver():
    inner = EmulatorDriver("bss2", chip_seed=1)
    rec = RecordingDriver(inner)
    assert rec.capabilities is inner.capabilities
    rec.configure(hardware_like_network())
    rec.run(np.ones((2, 8)))
    assert inner.runs == 1


def test_inner_must_be_a_driver():
    with pytest.raises(ParameterError):
        RecordingDriver(inner="ideal")
