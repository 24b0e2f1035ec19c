"""The webhook delivery worker: posts outbox rows until each is acknowledged (at least once).

Rows are claimed under a lease, posted concurrently, and their outcome recorded: a 2xx marks the
row delivered; anything else is retried with exponential backoff (`events.retry_delay`) up to
MAX_ATTEMPTS.

Each row is posted by a task of its own, and the worker goes on claiming while posts are in
flight (up to MAX_INFLIGHT): deliveries to different receivers never wait for each other. A
receiver that never answers holds only its own rows, each for the sender's timeout, then its
backoff; before, batches of 32 were awaited together, so one such receiver held up every
delivery in and behind its batch.

A crash between commit and delivery only delays a row: it stays in the outbox and its lease runs
out, so the next worker (this process restarted, or another replica) posts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from registry.ports import WebhookOutbox, WebhookSender
from registry.webhooks.events import (
    MAX_ATTEMPTS,
    Due,
    headers,
    retry_delay,
    should_retry,
)

log = logging.getLogger("modelyard.webhooks")

POLL_S: Final = 1.0
LEASE_S: Final = 25.0  # a crashed worker's rows wait this long (see `lease_for`)
BATCH: Final = 32  # rows claimed at a time
MAX_INFLIGHT: Final = 256  # posts in flight at once, all receivers together


def lease_for(sender_timeout_s: float) -> float:
    """A claim's lease: well past the sender's timeout, so a live worker's rows are never
    claimed twice, and no longer than that, so a crashed worker's rows wait no more."""
    return 2.5 * sender_timeout_s


class WebhookWorker:
    def __init__(
        self,
        outbox: WebhookOutbox,
        sender: WebhookSender,
        clock: Callable[[], datetime],
        poll_s: float = POLL_S,
        max_attempts: int = MAX_ATTEMPTS,
        lease_s: float = LEASE_S,
    ) -> None:
        self.outbox, self.sender, self.clock = outbox, sender, clock
        self.poll_s, self.max_attempts, self.lease_s = poll_s, max_attempts, lease_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def wake(self, _model: str | None = None) -> None:
        """Look for work now (subscribed to the registry's commits)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="webhook-delivery")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._inflight):  # their rows' leases run out: posted again later
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                started = await self._claim()
            except Exception:  # the worker must outlive a store hiccup; it retries next round
                log.exception("webhook delivery round failed")
                started = []
            if len(started) == BATCH:  # more may be due
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def run_once(self) -> int:
        """Claim one batch and wait for its posts; returns how many rows it tried."""
        started = await self._claim()
        if started:
            await asyncio.gather(*started)
        return len(started)

    async def _claim(self) -> list[asyncio.Task[None]]:
        """Claim what is due, as far as there is room in flight, and start posting each row."""
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return []  # a post that ends wakes the loop
        now = self.clock()
        lease_until = now + timedelta(seconds=self.lease_s)
        due = await self.outbox.claim(now, lease_until, min(BATCH, room))
        started = [asyncio.create_task(self._deliver_logged(d)) for d in due]
        for task in started:
            self._inflight.add(task)
            task.add_done_callback(self._ended)
        return started

    def _ended(self, task: asyncio.Task[None]) -> None:
        full = len(self._inflight) >= MAX_INFLIGHT
        self._inflight.discard(task)
        if full:
            self._wake.set()

    async def _deliver_logged(self, due: Due) -> None:
        try:
            await self._deliver(due)
        except Exception:  # a store hiccup recording the outcome: the lease runs out, retried
            log.exception("webhook delivery %s failed to record", due.delivery_id)

    async def _deliver(self, due: Due) -> None:
        status: int | None = None
        error = ""
        try:
            status = await self.sender.post(
                due.url, due.payload, headers(due, int(self.clock().timestamp()))
            )
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock()
        if status is not None and 200 <= status < 300:
            await self.outbox.delivered(due.id, status, now)
            return
        error = error or f"HTTP {status}"
        attempts = due.attempts + 1
        retry_at = None
        if attempts < self.max_attempts and should_retry(status):
            retry_at = now + timedelta(seconds=retry_delay(attempts))
        log.warning(
            "webhook delivery %s to %s failed (attempt %d): %s%s",
            due.delivery_id,
            due.url,
            attempts,
            error,
            "" if retry_at else "; giving up",
        )
        await self.outbox.attempt_failed(due.id, status, error, retry_at)
