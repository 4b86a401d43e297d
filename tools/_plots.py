"""PNG figures for training reports: learning curves, decision planes, spike rasters, sweeps.

Every function draws one figure with matplotlib's object API (no pyplot, so no
global state, no windows, safe from worker threads), writes it atomically as a
PNG and returns the path. matplotlib is imported lazily inside the functions so
that importing this module does not load it (a test checks). Model times are in units of
tau_s; ``inf`` marks a neuron that did not spike and is drawn in a separate
"no spike" bin or column instead of being dropped silently.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeGuard

import numpy as np
from numpy.typing import ArrayLike, NDArray

from delgrad.errors import ParameterError
from delgrad.runtime import (
    Network,
    atomic_write,
    encode_yinyang,
    forward,
    predict,
    yinyang_class,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DELAY_LABELS",
    "plot_delay_histograms",
    "plot_learning_curves",
    "plot_output_time_distributions",
    "plot_raster",
    "plot_recording",
    "plot_sweep",
    "plot_yinyang_plane",
    "sweep_summary",
]

PathLike = str | os.PathLike[str]

#: Legend text per delay kind, in the order the sweep figure draws them.
DELAY_LABELS: dict[str, str] = {
    "none": "weights only",
    "axonal": "axonal",
    "dendritic": "dendritic",
    "synaptic": "synaptic",
}
_DELAY_COLOURS = {"none": "0.35", "axonal": "C0", "dendritic": "C2", "synaptic": "C3"}
_CLASS_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
_SILENT_COLOUR = "0.6"
_DEFAULT_DPI = 120
_MAX_RECORDING_PANELS = 8


# --------------------------------------------------------------------------- helpers


def _figure(nrows: int, ncols: int, *, panel_size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    width = max(4.0, panel_size[0] * ncols)
    height = max(2.5, panel_size[1] * nrows)
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: PathLike, dpi: int) -> Path:
    def write(fh: BinaryIO) -> None:
        # The temporary file is created 0600; reports are meant to be shared.
        if hasattr(os, "fchmod"):
            os.fchmod(fh.fileno(), 0o644)
        fig.savefig(fh, format="png", dpi=dpi)

    return atomic_write(path, write)


def _message(path: PathLike, title: str, text: str, dpi: int) -> Path:
    """A valid figure that only says why there is nothing to draw."""
    fig = _figure(1, 1, panel_size=(5.0, 3.0))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return _save(fig, path, dpi)


def _class_colour(k: int) -> str:
    return _CLASS_COLOURS[k % len(_CLASS_COLOURS)]


def _times_2d(value: ArrayLike, what: str) -> NDArray[np.float64]:
    """Spike times as (B, n) float64; ``+inf`` allowed, nan and -inf rejected."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{what} must be a numeric array") from exc
    if arr.ndim != 2:
        raise ParameterError(f"{what} must have shape (B, n), got {arr.shape}")
    if np.isnan(arr).any() or np.isneginf(arr).any():
        raise ParameterError(f"{what} contains nan or -inf (use +inf for a silent neuron)")
    return arr


