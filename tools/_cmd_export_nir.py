"""``delgrad export-nir NETWORK.npz OUT.nir``: a network file as a NIR graph.

``NETWORK.npz`` is a network file (``delgrad train``'s ``network.npz``,
``save_network``) or a service checkpoint of ``delgrad run``
(``service_checkpoint.npz``, e.g. after ``delgrad cmd DEVICE checkpoint``), whose
network is taken. The mapping of every parameter (tau_s, tau_m, theta, C_m,
delays, units) is in :mod:`delgrad.tools._nir` and docs/nir.md.

``--for snntorch|norse|rockpool --dt DT`` writes the file that framework's own
importer runs at a time step of DT tau_s (:mod:`delgrad.tools._nir_consumers`);
``--for exact`` (the default) is the exact file, unchanged.
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
from delgrad.tools._nir import DEFAULT_TAU_S_SECONDS, read_nir, to_nir, write_nir_graph
from delgrad.tools._nir_consumers import CONSUMERS, DEFAULT_DT, STEP_SECONDS, to_nir_for


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
        default=None,
        metavar="S",
        help=f"seconds per tau_s, the model's time unit, for --for exact (default "
        f"{DEFAULT_TAU_S_SECONDS:g}; BrainScaleS-2: 6e-6); the other consumers fix it "
        "from --dt and their importer's step",
    )
    parser.add_argument(
        "--for",
        dest="consumer",
        choices=CONSUMERS,
        default="exact",
        help="who runs the file: exact (NIR's own reading, spikes as unit-area pulses; "
        "default), or the importer of snntorch, norse or rockpool at step --dt",
    )
    parser.add_argument(
        "--dt",
        type=float,
        default=None,
        metavar="DT",
        help=f"time step of the consumer in tau_s (default {DEFAULT_DT:g}; not for exact)",
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


def _usage(args: argparse.Namespace) -> str | None:
    if args.consumer == "exact" and args.dt is not None:
        return "--dt is for --for snntorch, norse or rockpool; the exact file has no time step"
    if args.consumer != "exact" and args.tau_s_seconds is not None:
        return (
            f"--tau-s-seconds is for --for exact; {args.consumer}'s importer steps by "
            f"{STEP_SECONDS[args.consumer]:g} s, so one tau_s is that step / --dt"
        )
    return None


def run(args: argparse.Namespace) -> int:
    """Convert, check that the file reads back to the same network, print a summary."""
    problem = _usage(args)
    if problem:
        print(f"delgrad export-nir: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    dt = DEFAULT_DT if args.dt is None else args.dt
    unit = DEFAULT_TAU_S_SECONDS if args.tau_s_seconds is None else args.tau_s_seconds
    try:
        net = load_any(args.network)
        if args.consumer == "exact":
            graph = to_nir(net, tau_s_seconds=unit)
        else:
            graph = to_nir_for(net, args.consumer, dt=dt)
            unit = float(graph.metadata["tau_s_seconds"])
        write_nir_graph(args.out, graph)
        read_nir(args.out)
    except DelgradError as exc:
        print(f"delgrad export-nir: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(f"delgrad export-nir: cannot write {args.out}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    sizes = [net.layers[0].n_in] + [ly.n_out for ly in net.layers]
    kinds = "/".join(sorted({ly.delay for ly in net.layers}))
    if args.consumer == "exact":
        how = "as NIR Affine, Delay and CubaLIF nodes"
    else:
        how = (
            f"for {args.consumer} at dt = {dt:g} tau_s ({STEP_SECONDS[args.consumer]:g} s per "
            "step), first spikes by self-inhibition"
        )
    print(
        f"wrote {args.out}: {'-'.join(map(str, sizes))} ({kinds} delays) {how}, "
        f"1 tau_s = {unit:g} s"
    )
    return ExitCode.OK
