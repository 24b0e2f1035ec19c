"""`Forwarder.reply`'s answer carries its headers encoded (`Reply.head`) for the fast server:
exactly the lines its `headers` make, the tuples themselves kept."""

from __future__ import annotations

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.forward import Forwarder
from gateway.metrics import GatewayMetrics
from gateway.reply import JSON
from gateway.resilience import Resilient
from gateway.routing import Choice
from gateway.shadow import ShadowQueue
from gateway.transport.base import UpstreamResponse
from gateway.transport.mock import MockTransport

VERSIONS = {v: VersionRoute(v, "http://u", "bentoml") for v in (1, 2)}
ROUTE = ModelRoute("m", 1, VERSIONS, {}, TrafficPolicy())
TABLE = RouteTable(7, {"m": ROUTE})


def _forwarder() -> Forwarder:
    metrics = GatewayMetrics()
    transport = MockTransport(lambda request: UpstreamResponse(200, [], b""))
    return Forwarder(Resilient(transport), metrics, ShadowQueue(transport, metrics))


def _lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%b: %b\r\n" % pair for pair in headers)


def test_the_head_is_the_headers_encoded() -> None:
    forwarder = _forwarder()
    kept = (b"content-type", b"text/plain")
    upstream = [(b"server", b"x"), kept, (b"date", b"d")]
    for choice in (Choice(1, "stable", VERSIONS[1]), Choice(2, "canary", VERSIONS[2])):
        reply = forwarder.reply(TABLE, ROUTE, choice, 200, b"ok", upstream, None)
        # the upstream's own name and value (a compiled build may pack them in a new tuple)
        assert reply.headers[0] == kept and reply.headers[0][1] is kept[1]
        assert reply.headers[1:] == [
            (b"x-modelyard-model", b"m"),
            (b"x-modelyard-version", str(choice.version).encode()),
            (b"x-modelyard-variant", choice.variant.encode()),
            (b"x-modelyard-route-revision", b"7"),
        ]
        assert reply.head_of is reply.headers and reply.head == _lines(reply.headers)


def test_no_content_type_is_json_and_several_are_left_to_the_server() -> None:
    forwarder = _forwarder()
    stable = Choice(1, "stable", VERSIONS[1])
    reply = forwarder.reply(TABLE, ROUTE, stable, 200, b"{}", [], None)
    assert reply.headers[0] == JSON and reply.head == _lines(reply.headers)
    two = [(b"content-type", b"a/b"), (b"content-type", b"c/d")]
    reply = forwarder.reply(TABLE, ROUTE, stable, 200, b"{}", two, None)
    assert reply.headers[:2] == two and len(reply.headers) == 6
    assert reply.head_of is None and reply.head == b""
