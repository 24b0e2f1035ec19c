"""Each model's sequence of split draws in one gateway process (`gateway.routing.next_draw`):
the only state behind the routing decision, kept out of the pure `choose`."""

from __future__ import annotations

import random

from contract.traffic import BUCKETS
from gateway.routing import next_draw


class Draws:
    """Called with a model's name, returns its next draw. A model's first draw is a random
    bucket, so gateway replicas do not move in step."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def __call__(self, model: str) -> int:
        last = self._last.get(model)
        draw = next_draw(last) if last is not None else random.randrange(BUCKETS)
        self._last[model] = draw
        return draw
