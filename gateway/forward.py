"""Forwarding, the part the passthrough and the OIP fronts share: pick the version
(gateway.routing), send the request through the resilient transport (gateway.resilience),
measure it, name model, version, variant and route revision in the answer's headers, and offer
a sampled copy to the shadow version."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable
from typing import Final

from contract.routes import ModelRoute, RouteTable
from contract.traffic import BUCKETS
from gateway.buckets import StickyBuckets
from gateway.draws import Draws
from gateway.errors import GatewayError, Overloaded
from gateway.hooks import AttemptEnd, RequestHooks
from gateway.metrics import GatewayMetrics, VariantStats
from gateway.reply import JSON, Reply
from gateway.request import Routing
from gateway.resilience import Forward, Resilient
from gateway.routing import Choice, choose, shadow_target
from gateway.shadow import ShadowCopy, ShadowQueue
from gateway.transport.base import Headers, UpstreamResponse

MODEL_HEADER: Final = b"x-modelyard-model"
VERSION_HEADER: Final = b"x-modelyard-version"
VARIANT_HEADER: Final = b"x-modelyard-variant"
REVISION_HEADER: Final = b"x-modelyard-route-revision"
_CONTENT_TYPE: Final = b"content-type"
_CONTENT_TYPE_LINE: Final = b"content-type: "
_CRLF: Final = b"\r\n"


#: The gateway's own answer headers are the same for every answer of one version under one
#: variant and route revision; building them (three `str`, four `encode`, four tuples) was
#: 3 % of a request's instructions (loadtests/hotpath_profile.py). Remembered up to this many.
_MAX_OWN_HEADERS: Final = 4096
_OwnKey = tuple[int, str, int, str]  # revision, model, version, variant
_Own = tuple[Headers, bytes]  # the headers, and as header lines (`Reply.head`)


class Forwarder:
    __slots__ = ("_cells", "_own", "buckets", "draws", "metrics", "resilient", "shadow")

    def __init__(
        self,
        resilient: Resilient,
        metrics: GatewayMetrics,
        shadow: ShadowQueue,
        draws: Draws | None = None,
        buckets: StickyBuckets | None = None,
    ) -> None:
        self.resilient = resilient
        self.metrics = metrics
        self.shadow = shadow
        self.draws = draws if draws is not None else Draws()
        self.buckets = buckets if buckets is not None else StickyBuckets()  # (remembered)
        self._own: dict[_OwnKey, _Own] = {}
        self._cells: dict[tuple[str, int, str], VariantStats] = {}  # metrics.cell's, kept

    def choose(self, route: ModelRoute, routing: Routing) -> Choice:
        # by position: keywords cost more (OIP calls, loadtests/oip_hotpath.py --callgrind)
        return choose(
            route,
            routing.version,
            routing.alias,
            routing.key,
            routing.headers,
            self.draws,
            self.buckets,
        )

    async def send(
        self,
        route: ModelRoute,
        choice: Choice,
        path: bytes,
        headers: Headers,
        body: bytes,
        hooks: RequestHooks | None,
        underway: Awaitable[UpstreamResponse] | None = None,
        started: float = 0.0,
        underway_attempt: AttemptEnd | None = None,
    ) -> tuple[UpstreamResponse, Choice]:
        """The answer and the version that gave it; measured under that version's variant
        (a shed request is not: it never reached an upstream). `underway`, `started` and
        `underway_attempt` (a sampled one's first attempt): a request the callback lane
        started (gateway.lane), continued here."""
        forward = Forward(route, choice, path, headers, body, hooks)
        if underway is None:
            started = time.perf_counter()
        try:
            answer = await self.resilient.send(forward, underway, underway_attempt)
        except Overloaded:
            raise
        except GatewayError:
            self.measured(route, forward.choice, started, True)
            raise
        choice = forward.choice
        self.measured(route, choice, started, answer.status >= 500)
        return answer, choice

    def measured(self, route: ModelRoute, choice: Choice, started: float, error: bool) -> None:
        """One forwarded request's latency (since `started`, `time.perf_counter`) and outcome,
        under the version that answered and its variant."""
        seconds = time.perf_counter() - started
        key = (route.name, choice.version, choice.variant)
        cell = self._cells.get(key)  # no `str(version)` and no lookup by text per request
        if cell is None:
            cell = self._cells[key] = self.metrics.cell(key[0], str(key[1]), key[2])
        cell.record(seconds, error)

    def reply(
        self,
        table: RouteTable,
        route: ModelRoute,
        choice: Choice,
        status: int,
        body: bytes,
        upstream_headers: Headers,
        hooks: RequestHooks | None,
    ) -> Reply:
        """The answer with the upstream's content type and the gateway's own headers."""
        if hooks is not None:
            hooks.chosen(table, route, choice)
        key = (table.revision, route.name, choice.version, choice.variant)
        own = self._own.get(key)
        if own is None:
            own = self._own_headers(key)
        # a loop, not a comprehension: one frame less (Python 3.11); the tuples themselves:
        # the OIP front marks a written answer by its header's identity
        headers = []
        for pair in upstream_headers:
            if pair[0] == _CONTENT_TYPE:
                headers.append(pair)
        if not headers:
            headers.append(JSON)
        if len(headers) != 1:  # (several content types: the server encodes them itself)
            return Reply(status, headers + own[0], body)
        head = b"".join((_CONTENT_TYPE_LINE, headers[0][1], _CRLF, own[1]))
        headers += own[0]
        return Reply(status, headers, body, head, headers)

    def _own_headers(self, key: _OwnKey) -> _Own:
        revision, model, version, variant = key
        if len(self._own) >= _MAX_OWN_HEADERS:
            self._own.clear()
        headers = [
            (MODEL_HEADER, model.encode()),
            (VERSION_HEADER, str(version).encode()),
            (VARIANT_HEADER, variant.encode()),
            (REVISION_HEADER, str(revision).encode()),
        ]
        lines = b"".join(b"%b: %b\r\n" % pair for pair in headers)
        own = self._own[key] = (headers, lines)
        return own

    def offer_shadow(
        self,
        route: ModelRoute,
        choice: Choice,
        path: bytes,
        headers: Headers,
        body: bytes,
        answer: UpstreamResponse,
        hooks: RequestHooks | None,
    ) -> None:
        """A sampled copy to the shadow version, sent after the answer (never delaying it)."""
        if route.policy.shadow is None or answer.status >= 400:
            return
        target = shadow_target(route, choice.version, random.randrange(BUCKETS))
        if target is not None:
            origin = hooks.origin() if hooks is not None else None
            self.shadow.offer(ShadowCopy(route, target, path, headers, body, answer.body, origin))
