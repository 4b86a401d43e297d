"""Adam over named parameter groups (in place, per-group learning rates) and the
step decay of the learning rate per epoch."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from delgrad.errors import ParameterError
from delgrad.runtime._checks import (
    StateDict,
    check_param_array,
    finite_positive,
    is_number,
    state_scalar,
)
from delgrad.runtime._kernels._updates import adam_update


@dataclass(frozen=True)
class ParamGroup:
    """Parameters sharing one learning rate.

    Attributes:
        name: unique name of the group (used as key prefix in state dicts; no '/').
        params: the parameter arrays, float64, C-contiguous, updated in place.
        lr: learning rate (> 0).
    """

    name: str
    params: Sequence[np.ndarray]
    lr: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ParameterError(
                f"group name must be a non-empty str without '/', got {self.name!r}"
            )
        if isinstance(self.params, np.ndarray) or not isinstance(self.params, Sequence):
            raise ParameterError(f"params of group {self.name!r} must be a list of arrays")
        for k, p in enumerate(self.params):
            check_param_array(f"param {k} of group {self.name!r}", p)
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "lr", finite_positive(f"lr of group {self.name!r}", self.lr))


class Adam:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam semantics, no weight decay.

    ``step(grads)`` updates the groups' arrays in place. The effective learning
    rate of a group is ``group.lr * lr_scale``; set ``lr_scale`` from a schedule
    once per epoch.

    Args:
        groups: parameter groups; names unique, no array in two groups.
        betas: decay rates (beta1, beta2) of the moment estimates, each in [0, 1).
        eps: term added to the denominator (> 0).
    """

    def __init__(
        self,
        groups: Sequence[ParamGroup],
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        groups = list(groups)
        if not groups or not all(isinstance(g, ParamGroup) for g in groups):
            raise ParameterError("groups must be a non-empty list of ParamGroup")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ParameterError(f"group names must be unique, got {names}")
        flat = [(g.name, k, p) for g in groups for k, p in enumerate(g.params)]
        for a in range(len(flat)):
            for b in range(a + 1, len(flat)):
                # An array updated twice per step would silently get a double step.
                if np.shares_memory(flat[a][2], flat[b][2]):
                    raise ParameterError(
                        f"param {flat[a][1]} of group {flat[a][0]!r} and param {flat[b][1]} "
                        f"of group {flat[b][0]!r} share memory"
                    )
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ParameterError(f"betas must be a pair, got {betas!r}")
        for beta in betas:
            if not is_number(beta) or not 0.0 <= beta < 1.0:
                raise ParameterError(f"betas must lie in [0, 1), got {betas!r}")
        self._groups = groups
        self._lrs = [g.lr for g in groups]
        self._beta1 = float(betas[0])
        self._beta2 = float(betas[1])
        self._eps = finite_positive("eps", eps)
        self._lr_scale = 1.0
        self._step = 0
        self._exp_avg = [[np.zeros_like(p) for p in g.params] for g in groups]
        self._exp_avg_sq = [[np.zeros_like(p) for p in g.params] for g in groups]

    @property
    def groups(self) -> list[ParamGroup]:
        """The parameter groups (do not modify)."""
        return list(self._groups)

    @property
    def step_count(self) -> int:
        """Number of steps taken so far."""
        return self._step

    @property
    def lr_scale(self) -> float:
        """Factor applied to every group's learning rate (1 initially)."""
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, factor: float) -> None:
        self._lr_scale = finite_positive("lr_scale", factor)

    def set_lr_scale(self, factor: float) -> None:
        """Set the factor applied to every group's learning rate (> 0)."""
        self.lr_scale = factor

    def lr(self, name: str) -> float:
        """Effective learning rate of group ``name`` (base lr times lr_scale)."""
        for g, lr in zip(self._groups, self._lrs, strict=True):
            if g.name == name:
                return lr * self._lr_scale
        raise ParameterError(f"no group named {name!r}")

    def step(self, grads: Sequence[Sequence[ArrayLike]]) -> None:
        """Take one step, updating all parameters in place.

        Args:
            grads: one list per group (in group order) with one gradient per
                parameter, each of the parameter's shape, finite.
        """
        if isinstance(grads, np.ndarray) or len(grads) != len(self._groups):
            raise ParameterError(
                f"grads must be a list of {len(self._groups)} lists (one per group)"
            )
        checked: list[list[np.ndarray]] = []
        # Validate everything before touching any state, so a bad gradient
        # leaves parameters and moments untouched.
        for g, gg in zip(self._groups, grads, strict=True):
            if isinstance(gg, np.ndarray) or len(gg) != len(g.params):
                raise ParameterError(
                    f"grads for group {g.name!r} must be a list of {len(g.params)} arrays"
                )
            row = []
            for k, (p, gk) in enumerate(zip(g.params, gg, strict=True)):
                a = np.ascontiguousarray(gk, dtype=np.float64)
                if a.shape != p.shape:
                    raise ParameterError(
                        f"grad {k} of group {g.name!r} has shape {a.shape}, expected {p.shape}"
                    )
                if not np.isfinite(a).all():
                    raise ParameterError(f"grad {k} of group {g.name!r} is not finite")
                row.append(a)
            checked.append(row)
        self._step += 1
        bias_correction1 = 1.0 - self._beta1**self._step
        bias_correction2_sqrt = math.sqrt(1.0 - self._beta2**self._step)
        for gi, g in enumerate(self._groups):
            step_size = self._lrs[gi] * self._lr_scale / bias_correction1
            for k, p in enumerate(g.params):
                adam_update(
                    p.reshape(-1),
                    checked[gi][k].reshape(-1),
                    self._exp_avg[gi][k].reshape(-1),
                    self._exp_avg_sq[gi][k].reshape(-1),
                    step_size,
                    self._beta1,
                    self._beta2,
                    bias_correction2_sqrt,
                    self._eps,
                )

    def state_dict(self, *, copy: bool = True) -> StateDict:
        """Optimiser state as a flat dict of arrays and scalars (npz-friendly).

        Keys: ``step``, ``lr_scale``, ``beta1``, ``beta2``, ``eps``,
        ``{group}.lr``, ``{group}.{k}.exp_avg``, ``{group}.{k}.exp_avg_sq``.
        The parameters themselves are not included. Arrays are copies, or with
        ``copy=False`` the live arrays (to read before the next step only).
        """
        d: StateDict = {
            "step": self._step,
            "lr_scale": self._lr_scale,
            "beta1": self._beta1,
            "beta2": self._beta2,
            "eps": self._eps,
        }
        for gi, g in enumerate(self._groups):
            d[f"{g.name}.lr"] = self._lrs[gi]
            for k in range(len(g.params)):
                avg, avg_sq = self._exp_avg[gi][k], self._exp_avg_sq[gi][k]
                d[f"{g.name}.{k}.exp_avg"] = avg.copy() if copy else avg
                d[f"{g.name}.{k}.exp_avg_sq"] = avg_sq.copy() if copy else avg_sq
        return d

    def load_state_dict(self, d: Mapping[str, object]) -> None:
        """Restore state saved by :meth:`state_dict` (e.g. read back from an npz).

        The optimiser must have groups of the same names and parameter shapes.
        Hyperparameters (betas, eps, group lrs, lr_scale) are restored too.
        """
        step = state_scalar(d, "step")
        if step < 0 or step != int(step):
            raise ParameterError(f"state dict 'step' must be an integer >= 0, got {step!r}")
        beta1 = state_scalar(d, "beta1")
        beta2 = state_scalar(d, "beta2")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ParameterError(f"state dict betas must lie in [0, 1), got {(beta1, beta2)}")
        eps = finite_positive("state dict 'eps'", state_scalar(d, "eps"))
        lr_scale = finite_positive("state dict 'lr_scale'", state_scalar(d, "lr_scale"))
        lrs = [
            finite_positive(f"state dict '{g.name}.lr'", state_scalar(d, f"{g.name}.lr"))
            for g in self._groups
        ]
        moments: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        for g in self._groups:
            pair: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
            for k, p in enumerate(g.params):
                for which, out in (("exp_avg", pair[0]), ("exp_avg_sq", pair[1])):
                    key = f"{g.name}.{k}.{which}"
                    if key not in d:
                        raise ParameterError(f"state dict lacks {key!r}")
                    a = np.array(d[key], dtype=np.float64, copy=True, order="C")
                    if a.shape != p.shape:
                        raise ParameterError(
                            f"state dict {key!r} has shape {a.shape}, expected {p.shape}"
                        )
                    if not np.isfinite(a).all() or (which == "exp_avg_sq" and (a < 0).any()):
                        raise ParameterError(f"state dict {key!r} holds invalid values")
                    out.append(a)
            moments.append(pair)
        expected = {"step", "lr_scale", "beta1", "beta2", "eps"}
        for g in self._groups:
            expected.add(f"{g.name}.lr")
            for k in range(len(g.params)):
                expected.update((f"{g.name}.{k}.exp_avg", f"{g.name}.{k}.exp_avg_sq"))
        extra = sorted(set(d) - expected)
        if extra:
            raise ParameterError(f"state dict has unknown keys {extra} (different groups?)")
        # Everything validated: commit.
        self._step = int(step)
        self._beta1, self._beta2, self._eps = beta1, beta2, eps
        self._lr_scale = lr_scale
        self._lrs = lrs
        self._exp_avg = [m for m, _ in moments]
        self._exp_avg_sq = [v for _, v in moments]


@dataclass(frozen=True)
class StepSchedule:
    """Step decay: the learning rate is scaled by ``gamma ** (epoch // step_size)``.

    Attributes:
        gamma: decay factor per step (> 0).
        step_size: epochs between decays (>= 1).
    """

    gamma: float = 0.95
    step_size: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", finite_positive("gamma", self.gamma))
        s = self.step_size
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ParameterError(f"step_size must be an integer >= 1, got {s!r}")

    def factor(self, epoch: int) -> float:
        """Learning-rate factor for ``epoch`` (0-based, >= 0)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ParameterError(f"epoch must be an integer >= 0, got {epoch!r}")
        return float(self.gamma ** (int(epoch) // int(self.step_size)))
