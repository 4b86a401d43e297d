"""One tenant cannot knock a device off the broker or pose as a device (issue 25).

A real Mosquitto started from what ``delgrad acl --out`` writes (its configuration
loaded through ``include_dir``, as Debian's main file does), with its own CA and
passwords. The attacks of the issue: a sensor account connecting five times with a
device's client ids, and publishing a status and metrics under its own name; the
device must see no disconnect and the operator's monitor no such device, while
``delgrad run``, ``sensor``, ``monitor`` and ``cmd`` work side by side.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from delgrad.protocols import (
    Metrics,
    ProtocolError,
    Publisher,
    Status,
    TopicKind,
    decode,
    parse_topic,
    subscription,
    topic,
    transport_from_url,
)
from delgrad.runtime.service import run_config_from_dict
from delgrad.tools import Mosquitto, mosquitto_binary
from delgrad.tools._acl import ACL_NAME, CONF_NAME
from delgrad.tools._cli import main
from delgrad.tools._run_app import device_client_id

from .._pki import make_pki, tls_url, write_passwords
from ._e2e_helpers import DELGRAD, RuntimeProcess, processes_fixture  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = [
    "--devices", "devA", "devB",
    "--operators", "ops", "ops-watch", "observer",
    "--sensors", "devA:sensor-devA", "devB:sensor-devB",
]  # fmt: skip
PASSWORDS = {
    name: f"{name}-pw"
    for name in ("devA", "devB", "ops", "ops-watch", "observer", "sensor-devA", "sensor-devB")
}


@dataclass
class Recipe:
    broker: Mosquitto
    pki: Path
    folder: Path  # what delgrad acl --out wrote

    def url(self, user: str) -> str:
        # Any certificate of the CA passes require_certificate; the account is the
        # MQTT user name (as in the recipe: use_identity_as_username is not set).
        return tls_url(self.broker.port, user, PASSWORDS[user], self.pki, cert="dev1")


@pytest.fixture
def recipe(tmp_path: Path) -> Iterator[Recipe]:
    """Mosquitto from the generated recipe: its main file only ``include_dir``s it."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto not installed")
    pki = make_pki(tmp_path / "pki")
    broker = Mosquitto(tmp_path, binary=binary)
    # Started as root, mosquitto drops to the 'mosquitto' user (rather than being told
    # 'user root', which it warns about): the recipe goes where that user can read it.
    folder = Path(tempfile.mkdtemp(prefix="delgrad-acl-"))
    try:
        argv = ["acl", *ACCOUNTS, "--port", str(broker.port), "--bind", "127.0.0.1"]
        assert main([*argv, "--out", str(folder)]) == 0
        for name in ("ca.pem", "broker.pem", "broker.key"):
            shutil.copy(pki / name, folder / name)
        write_passwords(folder / "delgrad.passwd", PASSWORDS)
        if os.geteuid() == 0:
            for path in (folder, *folder.iterdir()):
                shutil.chown(path, "mosquitto", "mosquitto")
        broker.conf.write_text(f"include_dir {folder}\n")
        broker.start()
        try:
            yield Recipe(broker, pki, folder)
        finally:
            broker.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- the generator ----------------------------------------------------------------------


