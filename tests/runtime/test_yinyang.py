"""Tests of the Yin-Yang data set and its spike-time encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delgrad.runtime import (
    ParameterError,
    encode_yinyang,
    yinyang,
    yinyang_class,
    yinyang_split,
)

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "delgrad_reference"


def test_test_split_matches_published_numbers() -> None:
    features, labels = yinyang_split("test")
    assert features.shape == (1000, 4)
    assert labels.shape == (1000,)
    assert features.dtype == np.float64
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels, minlength=3), [350, 316, 334])
    np.testing.assert_allclose(
        features[0], [0.234097, 0.401725, 0.765903, 0.598275], rtol=0, atol=1e-6
    )
    assert labels[0] == 2


@pytest.mark.parametrize(("name", "size"), [("train", 5000), ("validation", 1000)])
def test_other_split_sizes(name: str, size: int) -> None:
    features, labels = yinyang_split(name)
    assert features.shape == (size, 4)
    assert labels.shape == (size,)
    # Rejection sampling after drawing the class keeps classes near balanced.
    counts = np.bincount(labels, minlength=3)
    assert counts.min() > 0.28 * size


def test_splits_are_cached_read_only_and_equal_to_generator() -> None:
    f1, l1 = yinyang_split("test")
    f2, l2 = yinyang_split("test")
    assert f1 is f2
    assert l1 is l2
    assert not f1.flags.writeable
    assert not l1.flags.writeable
    with pytest.raises(ValueError):
        f1[0, 0] = 0.0
    f3, l3 = yinyang(1000, 40)
    np.testing.assert_array_equal(f3, f1)
    np.testing.assert_array_equal(l3, l1)
    assert f3.flags.writeable


def test_splits_differ() -> None:
    ft, _ = yinyang_split("test")
    fv, _ = yinyang_split("validation")
    assert not np.array_equal(ft, fv)


def test_deterministic_and_seed_dependent() -> None:
    a = yinyang(200, 7)
    b = yinyang(200, 7)
    c = yinyang(200, 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_prefix_property() -> None:
    # Sample k depends only on the draws before it, so a smaller set is a prefix.
    big_f, big_l = yinyang(300, 3)
    small_f, small_l = yinyang(120, 3)
    np.testing.assert_array_equal(big_f[:120], small_f)
    np.testing.assert_array_equal(big_l[:120], small_l)


def test_features_geometry_and_labels_consistent() -> None:
    features, labels = yinyang_split("train")
    x, y = features[:, 0], features[:, 1]
    np.testing.assert_array_equal(features[:, 2], 1.0 - x)
    np.testing.assert_array_equal(features[:, 3], 1.0 - y)
    assert np.all(np.hypot(x - 0.5, y - 0.5) <= 0.5)
    np.testing.assert_array_equal(yinyang_class(x, y), labels)


def test_yinyang_class_known_points() -> None:
    x = np.array([0.75, 0.25, 0.5, 0.5, 0.25, 0.75])
    y = np.array([0.5, 0.5, 0.9, 0.1, 0.65, 0.35])
    # right dot, left dot, top, bottom, ring around the left dot, ring around
    # the right dot; the reference's `is_yin` region (top, left ring) is label 1.
    np.testing.assert_array_equal(yinyang_class(x, y), [2, 2, 1, 0, 1, 0])


def test_yinyang_class_broadcasts_grid() -> None:
    xs = np.linspace(0.0, 1.0, 51)
    grid = yinyang_class(xs[None, :], xs[:, None])
    assert grid.shape == (51, 51)
    assert set(np.unique(grid)) == {0, 1, 2}


def test_yinyang_class_other_radii() -> None:
    features, labels = yinyang(300, 5, r_small=0.15, r_big=0.6)
    x, y = features[:, 0], features[:, 1]
    assert np.all(np.hypot(x - 0.6, y - 0.6) <= 0.6)
    np.testing.assert_array_equal(yinyang_class(x, y, r_small=0.15, r_big=0.6), labels)
    assert not np.array_equal(yinyang_class(x, y), labels)


def test_encode() -> None:
    features, _ = yinyang_split("test")
    times = encode_yinyang(features)
    assert times.shape == (1000, 4)
    np.testing.assert_allclose(times, 0.15 + 1.85 * features, rtol=0, atol=1e-15)
    np.testing.assert_allclose(encode_yinyang([0.0, 1.0]), [0.15, 2.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        encode_yinyang([0.5], t_early=1.0, t_late=3.0), [2.0], rtol=0, atol=0
    )
    assert features.flags.writeable is False  # encoding did not touch the split


def test_zero_size() -> None:
    f, labels = yinyang(0, 1)
    assert f.shape == (0, 4)
    assert labels.shape == (0,)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: yinyang(-1, 0), "size"),
        (lambda: yinyang(2.5, 0), "size"),
        (lambda: yinyang(10, -3), "seed"),
        (lambda: yinyang(10, 2**32), "seed"),
        (lambda: yinyang(10, 0, r_small=0.3), "r_small"),
        (lambda: yinyang(10, 0, r_big=0.0), "r_big"),
        (lambda: yinyang_split("tset"), "tset"),
        (lambda: encode_yinyang([0.1], t_early=2.0, t_late=1.0), "t_early"),
        (lambda: encode_yinyang([np.nan]), "finite"),
        (lambda: encode_yinyang(["a"]), "numeric"),
        (lambda: yinyang_class([0.1, 0.2], [0.1, 0.2, 0.3]), "broadcast"),
    ],
)
def test_bad_inputs_raise(call, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        call()


@pytest.mark.reference
def test_labels_match_authors_recorded_test_labels() -> None:
    path = REFERENCE / "yin_yang_H30_W.npz"
    if not path.exists():
        pytest.skip(f"reference data not found at {path}")
    with np.load(path, allow_pickle=False) as ref:
        recorded = ref["test_labels"]
    _, labels = yinyang_split("test")
    np.testing.assert_array_equal(labels, recorded)