def _labels_1d(value: ArrayLike, n: int, n_classes: int | None, what: str) -> NDArray[np.int64]:
    """Integer labels (n,), optionally checked to lie in [0, n_classes)."""
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ParameterError(f"{what} must have shape ({n},), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise ParameterError(f"{what} must be integers")
    labels = arr.astype(np.int64)
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ParameterError(
            f"{what} must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}"
        )
    return labels


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _percentile_band(values: NDArray[np.float64]) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile), linear interpolation (numpy's default)."""
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return float(median), float(q25), float(q75)


# --------------------------------------------------------------------- learning curves


def _curve_kind(name: str) -> str:
    lower = name.lower()
    if "loss" in lower:
        return "loss"
    if "silent" in lower:
        return "silent"
    if "acc" in lower:
        return "accuracy"
    return "other"


def plot_learning_curves(
    path: PathLike, curves: Mapping[str, Sequence[float]], *, dpi: int = _DEFAULT_DPI
) -> Path:
    """Per-epoch training curves.

    Curves are sorted into panels by name: names containing ``loss`` share the
    loss panel (own axis, raw values), names containing ``acc`` the accuracy
    panel and names containing ``silent`` the silent-neuron panel (both given
    as fractions in [0, 1], drawn in %); anything else goes to an "other" panel.
    Epoch ``k`` (1-based) is the ``k``-th value; curves may differ in length;
    non-finite values leave gaps.

    Args:
        path: output PNG.
        curves: name -> per-epoch values, e.g. ``train_loss``, ``train_accuracy``,
            ``validation_accuracy``, ``silent_fraction``.
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ParameterError: a curve that is not a 1-D numeric sequence.
    """
    panels: dict[str, list[tuple[str, NDArray[np.float64]]]] = {}
    for name, values in curves.items():
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"curve {name!r} must be numeric") from exc
        if arr.ndim != 1:
            raise ParameterError(f"curve {name!r} must be 1-D, got shape {arr.shape}")
        if arr.size == 0:
            continue
        arr = np.where(np.isfinite(arr), arr, np.nan)
        panels.setdefault(_curve_kind(str(name)), []).append((str(name), arr))
    if not panels:
        return _message(path, "learning curves", "no data", dpi)

    order = [k for k in ("loss", "accuracy", "silent", "other") if k in panels]
    ylabels = {
        "loss": "loss",
        "accuracy": "accuracy (%)",
        "silent": "silent neurons (%)",
        "other": "value",
    }
    fig = _figure(len(order), 1, panel_size=(6.5, 2.6))
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for ax, kind in zip(axes, order, strict=True):
        scale = 100.0 if kind in ("accuracy", "silent") else 1.0
        for name, arr in panels[kind]:
            epochs = np.arange(1, arr.size + 1)
            marker = "o" if arr.size <= 30 else None
            ax.plot(epochs, scale * arr, marker=marker, markersize=3, label=name)
        ax.set_ylabel(ylabels[kind])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("learning curves")
    return _save(fig, path, dpi)


# ------------------------------------------------------------------ Yin-Yang plane


def _predict_features(
    net: Network, features: NDArray[np.float64], t_early: float, t_late: float
) -> NDArray[np.int64]:
    out = np.empty(features.shape[0], dtype=np.int64)
    chunk = 4096
    for start in range(0, features.shape[0], chunk):
        t_in = encode_yinyang(features[start : start + chunk], t_early=t_early, t_late=t_late)
        out[start : start + chunk] = predict(forward(net, t_in)[-1])
    return out


