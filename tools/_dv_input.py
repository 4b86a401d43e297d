"""Live event inputs through iniVation's dv-processing: the DV network event stream
(``tcp://HOST:PORT``: the DV software's network servers, ``dv.io.NetworkWriter``) and
a camera on this machine (``camera`` or ``camera:SERIAL``).

dv-processing does the protocol (AEDAT4 packets over TCP, its own reading thread);
this module opens it without freezing the caller and turns its packets into
:class:`~delgrad.runtime.sources.EventRecording` batches.

Two properties of dv-processing 2.0.4 shape it (measured, not documented):

* ``NetworkReader(ip, port)`` connects and reads the stream header holding the GIL,
  so a server that accepts but never sends would freeze the whole process (the MQTT
  link too). :func:`open_input` first connects itself, asynchronously and with a
  timeout, and waits for the header's first bytes; only a server that answered gets
  the real connection. It takes IP addresses only, so the name is resolved here.
* Its reading thread keeps at most 1,000 packets and silently drops newer ones when
  they are not taken; :meth:`DvInput.poll` takes everything there is and the stream
  polls every 2 ms (a DV camera sends about 1,000 packets per second at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from delgrad.errors import ConfigError
from delgrad.runtime.sources import EventRecording

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DvInput",
    "LinkLost",
    "LiveSpec",
    "is_live_source",
    "open_input",
    "parse_live_source",
]

INSTALL_HINT = "pip install 'delgrad-runtime[sensors]' (or pip install dv-processing)"
#: Seconds to connect and to receive the stream header before a try counts as failed.
CONNECT_TIMEOUT_S = 5.0


class LinkLost(Exception):
    """The live input went away (server gone, camera unplugged); the text says why."""


@dataclass(frozen=True)
class LiveSpec:
    """Where live events come from.

    Attributes:
        kind: ``"tcp"`` (a DV network event stream) or ``"camera"``.
        host: server name or address (``tcp``).
        port: server port (``tcp``).
        serial: the camera's serial number, or ``None`` for the first one found.
    """

    kind: str
    host: str = ""
    port: int = 0
    serial: str | None = None

    @property
    def text(self) -> str:
        """As given on the command line."""
        if self.kind == "camera":
            return "camera" if self.serial is None else f"camera:{self.serial}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def is_live_source(text: str) -> bool:
    """Whether ``--source`` names a live input rather than a file."""
    low = text.lower()
    return low.startswith("tcp://") or low == "camera" or low.startswith("camera:")


def parse_live_source(text: str) -> LiveSpec:
    """``tcp://HOST:PORT``, ``camera`` or ``camera:SERIAL``.

    Raises:
        ConfigError: On anything else (one line, with the accepted forms).
    """
    low = text.lower()
    if low == "camera":
        return LiveSpec("camera")
    if low.startswith("camera:"):
        serial = text[len("camera:") :].strip()
        if not serial:
            raise ConfigError("--source camera:SERIAL needs the serial number after the colon")
        return LiveSpec("camera", serial=serial)
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme.lower() != "tcp" or not parts.hostname or port is None or port == 0:
        raise ConfigError(
            f"--source {text!r}: a DV network stream is tcp://HOST:PORT (e.g. tcp://127.0.0.1:7777)"
        )
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigError(f"--source {text!r}: give tcp://HOST:PORT only")
    return LiveSpec("tcp", host=parts.hostname, port=port)


def _dv() -> Any:
    try:
        import dv_processing  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ConfigError(f"live DV inputs need dv-processing: {INSTALL_HINT}") from exc
    return dv_processing


def _first_line(exc: BaseException) -> str:
    """dv-processing's messages carry a stack trace after the first line."""
    text = str(exc).strip().splitlines()
    line = next((t for t in text if "Error:" in t), text[0] if text else type(exc).__name__)
    return line.split("Error:", 1)[-1].strip() if "Error:" in line else line


