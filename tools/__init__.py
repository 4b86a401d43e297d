"""Command-line tools and benchmarks of DelGrad Runtime (the ``delgrad`` command)."""

from delgrad.tools._cli import main

__all__ = ["main"]
