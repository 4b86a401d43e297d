"""The Dask cluster a study runs on: an embedded local one, or a running scheduler.

* Default: a ``LocalCluster`` of ``workers`` processes (one thread each, so a run
  owns a core and its figures do not depend on the machine) on loopback, without
  a dashboard. Its workers are spawned with SIGINT ignored: the terminal's Ctrl-C
  reaches the whole process group, and only the client must act on it (it kills
  the workers itself, see :meth:`Cluster.abort`), so one Ctrl-C ends the study in
  a second, exit 130, with no traceback and no process left behind.
* ``--scheduler tcp://HOST:PORT``: a running scheduler (``dask scheduler``, a
  dask-jobqueue ``SLURMCluster``...). Reaching it is bounded by ``timeout_s``; the
  dask, distributed, cloudpickle, msgpack and Python versions of client, scheduler
  and workers must agree, and every worker must run this delgrad-runtime version.

Results are gathered straight from the worker that holds them
(``direct_to_workers``): the scheduler only sees task keys and small configs.
Every worker gets a numba cache directory (``NUMBA_CACHE_DIR``, kept if the
worker's environment sets one) so it compiles the kernels once, not once per run.
A task whose worker dies is run again elsewhere, at most ``ALLOWED_FAILURES`` times
on the embedded cluster (a running scheduler applies its own
``distributed.scheduler.allowed-failures``, default 3).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from delgrad.errors import ConfigError, TransportError

__all__ = ["ALLOWED_FAILURES", "Cluster", "NumbaCache", "open_cluster"]

#: Times the embedded cluster re-runs a task whose worker died before giving up.
ALLOWED_FAILURES = 2
#: Packages whose versions must match between client, scheduler and workers.
_MUST_MATCH = ("dask", "distributed", "cloudpickle", "msgpack")

log = logging.getLogger(__name__)


class NumbaCache(WorkerPlugin):
    """Worker plugin: a persistent numba cache directory on every worker.

    ``NUMBA_CACHE_DIR`` from the worker's environment wins; otherwise
    ``$TMPDIR/delgrad-numba-cache`` (node-local, outlives the worker).
    """

    name = "delgrad-numba-cache"
    idempotent = True  # registered again by every study: set up once per worker

    def setup(self, worker: Any) -> None:
        """Point numba's cache at the directory (numba reads it again)."""
        os.environ.setdefault(
            "NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "delgrad-numba-cache")
        )
        try:
            from numba.core import config
        except ImportError:  # pragma: no cover - numba is a dependency
            return
        config.reload_config()

    def teardown(self, worker: Any) -> None:
        """Nothing to undo."""


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and whatever it started (a run's own child processes ignore
    the terminal's SIGINT as the worker does, so nobody else would stop them)."""
    import psutil  # a dependency of distributed

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@dataclass
class Cluster:
    """A connected client and, for the embedded cluster, the cluster itself."""

    client: Any  # None until connected
    local: Any  # the embedded LocalCluster, or None
    address: str

    @property
    def shared_disk(self) -> bool:
        """True when the workers run on this machine and can write ``--out`` directly."""
        return self.local is not None

    def abort(self) -> None:
        """Stop now (Ctrl-C): embedded workers are killed, not asked to finish their
        runs; on a running scheduler this client's tasks are cancelled."""
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if self.local is not None:
            for nanny in list(self.local.workers.values()):
                # the nanny must not restart the worker we are about to kill
                with contextlib.suppress(Exception):
                    nanny.close_gracefully(reason="delgrad-interrupted")
                pid = getattr(nanny, "pid", None)
                if pid:
                    _kill_tree(pid)
        self.close(timeout_s=1.0)

    def close(self, timeout_s: float = 5.0) -> None:
        """Disconnect (and stop the embedded cluster)."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=timeout_s)
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.close(timeout=timeout_s)


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Spawned processes start through ``sh`` with SIGINT ignored, which the Python
    they exec keeps from its first instruction: the terminal's Ctrl-C, sent to the
    whole process group, then reaches only the client. (Blocking the signal or a
    handler set in the worker would leave a window while the worker imports.)"""
    import multiprocessing
    from multiprocessing import spawn

    previous = os.fsdecode(spawn.get_executable())
    with tempfile.TemporaryDirectory(prefix="delgrad-dask-") as tmp:
        wrapper = Path(tmp) / "python"
        wrapper.write_text(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(previous)} \"$@\"\n")
        wrapper.chmod(0o755)
        multiprocessing.get_context("spawn").set_executable(str(wrapper))
        try:
            yield
        finally:
            multiprocessing.get_context("spawn").set_executable(previous)


