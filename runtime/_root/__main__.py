"""``python -m delgrad``: the ``delgrad`` command without the console script.

This file is a program, not part of the package's import graph: ``import delgrad``
never runs it. It names the command's module as a string so the root floor still
imports nothing (tests/test_floors.py), and the command stays in ``delgrad.tools``.
"""

import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("delgrad.tools._cli").main())
