"""The webhook delivery worker: posts outbox rows until each is acknowledged (at least once).

Rows are claimed under a lease, posted concurrently, and their outcome recorded: a 2xx marks the
row delivered; anything else is retried with exponential backoff (`events.retry_delay`) up to
MAX_ATTEMPTS. A crash between commit and delivery only delays a row: it stays in the outbox and
its lease runs out, so the next worker (this process restarted, or another replica) posts it.
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
BATCH: Final = 32


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

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except Exception:  # the worker must outlive a store hiccup; it retries next round
                log.exception("webhook delivery round failed")
                busy = 0
            if busy:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def run_once(self) -> int:
        """Claim and post one batch; returns how many rows it tried."""
        now = self.clock()
        due = await self.outbox.claim(now, now + timedelta(seconds=self.lease_s), BATCH)
        if due:
            await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

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
