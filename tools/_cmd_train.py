"""``delgrad train CONFIG [--seed N] [--out DIR]``: offline training with a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from delgrad.errors import DelgradError
from delgrad.runtime import resolve_config, shipped_configs
from delgrad.tools._exit import ExitCode
from delgrad.tools._train_run import run_training

#: Seconds between two plain progress lines.
PLAIN_EVERY_S = 10.0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``delgrad train``."""
    parser.add_argument(
        "config",
        help="a TOML file, or the name of a shipped config "
        "(e.g. yinyang_H30_WS; `delgrad train --list` lists them)",
        nargs="?",
    )
    parser.add_argument("--seed", type=int, help="random seed (default: the config's)")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads sharing each batch (default: the config's training.threads; "
        "0 = one per core)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: runs/NAME_seedN)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config field, e.g. --set training.epochs=20",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore an existing checkpoint in --out and start over"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="one plain line per epoch instead of a progress bar (when stderr is not a "
        "terminal, and with -q: the first and last epoch and one line every "
        f"{PLAIN_EVERY_S:.0f} s)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--list", action="store_true", help="list shipped configs and exit")


def _rate(per_s: float) -> str:
    if per_s < 1e5:
        return f"{per_s:,.0f}/s"
    return f"{per_s / 1e3:,.0f}k/s" if per_s < 1e7 else f"{per_s / 1e6:,.1f}M/s"


def _line(stats, epochs: int) -> str:
    """One epoch in at most 80 columns (up to 9,999 epochs)."""
    return (
        f"epoch {stats.epoch:4d}/{epochs}  loss {stats.train_loss:.4f}  "
        f"train {100 * stats.train_accuracy:5.1f}%  val {100 * stats.validation_accuracy:5.1f}%"
        f"  silent {100 * stats.silent_hidden:3.0f}%  {_rate(stats.samples_per_s)}"
    )


def _short(stats) -> str:
    """The progress bar's note: the two figures that say whether training works."""
    return f"loss {stats.train_loss:.4f}  val {100 * stats.validation_accuracy:5.1f} %"


def run(args: argparse.Namespace) -> int:
    """Train, print a summary, and return the exit code."""
    if args.list:
        print("\n".join(shipped_configs()))
        return ExitCode.OK
    if not args.config:
        print(
            "delgrad train: give a config: a TOML file, or one of the shipped ones: "
            + ", ".join(shipped_configs()),
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        overrides = list(args.set)
        if args.threads is not None:
            overrides.append(f"training.threads={args.threads}")
        config = resolve_config(args.config, overrides)
        if args.seed is not None:
            config = config.replace(seed=args.seed)
    except DelgradError as exc:
        print(f"delgrad train: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    out = args.out or Path("runs") / f"{config.name}_seed{config.seed}"
    epochs = config.training.epochs
    try:
        if args.plain or args.quiet or not sys.stderr.isatty():
            last = [-float("inf")]
            every = 0.0 if args.plain or args.verbose else PLAIN_EVERY_S

            def on_epoch(stats, done):
                if stats is None:
                    print(f"resuming at epoch {done}", flush=True)
                    return
                now = time.monotonic()
                if now - last[0] >= every or done == epochs:
                    last[0] = now
                    print(_line(stats, epochs), flush=True)

            results = run_training(
                config, out, fresh=args.fresh, on_epoch=on_epoch, plots=not args.no_plots
            )
        else:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            ) as progress:
                task = progress.add_task(config.name, total=epochs, info="compiling kernels")

                def on_epoch(stats, done):
                    info = f"resumed at epoch {done}" if stats is None else _short(stats)
                    progress.update(task, completed=done, info=info)

                results = run_training(
                    config, out, fresh=args.fresh, on_epoch=on_epoch, plots=not args.no_plots
                )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; the last checkpoint is in {out}. Run the same command to resume.",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    except DelgradError as exc:
        print(f"delgrad train: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(
        f"{config.name} seed {config.seed}: test accuracy {100 * results['test_accuracy']:.1f} %, "
        f"validation {100 * results['validation_accuracy']:.1f} %, "
        f"{results['n_trainable']} trainable parameters, {results['wall_time_s']:.1f} s training; "
        f"results in {out}"
    )
    return 0
