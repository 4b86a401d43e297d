"""The streaming service of one device: the only asyncio code of ``delgrad.runtime``.

Ingest (bounded queue, drop policy), windowing of continuous events into trials,
the label join, prequential online learning on a driver, metrics, commands and
checkpoints, wired together by :class:`Service`. Imports ``delgrad.runtime`` and
``delgrad.protocols``, never a concrete driver (``delgrad.drivers``).
"""

from delgrad.errors import StorageError
from delgrad.runtime.service._checkpoints import (
    checkpoint_paths,
    checkpoint_problem,
    read_checkpoint,
)
from delgrad.runtime.service._health import HEALTH_CONDITIONS
from delgrad.runtime.service._join import Joined, JoinedRows, LabelJoin
from delgrad.runtime.service._online import OnlineLearner, StepReport
from delgrad.runtime.service._outbox import EPOCH_SHIFT, next_boot_epoch, status_will
from delgrad.runtime.service._run_config import RunConfig, load_run_config, run_config_from_dict
from delgrad.runtime.service._service import Service
from delgrad.runtime.service._stats import (
    Counters,
    LatencyTracker,
    RateMeter,
    RingBuffer,
    SlidingAccuracy,
)
from delgrad.runtime.service._storage import Storage
from delgrad.runtime.service._supervision import ServiceFailed
from delgrad.runtime.service._windowing import TrialWindower, WindowedTrials, WindowSpec

__all__ = [
    "EPOCH_SHIFT",
    "HEALTH_CONDITIONS",
    "Counters",
    "Joined",
    "JoinedRows",
    "LabelJoin",
    "LatencyTracker",
    "OnlineLearner",
    "RateMeter",
    "RingBuffer",
    "RunConfig",
    "Service",
    "ServiceFailed",
    "SlidingAccuracy",
    "StepReport",
    "Storage",
    "StorageError",
    "TrialWindower",
    "WindowSpec",
    "WindowedTrials",
    "checkpoint_paths",
    "checkpoint_problem",
    "load_run_config",
    "next_boot_epoch",
    "read_checkpoint",
    "run_config_from_dict",
    "status_will",
]
