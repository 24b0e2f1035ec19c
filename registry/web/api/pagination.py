"""Opaque keyset cursors: stable under concurrent inserts (no duplicates, no gaps)."""

from __future__ import annotations

import base64
import binascii

import msgspec

from registry.errors import InvalidInput


class _Cursor(msgspec.Struct, array_like=True):
    kind: str
    key: str | int


def encode_cursor(kind: str, key: str | int) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(_Cursor(kind, key))).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> str | int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput("`cursor` is not a cursor this API returned", field="cursor") from None
    if found.kind != kind:
        raise InvalidInput(f"`cursor` belongs to another listing ({found.kind})", field="cursor")
    return found.key


def decode_int_cursor(kind: str, cursor: str | None) -> int | None:
    """A cursor whose key is a row number (a version, an audit sequence number)."""
    key = decode_cursor(kind, cursor)
    if key is None:
        return None
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 2**63:
        raise InvalidInput("`cursor` is not a cursor this API returned", field="cursor")
    return key
