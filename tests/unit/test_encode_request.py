"""`encode_request`: the request's bytes, and what it refuses (a request smuggled in the method,
the path or a header); the content-length values it remembers by size stay right."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequest
from gateway.transport import http1
from gateway.transport.http1 import encode_request, head_middle

MIDDLE = head_middle("up:80")
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
END = b"traceparent: " + TRACEPARENT + b"\r\n\r\n"  # an unsampled request's (gateway.spans)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        (b"PO ST", b"/a", []),
        (b"POST", b"/a b", []),
        (b"POST ", b"/a", []),
        (b"POST", b"/a ", []),
        (b"POST", b"/a\r\nx: 1", []),
        (b"POST", b"/a", [(b"x-a", b"1\r\nx-evil: 1")]),
        (b"POST", b"/a", [(b"x-a", b"1\nx-evil: 1")]),
        (b"POST", b"/a", [(b"x-a\r", b"1")]),
    ],
)
@pytest.mark.parametrize("end", [http1.HEAD_END, END])
def test_a_smuggled_space_cr_or_lf_is_refused(
    method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], end: bytes
) -> None:
    with pytest.raises(BadRequest):
        encode_request(method, path, MIDDLE, headers, b"{}", end)


def test_the_gateways_own_end_of_the_head_goes_last_and_reads_back_as_headers() -> None:
    headers = [(b"content-type", b"a/b")]
    for body in (b"", b"{}", b"a\r\nb\r\n"):  # (the body's bytes are never counted)
        data = encode_request(b"POST", b"/p", MIDDLE, headers, body, END)
        assert data == (
            b"POST /p HTTP/1.1\r\nhost: up:80\r\ncontent-length: %d\r\n"
            b"content-type: a/b\r\n%b%b" % (len(body), END, body)
        )
    assert http1.with_end(headers, END) == [*headers, (b"traceparent", TRACEPARENT)]


def test_the_request_is_encoded_with_its_length() -> None:
    for _ in range(2):  # the second time from the remembered length line
        for body in (b"", b"{}", b"x" * 1000):
            data = encode_request(b"POST", b"/p", MIDDLE, [(b"Content-Type", b"a/b")], body)
            assert data == (
                b"POST /p HTTP/1.1\r\nhost: up:80\r\ncontent-length: %d\r\n"
                b"content-type: a/b\r\n\r\n%b" % (len(body), body)
            )


def test_the_remembered_lengths_are_bounded() -> None:
    # the bound read, not patched: the compiled build (mypyc) inlines a `Final` constant
    bound = http1._MAX_LENGTHS
    body = b"x" * (bound + 10)
    for size in range(bound + 10):
        data = encode_request(b"POST", b"/p", MIDDLE, [], body[:size])
        assert data.endswith(b"content-length: %d\r\n\r\n" % size + body[:size])
        assert len(http1._LENGTHS) <= bound
