"""The whole gateway front over a MockTransport (no socket): what a client gets back (status,
headers, body), what the upstream gets, what is measured and offered to the shadow version,
and what the hooks hear."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from msgspec.structs import replace

from contract.routes import ApiSpec, ModelRoute, RouteTable, VersionRoute
from contract.traffic import Shadow, Split, TrafficPolicy
from gateway.errors import ConnectFailed
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.front import Gateway
from gateway.metrics import GatewayMetrics
from gateway.resilience import Resilient
from gateway.shadow import ShadowQueue
from gateway.transport import MockTransport, UpstreamRequest, UpstreamResponse
from gateway.transport.base import Headers

V1 = VersionRoute(1, "http://v1:3000", "bentoml", [ApiSpec("classify", ["x"])])
V2 = VersionRoute(2, "http://v2:3000", "bentoml", [ApiSpec("classify", ["x"])])
ANSWER = UpstreamResponse(
    200, [(b"content-type", b"application/json"), (b"x-upstream", b"1")], b'{"label":[0,1]}'
)
CLIENT_HEADERS: Headers = [
    (b"content-type", b"application/json"),
    (b"accept", b"*/*"),
    (b"cookie", b"secret=1"),
    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
]


def table(policy: TrafficPolicy | None = None) -> RouteTable:
    iris = ModelRoute("iris", 1, {1: V1, 2: V2}, {"challenger": 2}, policy or TrafficPolicy())
    return RouteTable(41, {"iris": iris})


def gateway(
    handler: Any, routes: RouteTable, *, max_inflight: int = 8, hooks: Any = None
) -> tuple[Gateway, MockTransport]:
    transport = MockTransport(handler)
    metrics = GatewayMetrics()
    follower = RouteFollower(source=None)  # type: ignore[arg-type]  # never started here
    follower.table = routes
    resilient = Resilient(transport, max_inflight=max_inflight)
    forwarder = Forwarder(resilient, metrics, ShadowQueue(transport, metrics))
    return Gateway(follower, forwarder, hooks=hooks), transport


def answer(request: UpstreamRequest) -> UpstreamResponse:
    return ANSWER


async def test_a_passthrough_answer_names_model_version_variant_and_revision() -> None:
    gw, transport = gateway(answer, table())
    reply = await gw.handle("POST", "/models/iris/classify", CLIENT_HEADERS, b'{"x": [1]}')
    assert reply.status == 200 and reply.body == ANSWER.body
    assert reply.headers == [
        (b"content-type", b"application/json"),
        (b"x-modelyard-model", b"iris"),
        (b"x-modelyard-version", b"1"),
        (b"x-modelyard-variant", b"stable"),
        (b"x-modelyard-route-revision", b"41"),
    ]
    (sent,) = transport.requests
    assert (sent.endpoint, sent.method, sent.path, sent.body) == (
        V1.endpoint,
        b"POST",
        b"/classify",
        b'{"x": [1]}',
    )
    assert [name for name, _ in sent.headers] == [b"content-type", b"accept", b"traceparent"]
    assert gw.metrics.totals() == [("iris", "1", "stable", 1, 0)]


async def test_an_oip_inference_is_translated_both_ways() -> None:
    gw, transport = gateway(answer, table())
    body = {
        "id": "r-1",
        "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}],
    }
    reply = await gw.handle(
        "POST", "/v2/models/iris/versions/2/infer", CLIENT_HEADERS, msgspec.json.encode(body)
    )
    assert reply.status == 200, reply.body
    assert json.loads(reply.body) == {
        "model_name": "iris",
        "model_version": "2",
        "id": "r-1",
        "outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]}],
    }
    assert dict(reply.headers)[b"x-modelyard-variant"] == b"pinned"
    (sent,) = transport.requests
    assert sent.endpoint == V2.endpoint and json.loads(sent.body) == {"x": [1, 2]}
    assert [name for name, _ in sent.headers] == [b"traceparent", b"content-type"]


async def test_errors_are_json_naming_code_and_field() -> None:
    gw, transport = gateway(answer, table())
    reply = await gw.handle("POST", "/models/wine/classify", [], b"{}")
    assert reply.status == 404 and json.loads(reply.body) == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "no model named 'wine' is served here",
        "field": "model",
    }
    reply = await gw.handle("POST", "/v2/models/iris/infer", [], b"[]")
    assert reply.status == 400 and json.loads(reply.body)["error"].startswith("invalid inference")
    reply = await gw.handle("POST", "/v2/models/iris/explain", [], b"")
    assert reply.status == 404
    assert json.loads(reply.body)["message"] == "unknown OIP call POST /v2/models/iris/explain"
    assert transport.requests == []


async def test_a_shed_request_is_a_503_to_retry_and_is_not_measured() -> None:
    gw, transport = gateway(answer, table(), max_inflight=0)
    reply = await gw.handle("POST", "/models/iris/classify", [], b"{}")
    assert reply.status == 503 and (b"retry-after", b"1") in reply.headers
    assert json.loads(reply.body)["error_code"] == "OVERLOADED"
    assert transport.requests == [] and gw.metrics.totals() == []


async def test_a_fallback_is_answered_and_measured_as_the_stable_version() -> None:
    def refuse_v2(request: UpstreamRequest) -> UpstreamResponse:
        if request.endpoint == V2.endpoint:
            raise ConnectFailed("refused")
        return ANSWER

    routes = table(TrafficPolicy(splits=[Split(version=2, weight=100)]))
    gw, transport = gateway(refuse_v2, routes)
    reply = await gw.handle("POST", "/models/iris/classify", [], b"{}")
    assert reply.status == 200 and dict(reply.headers)[b"x-modelyard-variant"] == b"stable"
    assert [r.endpoint for r in transport.requests] == [V2.endpoint, V1.endpoint]
    assert gw.metrics.totals() == [("iris", "1", "stable", 1, 0)]
    assert gw.breakers[V2.endpoint].failures == 1


async def test_a_sampled_copy_goes_to_the_shadow_version_after_the_answer() -> None:
    routes = table(TrafficPolicy(shadow=Shadow(version=2, sample_percent=100)))
    gw, transport = gateway(answer, routes)
    shadow = gw.forwarder.shadow
    shadow.start(workers=1)
    try:
        reply = await gw.handle("POST", "/models/iris/classify", CLIENT_HEADERS, b'{"x": [1]}')
        assert reply.status == 200 and len(transport.requests) == 1  # answered before the copy
        await shadow.drain()
    finally:
        await shadow.close()
    primary, copy = transport.requests
    assert replace(copy, endpoint=V1.endpoint) == primary  # the same request, to v2
    assert gw.metrics.shadow_totals() == [("iris", "2", 1, 1, 0, 0)]  # same answer: agreed


class Heard:
    lane = False  # a sampled request on the coroutine path

    def __init__(self) -> None:
        self.events: list[str] = []

    def request(self, method: str, path: str, headers: Headers) -> Any:
        if path == "/metrics":
            return None
        self.events.append(f"start {method} {path}")
        return self

    def attempt(self, route: Any, target: Any, request: UpstreamRequest) -> Any:
        self.events.append(f"attempt v{target.version}")
        events = self.events

        class Attempt:
            def __init__(self) -> None:
                self.request = request

            def end(self, answer: Any, error: Any, breaker: str) -> None:
                events.append(f"attempt end {answer.status} {breaker}")

        return Attempt()

    def fallback(self, *args: Any) -> None:
        self.events.append("fallback")

    def chosen(self, table: RouteTable, route: ModelRoute, choice: Any) -> None:
        self.events.append(f"chosen v{choice.version} {choice.variant} r{table.revision}")

    def origin(self) -> object | None:
        return "origin"

    def end(self, status: int, error: BaseException | None) -> None:
        self.events.append(f"end {status}")

    def shadow(self, copy: Any) -> Any:
        raise AssertionError("no shadow copy is sent here")


async def test_hooks_hear_a_request_from_start_to_end() -> None:
    hooks = Heard()
    gw, _ = gateway(answer, table(), hooks=hooks)
    await gw.handle("POST", "/models/iris/classify", [], b"{}")
    await gw.handle("GET", "/metrics", [], b"")  # not observed
    await gw.handle("GET", "/models/iris/classify", [], b"")  # a 404 is still observed
    assert hooks.events == [
        "start POST /models/iris/classify",
        "attempt v1",
        "attempt end 200 closed",
        "chosen v1 stable r41",
        "end 200",
        "start GET /models/iris/classify",
        "end 404",
    ]


async def test_without_hooks_the_plain_handler_is_the_entry() -> None:
    gw, _ = gateway(answer, table())
    assert gw.handle == gw._answer


async def test_asgi_refuses_a_body_over_the_limit() -> None:
    gw, transport = gateway(answer, table())
    gw.max_body = 4
    sent: list[dict[str, Any]] = []
    chunks = iter([{"body": b"abc", "more_body": True}, {"body": b"def", "more_body": False}])

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/iris/infer", "headers": []}
    await gw(scope, receive, send)
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["error_code"] == (
        "REQUEST_TOO_LARGE"
    )
    assert transport.requests == []
