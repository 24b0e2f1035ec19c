"""Webhook deliveries to different receivers never wait for each other: a receiver that never
answers holds only its own rows (issue 18). Before, the worker awaited batches of 32 together,
so one such receiver held up every delivery in and behind its batch."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from registry.webhooks.delivery import BATCH, WebhookWorker
from registry.webhooks.events import Due, Secret

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEAD, LIVE = "http://dead", "http://live"


class Outbox:
    """Due rows handed out oldest first, at most `limit` a claim, each once."""

    def __init__(self) -> None:
        self.rows: dict[int, Due] = {}
        self.done: dict[int, float] = {}  # row -> when it was acknowledged
        self.failed: list[int] = []

    def add(self, first: int, count: int) -> None:
        for i in range(first, first + count):
            self.rows[i] = Due(i, f"d{i}", DEAD if i % 2 else LIVE, Secret("s"), b"{}", 0)

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Due]:
        due = [self.rows.pop(i) for i in sorted(self.rows)[:limit]]
        return due

    async def delivered(self, row_id: int, status: int, now: datetime) -> None:
        self.done[row_id] = time.perf_counter()

    async def attempt_failed(self, row_id: int, *_: object) -> None:
        self.failed.append(row_id)


class Sender:
    """The live receiver answers at once; the dead one accepts and never answers (until the
    sender's timeout, 10 s, which this test never reaches)."""

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if url == DEAD:
            await asyncio.sleep(10)
            raise OSError("timed out")
        return 200


async def test_a_receiver_that_never_answers_does_not_delay_another() -> None:
    outbox = Outbox()
    outbox.add(1, 4 * BATCH)  # half to each receiver, interleaved
    worker = WebhookWorker(outbox, Sender(), clock=lambda: NOW, poll_s=0.05)
    started = time.perf_counter()
    worker.start()
    try:
        live = [i for i in range(1, 4 * BATCH + 1) if i % 2 == 0]
        while not all(i in outbox.done for i in live):
            assert time.perf_counter() - started < 5, "the live receiver's events were held up"
            await asyncio.sleep(0.01)
        lag = max(outbox.done[i] for i in live) - started
        later = time.perf_counter()  # more events while the dead receiver's posts still hang
        outbox.add(1000, 2)
        worker.wake()
        while 1000 not in outbox.done:  # (1001 goes to the dead receiver)
            await asyncio.sleep(0.01)
        later_lag = outbox.done[1000] - later
    finally:
        await worker.close()
    print(f"\nlive receiver: all {len(live)} in {lag:.3f} s, the next in {later_lag:.3f} s")
    assert lag < 1.0 and later_lag < 1.0
    assert outbox.failed == []  # the dead receiver's posts were still waiting
