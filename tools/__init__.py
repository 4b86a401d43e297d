"""Command-line tools and benchmarks of DelGrad Runtime (the ``delgrad`` command)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``delgrad`` command (imported lazily, so ``python -m delgrad.tools._cli``
    does not find its module already loaded)."""
    from delgrad.tools._cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
