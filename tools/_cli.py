"""The ``delgrad`` console command: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module ``delgrad.tools._cmd_<name>`` that
defines ``register(parser)`` (adds its arguments) and ``run(args) -> int``.
Modules are imported only when their subcommand runs, so ``delgrad --help``
stays fast and never compiles a kernel.

The dispatcher owns what every command shares: the logging options (``-v``,
``-q``, ``--log-level``; :mod:`delgrad.tools._logging`), ``--version``, and the
exit-code table (:mod:`delgrad.tools._exit`): an error a command lets through is
reported in one line (its traceback with ``-v``) and mapped to its code.

The parser is hand-written argparse on purpose: the table below imports a
subcommand's module only when it runs (``delgrad --help`` loads neither numba nor
the runtime), which click/typer would also need custom code for, and argparse
adds no dependency.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from delgrad.tools._exit import ExitCode, exit_code_for
from delgrad.tools._logging import LEVELS, setup_logging

# name -> (module, one-line help). Sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "acl": ("delgrad.tools._cmd_acl", "Mosquitto ACL and config binding accounts to roles"),
    "bench": ("delgrad.tools._cmd_bench", "benchmarks: kernels, codec, drivers, end to end"),
    "broker": ("delgrad.tools._cmd_broker", "run the embedded MQTT broker on 127.0.0.1"),
    "bss2": ("delgrad.tools._cmd_bss2", "BrainScaleS-2: `calibrate` a chip for the driver"),
    "cmd": ("delgrad.tools._cmd_cmd", "send a command to a device and print its reply"),
    "completion": ("delgrad.tools._cmd_completion", "print a bash/zsh/tcsh completion script"),
    "digits": ("delgrad.tools._cmd_digits", "sklearn digits: baselines, N-MNIST-style event files"),
    "eval": ("delgrad.tools._cmd_eval", "test accuracy of a network file on a driver"),
    "events": ("delgrad.tools._cmd_events", "cut a labelled event recording into a trial file"),
    "export-nir": ("delgrad.tools._cmd_export_nir", "write a network file as a NIR graph"),
    "hwstudy": ("delgrad.tools._cmd_hwstudy", "hardware recipes under both gradient rules"),
    "import-nir": ("delgrad.tools._cmd_import_nir", "read a NIR graph into a network file"),
    "monitor": ("delgrad.tools._cmd_monitor", "watch devices' metrics, status and parameters"),
    "plot": ("delgrad.tools._cmd_plot", "plot a monitor recording (JSON lines) as PNG curves"),
    "ros": ("delgrad.tools._cmd_ros", "relay a ROS 2 robot's MQTT bridge to a device and back"),
    "run": ("delgrad.tools._cmd_run", "the online-learning service (no arguments: the demo)"),
    "sensor": ("delgrad.tools._cmd_sensor", "stream Yin-Yang/file trials and labels to a device"),
    "summarize": ("delgrad.tools._cmd_summarize", "markdown table of delgrad train results"),
    "sweep": ("delgrad.tools._cmd_sweep", "hidden size x delay kind sweep with the paper's figure"),
    "train": ("delgrad.tools._cmd_train", "train a network offline from a TOML config"),
}


EPILOG = """exit codes (every command): 0 done (also a service stopped by Ctrl-C),
1 failed while running, 2 bad arguments, configuration or input file,
3 broker (or Dask scheduler) unreachable or port taken, 4 no reply in time,
130 interrupted batch job

Add -v for more detail (tracebacks), -q for warnings only; docs/getting-started.md"""

log = logging.getLogger("delgrad.tools")


def version_text() -> str:
    """``delgrad 0.1.0 (delgrad-runtime; Python 3.11.9; numpy 2.1.0, numba 0.60.0)``."""

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:  # pragma: no cover - a broken install
            return "?"

    return (
        f"delgrad {v('delgrad-runtime')} (delgrad-runtime; Python {platform.python_version()}; "
        f"numpy {v('numpy')}, numba {v('numba')}, amqtt {v('amqtt')})"
    )


def add_logging_arguments(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``, ``-q`` and ``--log-level`` (on the top parser and on every subcommand)."""
    group = parser.add_argument_group("output")
    default = None if top else argparse.SUPPRESS
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more log output (-vv: also third-party debug); tracebacks of errors",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="warnings only (-qq: errors only); plain lines instead of live displays",
    )
    group.add_argument(
        "--log-level",
        choices=LEVELS,
        type=str.upper,
        default=default,
        metavar="LEVEL",
        help="one log level for every logger (DEBUG, INFO, WARNING, ERROR)",
    )


def build_parser(*, full: bool = False) -> argparse.ArgumentParser:
    """Return the argument parser of ``delgrad``.

    Args:
        full: also import every subcommand module and add its arguments (slow: it
            loads numba and the runtime); without it, only the table's names and help.
    """
    parser = argparse.ArgumentParser(
        prog="delgrad",
        description="DelGrad Runtime: exact event-based learning for spiking networks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    add_logging_arguments(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in sorted(COMMANDS.items()):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if full:
            _register(sp, name, module_name)
    return parser


def _register(sp: argparse.ArgumentParser, name: str, module_name: str) -> None:
    importlib.import_module(module_name).register(sp)
    add_logging_arguments(sp, top=False)


def _split_global(argv: list[str]) -> tuple[list[str], list[str]]:
    """The options before the command name, and the rest."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--log-level" else 1
    return argv[:i], argv[i:]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``delgrad`` command. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    front, rest = _split_global(argv)
    if "--version" in front:
        print(version_text())
        return ExitCode.OK
    if not rest or rest[0] not in COMMANDS or any(a in ("-h", "--help") for a in front):
        parser = build_parser()
        if not rest and not front:
            parser.print_help()
            return ExitCode.OK
        try:
            parser.parse_args(argv)  # prints help or an "invalid choice" error
        except SystemExit as exc:
            return int(exc.code or 0)
        parser.print_help()
        return ExitCode.USAGE
    name = rest[0]
    top = argparse.ArgumentParser(prog="delgrad", add_help=False)
    add_logging_arguments(top, top=True)
    try:
        common = top.parse_args(front)
    except SystemExit as exc:
        return int(exc.code or 0)
    module_name = COMMANDS[name][0]
    sp = argparse.ArgumentParser(
        prog=f"delgrad {name}",
        description=COMMANDS[name][1],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _register(sp, name, module_name)
    try:
        args = sp.parse_args(rest[1:])
    except SystemExit as exc:
        return int(exc.code or 0)
    args.verbose = common.verbose + getattr(args, "verbose", 0)
    args.quiet = common.quiet + getattr(args, "quiet", 0)
    args.log_level = getattr(args, "log_level", None) or common.log_level
    setup_logging(args.verbose - args.quiet, level=args.log_level)
    try:
        return int(importlib.import_module(module_name).run(args) or 0)
    except KeyboardInterrupt:
        print(f"delgrad {name}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # one line, the code of the table; the traceback with -v
        code = exit_code_for(exc)
        text = str(exc) or type(exc).__name__
        if code == ExitCode.FAILED and not isinstance(exc, OSError | RuntimeError):
            text = f"{type(exc).__name__}: {text}"
        log.error("delgrad %s: %s", name, text, exc_info=args.verbose > 0)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
