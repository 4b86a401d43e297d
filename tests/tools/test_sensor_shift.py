"""``delgrad sensor --shift``: every source shifts at the point asked for, the same way
for a seed, and bad options are refused in one line."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from delgrad.protocols import (
    InProcessBus,
    Labels,
    MqttTransport,
    Publisher,
    SensorEvents,
    decode,
    subscription,
    topic,
)
from delgrad.runtime import yinyang_split
from delgrad.runtime.sources import (
    SHIFT_KEYS,
    EventRecording,
    LabelSpans,
    PixelMapping,
    Shift,
    ShiftRandom,
    read_events,
    shift_events,
    write_label_file,
)
from delgrad.tools import Mosquitto
from delgrad.tools._cli import main
from delgrad.tools._cmd_sensor import _source, _validate, register
from delgrad.tools._sensor import FileSource, YinYangSource
from delgrad.tools._shifted_source import ShiftedRecording, ShiftedSource
from delgrad.tools._stream import plan_stream, stream_recording


def _yinyang(shift, repeat=5, seed=3, **kw):
    yy = YinYangSource("train", input_repeat=repeat, seed=seed)
    return ShiftedSource(yy, shift, yy.layout(6.0), n_classes=3, seed=seed, **kw)


def _take(source, n, batch=100):
    return [source.take(min(batch, n - i)) for i in range(0, n, batch)]


def _flat(batches):
    ids = np.concatenate([b.trial_ids for b in batches])
    counts = np.concatenate([np.diff(b.offsets) for b in batches])
    return (
        ids,
        counts,
        np.concatenate([b.channels for b in batches]),
        np.concatenate([b.times for b in batches]),
        np.concatenate([b.labels for b in batches]),
    )


# ---- trial streams -------------------------------------------------------------------


def test_yinyang_is_untouched_before_the_point_and_swapped_after_it():
    plain = _flat(_take(YinYangSource("train", input_repeat=5, seed=3), 500))
    ids, _, ch, t, labels = _flat(_take(_yinyang(Shift(swap_polarity=True), after_trials=250), 500))
    np.testing.assert_array_equal(ids, np.arange(500))  # ids count on without gaps
    np.testing.assert_array_equal(labels, plain[4])
    np.testing.assert_array_equal(ch, plain[2])
    cut = 250 * 20
    np.testing.assert_array_equal(t[:cut], plain[3][:cut])  # trials 0 .. 249 as they were
    np.testing.assert_allclose(t[cut:], 2.15 - plain[3][cut:], atol=1e-12)  # v -> 1 - v


def test_a_seed_gives_the_same_shifted_stream_whatever_the_batch():
    shift = Shift(dx=3, rate=0.6, noise_hz=2e4, prior=(1.0, 0.3, 1.0), late_classes=(2,))
    a = _flat(_take(_yinyang(shift, after_trials=333), 2000, batch=100))
    b = _flat(_take(_yinyang(shift, after_trials=333), 2000, batch=7))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = _flat(_take(_yinyang(shift, after_trials=333, seed=4), 2000))
    assert not np.array_equal(a[2], c[2])


def test_a_late_class_appears_only_after_the_point_and_a_prior_after_it():
    shift = Shift(late_classes=(2,), prior=(1.0, 0.25, 1.0))
    *_, labels = _flat(_take(_yinyang(shift, repeat=1, seed=1, after_trials=1000), 7000))
    assert len(labels) == 7000
    assert 2 not in labels[:1000]
    later = np.bincount(labels[1000:], minlength=3)
    # each class as often as in the split times its weight (binomial bounds)
    base = np.bincount(yinyang_split("train")[1]) * np.array([1.0, 0.25, 1.0])
    share = base / base.sum()
    total = later.sum()
    assert (np.abs(later - total * share) < 5 * np.sqrt(total * share * (1 - share))).all()
    assert later[1] < 0.4 * later[0]


def test_the_command_sets_a_yinyang_pass_point_at_the_split_size():
    parser = argparse.ArgumentParser()
    register(parser)
    args = parser.parse_args(["--shift", "rate=0.5", "--shift-after-pass", "2"])
    _validate(args)
    source = _source(args)
    assert isinstance(source, ShiftedSource) and source.after_source_trials == 2 * 5000


def test_noise_and_rate_on_the_yinyang_stream():
    # 1e5 events/s per channel at 6 us per tau_s: 1.2 per channel per 2 tau_s trial
    _, counts, ch, t, _ = _flat(_take(_yinyang(Shift(rate=0.5, noise_hz=1e5), repeat=1), 2000))
    kept_and_noise = counts.sum()
    want = 2000 * (4 * 0.5 + 4 * 1.2)
    assert abs(kept_and_noise - want) < 5 * np.sqrt(2000 * (4 * 0.25 + 4 * 1.2))
    assert ch.min() >= 0 and ch.max() <= 3 and t.min() >= 0 and t.max() < 2.0


def test_a_trial_file_shifts_from_a_pass(tmp_path):
    rng = np.random.default_rng(0)
    channels = rng.integers(0, 16, (40, 5))
    times = rng.uniform(0, 3, (40, 5))
    labels = np.arange(40) % 2
    np.savez(tmp_path / "t.npz", channels=channels, times=times, labels=labels)
    inner = FileSource(tmp_path / "t.npz")
    source = ShiftedSource(
        inner, Shift(dx=4), inner.layout(6.0), after_source_trials=2 * 40, n_classes=2
    )
    _, counts, ch, t, got = _flat(_take(source, 120, batch=13))
    np.testing.assert_array_equal(got, np.tile(labels, 3))
    first_two = counts[:80].sum()
    np.testing.assert_array_equal(ch[:first_two], np.tile(channels.ravel(), 2))
    inside = channels.ravel() + 4 < 16
    np.testing.assert_array_equal(ch[first_two:], channels.ravel()[inside] + 4)
    np.testing.assert_array_equal(t[first_two:], times.ravel()[inside])


# ---- recordings ----------------------------------------------------------------------


def _digits(n=12, size=8, per=60, seed=0):
    """A recording of ``n`` 100 us samples (labels i % 3) on a size x size sensor."""
    rng = np.random.default_rng(seed)
    t = np.floor(np.sort(rng.uniform(0, n * 100, n * per)))
    x, y = rng.integers(0, size, t.size), rng.integers(0, size, t.size)
    spans = LabelSpans(np.arange(n) * 100.0, np.arange(1, n + 1) * 100.0, np.arange(n) % 3)
    return EventRecording(t, x, y, rng.integers(0, 2, t.size), size, size, spans)


def _shifted(rec, shift, **kw):
    mapping = PixelMapping(rec.width, rec.height, us_per_tau=10.0)
    return ShiftedRecording(rec, mapping, shift, window_length=10.0, **kw), mapping


def test_a_recording_shifts_from_a_pass_and_draws_afresh_each_pass():
    rec = _digits()
    shifted, mapping = _shifted(rec, Shift(dx=2, rate=0.5), after_pass=1, seed=5)
    plain = plan_stream(rec, mapping, window_length=10.0)
    p0 = shifted.plan(0)
    np.testing.assert_array_equal(p0.t_us, plain.t_us)
    np.testing.assert_array_equal(p0.channels, plain.channels)
    p1 = shifted.plan(1)
    t, x, y, _ = shift_events(
        rec.t_us, rec.x, rec.y, rec.p, Shift(dx=2, rate=0.5), ShiftRandom(5, 1),
        width=8, height=8, span_us=(0.0, 1200.0),
    )  # fmt: skip
    np.testing.assert_array_equal(p1.t_us, t)
    np.testing.assert_array_equal(p1.channels, y * 8 + x)
    inside = rec.x + 2 < 8
    assert abs(p1.t_us.size - inside.sum() / 2) < 5 * np.sqrt(inside.sum() / 4)
    np.testing.assert_array_equal(p1.window_labels, plain.window_labels)
    assert p1.span_us == plain.span_us
    assert not np.array_equal(shifted.plan(2).t_us, p1.t_us)  # another thinning


def test_a_recording_holds_a_late_class_back_until_window_n():
    rec = _digits()
    shifted, _ = _shifted(rec, Shift(late_classes=(2,)), after_windows=10)
    # 8 windows per pass without class 2: the point is window 2 of pass 1 (sent ids 8, 9)
    assert shifted.start(0) == 12 and shifted.start(1) == 3 and shifted.start(2) == 0
    p0, p1, p2 = shifted.plan(0), shifted.plan(1), shifted.plan(2)
    np.testing.assert_array_equal(p0.window_labels, [0, 1, 0, 1, 0, 1, 0, 1])
    assert p0.span_us == 800.0 and p0.t_us.max() < 800.0
    # pass 1: window 2 (class 2) lies before the point, 5, 8, 11 after it
    np.testing.assert_array_equal(p1.window_labels, [0, 1, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(p2.window_labels, np.arange(12) % 3)
    # the events of a kept window keep their place within it
    keep = (rec.t_us // 100) % 3 != 2
    np.testing.assert_array_equal(p0.t_us % 100, rec.t_us[keep] % 100)


def test_a_recording_prior_leaves_out_labelled_spans():
    rec = _digits(n=600, per=5)
    shifted, _ = _shifted(rec, Shift(prior=(1.0, 1.0, 0.2)), seed=2)
    plan = shifted.plan(0)
    counts = np.bincount(plan.window_labels, minlength=3)
    assert counts[0] == counts[1] == 200
    assert abs(counts[2] - 40) < 5 * np.sqrt(200 * 0.2 * 0.8)
    assert plan.span_us == (400 + counts[2]) * 100.0
    np.testing.assert_array_equal(plan.window_ids, np.arange(400 + counts[2]))


def test_recording_noise_falls_after_the_point_only():
    rec = _digits()
    shifted, _ = _shifted(rec, Shift(noise_hz=2000.0), after_windows=6)
    plan = shifted.plan(0)
    before = plan.t_us < 600.0
    assert before.sum() == (rec.t_us < 600.0).sum()
    # 2,000 events/s per pixel, 64 pixels, 600 us: 76.8 expected
    extra = plan.t_us.size - rec.t_us.size
    assert abs(extra - 76.8) < 5 * np.sqrt(76.8)


async def test_stream_recording_sends_each_pass_plan_with_ids_and_times_continuing():
    rec = _digits()
    shifted, _ = _shifted(rec, Shift(late_classes=(2,)), after_pass=1)
    bus = InProcessBus()
    sub = bus.transport("sub")
    await sub.connect()
    await sub.subscribe(subscription("dev"), qos=1)
    pub = bus.transport("sensor")
    await pub.connect()
    stats = await stream_recording(
        Publisher(pub, "sensor"), "dev", shifted.plan(0), speed=float("inf"), chunk_us=100.0,
        passes=2, plan_of_pass=shifted.plan,
    )  # fmt: skip
    assert stats.end_us == 800.0 + 1200.0 and stats.labels == 8 + 12
    msgs = [
        decode((await sub.recv()).payload).message
        for _ in range(stats.event_messages + stats.label_messages)
    ]
    ids = np.concatenate([m.trial_ids for m in msgs if isinstance(m, Labels)])
    labels = np.concatenate([m.labels for m in msgs if isinstance(m, Labels)])
    np.testing.assert_array_equal(ids, np.arange(20))
    np.testing.assert_array_equal(labels[:8], np.arange(8) % 2)
    np.testing.assert_array_equal(labels[8:], np.arange(12) % 3)
    times = np.concatenate([m.times for m in msgs if isinstance(m, SensorEvents)])
    assert (np.diff(times) >= 0).all() and times[-1] < 2000.0


# ---- the command ---------------------------------------------------------------------


@pytest.fixture
def recording(tmp_path):
    rec = _digits()
    np.save(tmp_path / "r.npy", np.rec.fromarrays([rec.t_us.astype(np.int64), rec.x, rec.y,
                                                  rec.p], names="t,x,y,p"))  # fmt: skip
    write_label_file(tmp_path / "r.npy.labels.csv", rec.labels)
    return tmp_path / "r.npy"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--shift", "shear=1"], "unknown key 'shear'"),
        (["--shift", "rate=2"], "no events are made up"),
        (["--shift-after-trials", "5"], "need --shift"),
        (["--shift", "rate=0.5", "--shift-after-trials", "-1"], "must be >= 0"),
        (["--shift", "late_class=1"], "late_class needs a later point"),
        (["--shift", "prior=1:1"], "prior has 2 weights; the Yin-Yang stream has 3 classes"),
        (["--shift", "late_class=3", "--shift-after-trials", "9"], "classes 0..2"),
        (["--shift", "translate=101"], "at most 100 steps"),
        (["--shift", "noise=1e9"], "events expected"),
        (["--shift", "rate=0.5", "--shift-after-trials", "9", "--count", "9"], "nothing would"),
        (["--source", "REC", "--shift", "rate=0.5", "--shift-after-pass", "1"], "--passes 1"),
        (["--source", "REC", "--shift", "rate=0.5", "--shift-after-trials", "12"], "12 windows"),
        (["--source", "REC", "--shift", "translate=0:8"], "off the 8 x 8 sensor"),
        (["--source", "REC", "--shift", "prior=1:2"], "prior has 2 weights; the recording"),
        (["--source", "NPZ", "--shift", "polarity=swap"], "has no polarity"),
        (["--source", "NPZ", "--shift", "translate=1:1"], "no rows"),
        (["--source", "NPZ", "--shift", "late_class=0", "--shift-after-trials", "3"], "none"),
    ],
)
def test_cli_bad_shift_options_exit_2_in_one_line(argv, match, recording, tmp_path, capsys):
    np.savez(tmp_path / "t.npz", channels=np.zeros((2, 1), int), times=np.ones((2, 1)))
    argv = [
        str(recording) if a == "REC" else str(tmp_path / "t.npz") if a == "NPZ" else a for a in argv
    ]
    assert main(["sensor", "--window-length", "10", "--us-per-tau", "10", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_shift_points_are_exclusive(capsys):
    assert main(["sensor", "--shift", "rate=0.5", "--shift-after-trials", "1",
                 "--shift-after-pass", "1"]) == 2  # fmt: skip
    assert "not allowed with argument" in capsys.readouterr().err


def _write_dv(path, rec):
    """``rec`` as AEDAT4 written by dv-processing (the file is read back by faery)."""
    dv = pytest.importorskip("dv_processing")
    store = dv.EventStore()
    for t, x, y, p in zip(rec.t_us, rec.x, rec.y, rec.p, strict=True):
        store.push_back(int(t), int(x), int(y), bool(p))
    config = dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer", (rec.width, rec.height))
    writer = dv.io.MonoCameraWriter(str(path), config)
    writer.writeEvents(store)
    del writer  # closes the file
    write_label_file(f"{path}.labels.csv", rec.labels)


@pytest.mark.broker
async def test_cli_shifts_a_dv_processing_recording_after_its_first_pass(
    mosquitto: Mosquitto, tmp_path
):
    pytest.importorskip("faery")
    rec = _digits(n=30, size=16, per=80, seed=4)
    rec = EventRecording(rec.t_us + 1_000_000, rec.x, rec.y, rec.p, 16, 16, rec.labels.shifted(1e6))
    _write_dv(tmp_path / "dv.aedat4", rec)
    back = read_events(tmp_path / "dv.aedat4")
    np.testing.assert_array_equal(back.t_us, rec.t_us)
    async with asyncio.timeout(40):
        rx = MqttTransport("127.0.0.1", mosquitto.port, client_id="rx", timeout_s=3.0)
        async with rx:
            await rx.subscribe(subscription("dv1"), qos=1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "delgrad.tools._cli", "sensor", "--broker", mosquitto.url,
                "--device", "dv1", "--source", str(tmp_path / "dv.aedat4"), "--speed", "inf",
                "--window-length", "10", "--us-per-tau", "10", "--passes", "2",
                "--shift", "translate=2,rate=0.5", "--shift-after-pass", "1", "--seed", "9",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            events, labels = [], []
            while len(labels) < 60:
                m = await rx.recv(timeout=10)
                msg = decode(m.payload).message
                if m.topic == topic("dv1", "labels"):
                    labels.extend(msg.trial_ids)
                else:
                    events.append(msg)
    assert labels == list(range(60))
    channels = np.concatenate([m.channels for m in events])
    times = np.concatenate([m.times for m in events])
    first = times < 3000.0
    x0, y0 = rec.x, rec.y  # pass 0: every event, channel = y * 16 + x
    np.testing.assert_array_equal(channels[first], y0 * 16 + x0)
    np.testing.assert_array_equal(times[first], rec.t_us - 1_000_000)
    # pass 1: a seeded half of the events that stay on the sensor, 2 columns to the right
    ch1, t1 = channels[~first], times[~first] - 3000.0
    inside = x0 + 2 < 16
    assert abs(ch1.size - inside.sum() / 2) < 5 * np.sqrt(inside.sum() / 4)
    pairs = set(
        zip(
            (rec.t_us - 1_000_000)[inside].tolist(),
            (y0 * 16 + x0 + 2)[inside].tolist(),
            strict=True,
        )
    )
    assert all(p in pairs for p in zip(t1.tolist(), ch1.tolist(), strict=True))
    mapping = PixelMapping(16, 16, us_per_tau=10.0)
    want = ShiftedRecording(back, mapping, Shift(dx=2, rate=0.5), window_length=10.0,
                            after_pass=1, seed=9).plan(1)  # fmt: skip
    np.testing.assert_array_equal(ch1, want.channels)
    assert "sent" in out.decode()


def test_the_docs_name_every_key_and_their_yinyang_examples_run():
    text = (Path(__file__).resolve().parents[2] / "docs" / "sensors.md").read_text()
    section = text[text.index("## A world that shifts") : text.index("## Your own sensor")]
    for key in SHIFT_KEYS:
        assert f"| `{key}=" in section, key
    assert "--shift-after-trials N" in section and "--shift-after-pass P" in section
    lines = [ln for ln in section.splitlines() if ln.startswith("delgrad sensor --device demo")]
    assert len(lines) == 2
    for line in lines:
        parser = argparse.ArgumentParser()
        register(parser)
        args = parser.parse_args(shlex.split(line)[2:])
        _validate(args)
        source = _source(args)
        assert isinstance(source, ShiftedSource) and source.take(50).trial_ids.size == 50