def _xy_features(xy: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.column_stack([xy[:, 0], xy[:, 1], 1.0 - xy[:, 0], 1.0 - xy[:, 1]])


def plot_yinyang_plane(
    path: PathLike,
    net: Network,
    *,
    t_early: float = 0.15,
    t_late: float = 2.0,
    resolution: int = 120,
    test_features: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
    dpi: int = _DEFAULT_DPI,
) -> Path:
    """The Yin-Yang unit square coloured by the network's prediction.

    A ``resolution`` x ``resolution`` grid of points (x, y) in [0, 1]^2 is
    encoded as features (x, y, 1 - x, 1 - y), spike times
    ``t_early + (t_late - t_early) * v`` (tau_s), run through the network and
    coloured by the first output spike (grey: no output spike). The true class
    boundaries are drawn in black. Test points are drawn in their true class
    colour; misclassified ones are marked with a red x.

    Args:
        path: output PNG.
        net: a network with 4 inputs (one output neuron per class).
        t_early: spike time of feature value 0, tau_s.
        t_late: spike time of feature value 1, tau_s.
        resolution: grid points per axis (>= 2).
        test_features: optional (N, 4) Yin-Yang features, or (N, 2) points (x, y).
        test_labels: optional (N,) true labels; computed from the class rule
            when omitted.
        dpi: resolution of the PNG.

    Returns:
        The written path.

    Raises:
        ParameterError: a network without 4 inputs, bad resolution or shapes.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, Patch

    if net.n_inputs != 4:
        raise ParameterError(
            f"the Yin-Yang plane needs a network with 4 inputs, got {net.n_inputs}"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral):
        raise ParameterError(f"resolution must be an integer >= 2, got {resolution!r}")
    resolution = int(resolution)
    if resolution < 2:
        raise ParameterError(f"resolution must be an integer >= 2, got {resolution}")
    n_out = net.n_outputs

    points: NDArray[np.float64] | None = None
    labels: NDArray[np.int64] | None = None
    if test_features is not None:
        try:
            feats = np.asarray(test_features, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterError("test_features must be a numeric array") from exc
        if feats.ndim != 2 or feats.shape[1] not in (2, 4):
            raise ParameterError(
                f"test_features must have shape (N, 4) or (N, 2), got {feats.shape}"
            )
        if not np.isfinite(feats).all():
            raise ParameterError("test_features must be finite")
        points = feats[:, :2]
        if test_labels is None:
            labels = yinyang_class(points[:, 0], points[:, 1]).reshape(-1)
        else:
            labels = _labels_1d(test_labels, points.shape[0], None, "test_labels")
    elif test_labels is not None:
        raise ParameterError("test_labels given without test_features")

    centres = (np.arange(resolution) + 0.5) / resolution
    gx, gy = np.meshgrid(centres, centres)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    pred = _predict_features(net, _xy_features(grid), t_early, t_late).reshape(gx.shape)

    colours = [_SILENT_COLOUR] + [_class_colour(k) for k in range(n_out)]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(-1.5, n_out), cmap.N)

    fig = _figure(1, 1, panel_size=(6.2, 5.4))
    ax = fig.add_subplot()
    ax.imshow(
        pred,
        origin="lower",
        extent=(0.0, 1.0, 0.0, 1.0),
        cmap=cmap,
        norm=norm,
        alpha=0.45,
        interpolation="nearest",
    )
    fine = np.linspace(0.0, 1.0, 401)
    fx, fy = np.meshgrid(fine, fine)
    ax.contour(fx, fy, yinyang_class(fx, fy), levels=[0.5, 1.5], colors="k", linewidths=0.8)
    ax.add_patch(Circle((0.5, 0.5), 0.5, fill=False, edgecolor="k", linewidth=0.8))

    handles: list[Any] = [
        Patch(facecolor=_class_colour(k), alpha=0.6, label=f"predicted {k}") for k in range(n_out)
    ]
    silent_share = float(np.mean(pred < 0))
    handles.append(
        Patch(
            facecolor=_SILENT_COLOUR,
            alpha=0.6,
            label=f"no output spike ({100 * silent_share:.0f}%)",
        )
    )
    title = "Yin-Yang: network prediction"
    if points is not None and labels is not None and points.shape[0]:
        test_pred = _predict_features(net, _xy_features(points), t_early, t_late)
        wrong = test_pred != labels
        point_colours = [_class_colour(int(k)) if k >= 0 else _SILENT_COLOUR for k in labels]
        ax.scatter(
            points[:, 0], points[:, 1], c=point_colours, s=9, edgecolors="k", linewidths=0.25
        )
        if wrong.any():
            ax.scatter(
                points[wrong, 0], points[wrong, 1], marker="x", c="red", s=22, linewidths=1.0
            )
        handles.append(
            Line2D(
                [],
                [],
                marker="x",
                color="red",
                linestyle="",
                label=f"misclassified ({wrong.sum()})",
            )
        )
        title += f" (test accuracy {100 * (1 - wrong.mean()):.1f}%)"
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title, fontsize="medium")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return _save(fig, path, dpi)


# --------------------------------------------------------- output time distributions


def _time_bins(finite: NDArray[np.float64], n_bins: int = 30) -> NDArray[np.float64]:
    if finite.size == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def plot_output_time_distributions(
    path: PathLike, out_times: ArrayLike, labels: ArrayLike, *, dpi: int = _DEFAULT_DPI
) -> Path:
    """Histograms of output spike times, one panel per true class.

    Each panel shows, for the samples of one class, every output neuron's spike
    time (the label neuron filled, the others as outlines) as a fraction of that
    class's samples; silent neurons (``inf``) are counted in a "no spike" column
    at the right and their share is given in the legend.

    Args:
        path: output PNG.
        out_times: (N, n_out) output spike times, tau_s; ``inf`` = no spike.
        labels: (N,) true classes in [0, n_out).
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ParameterError: on mismatched shapes, nan / -inf times or labels out of range.
    """
    from matplotlib.ticker import MaxNLocator

    times = _times_2d(out_times, "out_times")
    n, n_out = times.shape
    if n_out == 0:
        raise ParameterError("out_times needs at least one output neuron")
    lab = _labels_1d(labels, n, n_out, "labels")
    finite = times[np.isfinite(times)]
    edges = _time_bins(finite)
    width = edges[1] - edges[0]
    silent_x = edges[-1] + 3.0 * width  # centre of the "no spike" column
    silent_w = 3.0 * width

    fig = _figure(n_out, 1, panel_size=(6.5, 2.2))
    axes = fig.subplots(n_out, 1, sharex=True, squeeze=False)[:, 0]
    for cls, ax in enumerate(axes):
        rows = times[lab == cls]
        if rows.shape[0] == 0:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
        for j in range(n_out):
            col = rows[:, j]
            hit = col[np.isfinite(col)]
            share_silent = 1.0 - hit.size / col.size if col.size else 0.0
            counts, _ = np.histogram(hit, bins=edges)
            frac = counts / max(col.size, 1)
            colour = _class_colour(j)
            is_label = j == cls
            text = f"neuron {j}{' (label)' if is_label else ''}, silent {100 * share_silent:.0f}%"
            ax.stairs(
                frac,
                edges,
                fill=is_label,
                alpha=0.55 if is_label else 1.0,
                color=colour,
                linewidth=2.0 if is_label else 1.2,
                label=text,
            )
            bar_w = silent_w / n_out
            ax.bar(
                silent_x - silent_w / 2 + (j + 0.5) * bar_w,
                share_silent,
                width=bar_w,
                color=colour,
                alpha=0.8 if is_label else 0.5,
                edgecolor="k" if is_label else colour,
                linewidth=0.6,
            )
        ax.axvline(edges[-1] + 0.75 * width, color="0.5", linestyle=":", linewidth=0.8)
        ax.set_title(f"true class {cls} ({rows.shape[0]} samples)", fontsize="medium")
        ax.set_ylabel("fraction")
        ax.set_ylim(bottom=0.0)
        ax.legend(fontsize="x-small", loc="best")
    ticks = [
        float(t)
        for t in MaxNLocator(5).tick_values(edges[0], edges[-1])
        if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9
    ]
    axes[-1].set_xticks([*ticks, silent_x], [f"{t:g}" for t in ticks] + ["no spike"])
    axes[-1].set_xlabel("output spike time (tau_s)")
    fig.suptitle("output spike times per true class")
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------- delays


def plot_delay_histograms(path: PathLike, net: Network, *, dpi: int = _DEFAULT_DPI) -> Path:
    """One histogram per layer of its learned delays (tau_s).

    Layers without delays are skipped; if no layer has any, the figure says
    "no delays".

    Args:
        path: output PNG.
        net: the network (its ``layers`` and ``d``).
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ParameterError: when ``net.d`` does not match ``net.layers``.
    """
    if len(net.d) != len(net.layers):
        raise ParameterError(f"net has {len(net.layers)} layers but {len(net.d)} delay arrays")
    selected = []
    for index, (layer, d) in enumerate(zip(net.layers, net.d, strict=True)):
        arr = np.asarray(d, dtype=np.float64).ravel()
        if layer.delay == "none" or arr.size == 0:
            continue
        selected.append((index, layer, arr))
    if not selected:
        return _message(path, "delays", "no delays (weights only)", dpi)

    fig = _figure(1, len(selected), panel_size=(4.0, 3.2))
    axes = fig.subplots(1, len(selected), squeeze=False)[0]
    for ax, (index, layer, arr) in zip(axes, selected, strict=True):
        finite = arr[np.isfinite(arr)]
        edges = _time_bins(finite, n_bins=int(min(30, max(5, math.sqrt(max(finite.size, 1)) * 2))))
        counts, _ = np.histogram(finite, bins=edges)
        ax.stairs(counts, edges, fill=True, color=_DELAY_COLOURS[layer.delay], alpha=0.7)
        if finite.size:
            stats = (
                f"min {finite.min():.3g}\nmedian {np.median(finite):.3g}\nmax {finite.max():.3g}"
            )
            ax.text(
                0.97, 0.95, stats, ha="right", va="top", fontsize="small", transform=ax.transAxes
            )
        ax.set_title(
            f"layer {index} ({layer.n_in}→{layer.n_out}): {layer.delay}, {arr.size} delays",
            fontsize="medium",
        )
        ax.set_xlabel("delay (tau_s)")
        ax.set_ylabel("count")
    fig.suptitle("learned delays")
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------- raster


def plot_raster(
    path: PathLike,
    times: Sequence[ArrayLike],
    t_in: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    n_samples: int = 5,
    dpi: int = _DEFAULT_DPI,
) -> Path:
    """Spike rasters of the first few samples: input, hidden and output layers.

    One panel per sample; y is the neuron index, grouped by layer (input at the
    bottom, output on top), x the spike time in tau_s. Silent neurons are drawn
    as grey crosses in a "no spike" column at the right. The label neuron is
    ringed; the title gives label and prediction (first output spike).

    Args:
        path: output PNG.
        times: per layer (B, n_l) spike times as returned by ``forward``.
        t_in: (B, n_inputs) input spike times.
        labels: optional (B,) true classes.
        n_samples: how many samples (the first ones) to draw, >= 1.
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ParameterError: on mismatched batch sizes, bad shapes or ``n_samples``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ParameterError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    inputs = _times_2d(t_in, "t_in")
    if len(times) == 0:
        raise ParameterError("times must hold at least one layer")
    layers = [_times_2d(t, f"times[{i}]") for i, t in enumerate(times)]
    batch = inputs.shape[0]
    for i, t in enumerate(layers):
        if t.shape[0] != batch:
            raise ParameterError(f"times[{i}] has {t.shape[0]} samples but t_in has {batch}")
    n_out = layers[-1].shape[1]
    lab = None if labels is None else _labels_1d(labels, batch, None, "labels")
    if batch == 0:
        return _message(path, "spike raster", "no samples", dpi)
    shown = min(int(n_samples), batch)
    pred = predict(layers[-1][:shown]) if n_out else np.full(shown, -1)

    groups = [("input", inputs), *[(f"hidden {i + 1}", t) for i, t in enumerate(layers[:-1])]]
    groups.append(("output", layers[-1]))
    all_finite = np.concatenate([g[:shown][np.isfinite(g[:shown])] for _, g in groups])
    t_max = float(all_finite.max()) if all_finite.size else 1.0
    t_min = min(0.0, float(all_finite.min())) if all_finite.size else 0.0
    span = max(t_max - t_min, 1e-6)
    silent_x = t_max + 0.12 * span

    group_colours = ["0.25", *(["C0"] * (len(groups) - 2)), "C3"]
    fig = _figure(1, shown, panel_size=(3.4, 4.2))
    axes = fig.subplots(1, shown, sharey=True, squeeze=False)[0]
    for k, ax in enumerate(axes):
        offset = 0
        ticks, tick_labels = [], []
        for (name, arr), colour in zip(groups, group_colours, strict=True):
            row = arr[k]
            idx = np.arange(row.size) + offset
            fired = np.isfinite(row)
            ax.scatter(row[fired], idx[fired], marker="|", s=60, color=colour, linewidths=1.5)
            if (~fired).any():
                ax.scatter(
                    np.full(int((~fired).sum()), silent_x),
                    idx[~fired],
                    marker="x",
                    s=14,
                    color=_SILENT_COLOUR,
                    linewidths=0.8,
                )
            if name == "output" and lab is not None and 0 <= lab[k] < row.size:
                y = offset + lab[k]
                x = row[lab[k]] if np.isfinite(row[lab[k]]) else silent_x
                ax.scatter([x], [y], s=90, facecolors="none", edgecolors="k", linewidths=1.0)
            ticks.append(offset + (row.size - 1) / 2)
            tick_labels.append(name)
            offset += row.size
            ax.axhline(offset - 0.5, color="0.8", linewidth=0.6)
        ax.axvline(t_max + 0.06 * span, color="0.5", linestyle=":", linewidth=0.8)
        ax.set_xlim(t_min - 0.03 * span, silent_x + 0.06 * span)
        ax.set_ylim(-0.5, offset - 0.5)
        ax.set_yticks(ticks, tick_labels)
        ax.set_xlabel("time (tau_s)")
        guess = "none" if pred[k] < 0 else str(pred[k])
        truth = "?" if lab is None else str(lab[k])
        ax.set_title(f"sample {k}: label {truth}, pred {guess}", fontsize="medium")
        ax.text(silent_x, offset - 0.5, "no\nspike", ha="center", va="bottom", fontsize="x-small")
    fig.suptitle("spike raster (|: spike, x: no spike, o: label neuron)", fontsize="medium")
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------ sweep


def sweep_summary(
    rows: Sequence[Mapping[str, Any]],
) -> dict[str, list[tuple[int, int, float, float, float]]]:
    """Median and interquartile range of the test error per delay kind and hidden size.

    Args:
        rows: one mapping per trained network with ``hidden`` (int), ``delay``
            (``"none"``, ``"axonal"``, ``"dendritic"`` or ``"synaptic"``),
            ``test_accuracy`` (fraction in [0, 1]) and ``n_params`` (int > 0);
            other keys (e.g. ``seed``) are ignored.

    Returns:
        delay kind -> list of ``(hidden, n_params, median_err, q25, q75)`` sorted
        by ``hidden``; errors are ``100 * (1 - accuracy)`` in %, quartiles use
        linear interpolation; ``n_params`` is the median over the group's rows.
        Only kinds present appear, in the order of :data:`DELAY_LABELS`.

    Raises:
        ParameterError: missing keys or invalid values.
    """
    groups: dict[tuple[str, int], tuple[list[float], list[int]]] = {}
    for i, row in enumerate(rows):
        try:
            hidden, delay, acc, n_params = (
                row["hidden"],
                row["delay"],
                row["test_accuracy"],
                row["n_params"],
            )
        except KeyError as exc:
            raise ParameterError(f"sweep row {i} lacks key {exc.args[0]!r}") from None
        if delay not in DELAY_LABELS:
            raise ParameterError(
                f"sweep row {i}: delay must be one of {list(DELAY_LABELS)}, got {delay!r}"
            )
        for name, value in (("hidden", hidden), ("n_params", n_params)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ParameterError(
                    f"sweep row {i}: {name} must be an integer >= 1, got {value!r}"
                )
        if not _is_number(acc) or not 0.0 <= float(acc) <= 1.0:
            raise ParameterError(
                f"sweep row {i}: test_accuracy must be a fraction in [0, 1], got {acc!r}"
            )
        errs, params = groups.setdefault((str(delay), int(hidden)), ([], []))
        errs.append(100.0 * (1.0 - float(acc)))
        params.append(int(n_params))

    summary: dict[str, list[tuple[int, int, float, float, float]]] = {}
    for kind in DELAY_LABELS:
        entries = []
        for (delay, hidden), (errs, params) in sorted(groups.items()):
            if delay != kind:
                continue
            median, q25, q75 = _percentile_band(np.asarray(errs))
            entries.append((hidden, round(float(np.median(params))), median, q25, q75))
        if entries:
            summary[kind] = entries
    return summary


def plot_sweep(
    path: PathLike, rows: Sequence[Mapping[str, Any]], *, dpi: int = _DEFAULT_DPI
) -> Path:
    """Test error against network size, one curve per delay kind (DelGrad's sweep figure).

    Left: median test error (%) with the 25-75 % band against hidden-layer size;
    right: the same against the number of trainable parameters (log x).

    Args:
        path: output PNG.
        rows: sweep results, see :func:`sweep_summary`.
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ParameterError: missing keys or invalid values in ``rows``.
    """
    from matplotlib.ticker import LogFormatter

    summary = sweep_summary(rows)
    if not summary:
        return _message(path, "sweep", "no sweep results", dpi)
    fig = _figure(1, 2, panel_size=(4.8, 3.8))
    ax_h, ax_p = fig.subplots(1, 2, sharey=True)
    for kind, entries in summary.items():
        arr = np.asarray(entries, dtype=np.float64)
        colour = _DELAY_COLOURS[kind]
        for ax, x in ((ax_h, arr[:, 0]), (ax_p, arr[:, 1])):
            ax.fill_between(x, arr[:, 3], arr[:, 4], color=colour, alpha=0.2, linewidth=0)
            ax.plot(x, arr[:, 2], marker="o", markersize=4, color=colour, label=DELAY_LABELS[kind])
    ax_h.set_xlabel("hidden neurons")
    ax_h.set_ylabel("test error (%)")
    ax_p.set_xscale("log")
    # Plain numbers ("200", not "2 x 10^2"); minor ticks labelled over short ranges.
    ax_p.xaxis.set_major_formatter(LogFormatter())
    ax_p.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax_p.set_xlabel("trainable parameters")
    for ax in (ax_h, ax_p):
        ax.grid(True, alpha=0.3)
    ax_h.legend(fontsize="small")
    fig.suptitle("Yin-Yang test error: median and 25-75 % over seeds")
    return _save(fig, path, dpi)


# -------------------------------------------------------------------- recording


def _flatten_metrics(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if not prefix and key == "time_s":
            continue
        if isinstance(value, Mapping):
            out.update(_flatten_metrics(value, prefix=f"{name}."))
        elif _is_number(value):
            out[name] = float(value)
    return out


def plot_recording(
    path: PathLike, records: Sequence[Mapping[str, Any]], *, dpi: int = _DEFAULT_DPI
) -> Path:
    """Time series of a monitor recording, one panel per numeric metric.

    Each record has ``time_s`` (seconds, any epoch) and numeric metrics
    (``accuracy``, ``loss``, ``samples_per_s``, ...), either beside it or in
    nested mappings (drawn as ``outer.inner``). Non-numeric and boolean values
    are ignored; a metric missing from a record is simply absent at that time.
    At most 8 metrics are drawn, in order of first appearance.

    Args:
        path: output PNG.
        records: the recording; x is ``time_s`` minus the earliest ``time_s``.
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ParameterError: a record that is not a mapping or lacks a finite ``time_s``.
    """
    samples: list[tuple[float, dict[str, float]]] = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ParameterError(f"record {i} must be a mapping, got {type(record).__name__}")
        t = record.get("time_s")
        if not _is_number(t) or not math.isfinite(float(t)):
            raise ParameterError(f"record {i} needs a finite numeric time_s, got {t!r}")
        samples.append((float(t), _flatten_metrics(record)))
    if not samples:
        return _message(path, "recording", "no records", dpi)
    names: list[str] = []
    for _, metrics in samples:
        names.extend(m for m in metrics if m not in names)
    if not names:
        return _message(path, "recording", "no numeric metrics", dpi)
    shown, hidden = names[:_MAX_RECORDING_PANELS], names[_MAX_RECORDING_PANELS:]
    samples.sort(key=lambda s: s[0])
    t0 = samples[0][0]

    ncols = 1 if len(shown) <= 3 else 2
    nrows = math.ceil(len(shown) / ncols)
    fig = _figure(nrows, ncols, panel_size=(4.6, 2.2))
    # add_subplot with sharex (not subplots(sharex=True)) keeps tick labels on every
    # panel, so a column whose last cell is empty still shows its time axis.
    axes: list[Axes] = []
    for i in range(len(shown)):
        axes.append(fig.add_subplot(nrows, ncols, i + 1, sharex=axes[0] if axes else None))
    for ax, name in zip(axes, shown, strict=True):
        pts = [(t - t0, m[name]) for t, m in samples if name in m]
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        y = np.where(np.isfinite(y), y, np.nan)
        ax.plot(x, y, marker="o" if x.size <= 50 else None, markersize=3, linewidth=1.0)
        ax.set_title(name, fontsize="medium")
        ax.grid(True, alpha=0.3)
    for ax in axes[-ncols:]:
        ax.set_xlabel("time since first record (s)")
    title = f"recording: {len(samples)} records"
    if hidden:
        title += f" ({len(hidden)} more metrics not shown)"
    fig.suptitle(title)
    return _save(fig, path, dpi)


#: One line of a panel: (label, x in seconds, y).
Line = tuple[str, "NDArray[np.float64]", "NDArray[np.float64]"]


def plot_panels(
    path: PathLike,
    panels: Sequence[tuple[str, str, Sequence[Line]]],
    *,
    title: str,
    xlabel: str = "time since the first record (s)",
    dpi: int = _DEFAULT_DPI,
    from_zero: Collection[str] = (),
) -> Path:
    """Time series in panels sharing the time axis (``delgrad plot``).

    Args:
        path: output PNG.
        panels: (panel title, y-axis label, lines) per panel; each line is
            (legend label, x in seconds, y). A legend is drawn when a panel has
            more than one line.
        title: the figure's title (file, devices, time span).
        xlabel: label of the time axis.
        dpi: resolution.
        from_zero: titles of panels whose y axis starts at 0 (rates and times: a
            ripple of 0.2 % must not fill the panel's height).

    Returns:
        The written path.

    Raises:
        ParameterError: no panels.
    """
    if not panels:
        raise ParameterError("nothing to plot: no panels")
    ncols = 1 if len(panels) <= 2 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(nrows, ncols, panel_size=(5.0, 2.6))
    axes: list[Axes] = []
    for i in range(len(panels)):
        axes.append(fig.add_subplot(nrows, ncols, i + 1, sharex=axes[0] if axes else None))
    for ax, (name, ylabel, lines) in zip(axes, panels, strict=True):
        for label, x, y in lines:
            y = np.where(np.isfinite(y), y, np.nan)
            ax.plot(
                x, y, marker="o" if x.size <= 50 else None, markersize=3, linewidth=1.2, label=label
            )
        ax.set_title(name, fontsize="medium")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if name in from_zero:
            ax.set_ylim(bottom=0.0)
        if len(lines) > 1:
            ax.legend(fontsize="small", loc="best")
    for ax in axes[-ncols:]:
        ax.set_xlabel(xlabel)
    fig.suptitle(title, fontsize="medium")
    return _save(fig, path, dpi)
