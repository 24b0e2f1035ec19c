"""NUL characters found in a JSON body without decoding it, then named by their field
(registry/web/api/body.py): PostgreSQL's text cannot hold U+0000 (issue 18)."""

from __future__ import annotations

import msgspec
import pytest

from registry.web.api.body import has_nul_escape, nul_field


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b'{"a": "x"}', False),
        (b'{"a": "\\u0000"}', True),
        (b'{"a": "\\\\u0000"}', False),  # an escaped backslash, then the text `u0000`
        (b'{"a": "\\\\\\u0000"}', True),  # a backslash, then a NUL
        (b'{"a": "\\u00001"}', True),
        (b'{"a": "\\u0001"}', False),
    ],
)
def test_a_nul_escape_is_found_in_the_text(body: bytes, found: bool) -> None:
    assert has_nul_escape(body) is found
    decoded = msgspec.json.decode(body)
    assert (nul_field(decoded) is not None) is found


def test_the_field_is_named_as_validation_errors_name_it() -> None:
    assert nul_field({"description": "a\x00"}) == "description"
    assert nul_field({"apis": [{"name": "ok"}, {"name": "a\x00"}]}) == "apis[1].name"
    assert nul_field({"tags": {"k\x00": "v"}}) == "tags"
    assert nul_field({"tags": {"k": "v\x00"}}) == "tags.k"
    assert nul_field("\x00") == "body"
    assert nul_field([1, 2.5, None, True]) is None
