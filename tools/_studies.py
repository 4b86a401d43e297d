"""The one study runner: many independent runs on Dask, resumable, written as they end.

A study is a list of :class:`StudyRun`: a module-level function and its picklable
config, a unique name, and ``done``, the file (relative to ``--out``) that marks
the run finished. :func:`run_study` skips runs whose ``done`` file exists, sends
the others to the cluster (:mod:`delgrad.tools._dask_cluster`) and writes each
run's files under ``--out`` as soon as it ends, ``done`` last, so a study stopped
at any point resumes where it was.

Where the files are made: on the embedded cluster the workers share this
machine's disk, so a run works in ``--out`` itself (a run that was interrupted
resumes from its checkpoint there). On a running scheduler nothing is assumed
about the workers' disks: a run works in a temporary folder in its worker's
scratch space and returns every file it made (except checkpoints) as bytes in its
result; the client fetches that result straight from the worker and writes the
files.

Faults: a run whose function raises fails once (no retry: a bad config stays
bad) and is reported with its error; the others go on. A run whose worker dies
is run again on another worker (bounded, see ``ALLOWED_FAILURES``). Each run's
result is taken once, from its own future, so no row is lost or written twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TextIO

from delgrad.errors import ParameterError
from delgrad.runtime import atomic_write
from delgrad.tools._dask_cluster import open_cluster
from delgrad.tools._study_progress import StudyProgress

__all__ = [
    "NOT_RETURNED",
    "RunOutput",
    "StudyOutcome",
    "StudyRun",
    "add_study_arguments",
    "execute",
    "exit_code",
    "run_study",
]

#: Files a remote run keeps to itself: resume aids, not results.
NOT_RETURNED = frozenset({"checkpoint.npz"})

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass(frozen=True)
class StudyRun:
    """One run of a study.

    Attributes:
        name: unique within the study (used in messages).
        fn: ``fn(config, folder) -> row``, importable by the workers; writes its
            files under ``folder`` (the study's ``--out`` or a worker's temporary
            folder) and ``done`` last.
        config: picklable, small (it goes through the scheduler).
        done: path relative to ``--out`` whose presence marks the run finished.
    """

    name: str
    fn: Callable[[Any, Path], Row]
    config: Any
    done: str


@dataclass
class RunOutput:
    """What a run sends back: its row and, from a worker without our disk, its files."""

    name: str
    row: Row
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class StudyOutcome:
    """The rows of every finished run (earlier ones included) and the failures."""

    rows: list[Row]
    failed: dict[str, str]
    skipped: int


def add_study_arguments(parser: argparse.ArgumentParser, *, jobs_default: str) -> None:
    """Add ``--jobs`` and ``--scheduler`` (one group, every study command)."""
    group = parser.add_argument_group("where the runs go (docs/cluster.md)")
    group.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help=f"worker processes of the embedded local cluster (default {jobs_default})",
    )
    group.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="a running Dask scheduler instead of the local cluster (its workers need "
        "delgrad installed, not our disk)",
    )


def exit_code(command: str, outcome: StudyOutcome) -> int:
    """Report each failed run (one line each, stderr); 1 if any failed, else 0."""
    for name, error in outcome.failed.items():
        print(f"delgrad {command}: run {name} failed: {error}", file=sys.stderr)
    return 1 if outcome.failed else 0


def _scratch() -> str | None:
    """The worker's own scratch folder (``--local-directory``: node-local on a
    cluster, and what a killed worker leaves goes with it), else the temp dir."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


def execute(run: StudyRun, folder: str | None) -> RunOutput:
    """Run on a worker: in ``folder`` (shared disk) or in a temporary folder whose
    files come back in the result."""
    if folder is not None:
        return RunOutput(run.name, run.fn(run.config, Path(folder)))
    with tempfile.TemporaryDirectory(prefix="delgrad-run-", dir=_scratch()) as tmp:
        row = run.fn(run.config, Path(tmp))
        files = {
            p.relative_to(tmp).as_posix(): p.read_bytes()
            for p in sorted(Path(tmp).rglob("*"))
            if p.is_file() and p.name not in NOT_RETURNED
        }
    return RunOutput(run.name, row, files)


