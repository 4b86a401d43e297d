"""Studies on a real Dask cluster: ``dask scheduler`` and two ``dask worker`` processes
on loopback, ``delgrad sweep --scheduler`` against them through the real entry point.

The workers run in temporary folders of their own and never see the client's
``--out``: every artifact reaches it through the results. Runs are tiny (H5, a few
epochs) so the whole file takes well under a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from delgrad.tools import free_port

from ._e2e_helpers import DELGRAD, Processes, _kill_group

DASK = Path(sys.executable).with_name("dask")
SMALL = ["--hidden", "5", "--delays", "none", "axonal", "--seeds", "0", "1", "--epochs", "2"]
NO_UI = ["--no-dashboard"]
ONE_THREAD = ["--nthreads", "1", "--nworkers", "1"]
RUNS = ["none_H5_seed0", "none_H5_seed1", "axonal_H5_seed0", "axonal_H5_seed1"]

pytestmark = pytest.mark.skipif(not DASK.is_file(), reason="the dask CLI is not installed")


class DaskCluster:
    """A scheduler and ``n`` workers, each worker in its own process group and folder."""

    def __init__(self, root: Path, n: int) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.owner = Processes(root)
        self.owner.spawn(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), *NO_UI],
            "scheduler",
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        self.folders: list[Path] = []
        for i in range(n):
            folder = root / f"worker{i}"  # its working directory: no --out in sight
            folder.mkdir()
            with open(root / f"worker{i}.log", "ab") as log:
                argv = [str(DASK), "worker", self.address, *ONE_THREAD, *NO_UI]
                proc = subprocess.Popen(
                    [*argv, "--name", f"w{i}", "--local-directory", str(folder)],
                    cwd=folder,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.owner.procs.append(proc)
            self.workers.append(proc)
            self.folders.append(folder)
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    found = DaskCluster(tmp_path_factory.mktemp("dask"), 2)
    try:
        yield found
    finally:
        found.owner.cleanup()


def _sweep(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DELGRAD, "sweep", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    for key in ("test_accuracy", "validation_accuracy", "epochs", "n_trainable", "config"):
        assert ra[key] == rb[key], (a.name, key)
    timing = {"seconds", "samples_per_s"}  # the only figures that may differ
    assert {k: v for k, v in ra["curves"].items() if k not in timing} == {
        k: v for k, v in rb["curves"].items() if k not in timing
    }
    with np.load(a / "network.npz") as na, np.load(b / "network.npz") as nb:
        assert sorted(na.files) == sorted(nb.files)
        for key in na.files:
            assert np.array_equal(na[key], nb[key]), (a.name, key)


def _csv_rows(path: Path) -> list[tuple[str, ...]]:
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    keep = [i for i, name in enumerate(head) if name != "wall_time_s"]
    return [tuple(line.split(",")[i] for i in keep) for line in lines[1:]]


def test_cluster_sweep_equals_the_local_one_and_a_rerun_skips(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    local = _sweep(tmp_path, "--out", "local", "--jobs", "2", *SMALL)
    assert local.returncode == 0, local.stderr
    remote = _sweep(tmp_path, "--out", "remote", "--scheduler", cluster.address, *SMALL)
    assert remote.returncode == 0, remote.stderr
    assert remote.stderr == ""
    for run in RUNS:
        # every artifact delivered to the client, the resume aid kept on the worker
        assert {p.name for p in (tmp_path / "remote" / run).iterdir()} == {
            "results.json",
            "network.npz",
        }
        _same_run(tmp_path / "local" / run, tmp_path / "remote" / run)
    assert _csv_rows(tmp_path / "local" / "sweep.csv") == _csv_rows(tmp_path / "remote/sweep.csv")
    assert len(_csv_rows(tmp_path / "remote" / "sweep.csv")) == len(RUNS)
    for folder in cluster.folders:  # nothing landed where the workers run
        assert not list(folder.rglob("results.json")) and not list(folder.rglob("*.npz"))

    # a rerun skips the finished runs and runs only the missing one
    kept = (tmp_path / "remote" / RUNS[0] / "results.json").stat().st_mtime_ns
    for p in (tmp_path / "remote" / RUNS[3]).iterdir():
        p.unlink()
    again = _sweep(tmp_path, "--out", "remote", "--scheduler", cluster.address, *SMALL)
    assert again.returncode == 0, again.stderr
    assert "3 of 4 runs already done" in again.stdout
    done_lines = [line for line in again.stdout.splitlines() if line.startswith("[")]
    assert len(done_lines) == 1 and "axonal H5   seed 1" in done_lines[0], again.stdout
    assert (tmp_path / "remote" / RUNS[0] / "results.json").stat().st_mtime_ns == kept
    _same_run(tmp_path / "local" / RUNS[3], tmp_path / "remote" / RUNS[3])


def test_a_bad_run_fails_once_and_the_study_goes_on(cluster: DaskCluster, tmp_path: Path) -> None:
    args = ["--hidden", "0", "5", "--delays", "none", "--seeds", "0", "--epochs", "1"]
    done = _sweep(tmp_path, "--out", "out", "--scheduler", cluster.address, *args)
    assert done.returncode == 1, done.stderr
    failed = "run none_H0_seed0 failed: ConfigError: network.hidden sizes must be >= 1"
    assert done.stderr.count(failed) == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert (tmp_path / "out" / "none_H5_seed0" / "results.json").is_file()
    assert len(_csv_rows(tmp_path / "out" / "sweep.csv")) == 1


def _busy_worker(cluster: DaskCluster) -> int:
    """The index of a worker with a run in hand now (its processing set, asked of the
    scheduler)."""
    from distributed import Client

    with Client(cluster.address, timeout=10) as client:
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [names[a] for a, keys in client.processing().items() if keys and a in names]
            if busy:
                return int(str(busy[0]).lstrip("w"))
            time.sleep(0.05)
    raise AssertionError("no worker was running a task")


def test_a_worker_killed_mid_study_loses_no_run_and_duplicates_none(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    # the last test of the shared cluster: it leaves it one worker
    args = ["--hidden", "5", "--delays", "none", "axonal", "dendritic", "--seeds", "0", "1"]
    proc = subprocess.Popen(
        [*DELGRAD, "sweep", "--out", "out", "--scheduler", cluster.address, *args, "--epochs", "3"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one run is done, five to go
        assert first.startswith("[1/6]"), first + (proc.stderr.read() if proc.stderr else "")
        victim = _busy_worker(cluster)
        _kill_group(cluster.workers[victim])  # nanny and worker, mid-run, no goodbye
        rest, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [first, *rest.splitlines()]
    assert len([line for line in lines if line.startswith("[")]) == 6, rest
    rows = _csv_rows(tmp_path / "out" / "sweep.csv")
    assert len(rows) == 6 and len({row[:3] for row in rows}) == 6, rows
    names = {p.name for p in (tmp_path / "out").iterdir() if p.is_dir()}
    assert len(names) == 6
    assert all((tmp_path / "out" / n / "network.npz").is_file() for n in names)


def test_an_unreachable_scheduler_is_one_line_and_exit_3(tmp_path: Path) -> None:
    start = time.monotonic()
    done = _sweep(tmp_path, "--out", "o", "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert time.monotonic() - start < 10
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in done.stderr
    assert "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr


# a scheduler that reports another distributed version (what an old install looks like)
_OLD_SCHEDULER = """
import sys
import distributed.versions as versions
real = versions.get_package_info
versions.get_package_info = lambda pkgs: {**real(pkgs), "distributed": "2023.1.0"}
from distributed.cli.dask_scheduler import main
sys.argv = ["dask-scheduler", "--host", "127.0.0.1", "--port", sys.argv[1], "--no-dashboard"]
main()
"""


def test_a_scheduler_of_another_version_is_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    owner = Processes(tmp_path)
    try:
        owner.spawn([sys.executable, "-c", _OLD_SCHEDULER, str(port)], "old-scheduler")
        deadline = time.monotonic() + 30
        done = None
        while time.monotonic() < deadline:
            done = _sweep(tmp_path, "--out", "o", "--scheduler", f"tcp://127.0.0.1:{port}")
            if "cannot reach" not in done.stderr:  # not up yet
                break
            time.sleep(0.5)
        assert done is not None and done.returncode == 3, done and done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "runs distributed 2023.1.0, this client" in done.stderr, done.stderr
        assert "install the same dask and distributed versions" in done.stderr
    finally:
        owner.cleanup()
