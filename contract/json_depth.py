"""How deep a JSON document nests, found without decoding it: decoders recurse once per level
and a body nested 100,000 deep ends in RecursionError (a 500, a dropped connection). Bodies are
refused above MAX_JSON_DEPTH before any decoder sees them. Pure."""

from __future__ import annotations

from typing import Final

MAX_JSON_DEPTH: Final = 128  # registry documents nest < 10 levels, OIP tensors < 10

_OPEN, _CLOSE = b"[{", b"]}"
_KEEP = bytes(range(256)).translate(None, _OPEN + _CLOSE)  # every byte but brackets
_STEP = bytes.maketrans(_OPEN + _CLOSE, b"\x01\x01\x02\x02")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` (JSON text, maybe invalid) opens more than `limit` levels at once."""
    if body.count(b"[") + body.count(b"{") <= limit:  # the common case: nothing to scan
        return False
    # strings may hold brackets: drop escaped backslashes, then escaped quotes, then every
    # other piece between quotes (the strings' contents)
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(_STEP, _KEEP)
    # each pass removes the innermost pairs, one level of every branch at once (C speed, and a
    # tensor's many shallow lists go in the first pass); unbalanced text counts as too deep
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"\x01\x02", b"")
    return bool(brackets)
