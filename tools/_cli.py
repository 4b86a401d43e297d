"""The ``delgrad`` console command: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module ``delgrad.tools._cmd_<name>`` that
defines ``register(parser)`` (adds its arguments) and ``run(args) -> int``.
Modules are imported only when their subcommand runs, so ``delgrad --help``
stays fast and never compiles a kernel.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import version

# name -> (module, one-line help). Sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("delgrad.tools._cmd_bench", "benchmarks: kernels, codec, drivers, end to end"),
    "broker": ("delgrad.tools._cmd_broker", "run the embedded MQTT broker on 127.0.0.1"),
    "digits": ("delgrad.tools._cmd_digits", "sklearn digits: baselines, N-MNIST-style event files"),
    "eval": ("delgrad.tools._cmd_eval", "test accuracy of a network file on a driver"),
    "hwstudy": ("delgrad.tools._cmd_hwstudy", "hardware recipes under both gradient rules"),
    "monitor": ("delgrad.tools._cmd_monitor", "watch devices' metrics, status and parameters"),
    "plot": ("delgrad.tools._cmd_plot", "plot a monitor recording (JSON lines) as PNG curves"),
    "run": ("delgrad.tools._cmd_run", "the online-learning service (no arguments: the demo)"),
    "sensor": ("delgrad.tools._cmd_sensor", "stream Yin-Yang/file trials and labels to a device"),
    "summarize": ("delgrad.tools._cmd_summarize", "markdown table of delgrad train results"),
    "sweep": ("delgrad.tools._cmd_sweep", "hidden size x delay kind sweep with the paper's figure"),
    "train": ("delgrad.tools._cmd_train", "train a network offline from a TOML config"),
}


def build_parser(*, full: bool = False) -> argparse.ArgumentParser:
    """Return the argument parser of ``delgrad``.

    Args:
        full: also import every subcommand module and add its arguments (slow: it
            loads numba and the runtime); without it, only the table's names and help.
    """
    parser = argparse.ArgumentParser(
        prog="delgrad",
        description="DelGrad Runtime: exact event-based learning for spiking networks.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in sorted(COMMANDS.items()):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if full:
            importlib.import_module(module_name).register(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``delgrad`` command. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        print(version("delgrad-runtime"))
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(argv)  # prints help or an "invalid choice" error
        return 0
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sp = argparse.ArgumentParser(prog=f"delgrad {name}", description=COMMANDS[name][1])
    module.register(sp)
    args = sp.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
