"""The fast protocol's request targets -> paths memo (gateway/server/fast_http.py `_PATHS`)."""

from __future__ import annotations

import httptools
import pytest

from gateway.server import fast_http


def test_a_path_is_what_parse_url_says_and_short_targets_are_remembered() -> None:
    fast_http._PATHS.clear()
    assert fast_http._path_of(b"/models/m/predict?x=1") == "/models/m/predict"
    assert fast_http._PATHS == {b"/models/m/predict?x=1": "/models/m/predict"}
    long = b"/models/m/predict?" + b"q" * fast_http._MAX_PATH_KEY
    assert fast_http._path_of(long) == "/models/m/predict"
    assert long not in fast_http._PATHS  # at most `_MAX_PATH_KEY` bytes a key


def test_the_memo_starts_over_when_full_and_bad_targets_raise() -> None:
    fast_http._PATHS.clear()
    for i in range(fast_http._MAX_PATHS + 1):
        fast_http._path_of(b"/p%d" % i)
    last = b"/p%d" % fast_http._MAX_PATHS
    assert {last: last.decode()} == fast_http._PATHS
    with pytest.raises(httptools.HttpParserInvalidURLError):
        fast_http._path_of(b"http://[bad")
    assert b"http://[bad" not in fast_http._PATHS
