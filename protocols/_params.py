"""Parameter snapshots and deltas, and the sender/receiver state that keeps them in step.

A network is a list of layers; each layer is a dict of named float32 arrays (e.g. ``"w"``
of shape (n_in, n_out) and ``"d"`` delays of shape (n_in, n_out), (n_in,), (n_out,) or
(0,)) plus a ``delay_kind`` string. The checksum is BLAKE2b with a 16-byte digest over the
canonical tensor bytes (see :func:`parameters_checksum`).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from delgrad.errors import ChecksumError, ParameterError, SchemaError

from ._arrays import ElementBudget, decode_array, encode_array
from ._codec import (
    MAX_SEQ,
    NAME_RE,
    Message,
    get_choice,
    get_float,
    get_int,
    get_list,
    get_map,
    get_name,
    register_message,
    sorted_names,
)

#: Delay kinds whose delay-array shape is checked: name -> shape given (n_in, n_out).
DELAY_SHAPES: dict[str, Any] = {
    "synaptic": lambda i, o: (i, o),
    "axonal": lambda i, o: (i,),
    "dendritic": lambda i, o: (o,),
    "none": lambda i, o: (0,),
}
#: Delta encodings.
DELTA_ENCODINGS: frozenset[str] = frozenset({"float32", "int8"})
MAX_LAYERS = 64
MAX_TENSORS_PER_LAYER = 16
CHECKSUM_BYTES = 16

Layers = Sequence[Mapping[str, np.ndarray]]


def _f32_layers(layers: Layers) -> tuple[dict[str, np.ndarray], ...]:
    if len(layers) > MAX_LAYERS:
        raise ParameterError(f"at most {MAX_LAYERS} layers")
    out = []
    for i, layer in enumerate(layers):
        if len(layer) > MAX_TENSORS_PER_LAYER:
            raise ParameterError(f"layer {i}: at most {MAX_TENSORS_PER_LAYER} tensors")
        d = {}
        for name in sorted_names(layer, f"layer {i}: tensor name"):
            arr = np.asarray(layer[name])
            if arr.size and arr.dtype.kind not in "biuf":
                raise ParameterError(f"layer {i}: tensor {name!r} must be numeric")
            arr = np.array(arr, dtype=np.float32, order="C")
            if not np.all(np.isfinite(arr)):
                raise ParameterError(f"layer {i}: tensor {name!r} must be finite")
            d[name] = arr
        out.append(d)
    return tuple(out)


def parameters_checksum(layers: Layers) -> bytes:
    """Return the 16-byte BLAKE2b digest of a network's tensors.

    The digest input is, for each layer in order and each tensor name in sorted order:
    the name in UTF-8, one zero byte, the number of dimensions as one byte, each
    dimension as a little-endian uint32, then the float32 little-endian C-order data.
    """
    h = hashlib.blake2b(digest_size=CHECKSUM_BYTES)
    for layer in layers:
        for name in sorted(layer):
            arr = np.ascontiguousarray(layer[name], dtype="<f4")
            h.update(name.encode() + b"\x00")
            h.update(struct.pack(f"<B{arr.ndim}I", arr.ndim, *arr.shape))
            h.update(arr.tobytes())
    return h.digest()


def _readonly(layers: Sequence[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], ...]:
    for layer in layers:
        for arr in layer.values():
            arr.setflags(write=False)
    return tuple(layers)


def _check_checksum(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != CHECKSUM_BYTES:
        raise SchemaError(f"checksum must be {CHECKSUM_BYTES} bytes")
    return value


@dataclass(frozen=True)
class NeuronParams:
    """LIF neuron parameters shared by the network.

    Attributes:
        tau_s: Synaptic time constant (the model time unit; > 0, in whatever unit the
            runtime uses for tau_s itself, usually 1.0).
        tau_m: Membrane time constant in units of tau_s (> 0).
        theta: Firing threshold (dimensionless, > 0).
    """

    tau_s: float = 1.0
    tau_m: float = 2.0
    theta: float = 1.0

    def __post_init__(self) -> None:
        for k in ("tau_s", "tau_m", "theta"):
            v = float(getattr(self, k))
            if not math.isfinite(v) or v <= 0:
                raise ParameterError(f"{k} must be finite and > 0")
            object.__setattr__(self, k, v)


@register_message
@dataclass(frozen=True, eq=False)
class ParameterSnapshot(Message):
    """The full network parameters at an update sequence number.

    Attributes:
        seq: Update sequence number, 0 .. 2**64-1.
        layer_sizes: Neuron counts per population, e.g. (4, 30, 3); len(layers) + 1 entries.
        neuron: Neuron parameters.
        delay_kinds: Per layer ``delay_kind`` name (``NAME_RE``; the kinds in
            ``DELAY_SHAPES`` have their ``"d"`` shape checked).
        layers: Per layer, tensor name -> float32 array; ``"w"`` must be (n_in, n_out).
        checksum: 16-byte BLAKE2b of ``layers`` (computed; verified on decode).
    """

    SCHEMA: ClassVar[str] = "params"
    seq: int
    layer_sizes: tuple[int, ...]
    neuron: NeuronParams
    delay_kinds: tuple[str, ...]
    layers: tuple[dict[str, np.ndarray], ...]
    checksum: bytes = field(init=False)

    def __post_init__(self) -> None:
        if type(self.seq) is not int or not 0 <= self.seq <= MAX_SEQ:
            raise ParameterError("seq must be an integer in 0 .. 2**64-1")
        sizes = tuple(int(s) for s in self.layer_sizes)
        if any(s <= 0 or s >= 1 << 31 for s in sizes):
            raise ParameterError("layer_sizes must be positive")
        layers = _f32_layers(self.layers)
        kinds = tuple(self.delay_kinds)
        if len(sizes) != len(layers) + 1 or len(kinds) != len(layers):
            raise ParameterError("need len(layer_sizes) == len(layers) + 1 == len(delay_kinds) + 1")
        for i, (layer, kind) in enumerate(zip(layers, kinds, strict=True)):
            if not isinstance(kind, str) or not NAME_RE.match(kind):
                raise ParameterError(f"layer {i}: delay_kind {kind!r} is not valid")
            n_in, n_out = sizes[i], sizes[i + 1]
            if "w" in layer and layer["w"].shape != (n_in, n_out):
                raise ParameterError(f"layer {i}: w must be ({n_in}, {n_out})")
            if "d" in layer and kind in DELAY_SHAPES:
                want = DELAY_SHAPES[kind](n_in, n_out)
                if layer["d"].shape != want:
                    raise ParameterError(f"layer {i}: d must be {want} for {kind} delays")
        object.__setattr__(self, "layer_sizes", sizes)
        object.__setattr__(self, "delay_kinds", kinds)
        object.__setattr__(self, "layers", _readonly(layers))
        object.__setattr__(self, "checksum", parameters_checksum(layers))

    def to_body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "layer_sizes": list(self.layer_sizes),
            "neuron": {
                "tau_s": self.neuron.tau_s,
                "tau_m": self.neuron.tau_m,
                "theta": self.neuron.theta,
            },
            "layers": [
                {"delay_kind": k, "tensors": {n: encode_array(a) for n, a in layer.items()}}
                for k, layer in zip(self.delay_kinds, self.layers, strict=True)
            ],
            "checksum": self.checksum,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        b = ElementBudget() if budget is None else budget
        sizes = get_list(body, "layer_sizes", max_len=MAX_LAYERS + 1)
        if any(type(s) is not int for s in sizes):
            raise SchemaError("layer_sizes: expected integers")
        nb = get_map(body, "neuron")
        neuron_kw = {k: get_float(nb, k) for k in ("tau_s", "tau_m", "theta")}
        kinds, layers = [], []
        for i, lb in enumerate(get_list(body, "layers", max_len=MAX_LAYERS)):
            if not isinstance(lb, dict):
                raise SchemaError(f"layers[{i}]: expected a map")
            kinds.append(get_name(lb, "delay_kind"))
            tensors = get_map(lb, "tensors")
            layers.append(
                {
                    n: decode_array(t, f"layers[{i}].{n}", b, dtypes=frozenset({"<f4"}))
                    for n, t in tensors.items()
                }
            )
        checksum = _check_checksum(body.get("checksum"))
        try:
            snap = cls(
                seq=get_int(body, "seq", 0, MAX_SEQ),
                layer_sizes=tuple(sizes),
                neuron=NeuronParams(**neuron_kw),
                delay_kinds=tuple(kinds),
                layers=tuple(layers),
            )
        except ParameterError as exc:
            raise SchemaError(f"params: {exc}") from exc
        if snap.checksum != checksum:
            raise ChecksumError("params: checksum does not match the tensors")
        return snap


@dataclass(frozen=True, eq=False)
class TensorDelta:
    """The change of one tensor: ``new = old + values.astype(float32) * scale``.

    Attributes:
        values: float32 (dense delta) or int8 (quantised, -127 .. 127) array, same shape
            as the tensor.
        scale: float32 step size of the int8 values (1.0 for float32 deltas), finite, >= 0.
    """

    values: np.ndarray
    scale: float = 1.0

    def __post_init__(self) -> None:
        v = np.asarray(self.values)
        if v.dtype not in (np.float32, np.int8):
            raise ParameterError("delta values must be float32 or int8")
        if v.dtype == np.int8 and v.size and v.min() < -127:
            raise ParameterError("int8 delta values must be in -127 .. 127")
        if v.dtype == np.float32 and not np.all(np.isfinite(v)):
            raise ParameterError("float32 delta values must be finite")
        s = float(np.float32(self.scale))
        if not math.isfinite(s) or s < 0:
            raise ParameterError("scale must be finite and >= 0")
        v = np.array(v, order="C")
        v.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "scale", s)

    def dequantised(self) -> np.ndarray:
        """Return the float32 change (same shape as the tensor)."""
        if self.values.dtype == np.float32:
            return self.values
        return self.values.astype(np.float32) * np.float32(self.scale)


@register_message
@dataclass(frozen=True, eq=False)
class ParameterDelta(Message):
    """Changes that take a network from update ``base_seq`` to ``seq``.

    Attributes:
        base_seq: Sequence number the delta applies to.
        seq: Sequence number after applying (> base_seq).
        encoding: ``"float32"`` or ``"int8"`` (all tensors of a delta use it).
        layers: One map per layer: tensor name -> :class:`TensorDelta`; tensors left out
            are unchanged.
        checksum: 16-byte BLAKE2b (see :func:`parameters_checksum`) of the full
            parameters after applying; the receiver re-syncs on mismatch.
    """

    SCHEMA: ClassVar[str] = "params_delta"
    base_seq: int
    seq: int
    encoding: str
    layers: tuple[Mapping[str, TensorDelta], ...]
    checksum: bytes

    def __post_init__(self) -> None:
        for k in ("base_seq", "seq"):
            v = getattr(self, k)
            if type(v) is not int or not 0 <= v <= MAX_SEQ:
                raise ParameterError(f"{k} must be an integer in 0 .. 2**64-1")
        if self.seq <= self.base_seq:
            raise ParameterError("seq must be greater than base_seq")
        if self.encoding not in DELTA_ENCODINGS:
            raise ParameterError(f"encoding must be one of {sorted(DELTA_ENCODINGS)}")
        want = np.float32 if self.encoding == "float32" else np.int8
        if len(self.layers) > MAX_LAYERS:
            raise ParameterError(f"at most {MAX_LAYERS} layers")
        layers = []
        for i, layer in enumerate(self.layers):
            if len(layer) > MAX_TENSORS_PER_LAYER:
                raise ParameterError(f"layer {i}: at most {MAX_TENSORS_PER_LAYER} tensors")
            d = {}
            for name in sorted_names(layer, f"layer {i}: tensor name"):
                td = layer[name]
                if not isinstance(td, TensorDelta) or td.values.dtype != want:
                    raise ParameterError(f"layer {i}.{name}: expected a {self.encoding} delta")
                d[name] = td
            layers.append(d)
        if not isinstance(self.checksum, bytes) or len(self.checksum) != CHECKSUM_BYTES:
            raise ParameterError(f"checksum must be {CHECKSUM_BYTES} bytes")
        object.__setattr__(self, "layers", tuple(layers))

    def to_body(self) -> dict[str, Any]:
        return {
            "base_seq": self.base_seq,
            "seq": self.seq,
            "encoding": self.encoding,
            "layers": [
                {n: {"scale": td.scale, "values": encode_array(td.values)} for n, td in lay.items()}
                for lay in self.layers
            ],
            "checksum": self.checksum,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, budget: ElementBudget | None = None) -> Self:
        b = ElementBudget() if budget is None else budget
        encoding = get_choice(body, "encoding", DELTA_ENCODINGS)
        dt = frozenset({"<f4" if encoding == "float32" else "|i1"})
        layers = []
        for i, lb in enumerate(get_list(body, "layers", max_len=MAX_LAYERS)):
            if not isinstance(lb, dict):
                raise SchemaError(f"layers[{i}]: expected a map")
            d = {}
            for n, tb in lb.items():
                if not isinstance(tb, dict):
                    raise SchemaError(f"layers[{i}].{n}: expected a map")
                vals = decode_array(tb.get("values"), f"layers[{i}].{n}", b, dtypes=dt)
                try:
                    d[n] = TensorDelta(vals, get_float(tb, "scale", lo=0.0))
                except ParameterError as exc:
                    raise SchemaError(f"params_delta: {exc}") from exc
            layers.append(d)
        try:
            return cls(
                base_seq=get_int(body, "base_seq", 0, MAX_SEQ),
                seq=get_int(body, "seq", 0, MAX_SEQ),
                encoding=encoding,
                layers=tuple(layers),
                checksum=_check_checksum(body.get("checksum")),
            )
        except ParameterError as exc:
            raise SchemaError(f"params_delta: {exc}") from exc


def _apply(
    base: Sequence[Mapping[str, np.ndarray]], delta: ParameterDelta
) -> list[dict[str, np.ndarray]]:
    """Return new layers = base + delta (float32), without touching ``base``."""
    if len(delta.layers) != len(base):
        raise ParameterError(f"delta has {len(delta.layers)} layers, network {len(base)}")
    out = []
    for i, (layer, dl) in enumerate(zip(base, delta.layers, strict=True)):
        new = dict(layer)
        for name, td in dl.items():
            if name not in layer or layer[name].shape != td.values.shape:
                raise ParameterError(f"layer {i}.{name}: not in the network or shape differs")
            new[name] = layer[name] + td.dequantised()
        out.append(new)
    return out


class DeltaEncoder:
    """Sender side of parameter deltas with error feedback.

    Holds the *view*: the exact float32 parameters every in-sync receiver has. Each
    delta encodes ``current - view``, so the rounding residual of earlier int8 deltas is
    carried into the next one and the receivers never drift: after a delta, every
    element of ``current - view`` is at most half a quantisation step (plus float32
    rounding of the addition).

    Args:
        layers: Initial parameters (per layer, name -> array); copied as float32.
        seq: Update sequence number of these parameters.
        encoding: Default delta encoding, ``"int8"`` or ``"float32"``.
    """

    def __init__(self, layers: Layers, *, seq: int = 0, encoding: str = "int8") -> None:
        if encoding not in DELTA_ENCODINGS:
            raise ParameterError(f"encoding must be one of {sorted(DELTA_ENCODINGS)}")
        self.encoding = encoding
        self._view = [dict(lay) for lay in _f32_layers(layers)]
        self._current = [{k: v.copy() for k, v in lay.items()} for lay in self._view]
        self._seq = int(seq)

    @property
    def seq(self) -> int:
        """Sequence number of the view (the last delta or snapshot)."""
        return self._seq

    def view(self) -> list[dict[str, np.ndarray]]:
        """Return a copy of the receivers' parameters (float32)."""
        return [{k: v.copy() for k, v in lay.items()} for lay in self._view]

    def residual(self) -> list[dict[str, np.ndarray]]:
        """Return ``current - view`` per tensor: the error not yet sent (float32)."""
        return [
            {k: cur[k] - view[k] for k in cur}
            for cur, view in zip(self._current, self._view, strict=True)
        ]

    def snapshot(
        self, *, layer_sizes: Sequence[int], neuron: NeuronParams, delay_kinds: Sequence[str]
    ) -> ParameterSnapshot:
        """Return a snapshot of the view at :attr:`seq` (what in-sync receivers hold)."""
        return ParameterSnapshot(
            seq=self._seq,
            layer_sizes=tuple(layer_sizes),
            neuron=neuron,
            delay_kinds=tuple(delay_kinds),
            layers=tuple(self._view),
        )

    def delta(self, layers: Layers, *, encoding: str | None = None) -> ParameterDelta:
        """Encode the change from the view to ``layers`` and advance the view.

        Args:
            layers: Current parameters, same layer count, names and shapes as at start.
            encoding: ``"int8"`` or ``"float32"``; default: the encoder's.

        Returns:
            The delta from :attr:`seq` to :attr:`seq` + 1.
        """
        enc = self.encoding if encoding is None else encoding
        if enc not in DELTA_ENCODINGS:
            raise ParameterError(f"encoding must be one of {sorted(DELTA_ENCODINGS)}")
        current = _f32_layers(layers)
        if len(current) != len(self._view):
            raise ParameterError("layer count differs from the encoder's")
        dlayers: list[dict[str, TensorDelta]] = []
        for i, (cur, view) in enumerate(zip(current, self._view, strict=True)):
            if cur.keys() != view.keys():
                raise ParameterError(f"layer {i}: tensor names differ from the encoder's")
            d: dict[str, TensorDelta] = {}
            for name, arr in cur.items():
                if arr.shape != view[name].shape:
                    raise ParameterError(f"layer {i}.{name}: shape differs from the encoder's")
                diff = arr - view[name]
                if enc == "float32":
                    if np.any(diff):
                        d[name] = TensorDelta(diff, 1.0)
                    continue
                peak = float(np.max(np.abs(diff))) if diff.size else 0.0
                scale = np.float32(peak / 127.0)
                if scale == 0 or not np.isfinite(scale):
                    continue
                q = np.clip(np.rint(diff / scale), -127, 127).astype(np.int8)
                if np.any(q):
                    d[name] = TensorDelta(q, float(scale))
            dlayers.append(d)
        probe = ParameterDelta(self._seq, self._seq + 1, enc, tuple(dlayers), b"\0" * 16)
        new_view = _apply(self._view, probe)
        delta = ParameterDelta(
            self._seq, self._seq + 1, enc, tuple(dlayers), parameters_checksum(new_view)
        )
        self._view = new_view
        self._current = list(current)
        self._seq += 1
        return delta


