"""Learning over Mosquitto with TLS (own CA, client certificates) + password + ACL
against plain TCP + password + ACL on the same broker: accuracy and throughput side
by side (issue 10, TLS acceptance; figures in docs/security.md).

    PATH=$PATH:/usr/sbin .venv/bin/python tests/tools/bench_tls.py [RATE [SECONDS]]

Not a test (no ``test_`` prefix); needs mosquitto, mosquitto_passwd and openssl.
"""

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from delgrad.protocols import Metrics, decode, transport_from_url
from delgrad.tools import Mosquitto, free_port
from tests._pki import make_pki

W = Path(tempfile.mkdtemp(prefix="delgrad-tls-"))
RATE = float(sys.argv[1]) if len(sys.argv) > 1 else 5000.0
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
pki = make_pki(W / "pki")
PW = {"dev1": "d1", "sensor-dev1": "s1", "operator": "op"}
passwd = W / "passwd"
passwd.touch()
for u, p in PW.items():
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), u, p], check=True)
m = Mosquitto(W)
tls_port = free_port()
m.conf.write_text(
    "\n".join(
        [
            "user root",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {Path(__file__).resolve().parents[2] / 'docs' / 'deploy' / 'delgrad.acl'}",
            "max_packet_size 16842752",
            "persistence false",
            f"listener {m.port} 127.0.0.1",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {pki / 'ca.pem'}",
            f"certfile {pki / 'broker.pem'}",
            f"keyfile {pki / 'broker.key'}",
            "require_certificate true",
        ]
    )
    + "\n"
)
DELGRAD = [sys.executable, "-m", "delgrad.tools"]


def url(user, tls):
    if not tls:
        return f"mqtt://{user}:{PW[user]}@127.0.0.1:{m.port}"
    cert = "dev1" if user != "operator" else "operator"
    return (
        f"mqtts://{user}:{PW[user]}@127.0.0.1:{tls_port}?ca={pki / 'ca.pem'}"
        f"&cert={pki / (cert + '.pem')}&key={pki / (cert + '.key')}"
    )


async def one(tls, seconds=SECONDS):
    cfg = W / f"run{int(tls)}.toml"
    cfg.write_text(
        f'device = "dev1"\n[broker]\nurl = "{url("dev1", tls)}"\n'
        "[publish]\nmetrics_period_s = 1.0\n"
    )
    log = open(W / f"run{int(tls)}.log", "wb")
    rt = subprocess.Popen(
        [*DELGRAD, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT
    )
    samples = []
    try:
        async with transport_from_url(url("operator", tls), client_id=f"op{int(tls)}") as mon:
            await mon.subscribe("delgrad/v1/dev1/metrics", qos=0)
            # wait for the first metrics (the runtime is up)
            while True:
                msg = await mon.recv(timeout=120)
                if isinstance(decode(msg.payload).message, Metrics):
                    break
            sensor = subprocess.Popen(
                [
                    *DELGRAD,
                    "sensor",
                    "--broker",
                    url("sensor-dev1", tls),
                    "--device",
                    "dev1",
                    "--rate",
                    str(RATE),
                    "--batch",
                    str(max(1, int(RATE / 50))),
                    "--duration",
                    str(seconds + 5),
                ],
                stdout=open(W / f"sensor{int(tls)}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                try:
                    msg = await mon.recv(timeout=5)
                except TimeoutError:
                    continue
                body = decode(msg.payload).message
                if isinstance(body, Metrics):
                    samples.append((time.monotonic() - t0, dict(body.values)))
            sensor.wait(30)
    finally:
        rt.terminate()
        rt.wait(30)
    last = samples[-1][1]
    late = [v for t, v in samples if t > seconds / 2]
    return {
        "tls": tls,
        "accuracy": round(last.get("accuracy", 0), 4),
        "trials_per_s_mean_2nd_half": round(
            sum(v.get("samples_per_s", 0) for v in late) / max(1, len(late)), 1
        ),
        "trials_processed": int(last.get("trials.processed", 0)),
        "learning_steps": int(last.get("learning.steps", 0)),
        "latency_p99_ms": round(last.get("latency.p99_ms", 0), 2),
        "exit": rt.returncode,
    }


async def main():
    with m:
        out = [await one(False), await one(True)]
    for r in out:
        print(json.dumps({"rate": RATE, **r}))
    shutil.rmtree(W, ignore_errors=True)


asyncio.run(main())
