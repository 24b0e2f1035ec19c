"""A whole HTTP answer (`Reply`), and the one place the gateway's errors become status codes."""

from __future__ import annotations

from typing import Final

import msgspec

from gateway.errors import (
    BadRequest,
    GatewayError,
    NoHealthyUpstream,
    Overloaded,
    PayloadTooLarge,
    UnknownModel,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.transport.base import Headers

JSON: Final = (b"content-type", b"application/json")


class Reply(msgspec.Struct, frozen=True, gc=False):
    """A whole answer; the server adds `content-length`. A msgspec Struct: made for every
    request, and a NamedTuple's `__new__` is a Python function.

    `head`: `headers` already as header lines (`name: value` CRLF each), when its maker had
    them so (`Forwarder.reply`: the gateway's own four headers are the same for every answer
    of a version); valid only while `head_of` is `headers` itself, so a copy with other
    headers (`msgspec.structs.replace`) is encoded again from its `headers`. The fast server
    writes it as one piece instead of four per header (loadtests/hotpath_profile.py
    --callgrind, routed: 4.4k instructions a request less)."""

    status: int
    headers: Headers
    body: bytes
    head: bytes = b""
    head_of: Headers | None = None


STATUS: Final[dict[type[GatewayError], int]] = {
    BadRequest: 400,
    PayloadTooLarge: 413,
    UnknownModel: 404,
    Overloaded: 503,
    NoHealthyUpstream: 503,
    UpstreamTimeout: 504,
    UpstreamError: 502,
}
_RETRY_AFTER: Final = (b"retry-after", b"1")
_encoder: Final = msgspec.json.Encoder()


class _Error(msgspec.Struct, omit_defaults=True):
    error_code: str
    message: str
    field: str | None = None
    error: str | None = None  # OIP's own error key


def status_of(exc: GatewayError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_reply(exc: GatewayError, oip_call: bool) -> Reply:
    """A JSON error naming the code and the field (and OIP's own `error` key on /v2/)."""
    body = _Error(exc.code, exc.message, exc.field, exc.message if oip_call else None)
    extra = [_RETRY_AFTER] if isinstance(exc, Overloaded) else []
    return Reply(status_of(exc), [JSON, *extra], _encoder.encode(body))
