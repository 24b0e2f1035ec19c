"""The rollout controller's lead on PostgreSQL: one holder per key, and a lead() that loses or
is cancelled at any point leaves no session behind (a leaked one would hold nothing, but it
is a connection the server keeps and a ResourceWarning in the process)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import asyncpg
import pytest

from adapters.sql.leadership import PostgresLead

pytestmark = pytest.mark.postgres


async def sessions(url: str, name: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        )
        return int(found)
    finally:
        await conn.close()


async def until_sessions(url: str, name: str, expected: int) -> None:
    """The server notices a dropped session a moment later: poll, within a bound."""
    deadline = time.monotonic() + 10
    while (found := await sessions(url, name)) != expected:
        assert time.monotonic() < deadline, f"{found} sessions of {name}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_one_holder_and_the_loser_keeps_no_session(pg_url: str) -> None:
    name = "lead-" + secrets.token_hex(4)
    url = f"{pg_url}?application_name={name}"
    key = secrets.randbits(31)
    first, second = PostgresLead(url, key), PostgresLead(url, key)
    try:
        assert await first.lead() and not await second.lead()
        assert await first.lead()  # still held, on the same session
        await until_sessions(pg_url, name, 1)
        await first.close()  # the lock goes with the session: the other takes over
        assert await second.lead()
    finally:
        await first.close()
        await second.close()
    await until_sessions(pg_url, name, 0)


async def test_a_lead_cancelled_anywhere_leaks_no_session(pg_url: str) -> None:
    name = "lead-" + secrets.token_hex(4)
    url = f"{pg_url}?application_name={name}"
    key = secrets.randbits(31)
    holder = PostgresLead(url, key)
    assert await holder.lead()
    try:
        for turns in range(0, 2000, 5):  # cancel after 0, 5, 10, ... turns: every await is hit
            lead = PostgresLead(url, key)
            task = asyncio.create_task(lead.lead())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                assert await task is False  # finished before the cancel: it lost
            await lead.close()
        await until_sessions(pg_url, name, 1)  # the holder's alone
    finally:
        await holder.close()