def test_acl_gives_device_rights_to_device_accounts_only(capsys) -> None:
    assert main(["acl", *ACCOUNTS]) == 0
    text = capsys.readouterr().out
    rules = re.sub(r"#.*\n", "", text)
    blocks = {b.split("\n", 1)[0]: b for b in re.split(r"^user ", rules, flags=re.M)[1:]}
    assert "pattern" not in rules  # a pattern line applies to every user
    assert set(blocks) == {"devA", "devB", "ops", "ops-watch", "observer", "sensor-devA",
                           "sensor-devB"}  # fmt: skip
    for name, block in blocks.items():
        status_writers = re.findall(r"^topic write delgrad/v1/([^/]+)/status$", block, re.M)
        assert status_writers == ([name] if name.startswith("dev") else []), name
    assert "topic write delgrad/v1/devA/labels" in blocks["sensor-devA"]
    assert "devB" not in blocks["sensor-devA"]
    assert "topic write delgrad/v1/+/cmd/+" in blocks["ops"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "d1", "--sensors", "d2:s1"], "sensor 's1' feeds 'd2', which is not among"),
        (["--devices", "d1", "--operators", "d1"], "'d1' is both device and operator"),
        (["--devices", "d1", "d1"], "'d1' is given twice"),
        (["--devices", "d/1"], "device name 'd/1' is not valid"),
        (["--devices", "d1", "--sensors", "s1"], "--sensors takes DEVICE:ACCOUNT"),
    ],
)
def test_bad_accounts_are_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(["acl", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_device_client_id_is_its_user_name_by_default() -> None:
    def client_id(broker: dict[str, str]) -> str:
        config = run_config_from_dict({"device": "devB", "broker": broker})
        return device_client_id(config, broker.get("url") or "mqtt://127.0.0.1:1883")

    assert client_id({"url": "mqtts://devB:pw@broker.lan:8883"}) == "devB"
    assert client_id({"url": "mqtt://broker.lan"}) == "delgrad-run-devB"
    assert client_id({"url": "mqtt://robots@broker.lan"}) == "delgrad-run-devB"  # shared
    assert client_id({"url": "mqtt://devB@h", "client_id": "mine"}) == "mine"


def test_the_deploy_files_are_what_the_command_writes(tmp_path: Path) -> None:
    argv = ["--devices", "dev1", "--operators", "operator", "--sensors", "dev1:sensor-dev1"]
    assert main(["acl", *argv, "--etc", "/etc/mosquitto/conf.d", "--out", str(tmp_path)]) == 0
    for name in (ACL_NAME, CONF_NAME):
        assert (REPO / "docs" / "deploy" / name).read_text() == (tmp_path / name).read_text()


def test_the_recipe_starts_mosquitto_without_a_warning(recipe: Recipe) -> None:
    deadline = time.monotonic() + 10  # the port may open before the line is written
    while "running" not in (log := recipe.broker.log.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    # start-up only: later lines are clients (the fixture's own port probe logs an
    # SSL end-of-file when it closes without a handshake)
    startup = log[: log.index("running")]
    assert not re.search(r"warning|error", startup, re.I), log
    # the listener option under the listener: no plain default listener on 1883
    assert re.findall(r"listen socket on port (\d+)", log) == [str(recipe.broker.port)], log


# ---- the attacks ------------------------------------------------------------------------


async def _collect(transport, seen: list[tuple[str, object]]) -> None:
    while True:
        msg = await transport.recv()
        try:
            seen.append((msg.topic, decode(msg.payload).message))
        except ProtocolError:
            continue


async def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_sensor_can_neither_take_a_device_id_nor_pose_as_a_device(
    recipe: Recipe, processes
) -> None:
    device = RuntimeProcess(processes, recipe.url("devB"), "devB")
    seen: list[tuple[str, object]] = []

    def of(device_id: str, kind: TopicKind) -> list:
        return [m for t, m in seen if parse_topic(t).device == device_id and t.endswith(kind)]

    def reconnects() -> float:
        metrics = of("devB", TopicKind.METRICS)
        return metrics[-1].values["transport.reconnects"] if metrics else -1.0

    async with transport_from_url(recipe.url("observer"), client_id="observer") as observer:
        for kind in (TopicKind.STATUS, TopicKind.METRICS):
            await observer.subscribe(subscription("+", kind), qos=1)
        collector = asyncio.create_task(_collect(observer, seen))
        device.start()
        await _wait(lambda: reconnects() >= 0, 90, "devB's metrics")
        watch, watch_log = processes.spawn(
            [*DELGRAD, "monitor", "--broker", recipe.url("ops-watch"), "--plain",
             "--metrics-only", "--duration", "120"],
            "monitor",
        )  # fmt: skip
        feed, _ = processes.spawn(
            [*DELGRAD, "sensor", "--broker", recipe.url("sensor-devB"), "--device", "devB",
             "--rate", "200", "--duration", "8"],
            "sensor",
        )  # fmt: skip
        await asyncio.sleep(2.0)  # the monitor is up and has seen devB
        for attempt in range(5):
            # the device's id now (its user name) and its id before (delgrad-run-devB)
            client_id = ("devB", "delgrad-run-devB")[attempt % 2]
            async with transport_from_url(
                recipe.url("sensor-devA"), client_id=client_id, timeout_s=5
            ) as intruder:
                pose = Publisher(intruder, "sensor-devA")
                await pose.publish(topic("sensor-devA", "status"), Status("alive", 1.0, ""))
                await pose.publish(topic("sensor-devA", "metrics"), Metrics(1, {"accuracy": 1.0}))
                await asyncio.sleep(0.3)
        # an operator runs delgrad cmd while its monitor runs (one account each)
        cmd = await asyncio.to_thread(
            subprocess.run,
            [*DELGRAD, "cmd", "devB", "status", "--broker", recipe.url("ops")],
            capture_output=True, text=True, timeout=60, cwd=processes.workdir,
        )  # fmt: skip
        assert cmd.returncode == 0 and "devB status: ok" in cmd.stdout, cmd.stdout + cmd.stderr
        assert watch.poll() is None  # the monitor ran all along
        await asyncio.sleep(2.5)  # more than two metrics periods after the last attempt
        device.assert_running()
        lost = [s for s in of("devB", TopicKind.STATUS) if s.state == "lost"]
        births = [s for s in of("devB", TopicKind.STATUS) if s.state == "birth"]
        print(f"devB: {len(lost)} lost, {len(births)} birth, reconnects {reconnects()}")
        assert (len(lost), len(births), reconnects()) == (0, 1, 0.0)
        assert not [t for t, _ in seen if "sensor-devA" in t]  # the ACL dropped both
        watch.terminate()  # SIGTERM: the monitor's normal end, exit 0
        await asyncio.to_thread(watch.wait, 30)
        assert await asyncio.to_thread(feed.wait, 30) == 0
        assert of("devB", TopicKind.METRICS)[-1].values["trials.received"] > 0  # fed as sensor-devB
        collector.cancel()
    shown = watch_log.read_text()
    assert watch.returncode == 0 and " devB " in shown, shown
    assert "sensor-devA" not in shown and "link lost" not in shown, shown
    log = recipe.broker.log.read_text()
    # each attempt was let in under the account's own id, none took the device's
    assert log.count("as sensor-devA ") >= 5 and "already connected" not in log, log
