"""The registry's spans below its HTTP layer, installed only when tracing is on (so they cost
nothing otherwise); the SERVER span of each API call is the web layer's (registry/web/tracing.py):

- `TracedStore`: a CLIENT span per metadata-store operation (`store.get_model`, ...) when it
  runs inside a traced call or tick (background polling makes no root spans);
- `TracedRolloutObserver`: the controller's tick as a span (only ticks that advance a rollout),
  each verdict, phase change and weight change as events on it, around another observer (the
  metrics).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

from adapters.telemetry import Tracing
from registry.rollouts.service import RolloutObserver
from registry.rollouts.state import Rollout

#: the registry's tracer (its web layer's SERVER spans too)
TRACER_NAME: Final = "modelyard.registry"


class TracedStore:
    """The metadata store with a span around each operation; everything else passes through."""

    def __init__(self, store: Any, tracing: Tracing, system: str) -> None:
        self._store = store
        self._tracer = tracing.tracer(TRACER_NAME)
        self._system = system

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not inspect.iscoroutinefunction(found):
            return found
        tracer, system = self._tracer, self._system

        async def traced(*args: Any, **kwargs: Any) -> Any:
            if not trace.get_current_span().is_recording():  # no traced caller: no root span
                return await found(*args, **kwargs)
            with tracer.start_as_current_span(
                f"store.{name}",
                kind=SpanKind.CLIENT,
                attributes={"db.system.name": system, "db.operation.name": name},
            ):
                return await found(*args, **kwargs)

        return traced


class TracedRolloutObserver:
    """What `inner` (the metrics) observes, and the tick's span with its events."""

    def __init__(self, inner: RolloutObserver, tracing: Tracing) -> None:
        self.inner = inner
        self.tracer: Tracer = tracing.tracer(TRACER_NAME)

    def active(self, rollouts: list[Rollout]) -> None:
        self.inner.active(rollouts)

    @contextlib.contextmanager
    def _tick(self) -> Iterator[None]:
        with (
            self.tracer.start_as_current_span("rollout.tick", kind=SpanKind.INTERNAL),
            self.inner.tick(),
        ):
            yield

    def tick(self) -> contextlib.AbstractContextManager[None]:
        return self._tick()

    def moved(self, before: Rollout, after: Rollout) -> None:
        self.inner.moved(before, after)
        span = trace.get_current_span()
        if not span.is_recording():
            return
        base = {
            "rollout.id": after.id,
            "model.name": after.model,
            "model.version": str(after.spec.candidate),
        }
        look = after.last if after.looks != before.looks else None
        if look is not None:
            verdict = look.verdict
            span.add_event(
                "rollout.verdict",
                {
                    **base,
                    "outcome": str(verdict.outcome),
                    "reason": verdict.reason,
                    "look": look.seq,
                    "weight": look.weight,
                },
            )
        if after.phase != before.phase:
            span.add_event(
                "rollout.phase", {**base, "from": str(before.phase), "to": str(after.phase)}
            )
        if after.weight != before.weight:
            span.add_event("rollout.weight", {**base, "from": before.weight, "to": after.weight})
