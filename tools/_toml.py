"""Run configurations written as TOML, for the commands and tests that start ``delgrad run``.

tomli-w writes them (quoting, nested tables, arrays), so no command formats TOML by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` (tables as nested mappings; paths as ``str``) to ``path`` as TOML.

    Returns:
        ``path``.
    """
    path.write_text(tomli_w.dumps(dict(data)))
    return path