class DvInput:
    """An open dv-processing input (network reader or camera) of events.

    Attributes:
        width, height: the event sensor's resolution in pixels.
        name: the camera name the stream gives (model and serial).
    """

    def __init__(self, reader: Any, what: str) -> None:
        self._reader = reader
        self.what = what
        if not reader.isEventStreamAvailable():
            raise ConfigError(f"{what}: the stream carries no events (frames, IMU or triggers?)")
        size = reader.getEventResolution()
        if size is None:
            raise ConfigError(f"{what}: the stream does not say its sensor's resolution")
        self.width, self.height = int(size[0]), int(size[1])
        self.name = str(reader.getCameraName())

    def poll(self) -> list[EventRecording]:
        """Every batch waiting now (never blocks; empty when there is none).

        Raises:
            LinkLost: The server or camera went away (after the batches before it).
        """
        out: list[EventRecording] = []
        while True:
            try:
                store = self._reader.getNextEventBatch()
            except RuntimeError as exc:  # the reading thread's error, rethrown
                raise LinkLost(_first_line(exc)) from None
            if store is None:
                break
            if len(store):
                out.append(self._batch(store.numpy()))
        if not out and not self._reader.isRunning():
            raise LinkLost("the connection was closed")
        return out

    def _batch(self, ev: np.ndarray) -> EventRecording:
        return EventRecording(
            ev["timestamp"].astype(np.float64),
            ev["x"],
            ev["y"],
            ev["polarity"].astype(np.int8),
            self.width,
            self.height,
        )

    def close(self) -> None:
        """Disconnect (joins dv-processing's reading thread)."""
        self._reader = None


async def _probe(host: str, port: int, timeout_s: float) -> str:
    """Connect to the server, wait for its stream header, hang up; the server's IP.

    Raises:
        LinkLost: Refused, unreachable, or no header within ``timeout_s``.
    """
    where = f"tcp://{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                first = await reader.read(1)
                ip = str(writer.get_extra_info("peername")[0])
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise LinkLost(f"{where}: no answer within {timeout_s:g} s") from None
    except socket.gaierror as exc:
        raise LinkLost(f"{where}: unknown host ({exc.strerror})") from None
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        if isinstance(exc, ConnectionRefusedError):
            why += " (is the DV network server running, on that port?)"
        raise LinkLost(f"{where}: {why}") from None
    if not first:
        raise LinkLost(f"{where}: the server hung up without sending a stream header")
    return ip


async def open_input(spec: LiveSpec, *, timeout_s: float = CONNECT_TIMEOUT_S) -> DvInput:
    """Open ``spec`` (see the module doc for why the network one is probed first).

    Raises:
        ConfigError: dv-processing missing, no camera attached, not an event stream.
        LinkLost: The server cannot be reached now (worth trying again).
    """
    dv = _dv()
    if spec.kind == "camera":
        return _open_camera(dv, spec)
    ip = await _probe(spec.host, spec.port, timeout_s)
    try:
        reader = dv.io.NetworkReader(ip, spec.port)
    except RuntimeError as exc:
        raise LinkLost(f"{spec.text}: {_first_line(exc)}") from None
    return DvInput(reader, spec.text)


def _open_camera(dv: Any, spec: LiveSpec) -> DvInput:
    found = dv.io.camera.discover()
    if not found:
        raise ConfigError(
            f"--source {spec.text}: no iniVation camera is attached (dv-processing found "
            "none; check the USB cable and the udev rules of the DV software)"
        )
    serials = [str(getattr(d, "serialNumber", "")) for d in found]
    if spec.serial is not None and spec.serial not in serials:
        raise ConfigError(
            f"--source {spec.text}: no camera with that serial number is attached "
            f"(attached: {', '.join(serials)})"
        )
    try:
        camera = dv.io.camera.open() if spec.serial is None else dv.io.camera.open(spec.serial)
    except (RuntimeError, IndexError) as exc:
        raise ConfigError(f"--source {spec.text}: cannot open it ({_first_line(exc)})") from None
    return DvInput(camera, spec.text)
