"""Network files: one ``.npz`` holding the arrays and a small JSON manifest.

Layout: arrays ``w0, d0, w1, d1, ...`` and ``manifest`` (uint8 bytes of UTF-8
JSON: format name, version, neuron parameters, layers, free-form metadata).
Loaded with ``allow_pickle=False``; written atomically.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from delgrad.errors import NetworkFileError, ParameterError
from delgrad.runtime._atomic import atomic_write
from delgrad.runtime._network import Layer, Network
from delgrad.runtime._neuron import NeuronParams

FORMAT = "delgrad-network"
VERSION = 1


def network_arrays(net: Network, metadata: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a network file, manifest included (for embedding in checkpoints)."""
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "neuron": {k: getattr(net.neuron, k) for k in ("tau_s", "tau_m", "theta", "eps")},
        "layers": [
            {
                "n_in": ly.n_in,
                "n_out": ly.n_out,
                "delay": ly.delay,
                "bias_times": list(ly.bias_times),
            }
            for ly in net.layers
        ],
        "metadata": metadata or {},
    }
    arrays = {"manifest": np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)}
    for i, (w, d) in enumerate(zip(net.w, net.d, strict=True)):
        arrays[f"w{i}"] = w
        arrays[f"d{i}"] = d
    return arrays


def network_from_arrays(arrays: Any) -> tuple[Network, dict[str, Any]]:
    """Inverse of :func:`network_arrays`; returns the network and its metadata."""
    try:
        manifest = json.loads(bytes(np.asarray(arrays["manifest"], dtype=np.uint8)).decode())
        if manifest.get("format") != FORMAT:
            raise NetworkFileError(f"not a delgrad network (format {manifest.get('format')!r})")
        if manifest.get("version") != VERSION:
            raise NetworkFileError(f"unsupported network file version {manifest.get('version')!r}")
        neuron = NeuronParams(**manifest["neuron"])
        layers = [
            Layer(int(ly["n_in"]), int(ly["n_out"]), ly["delay"], tuple(ly["bias_times"]))
            for ly in manifest["layers"]
        ]
        w = [arrays[f"w{i}"] for i in range(len(layers))]
        d = [arrays[f"d{i}"] for i in range(len(layers))]
        return Network(layers, neuron, w, d), dict(manifest.get("metadata", {}))
    except NetworkFileError:
        raise
    except (KeyError, TypeError, ValueError, ParameterError, json.JSONDecodeError) as exc:
        raise NetworkFileError(f"invalid network file: {exc}") from exc


def save_network(
    net: Network, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``net`` to ``path`` (``.npz``) atomically; returns the path."""
    arrays = network_arrays(net, metadata)
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def load_network(path: str | os.PathLike[str]) -> Network:
    """Read a network written by :func:`save_network`.

    Raises:
        NetworkFileError: if the file is missing, corrupt or of another format.
    """
    try:
        data = Path(path).read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return network_from_arrays({k: npz[k] for k in npz.files})[0]
    except NetworkFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        why = str(exc) or "empty"
        if "pickle" in why.lower():  # numpy's text suggests loading it unsafely: never here
            why = "it holds pickled Python objects, which are never loaded (not a network file)"
        raise NetworkFileError(f"cannot read network file {path}: {why}") from exc
