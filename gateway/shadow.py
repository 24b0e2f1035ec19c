"""Shadow traffic: a sampled copy of a request goes to the shadow version through a bounded
queue, after the primary answer was sent; it never delays or changes that answer. Copies that
find the queue full are dropped and counted. The shadow's answer is compared with the
primary's (the whole answer, or the field the policy names), exactly or numerically within a
tolerance, and the agreement recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any, Final, NamedTuple

import msgspec

from contract.routes import ModelRoute, VersionRoute
from gateway.errors import GatewayError
from gateway.hooks import Hooks
from gateway.metrics import GatewayMetrics
from gateway.transport.base import Headers, Transport, UpstreamRequest

log = logging.getLogger("modelyard.gateway.shadow")

QUEUE_SIZE: Final = 1000
WORKERS: Final = 4


class ShadowCopy(NamedTuple):
    route: ModelRoute
    target: VersionRoute
    path: bytes
    headers: Headers
    body: bytes
    primary: bytes  # the answer the client got
    origin: object | None = None  # the primary request's span context, when tracing


_MISSING: Final = object()


def agree(primary: bytes, shadow: bytes, tolerance: float, field: str | None = None) -> bool:
    """Whether two answers agree. Pure.

    Without `field`, the whole answers: exact byte equality, or with a tolerance, the same JSON
    shape with every number within `tolerance` of its counterpart.

    With `field` (a top-level key of a JSON object, or a dotted path into nested objects such
    as `result.label`), only that part of each answer: equal JSON values (numbers by value, so
    `1` and `1.0` agree; `true` is not `1`), or with a tolerance, every number within it. An
    answer that is not JSON, or lacks the field, counts as a disagreement: a candidate that
    stopped answering the field disagrees, whatever the other answer says."""
    if field is None:
        if primary == shadow:
            return True
        if tolerance <= 0:
            return False
    try:
        a, b = msgspec.json.decode(primary), msgspec.json.decode(shadow)
    except msgspec.DecodeError:
        return False
    if field is not None:
        a, b = field_of(a, field), field_of(b, field)
        if a is _MISSING or b is _MISSING:
            return False
    return _close(a, b, max(tolerance, 0.0))


def field_of(answer: Any, field: str) -> Any:
    """The value at a dotted path into nested JSON objects, or `_MISSING`."""
    for key in field.split("."):
        if not isinstance(answer, dict) or key not in answer:
            return _MISSING
        answer = answer[key]
    return answer


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    return bool(a == b)


class ShadowQueue:
    def __init__(
        self,
        transport: Transport,
        metrics: GatewayMetrics,
        size: int = QUEUE_SIZE,
        *,
        hooks: Hooks | None = None,
    ) -> None:
        self.transport = transport
        self.metrics = metrics
        self.hooks = hooks
        self._queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(maxsize=size)
        self._workers: list[asyncio.Task[None]] = []

    def offer(self, copy: ShadowCopy) -> None:
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.metrics.shadow(copy.route.name, str(copy.target.version)).dropped += 1

    def start(self, workers: int = WORKERS) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(workers)]

    async def _work(self) -> None:
        while True:
            copy = await self._queue.get()
            try:
                await self.compare(copy)
            finally:
                self._queue.task_done()

    async def compare(self, copy: ShadowCopy) -> bool | None:
        """Send the copy and compare; returns the agreement (None: no comparable answer)."""
        if self.hooks is None:
            return await self._compare(copy)
        hooks = self.hooks.shadow(copy)
        try:
            agreed = await self._compare(hooks.copy)
        except BaseException as exc:
            hooks.end(None, exc)
            raise
        hooks.end(agreed, None)
        return agreed

    async def _compare(self, copy: ShadowCopy) -> bool | None:
        model, version = copy.route.name, str(copy.target.version)
        policy = copy.route.policy
        started = time.perf_counter()
        request = UpstreamRequest(
            copy.target.endpoint,
            b"POST",
            copy.path,
            copy.headers,
            copy.body,
            policy.deadline_ms / 1000,
        )
        try:
            answer = await self.transport.handle(request)
        except GatewayError as exc:
            self.metrics.shadow_answer(model, version, time.perf_counter() - started, None)
            log.debug("shadow copy to %s failed: %s", copy.target.endpoint, exc.message)
            return None
        seconds = time.perf_counter() - started
        if answer.status >= 400:
            self.metrics.shadow_answer(model, version, seconds, None)
            return None
        shadow = policy.shadow
        tolerance, field = (shadow.tolerance, shadow.compare_field) if shadow else (0.0, None)
        agreed = agree(copy.primary, answer.body, tolerance, field)
        self.metrics.shadow_answer(model, version, seconds, agreed)
        return agreed

    async def drain(self) -> None:
        """Wait until every queued copy was sent and compared (tests, shutdown)."""
        await self._queue.join()

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
