"""OIP datatypes and nested arrays (flatten, reshape, the dimensions of nested lists). Pure."""

from __future__ import annotations

import itertools
from typing import Any, Final

#: Integer datatypes and their inclusive ranges.
INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
#: Float datatypes and the magnitude from which a value rounds to infinity in that width
#: (largest finite value plus half a unit in the last place), as exact integers.
FLOAT_LIMITS: Final[dict[str, int]] = {
    "FP16": 2**16 - 2**4,  # 65520
    "FP32": 2**128 - 2**103,
    "FP64": 2**1024 - 2**970,
}
DATATYPES: Final = frozenset({"BOOL", "BYTES", *INT_RANGES, *FLOAT_LIMITS})

BOOL_TYPES: Final[frozenset[type]] = frozenset({bool})
INT_TYPES: Final[frozenset[type]] = frozenset({int})
NUMBER_TYPES: Final[frozenset[type]] = frozenset({int, float})
STR_TYPES: Final[frozenset[type]] = frozenset({str})
INT64_MIN, INT64_MAX = INT_RANGES["INT64"]
UINT64_MAX = INT_RANGES["UINT64"][1]

ALLOWED: Final[dict[str, tuple[frozenset[type], str]]] = {
    "BOOL": (BOOL_TYPES, "a boolean"),
    "BYTES": (STR_TYPES, "a string"),
    **{dt: (INT_TYPES, "an integer") for dt in INT_RANGES},
    **{dt: (NUMBER_TYPES, "a number") for dt in FLOAT_LIMITS},
}

_KINDS: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}

# --- nested arrays -------------------------------------------------------------------------------


class Ragged(Exception):
    """Nested lists that do not form a rectangular array."""


def flatten(data: list[Any]) -> tuple[list[Any], set[type], list[int]]:
    """Flatten rectangular nested lists row-major: (elements, their types, dimensions).

    Works level by level with C-speed builtins; returns ``data`` itself when it is already flat.
    Raises `Ragged` for rows of different lengths or arrays mixed with scalars at one depth.
    """
    level = data
    dims = [len(data)]
    while True:
        types = set(map(type, level))
        if list not in types:
            return level, types, dims
        if len(types) > 1:
            raise Ragged(f"arrays mixed with scalars at depth {len(dims)}")
        widths = set(map(len, level))
        if len(widths) > 1:
            raise Ragged(f"rows of different lengths {sorted(widths)[:4]} at depth {len(dims)}")
        dims.append(widths.pop())
        level = list(itertools.chain.from_iterable(level))


def leading_dims(data: list[Any]) -> list[int]:
    """Dimensions along the first element of each level: O(depth), checks nothing else."""
    dims: list[int] = []
    value: Any = data
    while type(value) is list:
        dims.append(len(value))
        if not value:
            break
        value = value[0]
    return dims


def reshape(flat: list[Any], shape: list[int]) -> Any:
    """Row-major flat elements → nested lists of `shape` (shape [] → the bare element)."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    if 0 in shape:
        return _empty(shape)
    rows = flat
    for width in reversed(shape[1:]):
        rows = [rows[i : i + width] for i in range(0, len(rows), width)]
    return rows


def _empty(shape: list[int]) -> list[Any]:
    """Nested empty lists of a shape with a zero in it: [2, 0] → [[], []]."""
    if len(shape) == 1:
        return []
    return [_empty(shape[1:]) for _ in range(shape[0])]


def kind_of(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)
