"""The first ten minutes of a new user, through the real entry point (issue 14).

Each test names the friction point it would have caught: the demo that never said
where its broker was, the traceback of a taken port, the exit codes that differed
between commands for the same failure, the checkpoint of another network, the
commands that could not be sent from a shell, ``python -m delgrad``, the version
string, third-party tracebacks, a progress bar in a pipe, and a monitor that did
not fit 80 columns nor follow a device's heartbeat.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from delgrad.protocols import IncomingMessage, Metrics, Status, encode, topic
from delgrad.runtime import Learner, resolve_config
from delgrad.tools import free_port
from delgrad.tools._exit import ExitCode
from delgrad.tools._logging import setup_logging
from delgrad.tools._monitor import MonitorState, render

DELGRAD = [sys.executable, "-m", "delgrad"]
ENV = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}


def delgrad(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DELGRAD, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _as_argv(printed: str) -> list[str]:
    """A command line the demo printed, exactly as printed."""
    return shlex.split(printed)


# ---- python -m delgrad, --version, help -----------------------------------------------


def test_python_dash_m_delgrad_and_the_version_string() -> None:
    out = delgrad("--version")
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        r"delgrad \d+\.\d+\.\d+\S* \(delgrad-runtime; Python 3\.\d+\.\d+; numpy \S+, "
        r"numba \S+, amqtt \S+\)\n",
        out.stdout,
    ), out.stdout
    out = delgrad("--help")
    assert out.returncode == 0 and "exit codes" in out.stdout and "cmd" in out.stdout


# ---- delgrad run: where is the broker, taken port, flags, checkpoints ------------------


def test_demo_prints_broker_and_commands_that_work(tmp_path: Path) -> None:
    """The printed monitor and cmd lines attach and steer; bytes/s of both monitor modes."""
    port = free_port()
    proc = subprocess.Popen(
        [*DELGRAD, "run", "--port", str(port), "--duration", "60", "--demo-rate", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    try:
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 90
        while len(printed) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, proc.stderr.read()  # type: ignore[union-attr]
            key, _, rest = line.strip().partition(" ")
            if key in ("broker", "watch", "steer"):
                printed[key] = rest.strip()
        assert printed["broker"].startswith(f"mqtt://127.0.0.1:{port}")
        # started as `python -m delgrad`: that is what another terminal has to type
        me = f"{sys.executable} -m delgrad"
        watch = printed["watch"]
        assert watch == f"{me} monitor demo --broker mqtt://127.0.0.1:{port}"
        steer = printed["steer"].split("  (")[0]
        assert steer == f"{me} cmd demo pause --broker mqtt://127.0.0.1:{port}"

        paused = subprocess.run(_as_argv(steer), capture_output=True, text=True, timeout=60)
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.startswith("demo pause: ok") and "paused=true" in paused.stdout
        resumed = subprocess.run(
            [*_as_argv(steer.replace(" pause ", " resume ")), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["result"]["paused"] is False
        refused = subprocess.run(
            _as_argv(steer.replace(" pause ", " lr 500 ")), capture_output=True, text=True
        )
        assert refused.returncode == ExitCode.FAILED and "refused" in refused.stderr
        silent = subprocess.run(
            [*_as_argv(steer.replace("demo pause", "nobody status")), "--timeout", "0.5"],
            capture_output=True,
            text=True,
        )
        assert silent.returncode == ExitCode.TIMEOUT and "no reply" in _one_line(silent.stderr)

        rates = {}
        for mode in ("--metrics-only", None):
            argv = [*_as_argv(watch), "--duration", "6", "--plain"]
            out = subprocess.run(
                argv + ([mode] if mode else []), capture_output=True, text=True, timeout=60
            )
            assert out.returncode == 0, out.stderr
            assert re.search(r"demo step=\d+ accuracy=\d+\.\d%", out.stdout), out.stdout
            summary = out.stderr.strip().splitlines()[-1]
            assert "from 1 device (1 alive)" in summary, summary
            rates[mode] = float(re.search(r"\(([\d.]+) KiB/s", summary).group(1))  # type: ignore[union-attr]
        assert rates["--metrics-only"] < rates[None] / 3, rates
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # closes the pipes
    assert proc.returncode == 0, err


def test_taken_port_is_one_line_with_the_remedy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = delgrad("run", "--port", str(port), "--duration", "1")
        alone = delgrad("broker", "--port", str(port))
    assert out.returncode == ExitCode.UNREACHABLE
    line = _one_line(out.stderr)
    assert f"port {port}" in line and "--port" in line and "--broker" in line
    assert alone.returncode == ExitCode.UNREACHABLE
    assert f"port {port}" in _one_line(alone.stderr)


def test_unreachable_broker_has_one_exit_code_in_every_command() -> None:
    port = free_port()  # nothing listens there
    url = f"mqtt://127.0.0.1:{port}"
    for argv in (
        ["run", "--broker", url, "--duration", "1", "--plain"],
        ["monitor", "--broker", url, "--duration", "1"],
        ["sensor", "--broker", url, "--count", "10"],
        ["cmd", "demo", "status", "--broker", url],
    ):
        out = delgrad(*argv)
        assert out.returncode == ExitCode.UNREACHABLE, (argv, out.stderr)
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--set", "nonsense"], "section.key=value"),
        (["--set", "learning.lr_scale=-1"], "lr_scale"),
        (["--recipe", "no_such_recipe"], "no_such_recipe"),
        (["--driver", "gpu"], "driver.name"),
        (["--device", "a/b"], "device"),
        (["--broker", "http://x"], "scheme"),
    ],
)
def test_run_flags_are_checked_in_one_line(argv: list[str], match: str) -> None:
    out = delgrad("run", "--duration", "1", *argv)
    assert out.returncode == ExitCode.USAGE
    assert match in _one_line(out.stderr)


def _checkpoint_of(recipe: str, folder: Path) -> Path:
    arrays = Learner(resolve_config(recipe)).state_arrays()
    service = {"param_seq": 1, "steps": 1, "bumps": 0, "counters": {}, "mode": "train"}
    arrays["service"] = np.frombuffer(json.dumps(service).encode(), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "service_checkpoint.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_checkpoint_of_another_network_is_one_line_and_fresh_starts_over(tmp_path) -> None:
    folder = tmp_path / "ck"
    _checkpoint_of("yinyang_H5_WS", folder)
    base = ["run", "--port", "0", "--set", f"checkpoint.dir='{folder}'", "--demo-rate", "0"]
    out = delgrad(*base, "--duration", "1")
    assert out.returncode == ExitCode.USAGE
    line = _one_line(out.stderr)
    assert "4-5-3 synaptic in the checkpoint" in line and "4-30-3 synaptic" in line
    assert "--fresh" in line
    out = delgrad(*base, "--duration", "1", "--fresh", "--plain")
    assert out.returncode == 0, out.stderr
    assert list(folder.glob("replaced-*/service_checkpoint.npz"))
    # the default log level shows delgrad's INFO lines, as plain lines in a pipe
    assert re.search(r"^\S+ \S+ INFO delgrad.tools.run: starting device 'demo'", out.stderr, re.M)
    assert "--fresh: moved the old checkpoints" in out.stderr
    _checkpoint_of("yinyang_H30_WS", folder)  # the same network: no complaint
    out = delgrad("-q", *base, "--duration", "1", "--plain")  # -q before the command
    assert out.returncode == 0, out.stderr
    assert " INFO " not in out.stderr


# ---- logging and plain output ---------------------------------------------------------


def test_third_party_errors_go_through_one_handler_without_traceback() -> None:
    stream = io.StringIO()
    setup_logging(0, stream=stream)
    try:
        raise OSError("address already in use")
    except OSError:
        logging.getLogger("amqtt.broker").exception("Broker startup failed")
    logging.getLogger("amqtt.broker").info("chatter")
    logging.getLogger("delgrad.tools.x").info("ours")
    text = stream.getvalue()
    assert "Broker startup failed" in text and "Traceback" not in text
    assert "chatter" not in text and "ours" in text
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR amqtt.broker: ", text)
    stream = io.StringIO()
    setup_logging(1, stream=stream)
    try:
        raise OSError("address already in use")
    except OSError:
        logging.getLogger("amqtt.broker").exception("Broker startup failed")
    assert "Traceback" in stream.getvalue()
    setup_logging(-1, stream=io.StringIO())
    assert logging.getLogger("delgrad").level == logging.WARNING
    setup_logging(level="ERROR", stream=io.StringIO())
    assert logging.getLogger("delgrad").level == logging.ERROR
    logging.getLogger().handlers.clear()


def test_train_in_a_pipe_prints_plain_lines(tmp_path) -> None:
    out = delgrad(
        "train",
        "yinyang_H30_W",
        "--no-plots",
        "--out",
        str(tmp_path),
        *("--set", "data.train_size=300", "--set", "data.validation_size=100"),
        *("--set", "data.test_size=100", "--set", "network.hidden=[8]"),
        *("--set", "training.epochs=3", "--set", "training.batch_size=50"),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout + out.stderr
    assert re.search(r"^epoch +1/3 +loss", out.stdout, re.M), out.stdout
    assert re.search(r"^epoch +3/3 ", out.stdout, re.M), out.stdout
    assert max(len(line) for line in out.stdout.splitlines() if line.startswith("epoch")) <= 80
    assert "test accuracy" in out.stdout


# ---- the monitor: 80 columns, 20 devices, heartbeats -----------------------------------


def _feed(state: MonitorState, device: str, kind: str, msg, now: float, seq: int = 0) -> None:
    t = topic(device, kind)
    state.feed(IncomingMessage(t, encode(msg, seq=seq, sender=device), 1, False), now)


def _beat(n: int, period: float | None = None) -> str:
    detail = {"network": "4-30-3", "mode": "train", "heartbeat": n}
    if period is not None:
        detail["heartbeat_period_s"] = period
    return json.dumps(detail)


def test_twenty_devices_fit_80_columns_and_are_counted_once() -> None:
    state = MonitorState()
    now = 1000.0
    values = {"accuracy": 0.9234, "loss": 0.01234, "samples_per_s": 5012.0}
    values |= {"latency.p99_ms": 12.3, "join.expired": 0.0, "bytes_published_per_s": 1e5}
    for i in range(20):
        name = f"edge-device-{i:02d}"
        _feed(state, name, "status", Status("alive", 1.0, _beat(1)), now)
        _feed(state, name, "metrics", Metrics(100 + i, values), now, seq=i)
    _feed(state, "edge-device-00", "status", Status("alive", 9.0, _beat(2)), now)  # twice
    console = Console(width=80, record=True, color_system=None)
    console.print(render(state, now + 1))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    header = next(line for line in lines if "device" in line and "status" in line)
    for column in ("device", "status", "acc %", "loss", "trials/s", "p99 ms"):
        assert column in header, header
    assert "…" not in header and "..." not in header
    for i in range(20):
        assert sum(f"edge-device-{i:02d} " in line for line in lines) == 1
    assert text.count("92.3") == 20 and "0.9234" not in text
    assert "20 devices (20 alive)" in text
    assert "(parameters of" not in text  # no snapshots: nothing to summarise


def test_status_follows_the_heartbeat_and_turns_stale_after_three_missed() -> None:
    state = MonitorState()
    _feed(state, "d", "status", Status("birth", 0.0, _beat(0, period=2.0)), 100.0)
    _feed(state, "d", "metrics", Metrics(1, {"accuracy": 0.5}), 101.0)
    view = state.devices["d"]
    assert view.shown_state(102.0) == "alive"  # metrics after the birth
    _feed(state, "d", "status", Status("alive", 5.0, _beat(1, period=2.0)), 105.0)
    assert view.heartbeat == 1 and view.heartbeat_period_s == 2.0
    assert view.shown_state(110.9) == "alive"
    assert view.shown_state(111.1) == "stale"  # 3 x 2 s without a message
    _feed(state, "d", "status", Status("alive", 12.0, _beat(2, period=2.0)), 112.0)
    assert view.shown_state(112.5) == "alive"
    assert state.summary(112.5) == "1 device (1 alive)"
    _feed(state, "e", "status", Status("alive", 1.0, "not json"), 112.0)  # older services
    assert state.devices["e"].heartbeat_period_s == 5.0
    assert state.devices["e"].shown_state(127.5) == "stale"
    _feed(state, "e", "status", Status("lost", 1.0, ""), 130.0)
    assert state.summary(131.0) == "2 devices (1 lost, 1 stale)"


# ---- delgrad plot ----------------------------------------------------------------------


def _recording(path: Path) -> Path:
    rows = [{"time_s": 1e9, "device": "demo", "kind": "status", "state": "alive"}]
    for i in range(30):
        values = {"bytes_published_per_s": 1e5, "join.expired": 0.0, "join.pending": 0.0}
        values |= {"join.matched": float(i), "join.unmatched": 0.0, "join.late": 0.0}
        values |= {"accuracy": 0.5 + i / 100, "loss": 1.0 / (i + 1), "samples_per_s": 5000.0}
        values |= {"latency.p50_ms": 2.0, "latency.p99_ms": 9.0}
        rows.append(
            {"time_s": 1e9 + 2 * i, "device": "demo", "kind": "metrics", "step": i, **values}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_draws_accuracy_loss_throughput_latency_with_a_title(
    tmp_path, capsys, monkeypatch
) -> None:
    import delgrad.tools._cmd_plot as cmd_plot
    from delgrad.tools._cli import main

    drawn: dict[str, object] = {}
    real = cmd_plot.plot_panels

    def spy(path, panels, *, title, from_zero=()):
        drawn.update(panels=panels, title=title, from_zero=from_zero)
        return real(path, panels, title=title, from_zero=from_zero)

    monkeypatch.setattr(cmd_plot, "plot_panels", spy)
    rec = _recording(tmp_path / "rec.jsonl")
    assert main(["plot", str(rec)]) == 0
    assert (tmp_path / "rec.png").read_bytes()[:4] == b"\x89PNG"
    panels = drawn["panels"]
    assert [p[0] for p in panels] == ["prequential accuracy", "loss", "throughput", "latency"]
    accuracy = panels[0][2][0][2]
    assert panels[0][1] == "%" and accuracy[0] == pytest.approx(50.0)  # percent, not 0.5
    assert len(panels[3][2]) == 2  # p50 and p99
    assert set(drawn["from_zero"]) == {"throughput", "latency"}  # rates and times from 0
    title = str(drawn["title"])
    assert "demo" in title and "rec.jsonl" in title and "(58 s)" in title
    assert main(["plot", str(rec), "--metrics", "join.*,accuracy"]) == 0
    assert [p[0] for p in drawn["panels"]][-1] == "accuracy"
    assert len(drawn["panels"]) == 6
    capsys.readouterr()
    assert main(["plot", str(rec), "--metrics", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no metric 'nope'" in _one_line(err) and "accuracy" in err


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "no metrics"),
        ('{"time_s": 1, "device": "d", "kind": "status", "state": "alive"}\n', "no metrics"),
        ("\x00\x01garbage\n", "not valid JSON"),
    ],
)
def test_plot_of_an_empty_or_unreadable_recording_is_an_error(tmp_path, content, match) -> None:
    rec = tmp_path / "rec.jsonl"
    rec.write_text(content + "\n")
    out = delgrad("plot", str(rec))
    assert out.returncode == ExitCode.USAGE
    assert match in _one_line(out.stderr)
    assert not (tmp_path / "rec.png").exists()


# ---- delgrad bench: a table by default, JSON keys with units ----------------------------


def test_bench_results_name_their_units_and_print_as_a_table() -> None:
    from delgrad.tools._cmd_bench import UNITS, table, with_units

    core = {"ratio_2": {"forward_per_s": 51836, "forward_backward_per_s": 45056}}
    protocol = {"delta_int8": {"bytes": 760, "encode_mb_per_s": 30.25}, "params": 420}
    drivers = {"ideal": {"batch_40_per_s": 124971, "batch_1000_per_s": 58796}}
    for what, result in (("core", core), ("protocol", protocol), ("drivers", drivers)):
        renamed = with_units(result, what)

        def leaves(d, out):
            for k, v in d.items():
                leaves(v, out) if isinstance(v, dict) else out.append(k)
            return out

        for key in leaves(renamed, []):
            assert key.endswith(tuple(s for s, _ in UNITS)), key
    text = table(with_units(core, "core"), "bench core")
    assert text.splitlines()[1].split() == ["measure", "value", "unit"]
    assert "ratio 2 / forward" in text and "51,836  samples/s" in text


# ---- the broker options shared by run, monitor, sensor and cmd --------------------------


def test_broker_options_fold_into_the_url() -> None:
    import argparse

    from delgrad.tools._broker_opts import add_broker_arguments, broker_url

    parser = argparse.ArgumentParser()
    add_broker_arguments(parser, default="mqtt://127.0.0.1:1883")
    assert broker_url(parser.parse_args([])) == "mqtt://127.0.0.1:1883"
    args = parser.parse_args(
        ["--broker", "mqtt://h:1884", "--username", "op@lab", "--tls-ca", "/c/ca.pem"]
    )
    assert broker_url(args) == "mqtts://op%40lab@h:1884?ca=%2Fc%2Fca.pem"
    args = parser.parse_args(
        ["--broker", "mqtts://h", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-insecure"]
    )
    assert broker_url(args) == "mqtts://h?cert=c.pem&key=k.pem&insecure=1"
    for command in ("run", "monitor", "sensor", "cmd"):
        out = delgrad(command, "--help")
        for flag in ("--broker", "--username", "--tls-ca", "--tls-cert", "--tls-key"):
            assert flag in out.stdout, (command, flag)


def test_live_panel_shows_where_to_attach(monkeypatch) -> None:
    from types import SimpleNamespace

    from delgrad.runtime.service import run_config_from_dict
    from delgrad.tools import _cmd_run

    # a long install path (CI clones deep): the commands must still print whole
    me = "/a/rather/deep/checkout/of/delgrad-runtime/.venv/bin/python -m delgrad"
    monkeypatch.setattr(_cmd_run, "command_prefix", lambda: me)
    config = run_config_from_dict({"device": "lab1", "broker": {"embedded_port": 0}})
    service = SimpleNamespace(
        last_metrics={"accuracy": 0.912, "samples_per_s": 5000.0},
        device="lab1",
        config=config,
        mode="train",
        paused=False,
        transport=SimpleNamespace(port=40123),
    )
    console = Console(width=60, record=True, color_system=None)
    console.print(_cmd_run._table(service))  # type: ignore[arg-type]
    console.print(_cmd_run.attach_text(config, service), soft_wrap=True)  # type: ignore[arg-type]
    lines = console.export_text().splitlines()
    assert any("91.2 %" in line for line in lines)
    assert any("5,000" in line for line in lines)
    assert f"watch  {me} monitor lab1 --broker mqtt://127.0.0.1:40123" in lines
    assert f"steer  {me} cmd lab1 pause --broker mqtt://127.0.0.1:40123" in lines
    assert "broker mqtt://127.0.0.1:40123 (embedded, this machine only)" in lines


def test_printed_commands_work_from_another_terminal(tmp_path, monkeypatch) -> None:
    from delgrad.tools._cmd_run import command_prefix

    script = tmp_path / "venv" / "bin" / "delgrad"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # not on PATH: the absolute path
    assert command_prefix("venv/bin/delgrad", "/py") == str(script)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin")  # on PATH: the name
    assert command_prefix("venv/bin/delgrad", "/py") == "delgrad"
    assert command_prefix("/x/delgrad/__main__.py", "/opt/py 3/python") == (
        "'/opt/py 3/python' -m delgrad"
    )


def test_the_parameter_stream_becomes_a_network_file(tmp_path) -> None:
    from delgrad.protocols import DeltaEncoder
    from delgrad.protocols import NeuronParams as WireNeuron
    from delgrad.runtime import forward, load_network, save_network
    from delgrad.tools._monitor import replica_network

    rng = np.random.default_rng(0)
    layers = [
        {"w": rng.normal(1, 1, (4, 30)), "d": rng.uniform(0, 1, (4, 30))},
        {"w": rng.normal(1, 1, (30, 3)), "d": rng.uniform(0, 1, (30, 3))},
    ]
    enc = DeltaEncoder(layers, seq=5, encoding="float32")
    snap = enc.snapshot(
        layer_sizes=(4, 30, 3),
        neuron=WireNeuron(tau_s=1.0, tau_m=2.0, theta=1.0),
        delay_kinds=("synaptic", "synaptic"),
    )
    state = MonitorState()
    t = topic("dev", "params/latest")
    state.feed(IncomingMessage(t, encode(snap, seq=0, sender="dev"), 1, True), 1.0)
    net = replica_network(state.devices["dev"].replica)
    save_network(net, tmp_path / "net.npz")
    back = load_network(tmp_path / "net.npz")
    np.testing.assert_array_equal(back.w[0], layers[0]["w"].astype(np.float32))
    assert [ly.delay for ly in back.layers] == ["synaptic", "synaptic"]
    assert np.isfinite(forward(back, rng.uniform(0, 2, (5, 4)))[-1]).any()
    out = delgrad("monitor", "+", "--save-network", str(tmp_path / "x.npz"), "--duration", "1")
    assert out.returncode == ExitCode.USAGE and "--save-network" in _one_line(out.stderr)


async def test_twenty_simulated_devices_on_one_bus_stay_readable() -> None:
    """Twenty devices publish status, snapshots and metrics on one bus; the monitor's
    loop takes them all in and its view still fits 80 columns, each device once."""
    from delgrad.protocols import DeltaEncoder, InProcessBus, Publisher
    from delgrad.protocols import NeuronParams as WireNeuron
    from delgrad.tools._monitor import monitor

    rng = np.random.default_rng(0)
    bus = InProcessBus()
    state = MonitorState()
    stop = asyncio.Event()

    def on_update(st: MonitorState, record) -> None:
        if len(st.devices) == 20 and all(v.step == 3 for v in st.devices.values()):
            stop.set()

    async with bus.transport("mon") as mon:
        task = asyncio.create_task(
            monitor(mon, "+", on_update=on_update, stop=stop, state=state, clock=lambda: 50.0)
        )
        await asyncio.sleep(0.05)
        for i in range(20):
            name = f"sim-{i:02d}"
            async with bus.transport(name) as tr:
                pub = Publisher(tr, name)
                await pub.publish(topic(name, "status"), Status("alive", 1.0, _beat(1)))
                layers = [{"w": rng.normal(size=(4, 30))}, {"w": rng.normal(size=(30, 3))}]
                snap = DeltaEncoder(layers).snapshot(
                    layer_sizes=(4, 30, 3), neuron=WireNeuron(), delay_kinds=("none", "none")
                )
                await pub.publish(topic(name, "params/latest"), snap)
                for step in range(4):
                    values = {"accuracy": 0.5 + i / 50, "loss": 0.1, "samples_per_s": 4990.0}
                    await pub.publish(topic(name, "metrics"), Metrics(step, values))
        await asyncio.wait_for(task, 10)
    console = Console(width=80, record=True, color_system=None)
    console.print(render(state, 51.0))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    devices_table = text.split("\nparameters")[0].splitlines()
    for i in range(20):
        assert sum(f"sim-{i:02d} " in line for line in devices_table) == 1, i
    assert "20 devices (20 alive)" in text
    assert "(parameters of 17 more devices: delgrad monitor DEVICE)" in text


def test_a_run_that_fails_in_a_study_is_one_line_naming_the_run(tmp_path) -> None:
    """A study reports a failed run (here a bad hidden size) once, with its error and
    no traceback, goes on with the others and exits 1 (issue 21; this test once saw
    the error escape the command as exit 2)."""
    argv = ["sweep", "--hidden", "0", "--delays", "none", "--seeds", "0"]
    out = delgrad(*argv, "--out", str(tmp_path / "sweep"))
    assert out.returncode == ExitCode.FAILED
    line = _one_line(out.stderr)
    assert line.startswith("delgrad sweep: run none_H0_seed0 failed: ConfigError: network.hidden")
    assert "[1/1] none_H0_seed0: failed: ConfigError" in out.stdout
