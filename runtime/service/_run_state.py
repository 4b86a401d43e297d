"""Run state: whether the service learns (``mode``) and whether it runs at all (``paused``).

Changed only through :class:`RunState`'s methods (by commands and checkpoint
loads), read by the inference loop, the learning pipeline, metrics and status.
"""

from __future__ import annotations

from typing import Literal, TypeGuard

from delgrad.errors import ParameterError

Mode = Literal["train", "infer"]
MODES: tuple[Mode, ...] = ("train", "infer")


def is_mode(value: object) -> TypeGuard[Mode]:
    """Whether ``value`` names a mode (``"train"`` or ``"infer"``)."""
    return value in MODES


class RunState:
    """Mode and pause state of one service.

    Args:
        mode: ``"train"`` (predict and learn) or ``"infer"`` (predict only).
    """

    def __init__(self, mode: str) -> None:
        self._mode = self._checked(mode)
        self._paused = False

    @staticmethod
    def _checked(mode: object) -> Mode:
        if not is_mode(mode):
            raise ParameterError(f"mode must be 'train' or 'infer', got {mode!r}")
        return mode

    @property
    def mode(self) -> Mode:
        """``"train"`` or ``"infer"``."""
        return self._mode

    @property
    def paused(self) -> bool:
        """Whether inference and learning are stopped (ingest goes on)."""
        return self._paused

    @property
    def learning(self) -> bool:
        """Whether labelled trials are learned from now: training and not paused."""
        return self._mode == "train" and not self._paused

    def set_mode(self, mode: object) -> None:
        """Learn (``"train"``) or only predict (``"infer"``).

        Raises:
            ParameterError: for any other value.
        """
        self._mode = self._checked(mode)

    def pause(self) -> None:
        """Stop inference and learning."""
        self._paused = True

    def resume(self) -> None:
        """Restart inference and learning."""
        self._paused = False
