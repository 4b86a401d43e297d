"""``delgrad completion SHELL``: print a tab-completion script for bash, zsh or tcsh.

The script is generated once from the full parser (every subcommand and option,
choices, and file or folder names where an option takes a path) by shtab, so a
TAB press runs no Python: the dispatcher's lazy imports would otherwise make
each completion wait for numpy. Install, e.g. for bash::

    delgrad completion bash > ~/.local/share/bash-completion/completions/delgrad
"""

from __future__ import annotations

import argparse
from typing import Any

import shtab

from delgrad.tools._cli import build_parser

SHELLS = ("bash", "zsh", "tcsh")

#: (subcommand, option dest) -> shtab's action for a path (``shtab.FILE`` or ``DIRECTORY``).
PATHS: dict[tuple[str, str], Any] = {
    ("acl", "etc"): shtab.DIRECTORY,
    ("acl", "out"): shtab.DIRECTORY,
    ("broker", "password_file"): shtab.FILE,
    ("eval", "network"): shtab.FILE,
    ("export-nir", "network"): shtab.FILE,
    ("export-nir", "out"): shtab.FILE,
    ("hwstudy", "out"): shtab.DIRECTORY,
    ("import-nir", "out"): shtab.FILE,
    ("monitor", "record"): shtab.FILE,
    ("monitor", "save_network"): shtab.FILE,
    ("plot", "file"): shtab.FILE,
    ("plot", "out"): shtab.FILE,
    ("run", "config"): shtab.FILE,
    ("sensor", "labels"): shtab.FILE,
    ("sensor", "source"): shtab.FILE,
    ("summarize", "runs"): shtab.DIRECTORY,
    ("sweep", "out"): shtab.DIRECTORY,
    ("train", "config"): shtab.FILE,
    ("train", "out"): shtab.DIRECTORY,
}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``completion`` subcommand's argument."""
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.epilog = (
        "bash: delgrad completion bash > ~/.local/share/bash-completion/completions/delgrad; "
        'zsh: delgrad completion zsh > "${fpath[1]}/_delgrad"'
    )


def completion_parser() -> argparse.ArgumentParser:
    """The full ``delgrad`` parser with path options marked for file completion."""
    parser = build_parser(full=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for option in sub._actions:
                    kind = PATHS.get((name, option.dest))
                    if kind is not None:
                        option.complete = kind
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the completion script for ``args.shell``; exit 0."""
    print(shtab.complete(completion_parser(), shell=args.shell))
    return 0
