"""Reading a request (gateway/request.py): pure. Paths to calls, and in which order their
errors come; pins by path and by header; the headers routing reads; sticky keys from a header,
a cookie or a JSON field; what is forwarded."""

from __future__ import annotations

import pytest

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import HeaderRule, Split, StickyKey, TrafficPolicy
from gateway.errors import BadRequest, NoRouteTable, UnknownModel
from gateway.request import (
    INFER,
    INVOKE,
    METRICS,
    MODEL_METADATA,
    MODEL_READY,
    SERVER_LIVE,
    SERVER_READY,
    UNKNOWN,
    Call,
    Routing,
    oip_headers,
    parse,
    passthrough_headers,
    routing_of,
    served,
)


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("GET", "/metrics", Call(METRICS)),
        ("POST", "/metrics", Call(METRICS)),
        ("POST", "/models/iris/classify", Call(INVOKE, "iris", None, None, "classify")),
        (
            "POST",
            "/models/iris@champion/classify",
            Call(INVOKE, "iris", None, "champion", "classify"),
        ),
        ("POST", "/models/iris@/classify", Call(INVOKE, "iris", None, "", "classify")),
        ("POST", "/models/iris/versions/3/classify", Call(INVOKE, "iris", 3, None, "classify")),
        ("POST", "/models/iris/", Call(INVOKE, "iris", None, None, "")),
        ("GET", "/v2/health/live", Call(SERVER_LIVE)),
        ("DELETE", "/v2/health/ready", Call(SERVER_READY)),
        ("GET", "/v2/models/iris", Call(MODEL_METADATA, "iris")),
        ("GET", "/v2/models/iris/", Call(MODEL_METADATA, "iris")),
        ("GET", "/v2/models/iris/versions/2", Call(MODEL_METADATA, "iris", 2)),
        ("GET", "/v2/models/iris/ready", Call(MODEL_READY, "iris")),
        ("GET", "/v2/models/iris/versions/2/ready", Call(MODEL_READY, "iris", 2)),
        ("POST", "/v2/models/iris/infer", Call(INFER, "iris")),
        ("POST", "/v2/models/iris/versions/2/infer", Call(INFER, "iris", 2)),
        # a served model, a call the gateway does not answer: 404 once the model is found
        ("POST", "/v2/models/iris", Call(UNKNOWN, "iris")),
        ("GET", "/v2/models/iris/infer", Call(UNKNOWN, "iris")),
        ("GET", "/v2/models/iris/versions", Call(UNKNOWN, "iris")),
        ("POST", "/v2/models/iris/versions/2/explain", Call(UNKNOWN, "iris", 2)),
    ],
)
def test_paths_make_calls(method: str, path: str, call: Call) -> None:
    assert parse(method, path) == call


@pytest.mark.parametrize(
    ("method", "path", "error", "message"),
    [
        ("GET", "/models/iris/classify", UnknownModel, "inference calls are POST"),
        ("POST", "/models/iris", UnknownModel, "expected /models/{name}/{api}"),
        ("POST", "/models/iris/a/b", UnknownModel, "expected /models/{name}/{api}"),
        ("POST", "/models/iris/versions/0/classify", BadRequest, "positive number, got '0'"),
        ("POST", "/models/iris/versions/x/classify", BadRequest, "positive number, got 'x'"),
        ("GET", "/v2/models", UnknownModel, "unknown OIP path"),
        ("GET", "/v2/health", UnknownModel, "unknown OIP path"),
        ("GET", "/v2/models/iris/versions/-1", BadRequest, "positive number"),
        # the version is checked before the call: a bad version is a 400 on any call
        ("PUT", "/v2/models/iris/versions/v1/explain", BadRequest, "positive number"),
    ],
)
def test_paths_that_make_no_call(method: str, path: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        parse(method, path)
    assert caught.value.field in ("path", "version")


def test_a_model_is_served_or_unknown() -> None:
    iris = ModelRoute("iris", 1, {}, {}, TrafficPolicy())
    table = RouteTable(7, {"iris": iris})
    assert served(table, "iris") is iris
    with pytest.raises(UnknownModel, match="no model named 'wine'") as caught:
        served(table, "wine")
    assert caught.value.field == "model"
    with pytest.raises(NoRouteTable):  # no table yet: the model may exist (503, retry)
        served(None, "wine")


def route(policy: TrafficPolicy) -> ModelRoute:
    versions = {v: VersionRoute(v, f"http://v{v}", "bentoml") for v in (1, 2, 3)}
    return ModelRoute("iris", 1, versions, {"champion": 1}, policy)


PLAIN = route(TrafficPolicy())
HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-user", b"u-7"),
    (b"cookie", b"a=1; uid=u-9"),
    (b"x-tester", b"yes"),
    (b"x-modelyard-alias", b"champion"),
    (b"traceparent", b"00-1-2-01"),
]


