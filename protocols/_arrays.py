"""Arrays on the wire: ``{"dtype": str, "shape": [int, ...], "data": bin}``.

``data`` holds the raw little-endian bytes in C order. Only the dtypes in
:data:`ALLOWED_DTYPES` are accepted; object, void and string kinds never are, and
nothing is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from delgrad.errors import ArrayError, SizeLimitError

#: Wire dtype strings accepted, as written by numpy's ``dtype.str``.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8"}
)
#: Largest number of dimensions of one array.
MAX_NDIM = 4
#: Default cap on the total number of array elements in one message.
MAX_ELEMENTS = 1 << 22


class ElementBudget:
    """Counts array elements decoded from one message against a cap."""

    __slots__ = ("remaining",)

    def __init__(self, max_elements: int = MAX_ELEMENTS) -> None:
        self.remaining = max_elements

    def take(self, n: int, field: str) -> None:
        """Consume ``n`` elements or raise :class:`SizeLimitError`."""
        if n > self.remaining:
            raise SizeLimitError(f"{field}: array elements exceed the per-message cap")
        self.remaining -= n


def _wire_dtype(dtype: np.dtype) -> np.dtype:
    little = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    if little.str not in ALLOWED_DTYPES:
        raise ArrayError(f"dtype {dtype.str!r} is not allowed on the wire")
    return little


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """Encode an array as a wire map.

    Args:
        array: Any array of an allowed dtype (see :data:`ALLOWED_DTYPES`).

    Returns:
        ``{"dtype": str, "shape": list[int], "data": bytes}``, little-endian, C order.
    """
    arr = np.asarray(array)
    dtype = _wire_dtype(arr.dtype)
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return {"dtype": dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}


def decode_array(
    obj: Any,
    field: str,
    budget: ElementBudget,
    *,
    dtypes: frozenset[str] | None = None,
    ndim: int | None = None,
) -> np.ndarray:
    """Decode and validate a wire map into a new writable array.

    Args:
        obj: The decoded msgpack value (expected to be a map).
        field: Field name used in error reasons.
        budget: Element budget of the enclosing message.
        dtypes: Subset of allowed dtype strings for this field (default: all).
        ndim: Required number of dimensions, if fixed.

    Raises:
        ArrayError: On a bad dtype, shape or data length.
        SizeLimitError: When the element budget is exceeded.
    """
    if not isinstance(obj, Mapping):
        raise ArrayError(f"{field}: array must be a map")
    dt = obj.get("dtype")
    shape = obj.get("shape")
    data = obj.get("data")
    if not isinstance(dt, str) or dt not in ALLOWED_DTYPES:
        raise ArrayError(f"{field}: dtype {dt!r} is not allowed")
    if dtypes is not None and dt not in dtypes:
        raise ArrayError(f"{field}: dtype {dt} not accepted here")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise ArrayError(f"{field}: shape must be a list of at most {MAX_NDIM} sizes")
    if ndim is not None and len(shape) != ndim:
        raise ArrayError(f"{field}: expected {ndim} dimensions, got {len(shape)}")
    n = 1
    for s in shape:
        if type(s) is not int or s < 0:
            raise ArrayError(f"{field}: shape entries must be non-negative integers")
        n *= s
        if n > budget.remaining:  # check before the product can grow without bound
            raise SizeLimitError(f"{field}: array elements exceed the per-message cap")
    if not isinstance(data, bytes):
        raise ArrayError(f"{field}: data must be binary")
    dtype = np.dtype(dt)
    if len(data) != n * dtype.itemsize:
        raise ArrayError(f"{field}: data has {len(data)} bytes, shape needs {n * dtype.itemsize}")
    budget.take(n, field)
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dt == "|b1" and arr.size and arr.view(np.uint8).max() > 1:
        raise ArrayError(f"{field}: boolean data must be 0 or 1")
    return arr.astype(dtype.newbyteorder("="), copy=True)
