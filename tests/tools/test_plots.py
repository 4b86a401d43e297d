"""Tests of the training-report figures in delgrad.tools._plots."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from delgrad.runtime import (
    Layer,
    Network,
    NeuronParams,
    ParameterError,
    encode_yinyang,
    forward,
    yinyang_split,
)
from delgrad.tools import _plots
from delgrad.tools._plots import (
    plot_delay_histograms,
    plot_learning_curves,
    plot_output_time_distributions,
    plot_raster,
    plot_recording,
    plot_sweep,
    plot_yinyang_plane,
    sweep_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, returned: Path) -> None:
    """A real, non-blank PNG at ``path``, returned as the path, no temp files left."""
    from matplotlib.image import imread

    assert returned == path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 2000
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert float(np.var(pixels[..., :3])) > 0.0
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o644


def make_net(delays: tuple[str, str] = ("axonal", "none"), seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Layer(4, 6, delays[0]), Layer(6, 3, delays[1])]
    w = [rng.normal(1.0, 0.6, ly.weight_shape) for ly in layers]
    d = [rng.uniform(0.0, 0.5, ly.delay_shape) for ly in layers]
    return Network(layers, NeuronParams(), w, d)


def silent_net() -> Network:
    layers = [Layer(4, 6), Layer(6, 3)]
    return Network(layers, NeuronParams(), [np.zeros(ly.weight_shape) for ly in layers])


@pytest.fixture(scope="module")
def test_data() -> tuple[np.ndarray, np.ndarray]:
    features, labels = yinyang_split("test")
    return np.array(features[:150]), np.array(labels[:150])


# ------------------------------------------------------------------- import


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, delgrad.tools._plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------- learning curves


def test_learning_curves(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    curves = {
        "train_loss": [1.2, 0.9, np.nan, 0.5],
        "train_accuracy": [0.4, 0.6, 0.7, 0.8],
        "validation_accuracy": [0.35, 0.55, float("inf"), 0.78],
        "silent_fraction": [0.5, 0.2, 0.1, 0.0],
        "lr": [1e-3, 1e-3],
    }
    assert_png(path, plot_learning_curves(path, curves))


def test_learning_curves_empty_and_bad(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    assert_png(path, plot_learning_curves(path, {}))
    assert_png(path, plot_learning_curves(path, {"train_loss": []}))
    with pytest.raises(ParameterError):
        plot_learning_curves(tmp_path / "bad.png", {"train_loss": [[1.0, 2.0]]})
    with pytest.raises(ParameterError):
        plot_learning_curves(tmp_path / "bad.png", {"train_loss": ["a", "b"]})


def test_plots_from_threads(tmp_path: Path) -> None:
    curves = {"train_loss": [1.0, 0.5, 0.3], "train_accuracy": [0.5, 0.7, 0.9]}
    paths = [tmp_path / f"c{i}.png" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: plot_learning_curves(p, curves), paths))
    for path, returned in zip(paths, results, strict=True):
        assert_png(path, returned)


# ------------------------------------------------------------ Yin-Yang plane


def test_yinyang_plane(tmp_path: Path, test_data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = test_data
    path = tmp_path / "sub" / "plane.png"
    out = plot_yinyang_plane(
        path, make_net(), resolution=40, test_features=features, test_labels=labels
    )
    assert_png(path, out)


def test_yinyang_plane_without_labels_and_points(tmp_path: Path) -> None:
    path = tmp_path / "plane.png"
    points = np.array([[0.2, 0.5], [0.7, 0.3], [0.5, 0.9]])
    assert_png(path, plot_yinyang_plane(path, make_net(), resolution=20, test_features=points))
    assert_png(path, plot_yinyang_plane(path, make_net(), resolution=20))


def test_yinyang_plane_all_silent(tmp_path: Path, test_data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = test_data
    path = tmp_path / "plane.png"
    out = plot_yinyang_plane(
        path, silent_net(), resolution=20, test_features=features, test_labels=labels
    )
    assert_png(path, out)


def test_yinyang_plane_bad_input(tmp_path: Path, test_data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = test_data
    path = tmp_path / "plane.png"
    with pytest.raises(ParameterError):
        plot_yinyang_plane(path, make_net(), test_features=features, test_labels=labels[:-1])
    with pytest.raises(ParameterError):
        plot_yinyang_plane(path, make_net(), test_features=features[:, :3])
    with pytest.raises(ParameterError):
        plot_yinyang_plane(path, make_net(), test_labels=labels)
    with pytest.raises(ParameterError):
        plot_yinyang_plane(path, make_net(), resolution=1)
    three_inputs = Network([Layer(3, 2)], NeuronParams(), [np.ones((3, 2))])
    with pytest.raises(ParameterError):
        plot_yinyang_plane(path, three_inputs)
    assert not path.exists()


# ------------------------------------------------------ output distributions


def test_output_time_distributions(
    tmp_path: Path, test_data: tuple[np.ndarray, np.ndarray]
) -> None:
    features, labels = test_data
    out_times = forward(make_net(), encode_yinyang(features))[-1]
    out_times[::7, 1] = np.inf  # some silent outputs
    path = tmp_path / "dist.png"
    assert_png(path, plot_output_time_distributions(path, out_times, labels))


def test_output_time_distributions_edge_cases(tmp_path: Path) -> None:
    path = tmp_path / "dist.png"
    all_silent = np.full((10, 3), np.inf)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    assert_png(path, plot_output_time_distributions(path, all_silent, labels))
    one_class_one_time = np.full((4, 3), 1.5)  # class 1 and 2 empty, zero-width range
    assert_png(path, plot_output_time_distributions(path, one_class_one_time, [0, 0, 0, 0]))
    assert_png(path, plot_output_time_distributions(path, np.zeros((0, 3)), np.zeros(0, int)))


def test_output_time_distributions_bad_shapes(tmp_path: Path) -> None:
    path = tmp_path / "dist.png"
    times = np.ones((5, 3))
    with pytest.raises(ParameterError):
        plot_output_time_distributions(path, times, [0, 1, 2, 0])
    with pytest.raises(ParameterError):
        plot_output_time_distributions(path, times[0], [0])
    with pytest.raises(ParameterError):
        plot_output_time_distributions(path, times, [0, 1, 2, 3, 0])  # label 3 >= n_out
    with pytest.raises(ParameterError):
        plot_output_time_distributions(path, np.full((5, 3), np.nan), [0] * 5)
    assert not path.exists()


# ------------------------------------------------------------------- delays


def test_delay_histograms(tmp_path: Path) -> None:
    path = tmp_path / "delays.png"
    assert_png(path, plot_delay_histograms(path, make_net(("axonal", "synaptic"))))
    assert_png(path, plot_delay_histograms(path, make_net(("none", "dendritic"))))


def test_delay_histograms_no_delays_and_constant(tmp_path: Path) -> None:
    path = tmp_path / "delays.png"
    assert_png(path, plot_delay_histograms(path, silent_net()))
    layers = [Layer(4, 3, "synaptic")]
    zero_delays = Network(layers, NeuronParams(), [np.ones((4, 3))])  # all delays 0
    assert_png(path, plot_delay_histograms(path, zero_delays))


# ------------------------------------------------------------------- raster


def test_raster(tmp_path: Path, test_data: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = test_data
    t_in = encode_yinyang(features[:8])
    times = forward(make_net(), t_in)
    times[0][0, 2] = np.inf
    path = tmp_path / "raster.png"
    assert_png(path, plot_raster(path, times, t_in, labels[:8], n_samples=3))
    assert_png(path, plot_raster(path, times, t_in, None, n_samples=50))


def test_raster_all_silent_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "raster.png"
    t_in = np.full((2, 4), np.inf)
    times = forward(silent_net(), t_in)
    assert all(np.isinf(t).all() for t in times)
    assert_png(path, plot_raster(path, times, t_in, [0, 2]))
    empty = [np.zeros((0, 6)), np.zeros((0, 3))]
    assert_png(path, plot_raster(path, empty, np.zeros((0, 4)), []))


def test_raster_bad_shapes(tmp_path: Path) -> None:
    path = tmp_path / "raster.png"
    t_in = np.ones((4, 4))
    times = [np.ones((4, 6)), np.ones((3, 3))]
    with pytest.raises(ParameterError):
        plot_raster(path, times, t_in, [0, 1, 2, 0])
    good = [np.ones((4, 6)), np.ones((4, 3))]
    with pytest.raises(ParameterError):
        plot_raster(path, good, t_in, [0, 1, 2])
    with pytest.raises(ParameterError):
        plot_raster(path, good, t_in[0], [0, 1, 2, 0])
    with pytest.raises(ParameterError):
        plot_raster(path, good, t_in, [0, 1, 2, 0], n_samples=0)
    with pytest.raises(ParameterError):
        plot_raster(path, [], t_in)
    assert not path.exists()


# -------------------------------------------------------------------- sweep


SWEEP_ROWS = [
    # Listed out of order on purpose: the summary sorts by delay kind and hidden size.
    {"hidden": 10, "delay": "axonal", "seed": 0, "test_accuracy": 0.90, "n_params": 104},
    {"hidden": 20, "delay": "none", "seed": 0, "test_accuracy": 0.95, "n_params": 140},
    {"hidden": 10, "delay": "none", "seed": 0, "test_accuracy": 0.90, "n_params": 70},
    {"hidden": 10, "delay": "none", "seed": 1, "test_accuracy": 0.80, "n_params": 70},
    {"hidden": 10, "delay": "none", "seed": 2, "test_accuracy": 0.70, "n_params": 70},
    {"hidden": 10, "delay": "none", "seed": 3, "test_accuracy": 0.60, "n_params": 70},
    {"hidden": 10, "delay": "axonal", "seed": 1, "test_accuracy": 0.95, "n_params": 104},
    {"hidden": 10, "delay": "axonal", "seed": 2, "test_accuracy": 0.85, "n_params": 104},
]


def test_sweep_summary_hand_computed() -> None:
    summary = sweep_summary(SWEEP_ROWS)
    assert list(summary) == ["none", "axonal"]
    # none, hidden 10: errors 10, 20, 30, 40 % -> median 25; linear quartiles at
    # positions 0.75 and 2.25 of the sorted list -> 17.5 and 32.5.
    (h10, n10, med, q25, q75), (h20, n20, med20, q25_20, q75_20) = summary["none"]
    assert (h10, n10, h20, n20) == (10, 70, 20, 140)
    assert (med, q25, q75) == pytest.approx((25.0, 17.5, 32.5))
    assert (med20, q25_20, q75_20) == pytest.approx((5.0, 5.0, 5.0))
    # axonal, hidden 10: errors 10, 5, 15 % -> sorted 5, 10, 15 -> 10, 7.5, 12.5.
    [(hidden, n_params, med, q25, q75)] = summary["axonal"]
    assert (hidden, n_params) == (10, 104)
    assert (med, q25, q75) == pytest.approx((10.0, 7.5, 12.5))
    assert sweep_summary([]) == {}


def test_sweep_summary_rejects_bad_rows() -> None:
    good = dict(SWEEP_ROWS[0])
    for key, value in [
        ("test_accuracy", 97.5),  # percent instead of a fraction
        ("test_accuracy", float("nan")),
        ("delay", "somatic"),
        ("hidden", 0),
        ("n_params", 2.5),
    ]:
        with pytest.raises(ParameterError):
            sweep_summary([{**good, key: value}])
    missing = {k: v for k, v in good.items() if k != "n_params"}
    with pytest.raises(ParameterError):
        sweep_summary([missing])


def test_sweep_plot(tmp_path: Path) -> None:
    path = tmp_path / "sweep.png"
    rows = list(SWEEP_ROWS)
    for delay, extra in (("dendritic", 3), ("synaptic", 60)):
        for hidden in (10, 20, 40):
            for seed in range(3):
                rows.append(
                    {
                        "hidden": hidden,
                        "delay": delay,
                        "seed": seed,
                        "test_accuracy": 0.9 + 0.01 * seed + 0.001 * hidden,
                        "n_params": 7 * hidden + extra * hidden // 10,
                    }
                )
    assert_png(path, plot_sweep(path, rows))
    assert_png(path, plot_sweep(path, []))


# ---------------------------------------------------------------- recording


def test_recording(tmp_path: Path) -> None:
    path = tmp_path / "rec.png"
    records = [
        {
            "time_s": 1000.0 + 2.0 * i,
            "accuracy": 0.5 + 0.04 * i,
            "loss": 1.0 / (i + 1),
            "samples_per_s": 900 + 10 * i,
            "latency_p99_ms": np.float64(3.0 + (i % 3)),
            "drops": i // 4,
            "state": "running",  # ignored: not numeric
            "connected": True,  # ignored: boolean
        }
        for i in range(12)
    ]
    records[3].pop("loss")
    records[5]["accuracy"] = float("nan")
    assert_png(path, plot_recording(path, records))


def test_recording_many_metrics_nested_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "rec.png"
    many = [{"time_s": float(t), **{f"m{k}": t * k for k in range(11)}} for t in range(5)]
    assert_png(path, plot_recording(path, many))
    nested = [{"time_s": float(t), "queue": {"depth": t % 3, "name": "q"}} for t in range(4)]
    assert_png(path, plot_recording(path, nested))
    assert_png(path, plot_recording(path, []))
    assert_png(path, plot_recording(path, [{"time_s": 0.0, "note": "x"}]))
    with pytest.raises(ParameterError):
        plot_recording(path, [{"accuracy": 0.5}])
    with pytest.raises(ParameterError):
        plot_recording(path, [{"time_s": "soon", "accuracy": 0.5}])


def test_rate_panels_start_at_zero(tmp_path: Path, monkeypatch) -> None:
    figures = []
    monkeypatch.setattr(_plots, "_save", lambda fig, path, dpi: figures.append(fig) or Path(path))
    t = np.arange(50.0)
    rate = 5000.0 + 10.0 * np.sin(t)  # a 0.2 % ripple
    panels = [("throughput", "trials/s", [("x", t, rate)]), ("loss", "loss", [("x", t, rate)])]
    _plots.plot_panels(tmp_path / "p.png", panels, title="t", from_zero={"throughput"})
    throughput, loss = figures[0].axes
    assert throughput.get_ylim()[0] == 0.0  # the ripple is a ripple
    assert loss.get_ylim()[0] > 4900.0  # other panels keep their autoscale
