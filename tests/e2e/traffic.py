"""Open-loop client traffic through the gateway for the rollout tests: a few senders, each on a
schedule of its own, recording every answer's time, status and serving version."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx


class Traffic:
    """Clients at a steady total `rate`, recording `(time, status, version)` of every answer.

    Open loop: `senders` threads each keep their own schedule, so a slow answer (a loaded
    machine, a slow candidate) delays one sender, not the rate the rollout is judged on. Each
    sender cycles through `bodies` from its own offset (so different rows are in flight at
    once); a request that gets no answer at all is recorded with status 0."""

    def __init__(
        self, url: str, bodies: Sequence[Any], rate: float = 40.0, senders: int = 4
    ) -> None:
        self.url, self.bodies, self.rate, self.senders = url, list(bodies), rate, senders
        self.answers: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(senders)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, sender: int) -> None:
        n = len(self.bodies)
        with httpx.Client(timeout=10) as client:
            next_at = time.monotonic() + sender / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            sent = 0
            while not self._stop.is_set():
                body = self.bodies[(sender * n // self.senders + sent) % n]
                try:
                    r = client.post(self.url, json=body)
                    answer = (
                        time.monotonic(),
                        r.status_code,
                        r.headers.get("x-modelyard-version", "?"),
                    )
                except httpx.TransportError:
                    answer = (time.monotonic(), 0, "?")
                self.answers.append(answer)
                sent += 1
                next_at += self.senders / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def rate_seen(self) -> float:
        """Answers per second over the run."""
        times = [t for t, _, _ in self.answers]
        return len(times) / (max(times) - min(times))

    def after(self, moment: float) -> list[tuple[float, int, str]]:
        """The answers received after `moment` (time.monotonic())."""
        return [a for a in list(self.answers) if a[0] > moment]
