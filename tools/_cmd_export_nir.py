"""``delgrad export-nir NETWORK.npz OUT.nir``: a network file as a NIR graph.

``NETWORK.npz`` is a network file (``delgrad train``'s ``network.npz``,
``save_network``) or a service checkpoint of ``delgrad run``
(``service_checkpoint.npz``, e.g. after ``delgrad cmd DEVICE checkpoint``), whose
network is taken. The mapping of every parameter (tau_s, tau_m, theta, C_m,
delays, units) is in :mod:`delgrad.tools._nir` and docs/nir.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from delgrad.errors import DelgradError, NetworkFileError
from delgrad.runtime import Network, load_network
from delgrad.tools._exit import ExitCode
from delgrad.tools._nir import DEFAULT_TAU_S_SECONDS, read_nir, write_nir


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad export-nir``."""
    parser.add_argument(
        "network",
        type=Path,
        metavar="NETWORK.npz",
        help="a network file, or a service checkpoint of delgrad run",
    )
    parser.add_argument("out", type=Path, metavar="OUT.nir", help="the NIR file to write (HDF5)")
    parser.add_argument(
        "--tau-s-seconds",
        type=float,
        default=DEFAULT_TAU_S_SECONDS,
        metavar="S",
        help=f"seconds per tau_s, the model's time unit (default {DEFAULT_TAU_S_SECONDS:g}; "
        "BrainScaleS-2: 6e-6)",
    )


def load_any(path: Path) -> Network:
    """A network file, or the network inside a service checkpoint.

    Raises:
        NetworkFileError: neither.
    """
    try:
        return load_network(path)
    except NetworkFileError as first:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k[4:]: npz[k] for k in npz.files if k.startswith("net.")}
        except (OSError, ValueError, zipfile.BadZipFile):
            raise first from None
        if "manifest" not in arrays:
            raise first from None
        with tempfile.TemporaryDirectory() as folder:
            plain = Path(folder) / "network.npz"
            np.savez(plain, **arrays)
            return load_network(plain)


def run(args: argparse.Namespace) -> int:
    """Convert, check that the file reads back to the same network, print a summary."""
    try:
        net = load_any(args.network)
        write_nir(args.out, net, tau_s_seconds=args.tau_s_seconds)
        read_nir(args.out)
    except DelgradError as exc:
        print(f"delgrad export-nir: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(f"delgrad export-nir: cannot write {args.out}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    sizes = [net.layers[0].n_in] + [ly.n_out for ly in net.layers]
    kinds = "/".join(sorted({ly.delay for ly in net.layers}))
    print(
        f"wrote {args.out}: {'-'.join(map(str, sizes))} ({kinds} delays) as NIR Affine, Delay "
        f"and CubaLIF nodes, 1 tau_s = {args.tau_s_seconds:g} s"
    )
    return ExitCode.OK
