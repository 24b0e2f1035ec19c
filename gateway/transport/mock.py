"""A transport that answers from a function, for tests (like httpx's `MockTransport`)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from gateway.transport.base import UpstreamRequest, UpstreamResponse

Handler = Callable[[UpstreamRequest], UpstreamResponse | Awaitable[UpstreamResponse]]


class MockTransport:
    """Calls `handler` with each request; it returns the answer (or an awaitable of it) or raises
    what a real transport raises (`ConnectFailed`, `UpstreamTimeout`, ...). Every request is
    kept in `requests`, in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[UpstreamRequest] = []

    async def handle(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            return await answer
        return answer
