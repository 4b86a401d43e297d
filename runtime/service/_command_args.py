"""Command arguments: the documented names, types and ranges, checked before anything acts.

Every refusal message echoes the offending value shortened (:data:`ECHO_CHARS`)
and fits the reply limit (:data:`MAX_ERROR_CHARS`). See docs/runtime.md, "Commands".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delgrad.errors import ParameterError
from delgrad.protocols import COMMAND_NAMES
from delgrad.runtime.service._limits import LR_SCALE_MAX, LR_SCALE_MIN
from delgrad.runtime.service._run_state import MODES, Mode

#: Longest error text of a reply (the protocol's limit).
MAX_ERROR_CHARS = 1024
#: Characters of a refused value echoed in a reply.
ECHO_CHARS = 48


def shown(value: object) -> str:
    """``repr(value)`` cut to :data:`ECHO_CHARS` characters (for echoing untrusted input)."""
    text = repr(value)
    if len(text) <= ECHO_CHARS:
        return text
    return f"{text[:ECHO_CHARS]}... ({len(text)} chars)"


def fit_error(text: str) -> str:
    """``text`` cut to the reply limit of :data:`MAX_ERROR_CHARS` characters."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a command: its check (raises ``ParameterError``) and meaning."""

    check: Callable[[object], object]
    doc: str


def _mode(value: object) -> Mode:
    if not isinstance(value, str) or value not in MODES:
        raise ParameterError(f"mode must be 'train' or 'infer', got {shown(value)}")
    return value


def _lr_scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"lr scale must be a number, got {shown(value)}")
    scale = float(value)
    if not (math.isfinite(scale) and LR_SCALE_MIN <= scale <= LR_SCALE_MAX):
        raise ParameterError(
            f"lr scale must be in {LR_SCALE_MIN:g} .. {LR_SCALE_MAX:g}, got {shown(value)}"
        )
    return scale


#: Every command's arguments (all required; anything else is refused); keys are
#: ``COMMAND_NAMES`` (tested).
ARG_SPECS: dict[str, dict[str, ArgSpec]] = {
    "checkpoint": {},
    "lr": {"scale": ArgSpec(_lr_scale, f"number in {LR_SCALE_MIN:g} .. {LR_SCALE_MAX:g}")},
    "mode": {"mode": ArgSpec(_mode, "'train' or 'infer'")},
    "pause": {},
    "reset": {},
    "resume": {},
    "snapshot": {},
    "status": {},
}


def check_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The checked arguments of command ``name``.

    Raises:
        ParameterError: unknown command, unknown or missing argument, or a value
            of the wrong type or outside its range (the message echoes it shortened).
    """
    spec = ARG_SPECS.get(name)
    if spec is None:
        raise ParameterError(f"unknown command {shown(name)}; known: {', '.join(COMMAND_NAMES)}")
    unknown = sorted(set(args) - set(spec))
    if unknown:
        allowed = ", ".join(spec) or "none"
        raise ParameterError(f"{name}: unknown argument(s) {shown(unknown)}; allowed: {allowed}")
    missing = sorted(set(spec) - set(args))
    if missing:
        raise ParameterError(f"{name}: missing argument(s) {', '.join(missing)}")
    return {key: spec[key].check(value) for key, value in args.items()}
