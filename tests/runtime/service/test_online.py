"""The online learner: each step's loss computed once, with results bit-identical."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from delgrad.drivers import driver_from_config
from delgrad.runtime import Learner, resolve_config
from delgrad.runtime.service import OnlineLearner
from delgrad.runtime.service._learning import step_pieces

STEP = 20


def make_online(*, refresh: bool) -> OnlineLearner:
    learner = Learner(resolve_config("yinyang_H30_WS"))
    return OnlineLearner(
        learner, driver_from_config("emulator-ideal"), step_every=STEP, refresh=refresh
    )


def labelled_batches(online: OnlineLearner, sizes: list[int], seed: int = 0):
    rng = np.random.default_rng(seed)
    for size in sizes:
        t_in = rng.uniform(0.15, 2.0, (size, online.n_inputs))
        yield t_in, rng.integers(0, online.n_outputs, size)


@pytest.mark.parametrize("filled", [0, 7, STEP - 1])
@pytest.mark.parametrize("n", [1, 13, STEP, 3 * STEP + 5])
def test_step_pieces_cut_where_the_buffer_fills(n, filled):
    pieces = step_pieces(n, filled, STEP)
    assert pieces[0].start == 0 and pieces[-1].stop == n
    assert all(a.stop == b.start for a, b in itertools.pairwise(pieces))
    at = filled
    for piece in pieces:
        assert (at % STEP) + (piece.stop - piece.start) <= STEP
        at += piece.stop - piece.start


@pytest.mark.parametrize("n", [1, STEP, STEP + 1, 3 * STEP])
def test_with_refresh_only_a_first_whole_step_is_cut_off(n):
    assert step_pieces(n, 0, STEP, refresh=True) == [
        s for s in (slice(0, min(n, STEP)), slice(STEP, n)) if s.stop > s.start
    ]
    assert step_pieces(n, 5, STEP, refresh=True) == [slice(0, n)]


@pytest.mark.parametrize("refresh", [False, True])
def test_scored_pieces_learn_bit_identically_and_compute_each_loss_once(refresh):
    plain, scored = make_online(refresh=refresh), make_online(refresh=refresh)
    calls = {"n": 0}
    loss_fn = scored.learner.loss

    def counting(times, labels):
        calls["n"] += 1
        return loss_fn(times, labels)

    scored.learner.loss = counting  # type: ignore[method-assign]
    sizes = [STEP, 7, 13, 2 * STEP + 3, STEP, 1, STEP - 1, 3 * STEP]
    filled = whole = in_steps = 0
    for t_in, labels in labelled_batches(plain, sizes):
        rows = []
        for online in (plain, scored):
            observation, version = online.observe(t_in)
            rows.append(online.pack(t_in, observation, version))
        np.testing.assert_array_equal(rows[0], rows[1])
        plain.learn_rows(rows[0], labels)
        pieces = []
        for cut in step_pieces(len(labels), filled, STEP, refresh=refresh):
            pieces.append((rows[1][cut], labels[cut], scored.score(rows[1][cut], labels[cut])))
            whole += filled == 0 and cut.stop - cut.start == STEP
            filled = (filled + cut.stop - cut.start) % STEP
        before = calls["n"]
        scored.learn_scored(pieces)
        in_steps += calls["n"] - before
    steps = sum(sizes) // STEP
    assert scored.steps + scored.bumps == plain.steps + plain.bumps == steps
    assert scored.refreshed == plain.refreshed
    for a, b in zip(plain.learner.net.w, scored.learner.net.w, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(plain.learner.raw, scored.learner.raw, strict=True):
        np.testing.assert_array_equal(a, b)
    # a step made of one scored piece reuses its loss, unless it re-observed its trials
    assert whole >= (1 if refresh else 4)
    if refresh:
        assert steps - whole <= in_steps <= steps and scored.refreshed > 0
    else:
        assert in_steps == steps - whole


def test_score_is_the_learner_loss_row_by_row():
    online = make_online(refresh=False)
    ((t_in, labels),) = labelled_batches(online, [50])
    observation, version = online.observe(t_in)
    rows = online.pack(t_in, observation, version)
    whole = online.score(rows, labels)
    for cut in (slice(0, 20), slice(20, 21), slice(21, 50)):
        part = online.score(rows[cut], labels[cut])
        np.testing.assert_array_equal(part.loss, whole.loss[cut])
        np.testing.assert_array_equal(part.correct, whole.correct[cut])
