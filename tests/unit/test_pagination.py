from __future__ import annotations

import pytest

from registry.errors import InvalidInput
from registry.web.api.pagination import decode_cursor, encode_cursor


@pytest.mark.parametrize("key", ["iris", "a-b.c_d", 1, 99_999])
def test_cursor_round_trips(key: str | int) -> None:
    assert decode_cursor("k", encode_cursor("k", key)) == key


def test_no_cursor_is_the_first_page() -> None:
    assert decode_cursor("k", None) is None
    assert decode_cursor("k", "") is None


@pytest.mark.parametrize("bad", ["%%%", "bm90IGpzb24", encode_cursor("other", 1)])
def test_bad_cursor_names_the_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_cursor("k", bad)
    assert err.value.field == "cursor"
