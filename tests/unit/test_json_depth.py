"""contract.json_depth: nesting found without decoding (issue 18)."""

from __future__ import annotations

import json

from contract.json_depth import MAX_JSON_DEPTH, too_deep


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_the_limit_is_exact() -> None:
    assert not too_deep(nested(MAX_JSON_DEPTH))
    assert too_deep(nested(MAX_JSON_DEPTH + 1))
    assert too_deep(nested(100_000))
    assert too_deep(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


def test_wide_documents_and_brackets_in_strings_are_not_deep() -> None:
    assert not too_deep(json.dumps([[1.0, 2.0]] * 10_000).encode())
    tricky = json.dumps({"a": ["\\", '"', "[" * 1000, '\\"' + "{" * 500]}).encode()
    assert not too_deep(tricky)
    assert not too_deep(b"")


def test_unbalanced_text_with_many_brackets_counts_as_too_deep() -> None:
    assert too_deep(b"[" * 200)
    assert not too_deep(b"[" * 100)  # few brackets: left to the decoder to refuse
