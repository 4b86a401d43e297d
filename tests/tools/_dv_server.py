"""A real DV network event server for tests: dv-processing's ``NetworkWriter`` on
loopback, in the test process (:class:`DvServer`) or, to be killed mid-stream, in a
child process (run this file: ``python _dv_server.py PORT EVENTS.npz GO``; it writes
the packets of the file once the file GO exists, prints ``written N`` and waits to be
killed). Write only once the sensor has said it streams: before its real connection
the sensor probes the server with a connection of its own (see
``delgrad.tools._dv_input``), and packets written then go to the probe.

Two dv-processing 2.0.4 behaviours the helpers work around (measured):

* the writer drops packets when its send queue is full (2,000 written back to back
  reached the client as 1,024), so :meth:`DvServer.write` waits while more than
  :data:`MAX_QUEUED` are queued;
* destroying a writer while a client is connected never returns (the destructor
  holds the GIL while its network thread waits), so :meth:`DvServer.close` waits for
  the clients to go and otherwise keeps the writer alive rather than hang the tests.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np

#: Packets the writer may hold queued before :meth:`DvServer.write` waits.
MAX_QUEUED = 64
_KEPT: list[object] = []  # writers that still had clients at close (see the module doc)


def event_packets(
    t_us: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, bounds: np.ndarray
) -> list[tuple[np.ndarray, ...]]:
    """The events cut at ``bounds`` (indices) into packets."""
    edges = [0, *bounds.tolist(), t_us.size]
    return [(t_us[a:b], x[a:b], y[a:b], p[a:b]) for a, b in itertools.pairwise(edges) if b > a]


class DvServer:
    """``dv.io.NetworkWriter`` of an event stream on 127.0.0.1:``port``."""

    def __init__(self, port: int, width: int, height: int, name: str = "DVXplorer_DXA00000"):
        import dv_processing as dv

        self.dv = dv
        self.port = port
        stream = dv.io.Stream.EventStream(0, "events", name, (width, height))
        self.writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
        self.written = 0

    def wait_client(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.writer.getClientCount():
            if time.monotonic() > deadline:
                raise AssertionError(f"no client connected to the DV server in {timeout} s")
            time.sleep(0.01)

    def write(self, packets: list[tuple[np.ndarray, ...]], pause_s: float = 0.0) -> None:
        """Write each packet as one ``EventStore`` (pacing by the writer's queue)."""
        for t, x, y, p in packets:
            store = self.dv.EventStore()
            for ti, xi, yi, pi in zip(t.tolist(), x.tolist(), y.tolist(), p.tolist(), strict=True):
                store.push_back(int(ti), int(xi), int(yi), bool(pi))
            while self.writer.getQueuedPacketCount() > MAX_QUEUED:
                time.sleep(0.001)
            self.writer.writeEvents(store)
            self.written += t.size
            if pause_s:
                time.sleep(pause_s)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything written has left the writer's queue."""
        deadline = time.monotonic() + timeout
        while self.writer.getQueuedPacketCount() and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.writer.getClientCount() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.writer.getClientCount():
            _KEPT.append(self.writer)
        self.writer = None


def save_packets(path: Path, packets: list[tuple[np.ndarray, ...]], size: tuple[int, int]) -> Path:
    """Write packets for the child server."""
    sizes = np.array([pk[0].size for pk in packets], dtype=np.int64)
    cat = [np.concatenate([pk[i] for pk in packets]) for i in range(4)]
    np.savez(path, t=cat[0], x=cat[1], y=cat[2], p=cat[3], sizes=sizes, size=np.array(size))
    return path


def _main(port: int, path: str, go: str) -> None:
    z = np.load(path)
    bounds = np.cumsum(z["sizes"])[:-1]
    packets = event_packets(z["t"], z["x"], z["y"], z["p"], bounds)
    width, height = (int(v) for v in z["size"])
    server = DvServer(port, width, height)
    print("listening", flush=True)
    while not Path(go).exists():
        time.sleep(0.01)
    server.wait_client(60.0)
    server.write(packets, pause_s=0.002)
    server.drain()
    print(f"written {server.written}", flush=True)
    while True:  # until killed: a server that goes away without a word
        time.sleep(1.0)


if __name__ == "__main__":
    _main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
