"""Documented bounds of a device: its learning state (the largest parameter magnitude
and the range of the learning-rate factor, and the check of state arrays against
them) and the trial buffers (counts capped by MiB budgets at the network's inputs).

A learning step whose result breaks a bound is rolled back; a checkpoint is only
written from, and only restored to, state within them.
"""

from __future__ import annotations

import numpy as np

from delgrad.runtime.service._run_config import IngestSection, JoinSection, RunConfig

#: Largest magnitude a weight or delay may take (units of the recipe; far beyond any
#: trained network): a step that leaves a parameter beyond it is rejected.
MAX_ABS_PARAMETER = 1e6
#: Range of the factor on the recipe's learning rates (``lr`` command, checkpoints).
LR_SCALE_MIN = 1e-6
LR_SCALE_MAX = 100.0


def state_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """Why learner state arrays (:meth:`OnlineLearner.state_arrays`) are not valid
    parameters to run or keep, or None: every numeric array finite, and weights and
    delays (``net.*``) at most :data:`MAX_ABS_PARAMETER` in magnitude, the learning
    rate factor (``adam.lr_scale``) within :data:`LR_SCALE_MIN` .. :data:`LR_SCALE_MAX`."""
    if "adam.lr_scale" in arrays:
        scale = float(np.asarray(arrays["adam.lr_scale"]))
        if not LR_SCALE_MIN <= scale <= LR_SCALE_MAX:
            return f"adam.lr_scale is {scale:.3g} (range {LR_SCALE_MIN:g} .. {LR_SCALE_MAX:g})"
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu" or not arr.size:
            continue
        if not np.all(np.isfinite(arr)):
            return f"{key} is not finite"
        if key.startswith("net.") and arr.dtype.kind == "f":
            biggest = float(np.abs(arr).max())
            if biggest > MAX_ABS_PARAMETER:
                return f"{key} reaches {biggest:.3g} (bound {MAX_ABS_PARAMETER:g})"
    return None


def pending_bound(ingest: IngestSection, n_inputs: int) -> int:
    """Trials the pending-trial queue holds (``[ingest] max_pending_trials`` and
    ``max_pending_mb``) for a network of ``n_inputs`` inputs."""
    return trials_within(ingest.max_pending_trials, ingest.max_pending_mb, n_inputs)


def join_capacity(join: JoinSection, n_inputs: int) -> int:
    """Waiting trials (and labels) the label join holds (``[join] capacity`` and
    ``max_mb``) for a network of ``n_inputs`` inputs."""
    return trials_within(join.capacity, join.max_mb, n_inputs)


def label_capacity(config: RunConfig, n_inputs: int) -> int:
    """Waiting labels the label join holds: ``[join] capacity``, or more where the
    pending-trial queue and one batch in flight hold more trials (from about 800
    inputs up, ``max_pending_mb`` lets the queue hold more trials than ``join.max_mb``
    lets the join hold), so a backlog's labels wait for their trials instead of
    being evicted as orphans just before the trials come. A label costs ~100 bytes."""
    in_flight = pending_bound(config.ingest, n_inputs) + config.inference.max_batch
    return max(config.join.capacity, in_flight)


def byte_bounds_note(config: RunConfig, n_inputs: int) -> str | None:
    """One line for the log when the MiB bounds cap the trial counts at ``n_inputs``
    inputs (sensor-sized networks), else None."""
    pending = pending_bound(config.ingest, n_inputs)
    join = join_capacity(config.join, n_inputs)
    if pending == config.ingest.max_pending_trials and join == config.join.capacity:
        return None
    return (
        f"{n_inputs} inputs: at most {pending:,} pending trials (ingest.max_pending_mb = "
        f"{config.ingest.max_pending_mb:g}) and {join:,} in the label join "
        f"(join.max_mb = {config.join.max_mb:g})"
    )


def trials_within(count: int, mib: float, n_inputs: int) -> int:
    """The smaller of ``count`` trials and the trials whose rows fit in ``mib`` MiB.

    A trial row is ``n_inputs`` float64 times plus an 8-byte id; at least one trial.
    """
    by_bytes = int(mib * 2**20) // (8 * (n_inputs + 1))
    return max(1, min(int(count), by_bytes))
