"""Resilience around the upstream transport (gateway/resilience.py), driven through a
MockTransport: no socket. Load shedding, the fallback to the stable version (an ejected
upstream, a refused connection: the one safe retry), the breaker's life cycle, the deadline
message, and what the hooks hear."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from msgspec.structs import replace

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from gateway.errors import (
    BadRequest,
    ConnectFailed,
    NoHealthyUpstream,
    Overloaded,
    UpstreamBroken,
    UpstreamTimeout,
)
from gateway.resilience import Forward, Resilient
from gateway.routing import CANARY, PINNED, STABLE, Choice
from gateway.transport import MockTransport, UpstreamRequest, UpstreamResponse

V1 = "http://v1:3000"
V2 = "http://v2:3000"
DEADLINE_MS = 250


def iris() -> ModelRoute:
    versions = {
        1: VersionRoute(1, V1, "bentoml"),
        2: VersionRoute(2, V2, "bentoml"),
    }
    return ModelRoute("iris", 1, versions, {}, TrafficPolicy(deadline_ms=DEADLINE_MS))


ROUTE = iris()
TO_CANARY = Choice(2, CANARY, ROUTE.versions[2])
TO_STABLE = Choice(1, STABLE, ROUTE.versions[1])
PINNED_V2 = Choice(2, PINNED, ROUTE.versions[2])
OK = UpstreamResponse(200, [(b"content-type", b"application/json")], b'{"ok":1}')


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def by_endpoint(**answers: Callable[[], UpstreamResponse]) -> Callable[[UpstreamRequest], Any]:
    """A handler answering each upstream (v1=..., v2=...) with its own function."""

    def handle(request: UpstreamRequest) -> UpstreamResponse:
        return answers[request.endpoint.split("//")[1].split(":")[0]]()

    return handle


def ok() -> UpstreamResponse:
    return OK


def status(code: int) -> Callable[[], UpstreamResponse]:
    return lambda: UpstreamResponse(code, [], b"")


def raises(exc: Exception) -> Callable[[], UpstreamResponse]:
    def fail() -> UpstreamResponse:
        raise exc

    return fail


def forward(choice: Choice = TO_CANARY, hooks: Any = None) -> Forward:
    return Forward(ROUTE, choice, b"/classify", [(b"accept", b"*/*")], b"{}", hooks)


def endpoints(transport: MockTransport) -> list[str]:
    return [r.endpoint for r in transport.requests]


async def test_a_healthy_upstream_gets_the_request_as_given() -> None:
    transport = MockTransport(by_endpoint(v2=ok))
    resilient = Resilient(transport)
    call = forward()
    assert await resilient.send(call) is OK
    (sent,) = transport.requests
    assert sent == UpstreamRequest(V2, b"POST", b"/classify", [(b"accept", b"*/*")], b"{}", 0.25)
    assert call.choice == TO_CANARY and resilient.inflight == 0
    assert resilient.states() == {V2: CLOSED}


async def test_past_the_limit_requests_are_shed_before_any_upstream_sees_them() -> None:
    release = asyncio.Event()

    async def slow(request: UpstreamRequest) -> UpstreamResponse:
        await release.wait()
        return OK

    transport = MockTransport(slow)
    resilient = Resilient(transport, max_inflight=2)
    held = [asyncio.create_task(resilient.send(forward())) for _ in range(2)]
    await asyncio.sleep(0)
    assert resilient.inflight == 2
    with pytest.raises(Overloaded, match="over 2 requests in flight"):
        await resilient.send(forward())
    assert len(transport.requests) == 2  # the shed one never reached the transport
    release.set()
    assert [await t for t in held] == [OK, OK]
    assert resilient.inflight == 0
    assert await resilient.send(forward()) is OK  # room again


async def test_a_refused_connection_is_retried_once_on_the_stable_version() -> None:
    transport = MockTransport(by_endpoint(v2=raises(ConnectFailed("refused")), v1=ok))
    resilient = Resilient(transport)
    call = forward()
    assert await resilient.send(call) is OK
    assert endpoints(transport) == [V2, V1]
    assert call.choice == TO_STABLE  # measured and named as the version that answered
    assert resilient.breakers[V2].failures == 1 and resilient.breakers[V1].failures == 0


@pytest.mark.parametrize("choice", [TO_STABLE, PINNED_V2], ids=["stable", "pinned"])
async def test_a_refused_connection_with_nowhere_else_to_go_is_no_healthy_upstream(
    choice: Choice,
) -> None:
    transport = MockTransport(
        by_endpoint(v1=raises(ConnectFailed("x")), v2=raises(ConnectFailed("x")))
    )
    with pytest.raises(NoHealthyUpstream, match="refused the connection") as caught:
        await Resilient(transport).send(forward(choice))
    assert f"version {choice.version} of 'iris' cannot serve" in caught.value.message
    assert len(transport.requests) == 1


async def test_the_stable_version_refusing_too_is_its_own_error() -> None:
    refused = raises(ConnectFailed("refused"))
    transport = MockTransport(by_endpoint(v2=refused, v1=refused))
    with pytest.raises(ConnectFailed):
        await Resilient(transport).send(forward())
    assert endpoints(transport) == [V2, V1]  # one retry, not a loop


@pytest.mark.parametrize(
    "failure", [UpstreamBroken("cut mid-answer"), BadRequest("CR in a header")], ids=repr
)
async def test_nothing_is_retried_once_a_request_may_have_been_sent(failure: Exception) -> None:
    transport = MockTransport(by_endpoint(v2=raises(failure), v1=ok))
    with pytest.raises(type(failure)):
        await Resilient(transport).send(forward())
    assert endpoints(transport) == [V2]


async def test_a_timeout_names_the_version_and_the_models_deadline() -> None:
    transport = MockTransport(by_endpoint(v2=raises(UpstreamTimeout("no complete answer"))))
    resilient = Resilient(transport)
    with pytest.raises(UpstreamTimeout) as caught:
        await resilient.send(forward())
    assert caught.value.message == (
        f"version 2 of 'iris' did not answer within the model's {DEADLINE_MS} ms deadline"
    )
    assert endpoints(transport) == [V2] and resilient.breakers[V2].failures == 1


async def test_the_breaker_ejects_a_failing_upstream_and_lets_one_trial_through() -> None:
    clock = Clock()
    v2 = [status(500)]
    transport = MockTransport(by_endpoint(v2=lambda: v2[0](), v1=ok))
    resilient = Resilient(transport, clock=clock, breaker=lambda: Breaker(3, 10.0))
    for _ in range(3):  # 5xx answers are passed on, and count against the upstream
        assert (await resilient.send(forward())).status == 500
    assert resilient.states()[V2] == OPEN
    transport.requests.clear()
    call = forward()
    assert await resilient.send(call) is OK  # ejected: the stable version answers instead
    assert endpoints(transport) == [V1] and call.choice == TO_STABLE
    with pytest.raises(NoHealthyUpstream, match="its upstream is ejected"):
        await resilient.send(forward(PINNED_V2))  # a pin does not fall back
    clock.now += 10.0
    assert resilient.states()[V2] == HALF_OPEN
    v2[0] = ok
    transport.requests.clear()
    assert await resilient.send(forward()) is OK  # the one trial request
    assert endpoints(transport) == [V2] and resilient.states()[V2] == CLOSED


async def test_a_failed_trial_ejects_the_upstream_again() -> None:
    clock = Clock()
    transport = MockTransport(by_endpoint(v2=status(503), v1=ok))
    resilient = Resilient(transport, clock=clock, breaker=lambda: Breaker(1, 5.0))
    await resilient.send(forward())
    assert resilient.states()[V2] == OPEN
    clock.now += 5.0
    assert (await resilient.send(forward())).status == 503  # the trial, answered 503
    assert resilient.states()[V2] == OPEN
    transport.requests.clear()
    await resilient.send(forward())
    assert endpoints(transport) == [V1]


async def test_client_errors_do_not_count_against_an_upstream() -> None:
    transport = MockTransport(by_endpoint(v2=status(422)))
    resilient = Resilient(transport, breaker=lambda: Breaker(2, 5.0))
    for _ in range(5):
        assert (await resilient.send(forward())).status == 422
    assert resilient.states() == {V2: CLOSED} and resilient.breakers[V2].failures == 0


class Recorder:
    """Hooks that record what they hear, and add a header to every attempt."""

    def __init__(self) -> None:
        self.heard: list[tuple[Any, ...]] = []

    def attempt(self, route: ModelRoute, target: VersionRoute, request: UpstreamRequest) -> Any:
        recorder = self

        class Attempt:
            def __init__(self) -> None:
                self.request = replace(request, headers=[*request.headers, (b"x-try", b"1")])

            def end(self, answer: Any, error: Any, breaker: str) -> None:
                outcome = answer.status if answer is not None else type(error).__name__
                recorder.heard.append(("end", target.version, outcome, breaker))

        self.heard.append(("attempt", target.version))
        return Attempt()

    def fallback(self, route: ModelRoute, before: Choice, after: Choice, why: str) -> None:
        self.heard.append(("fallback", before.version, after.version, why))

    def chosen(self, table: RouteTable, route: ModelRoute, choice: Choice) -> None:
        raise AssertionError("resilience does not build replies")

    def origin(self) -> object | None:
        return None

    def end(self, status: int, error: BaseException | None) -> None:
        raise AssertionError("resilience does not end requests")


async def test_hooks_hear_each_attempt_and_the_fallback_and_may_change_the_request() -> None:
    transport = MockTransport(by_endpoint(v2=raises(ConnectFailed("refused")), v1=ok))
    hooks = Recorder()
    assert await Resilient(transport).send(forward(hooks=hooks)) is OK
    assert hooks.heard == [
        ("attempt", 2),
        ("end", 2, "ConnectFailed", CLOSED),
        ("fallback", 2, 1, "its upstream refused the connection"),
        ("attempt", 1),
        ("end", 1, 200, CLOSED),
    ]
    assert all((b"x-try", b"1") in r.headers for r in transport.requests)
