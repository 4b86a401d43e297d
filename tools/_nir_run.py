"""Run a NIR file in snnTorch, Norse or Rockpool with the framework's own importer.

Used by the interop tests and ``tools/bench_nir_interop.py``; needs the
``[interop]`` extra (torch, snntorch, norse, nirtorch, rockpool), imported here
only when called. The protocol (docs/nir.md): input spike ``i`` at time ``t_i``
(tau_s) is the value 1 in step ``round(t_i / dt)``, the network runs
``ceil(t_max / dt)`` steps on the whole batch at once, and a neuron's spike time
is ``k dt`` for the first step ``k`` in which it emits a spike.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nir
import numpy as np

from delgrad.runtime import Network
from delgrad.tools._nir_consumers import INHIBITION, STEP_SECONDS

__all__ = [
    "FRAMEWORKS",
    "T_MAX",
    "input_steps",
    "norse_network",
    "run_file",
    "run_module",
    "snntorch_network",
]

FRAMEWORKS = ("snntorch", "norse", "rockpool")
#: Simulated time per trial, in tau_s (Yin-Yang inputs end at 2, outputs before 4).
T_MAX = 6.0


def input_steps(t_in: np.ndarray, dt: float, t_max: float = T_MAX) -> Any:
    """(T, B, n_in) float32 torch tensor: 1 in step ``round(t / dt)`` of each input."""
    import torch

    t_in = np.asarray(t_in, dtype=np.float64)
    n_steps = math.ceil(t_max / dt)
    steps = np.rint(t_in / dt).astype(np.int64)
    batch, n_in = t_in.shape
    x = torch.zeros(n_steps, batch, n_in)
    ok = np.isfinite(t_in) & (steps < n_steps)
    b, i = np.nonzero(ok)
    x[torch.from_numpy(steps[b, i]), torch.from_numpy(b), torch.from_numpy(i)] = 1.0
    return x


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Tensors of a few hundred values: more torch threads only contend (10-20x
    slower on a busy two-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(before)


def _first(spikes: Any, first: np.ndarray, k: int, dt: float) -> None:
    hit = (spikes.detach().numpy().reshape(first.shape) > 0) & np.isinf(first)
    first[hit] = k * dt


def _step_all(module: Any, x: Any, n_out: int, dt: float, *, stateful: bool = True) -> np.ndarray:
    """Feed a step module, ``module(x_k, state) -> (out, state)`` if ``stateful``,
    else ``module(x_k) -> out or (out, ...)`` (snnTorch's hidden state)."""
    first = np.full((x.shape[1], n_out), np.inf)
    state = None
    for k in range(x.shape[0]):
        out = module(x[k]) if state is None else module(x[k], state)
        if isinstance(out, tuple):
            out, state = out[0], (out[1] if stateful else None)
        _first(out, first, k, dt)
    return first


def run_file(framework: str, path: str | Path, t_in: np.ndarray, *, dt: float) -> np.ndarray:
    """First output spike times (B, n_out) in tau_s of the file, run by ``framework``.

    The framework's own import function reads the graph unmodified: snnTorch's
    ``import_from_nir``, Norse's ``from_nir`` (default ``dt``), Rockpool's
    ``from_nir``. ``dt`` (tau_s) must be the one the file was exported for.
    """
    graph = nir.read(str(path))
    n_out = int(np.asarray(graph.nodes["output"].output_type["output"]).reshape(-1)[0])
    x = input_steps(t_in, dt)
    with _one_thread(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # nirtorch's deprecation of load(), Rockpool's notes
        if framework == "snntorch":
            from snntorch.import_nir import import_from_nir

            return _step_all(import_from_nir(graph), x, n_out, dt)
        if framework == "norse":
            from norse.torch import from_nir

            return _step_all(from_nir(graph), x, n_out, dt)
        if framework == "rockpool":
            from rockpool.nn.modules.torch.nir import from_nir as rockpool_from_nir

            out = rockpool_from_nir(graph)(x.permute(1, 0, 2))
            out = out[0] if isinstance(out, tuple) else out
            first = np.full((x.shape[1], n_out), np.inf)
            for k in range(x.shape[0]):
                _first(out[:, k], first, k, dt)
            return first
    raise ValueError(f"unknown framework {framework!r}; one of {', '.join(FRAMEWORKS)}")


def snntorch_network(net: Network, dt: float) -> Any:
    """``net`` (no delays) built in snnTorch at step ``dt`` (tau_s): Linear layers
    without bias and ``RSynaptic`` neurons whose self-connection silences them
    after their first spike (the form ``export_to_nir`` writes as a loop)."""
    import snntorch as snn
    import torch

    p = net.neuron
    mods: list[Any] = []
    for k, w in enumerate(net.w):
        lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
        lin.weight.data = torch.tensor(w.T, dtype=torch.float32)
        n = w.shape[1]
        strength = INHIBITION * max(1.0, float(np.abs(w).sum(axis=0).max()))
        mods += [
            lin,
            snn.RSynaptic(
                alpha=1 - dt / p.tau_s,
                beta=1 - dt / p.tau_m,
                threshold=p.theta * p.tau_s / dt,
                all_to_all=False,
                V=-strength * torch.ones(n),
                reset_mechanism="zero",
                init_hidden=True,
                output=k == len(net.w) - 1,
            ),
        ]
    return torch.nn.Sequential(*mods)


def norse_network(net: Network, dt: float) -> Any:
    """``net`` (no delays) built in Norse at step ``dt`` (tau_s, one step =
    STEP_SECONDS["norse"]): Linear layers without bias and ``LIFCell`` neurons
    that reset far below rest, so they fire once in a trial."""
    import norse.torch as norse
    import torch

    p = net.neuron
    step = STEP_SECONDS["norse"]
    unit = step / dt
    mods: list[Any] = []
    for w in net.w:
        lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
        # LIFCell's current jumps by the weight and drives tau_mem dv/dt = -v + i
        lin.weight.data = torch.tensor(w.T * p.tau_m, dtype=torch.float32)
        n = w.shape[1]
        params = norse.LIFParameters(
            tau_syn_inv=torch.full((n,), 1 / (p.tau_s * unit)),
            tau_mem_inv=torch.full((n,), 1 / (p.tau_m * unit)),
            v_leak=torch.zeros(n),
            v_th=torch.full((n,), p.theta),
            v_reset=torch.full((n,), -INHIBITION * p.theta),
        )
        mods += [lin, norse.LIFCell(params, dt=step)]
    return norse.SequentialState(*mods)


def run_module(
    framework: str, module: Any, t_in: np.ndarray, n_out: int, *, dt: float
) -> np.ndarray:
    """First output spike times (B, n_out) in tau_s of a network built above, run
    in its own framework (snnTorch keeps the state in the modules, Norse passes it)."""
    x = input_steps(t_in, dt)
    with _one_thread():
        return _step_all(module, x, n_out, dt, stateful=framework == "norse")