def _write(out: Path, run: StudyRun, files: dict[str, bytes]) -> None:
    """The run's files under ``out``, each atomically, ``run.done`` last."""
    for rel in sorted(files, key=lambda r: (r == run.done, r)):
        parts = PurePosixPath(rel).parts
        if not parts or ".." in parts or PurePosixPath(rel).is_absolute():
            raise ParameterError(f"run {run.name} returned a file outside --out: {rel!r}")
        target = out.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, _writer(files[rel]))


def _writer(data: bytes) -> Callable[[BinaryIO], object]:
    return lambda fh: fh.write(data)


def _failure(future: Any) -> str:
    from distributed import KilledWorker

    if future.status == "cancelled":
        return "cancelled by the scheduler"
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        return "its worker died each time it ran (a crash or out of memory?)"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _load_json(run: StudyRun, path: Path) -> Row | None:
    loaded: Row = json.loads(path.read_text())
    return loaded


def run_study(
    runs: Sequence[StudyRun],
    out: Path,
    *,
    label: str,
    describe: Callable[[Row], str],
    scheduler: str | None = None,
    jobs: int | None = None,
    load_done: Callable[[StudyRun, Path], Row | None] = _load_json,
    stream: TextIO | None = None,
    timeout_s: float = 4.0,
) -> StudyOutcome:
    """Run (or finish) a study into ``out``.

    Args:
        runs: the runs, names unique.
        label: the progress bar's title.
        describe: one line for a finished run's row.
        scheduler: ``tcp://HOST:PORT`` of a running scheduler (None: the embedded
            local cluster of ``jobs`` processes, default one per core, never more
            than runs to do).
        load_done: the row of a run whose ``done`` file exists, or None to run it
            again (default: the file's JSON).
        stream: where progress goes (default stdout).
        timeout_s: bound on reaching ``scheduler``.

    Raises:
        TransportError: the scheduler cannot be reached or is incompatible.
        KeyboardInterrupt: Ctrl-C; the runs in progress are stopped first.
    """
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ParameterError(f"{label}: run names repeat")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    todo: list[StudyRun] = []
    for run in runs:
        done = out / run.done
        row = load_done(run, done) if done.is_file() else None
        if row is None:
            todo.append(run)
        else:
            rows.append(row)
    failed: dict[str, str] = {}
    total = len(runs)
    with StudyProgress(label, total, len(rows), stream=stream) as progress:
        if rows:
            progress.line(f"{label}: {len(rows)} of {total} runs already done in {out}")
        if not todo:
            return StudyOutcome(rows, failed, len(rows))
        workers = min(jobs, len(todo)) if jobs else None
        if scheduler is None and workers is None:
            workers = min(os.cpu_count() or 1, len(todo))
        from distributed import as_completed

        with open_cluster(scheduler, workers, timeout_s=timeout_s) as cluster:
            folder = str(out.resolve()) if cluster.shared_disk else None
            futures = [
                cluster.client.submit(execute, run, folder, pure=False, retries=0) for run in todo
            ]
            by_key = {future.key: run for future, run in zip(futures, todo, strict=True)}
            for future in as_completed(futures):
                run = by_key[future.key]
                if future.status != "finished":
                    failed[run.name] = _failure(future)
                    progress.line(f"{run.name}: failed: {failed[run.name]}", advance=True)
                    future.release()
                    continue
                output: RunOutput = future.result()
                future.release()  # the worker may drop the bytes now
                _write(out, run, output.files)
                rows.append(output.row)
                progress.line(describe(output.row), advance=True)
    return StudyOutcome(rows, failed, total - len(todo))
