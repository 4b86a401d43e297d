"""Typed configuration tables: TOML tables checked against frozen dataclasses.

One builder serves every configuration of the project (training recipes and the
service's run configuration): unknown fields, wrong types and out-of-range values
raise :class:`~delgrad.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from delgrad.errors import ConfigError


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file.

    Raises:
        ConfigError: if the file is missing, unreadable or not TOML.
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def check_value(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the field type ``tp`` (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where} must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value] if item_tp is float and isinstance(value, int | float) else value
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover


def build_dataclass(
    cls: type,
    data: Mapping[str, Any],
    where: str,
    *,
    positive: frozenset[str] = frozenset(),
    non_negative: frozenset[str] = frozenset(),
) -> Any:
    """Build the frozen dataclass ``cls`` from a TOML table, nested tables included.

    Args:
        cls: the dataclass; fields with type ``int``, ``float``, ``bool``, ``str``,
            ``Literal[...]``, ``list[...]`` or another such dataclass.
        data: the table as read from TOML.
        where: the table's name for messages ("top level" for the file itself).
        positive, non_negative: field names whose numbers must be > 0 / >= 0.

    Raises:
        ConfigError: an unknown field, a value of the wrong type or out of range.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{where}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(unknown)} in [{where}]; "
            f"valid: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        label = key if where == "top level" else f"{where}.{key}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = build_dataclass(
                tp, value, label, positive=positive, non_negative=non_negative
            )
            continue
        if isinstance(tp, types.UnionType):  # pragma: no cover - not used by the schema
            raise ConfigError(f"{label}: unions are not supported")
        checked = check_value(value, tp, label)
        for item in checked if isinstance(checked, list) else [checked]:
            if isinstance(item, int | float) and not isinstance(item, bool):
                if key in positive and not item > 0:
                    raise ConfigError(f"{label} must be > 0, got {value!r}")
                if key in non_negative and not item >= 0:
                    raise ConfigError(f"{label} must be >= 0, got {value!r}")
        kwargs[key] = checked
    return cls(**kwargs)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``SECTION.KEY=VALUE`` items written into a nested mapping (missing sections
    made; the schema then refuses unknown ones). A value is read as TOML, a bare word
    as a string. Returns ``data``.

    Raises:
        ConfigError: an item not of the form ``section.key=value``, or a key under a
            field that is not a section.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word is a string
        target = data
        *sections, leaf = key.strip().split(".")
        for section in sections:
            if not isinstance(target.setdefault(section, {}), dict):
                raise ConfigError(f"override {item!r}: {section!r} is not a section")
            target = target[section]
        target[leaf] = value
    return data