@dataclass
class ReplicaStats:
    """Counters of a :class:`ParameterReplica`."""

    applied: int = 0
    snapshots: int = 0
    stale: int = 0
    gaps: int = 0
    rejected: int = 0


class ParameterReplica:
    """Receiver side: holds parameters, applies deltas, detects gaps, re-syncs.

    Until the first snapshot, and after a gap (``delta.base_seq != seq``), a checksum
    mismatch or a shape mismatch, :attr:`needs_resync` is true and deltas are refused;
    the owner then fetches the retained ``params/latest`` snapshot and calls
    :meth:`apply_snapshot`.
    """

    def __init__(self) -> None:
        self._layers: list[dict[str, np.ndarray]] | None = None
        self._seq: int | None = None
        self.snapshot: ParameterSnapshot | None = None
        self.needs_resync = True
        self.stats = ReplicaStats()

    @property
    def seq(self) -> int | None:
        """Sequence number of the held parameters, or ``None`` before a snapshot."""
        return self._seq

    def layers(self) -> list[dict[str, np.ndarray]]:
        """Return a copy of the held parameters (per layer, name -> float32 array)."""
        if self._layers is None:
            raise ParameterError("no parameters yet: apply a snapshot first")
        return [{k: v.copy() for k, v in lay.items()} for lay in self._layers]

    def apply_snapshot(self, snapshot: ParameterSnapshot) -> bool:
        """Take the snapshot's parameters. Returns False for a stale one (older seq)."""
        if not self.needs_resync and self._seq is not None and snapshot.seq < self._seq:
            self.stats.stale += 1
            return False
        self._layers = [{k: v.copy() for k, v in lay.items()} for lay in snapshot.layers]
        self._seq = snapshot.seq
        self.snapshot = snapshot
        self.needs_resync = False
        self.stats.snapshots += 1
        return True

    def apply_delta(self, delta: ParameterDelta) -> bool:
        """Apply a delta if it continues the held sequence.

        Returns:
            True when applied. False when stale (``seq <= self.seq``, e.g. a duplicate),
            or when a re-sync is needed (gap, checksum or shape mismatch; sets
            :attr:`needs_resync`).
        """
        if self._layers is None or self._seq is None or self.needs_resync:
            self.needs_resync = True
            self.stats.rejected += 1
            return False
        if delta.seq <= self._seq:
            self.stats.stale += 1
            return False
        if delta.base_seq != self._seq:
            self.stats.gaps += 1
            self.needs_resync = True
            return False
        try:
            new = _apply(self._layers, delta)
        except ParameterError:
            new = None
        if new is None or parameters_checksum(new) != delta.checksum:
            self.stats.rejected += 1
            self.needs_resync = True
            return False
        self._layers = new
        self._seq = delta.seq
        self.stats.applied += 1
        return True
