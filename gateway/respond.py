"""How a request's answer goes back to the server that took it: `respond(reply)`, called exactly
once, at once or later (`Gateway.start`, the fast HTTP server's handler API).

A request answered by a coroutine (anything but the gateway's callback lane, gateway.lane)
runs it in one Task that responds when it ends: `in_task`. `respond(None)` says the gateway
failed to answer (logged here); the server answers 500 and closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from gateway.reply import Reply
from gateway.transport.base import Headers

log = logging.getLogger("modelyard.http")

#: The server's side of one request: its reply, or None for "the gateway failed" (a 500).
Respond = Callable[[Reply | None], None]

# named: an unnamed task formats "Task-<n>" for its name (measured: 1 % of a request)
_TASK_NAME: Final = "modelyard-http"


def in_task(answer: Coroutine[Any, Any, Reply], respond: Respond) -> None:
    """Run `answer` in a Task of its own and respond with what it returns."""
    asyncio.Task(_answered(answer, respond), name=_TASK_NAME)


async def _answered(answer: Coroutine[Any, Any, Reply], respond: Respond) -> None:
    try:
        reply = await answer
    except Exception:
        log.exception("unhandled error answering a request")
        respond(None)
        return
    respond(reply)


class CoroutineHandler:
    """A fast HTTP handler's `start` (gateway.server.fast_http.FastHandler) for a handler that
    answers with a coroutine (`handle`): it runs in a Task of its own. Here, not beside the
    server: that module is compiled (mypyc), and a compiled class cannot be subclassed by
    interpreted code."""

    def handle(
        self, method: str, path: str, headers: Headers, body: bytes
    ) -> Coroutine[Any, Any, Reply]:
        raise NotImplementedError

    def start(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        respond: Respond,
        context: bool = True,
    ) -> None:
        in_task(self.handle(method, path, headers, body), respond)