def pins(routing: Routing) -> tuple[int | None, str | None]:
    return routing.version, routing.alias


def test_without_a_policy_only_the_pin_headers_are_read() -> None:
    assert routing_of(PLAIN, HEADERS, None, None, None) == Routing(
        None, "champion", None, {"x-modelyard-alias": "champion"}
    )


def test_a_version_pin_by_header_wins_over_an_alias_by_header() -> None:
    headers = [(b"x-modelyard-version", b"2"), (b"x-modelyard-alias", b"champion")]
    assert pins(routing_of(PLAIN, headers, None, None, None)) == (2, None)
    with pytest.raises(BadRequest, match="positive number, got 'two'"):
        routing_of(PLAIN, [(b"x-modelyard-version", b"two")], None, None, None)


def test_a_pin_by_path_wins_over_the_headers() -> None:
    headers = [(b"x-modelyard-version", b"not even a number")]
    assert pins(routing_of(PLAIN, headers, 3, None, None)) == (3, None)
    assert pins(routing_of(PLAIN, headers, None, "champion", None)) == (None, "champion")


def test_the_policys_rule_and_sticky_headers_are_read() -> None:
    policy = TrafficPolicy(
        splits=[Split(version=2, weight=10)],
        sticky=StickyKey(header="X-User"),
        rules=[HeaderRule(header="X-Tester", value="yes", version=3)],
    )
    routing = routing_of(route(policy), HEADERS, None, None, None)
    assert routing.key == "u-7"
    assert routing.headers == {"x-user": "u-7", "x-tester": "yes", "x-modelyard-alias": "champion"}


@pytest.mark.parametrize(
    ("sticky", "body", "key"),
    [
        (StickyKey(cookie="uid"), None, "u-9"),
        (StickyKey(cookie="missing"), None, None),
        (StickyKey(json_field="user"), b'{"user": 42, "x": [1]}', "42"),
        (StickyKey(json_field="user"), b'{"x": 1}', None),
        (StickyKey(json_field="user"), b"[1, 2]", None),
        (StickyKey(json_field="user"), b"not json", None),
        (StickyKey(json_field="user"), None, None),  # an OIP call: never read from the body
        (StickyKey(json_field="user"), b"[" * 100_000 + b"]" * 100_000, None),  # not decoded
    ],
)
def test_sticky_keys(sticky: StickyKey, body: bytes | None, key: str | None) -> None:
    policy = TrafficPolicy(splits=[Split(version=2, weight=10)], sticky=sticky)
    assert routing_of(route(policy), HEADERS, None, None, body).key == key


@pytest.mark.parametrize(
    "policy",
    [
        TrafficPolicy(),
        TrafficPolicy(splits=[Split(version=2, weight=10)], sticky=StickyKey(header="X-User")),
        TrafficPolicy(rules=[HeaderRule(header="content-type", value="x", version=3)]),
    ],
)
def test_routing_gives_what_a_passthrough_forwards_when_asked_and_reads_the_same(
    policy: TrafficPolicy,
) -> None:
    forward: list[tuple[bytes, bytes]] = []
    routing = routing_of(route(policy), HEADERS, None, None, None, forward)
    assert routing == routing_of(route(policy), HEADERS, None, None, None)
    assert forward == passthrough_headers(HEADERS)
    # the names and values themselves, as `passthrough_headers` gives: no bytes copied (the
    # pairs may be new tuples of them: compiled code, mypyc, unpacks and repacks a pair)
    given = passthrough_headers(HEADERS)
    assert all(g[0] is h[0] and g[1] is h[1] for g, h in zip(forward, given, strict=True))
    assert all(any(g[1] is h[1] for h in HEADERS) for g in forward)


def test_what_is_forwarded() -> None:
    assert passthrough_headers(HEADERS) == [
        (b"content-type", b"application/json"),
        (b"traceparent", b"00-1-2-01"),
    ]
    assert oip_headers(HEADERS) == [
        (b"traceparent", b"00-1-2-01"),
        (b"content-type", b"application/json"),
    ]
