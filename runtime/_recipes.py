"""Shipped training recipes (``runtime/recipes/*.toml``) and the one way to resolve a
recipe name or path plus ``section.key=value`` overrides into a :class:`Config`."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from delgrad.errors import ConfigError
from delgrad.runtime._config import Config, config_from_dict, load_config
from delgrad.runtime._schema import apply_overrides

RECIPE_PACKAGE = "delgrad.runtime"


def shipped_configs() -> list[str]:
    """Names of the configurations shipped with the package."""
    folder = resources.files(RECIPE_PACKAGE).joinpath("recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load a config from a path or a shipped name, then apply ``section.key=value`` overrides.

    Raises:
        ConfigError: unknown name, bad file, or bad override.
    """
    path = Path(name_or_path)
    if not path.is_file():
        shipped = resources.files(RECIPE_PACKAGE).joinpath("recipes", f"{path.stem}.toml")
        if not shipped.is_file():
            raise ConfigError(
                f"no configuration file {name_or_path!r}; shipped: {', '.join(shipped_configs())}"
            )
        path = Path(str(shipped))
    config = load_config(path)
    if not overrides:
        return config
    data = apply_overrides(config.to_dict(), overrides)
    return config_from_dict(data)
