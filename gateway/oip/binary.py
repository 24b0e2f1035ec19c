"""The binary tensor data extension's raw tensors ⇄ flat lists of elements. Pure.

A tensor's raw bytes are its elements in row-major order, little-endian, each of its
datatype's width (BOOL one byte, 0 or 1); BYTES elements are each a 4-byte little-endian
length followed by that many bytes. Both directions work on whole buffers with C-speed
builtins (`array`, `struct`), never element by element in Python, except for BYTES.
"""

from __future__ import annotations

import array
import math
import struct
import sys
from typing import Any, Final

#: Datatype → `array` type code of that width (FP16 goes through `struct`).
TYPECODES: Final[dict[str, str]] = {
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP32": "f",
    "FP64": "d",
}
_LITTLE: Final = sys.byteorder == "little"
_LENGTH: Final = struct.Struct("<I")


class BadTensor(ValueError):
    """Raw bytes that are not a tensor of the datatype and element count given."""


def _array(code: str, raw: bytes | memoryview) -> array.array[Any]:
    values = array.array(code)
    if values.itemsize != struct.calcsize(code):  # pragma: no cover - exotic platforms
        raise BadTensor(f"no {struct.calcsize(code)}-byte integers on this platform")
    values.frombytes(raw)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        values.byteswap()
    return values


def element_size(datatype: str) -> int | None:
    """Bytes per element; None for BYTES (variable)."""
    if datatype == "BOOL":
        return 1
    if datatype == "FP16":
        return 2
    code = TYPECODES.get(datatype)
    return struct.calcsize(code) if code is not None else None


def decode_raw(datatype: str, raw: bytes | memoryview, count: int) -> list[Any]:
    """`count` elements of `datatype` from `raw`; `BadTensor` saying what does not fit."""
    if datatype == "BYTES":
        return _decode_bytes(raw, count)
    size = element_size(datatype)
    assert size is not None, datatype
    if len(raw) != count * size:
        raise BadTensor(
            f"{count} {datatype} elements take {count * size} bytes, binary_data_size is {len(raw)}"
        )
    if datatype == "BOOL":
        flags = bytes(raw)
        if flags.translate(None, b"\x00\x01"):
            raise BadTensor("BOOL elements must be the bytes 0 or 1")
        return [b == 1 for b in flags]
    values: list[Any]
    if datatype == "FP16":
        values = list(struct.unpack(f"<{count}e", raw))
    else:
        values = _array(TYPECODES[datatype], raw).tolist()
    if datatype.startswith("FP") and not all(map(math.isfinite, values)):
        index = next(i for i, v in enumerate(values) if not math.isfinite(v))
        raise BadTensor(f"element {index} (row-major) is {values[index]}, which JSON cannot carry")
    return values


def _decode_bytes(raw: bytes | memoryview, count: int) -> list[Any]:
    view = memoryview(raw)
    texts: list[Any] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise BadTensor(f"BYTES element {len(texts)}: its 4-byte length is cut off")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise BadTensor(f"BYTES element {len(texts)}: {length} bytes, only {end - offset} left")
        try:
            texts.append(str(view[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise BadTensor(
                f"BYTES element {len(texts)} is not UTF-8, which BentoML's JSON cannot carry"
            ) from None
        offset += length
        if len(texts) > count:
            break
    if len(texts) != count:
        raise BadTensor(f"the shape needs {count} BYTES elements, the data holds {len(texts)}")
    return texts


def encode_raw(datatype: str, flat: list[Any]) -> bytes:
    """Row-major elements (checked to be of `datatype` by whoever made them) as raw bytes."""
    if datatype == "BYTES":
        parts = []
        for value in flat:
            data = value.encode() if type(value) is str else bytes(value)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    if datatype == "BOOL":
        return bytes(map(bool, flat))
    if datatype == "FP16":
        return struct.pack(f"<{len(flat)}e", *flat)
    values = array.array(TYPECODES[datatype], flat)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        values.byteswap()
    return values.tobytes()