def _embedded(cluster: Cluster, workers: int) -> None:
    import dask
    from distributed import LocalCluster

    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    # a Ctrl-C while the cluster starts waits (pending) until it is ours to stop:
    # interrupted half-way, LocalCluster leaves workers behind and tracebacks
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        cluster.local = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False},
            # a run's own error is reported by the client, once
            silence_logs=logging.CRITICAL,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _check_versions(client: Any, address: str) -> None:
    versions = client.get_versions(packages=["delgrad-runtime"])
    mine = versions["client"]["packages"]
    workers = sorted((f"worker {a}", v) for a, v in (versions.get("workers") or {}).items())
    others = [("scheduler", versions["scheduler"]), *workers]
    for who, info in others:
        packages = info.get("packages", {}) if isinstance(info, dict) else {}
        theirs_py = str(packages.get("python", "")).split(".")[:2]
        if theirs_py != str(mine.get("python", "")).split(".")[:2]:
            raise TransportError(
                f"the Dask {who} at {address} runs Python {packages.get('python')}, this "
                f"client {mine.get('python')}: use the same Python minor version everywhere"
            )
        for name in _MUST_MATCH:
            if packages.get(name) != mine.get(name):
                raise TransportError(
                    f"the Dask {who} at {address} runs {name} {packages.get(name)}, this "
                    f"client {mine.get(name)}: install the same dask and distributed "
                    "versions everywhere"
                )
        if who != "scheduler" and not packages.get("delgrad-runtime"):
            raise TransportError(
                f"the Dask {who} at {address} has no delgrad-runtime installed: "
                "install it on every worker"
            )
        if who != "scheduler" and packages["delgrad-runtime"] != mine.get("delgrad-runtime"):
            # other code, other figures
            raise TransportError(
                f"the Dask {who} at {address} runs delgrad-runtime "
                f"{packages['delgrad-runtime']}, this client {mine.get('delgrad-runtime')}: "
                "install the same version on every worker"
            )


def _refuse_early(address: str, timeout_s: float) -> float:
    """Say at once when nothing listens at a ``tcp://`` address; returns the seconds
    of ``timeout_s`` left for Dask's client (so the two stay within ``timeout_s``).

    Dask's client retries a refused connection until its timeout, and on a busy
    host that timeout can end before a refusal is seen; one plain connect tells
    "nothing listens there" (a typo, a stopped scheduler) from "no answer".
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    started = time.monotonic()
    try:
        scheme, location = parse_address(address)
        if scheme != "tcp":
            return timeout_s
        host, port = parse_host_port(location)
    except ValueError:
        return timeout_s  # Client says what is wrong with it
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except ConnectionRefusedError as exc:
        raise _unreachable(address, timeout_s, str(exc.strerror)) from None
    except TimeoutError:
        raise _unreachable(address, timeout_s, "no answer") from None
    except OSError:
        pass  # e.g. unresolvable: Client's text covers it
    return max(0.01, timeout_s - (time.monotonic() - started))


def _unreachable(address: str, timeout_s: float, cause: str) -> TransportError:
    return TransportError(
        f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({cause})"
    )


def _running(address: str, timeout_s: float) -> Any:
    from distributed import Client
    from distributed.versions import VersionMismatchWarning

    left_s = _refuse_early(address, timeout_s)
    try:
        with warnings.catch_warnings():
            # its table is many lines; _check_versions says it in one
            warnings.simplefilter("ignore", VersionMismatchWarning)
            client = Client(address, timeout=left_s, direct_to_workers=True)
    except (OSError, TimeoutError) as exc:
        # Dask's own text repeats the address and the timeout; its cause says why
        cause = re.sub(r"^in <[^>]*>: ", "", str(exc.__cause__ or "")) or "no answer"
        raise _unreachable(address, timeout_s, cause) from None
    except ValueError as exc:
        raise ConfigError(f"bad --scheduler address {address}: {exc}") from None
    except Exception as exc:  # a handshake that fails: another protocol or version
        from distributed import __version__

        raise TransportError(
            f"{address} does not answer as a Dask scheduler ({type(exc).__name__}: "
            f"{str(exc)[:80]}); is it one, of distributed {__version__}?"
        ) from None
    try:
        _check_versions(client, address)
    except BaseException:
        client.close()
        raise
    return client


@contextlib.contextmanager
def open_cluster(
    scheduler: str | None, workers: int | None, *, timeout_s: float = 4.0
) -> Iterator[Cluster]:
    """Connect to ``scheduler`` or start the embedded cluster of ``workers`` processes
    (None: one per core); closed on exit, stopped at once on Ctrl-C.

    Raises:
        TransportError: the scheduler cannot be reached in ``timeout_s`` or runs
            incompatible versions.
        ConfigError: ``scheduler`` is no Dask address.
    """
    from distributed import Client

    # the scheduler's chatter about leaving workers is not the user's business
    logging.getLogger("distributed").setLevel(
        max(logging.ERROR, logging.getLogger().getEffectiveLevel())
    )
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            stack.enter_context(_workers_ignore_sigint())  # also for a restarted worker
            cluster = Cluster(None, None, "")
            try:
                _embedded(cluster, max(1, workers or os.cpu_count() or 1))
                cluster.address = cluster.local.scheduler_address
                cluster.client = Client(cluster.local, direct_to_workers=True)
            except BaseException:
                cluster.abort()
                raise
        else:
            cluster = Cluster(_running(scheduler, timeout_s), None, scheduler)
        try:
            cluster.client.register_plugin(NumbaCache())
            yield cluster
        except BaseException:
            cluster.abort()
            raise
        cluster.close()
