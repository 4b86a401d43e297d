"""``delgrad import-nir GRAPH.nir OUT.npz``: a NIR graph (of the form export-nir
writes, or written by snnTorch, Norse or Rockpool) as a delgrad network file, for
``delgrad eval``, ``delgrad run`` (``model.network_file``) or the library.

The convention the file was read in is named in the summary line
(:mod:`delgrad.tools._nir_conventions`); a file whose neurons may fire again in
its source gets a note, since DelGrad uses each neuron's first spike."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from delgrad.errors import DelgradError
from delgrad.runtime import save_network
from delgrad.tools._exit import ExitCode
from delgrad.tools._nir import import_nir, read_nir_graph


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad import-nir``."""
    parser.add_argument("graph", type=Path, metavar="GRAPH.nir", help="a NIR file (HDF5)")
    parser.add_argument("out", type=Path, metavar="OUT.npz", help="the network file to write")


def run(args: argparse.Namespace) -> int:
    """Convert and print a summary."""
    try:
        net, convention = import_nir(read_nir_graph(args.graph))
        save_network(
            net,
            args.out,
            metadata={"imported_from": str(args.graph), "nir_convention": convention.name},
        )
    except DelgradError as exc:
        print(f"delgrad import-nir: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(f"delgrad import-nir: cannot write {args.out}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    sizes = [net.layers[0].n_in] + [ly.n_out for ly in net.layers]
    p = net.neuron
    print(
        f"wrote {args.out}: {'-'.join(map(str, sizes))}, "
        f"{'/'.join(sorted({ly.delay for ly in net.layers}))} delays, "
        f"tau_m = {p.tau_m:g} tau_s, theta = {p.theta:g}; read as {convention.label}"
    )
    if convention.first_spikes is None:
        print(
            "note: nothing in the file keeps its neurons from firing again (no first_spike_only, "
            "self-inhibition or deep v_reset); DelGrad uses each neuron's first spike, so "
            "results can differ from the source's"
        )
    return ExitCode.OK
