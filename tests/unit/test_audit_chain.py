from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from registry.catalog import audit
from registry.catalog.changes import Audit
from registry.catalog.domain import AuditEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def chain(n: int) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    seq, head = 0, audit.GENESIS
    for i in range(n):
        draft = Audit(
            at=T0 + timedelta(seconds=i),
            actor="alice",
            action="alias.set",
            model="iris",
            alias="champion",
            after=msgspec.Raw(b'{"version":%d}' % i),
        )
        ev = audit.seal("model:iris", seq, head, draft)
        events.append(ev)
        seq, head = ev.seq, ev.hash
    return events


def head_of(events: list[AuditEvent]) -> tuple[int, str]:
    return events[-1].seq, events[-1].hash


def test_intact_chain_verifies() -> None:
    events = chain(5)
    report = audit.verify("model:iris", events, head_of(events))
    assert report.ok and report.events == 5 and report.broken_at is None


def test_edited_event_is_found() -> None:
    events = chain(5)
    events[2] = msgspec.structs.replace(events[2], actor="mallory")
    report = audit.verify("model:iris", events, head_of(events))
    assert not report.ok and report.broken_at == 3
    assert report.problem is not None and "hash" in report.problem


def test_removed_event_is_found() -> None:
    events = chain(5)
    head = head_of(events)
    del events[1]
    report = audit.verify("model:iris", events, head)
    assert not report.ok and report.broken_at == 3


def test_rehashed_edit_breaks_the_link() -> None:
    events = chain(4)
    forged = audit.seal(
        "model:iris",
        1,
        events[0].hash,
        Audit(at=T0, actor="mallory", action="alias.set", model="iris"),
    )
    events[1] = forged
    report = audit.verify("model:iris", events, head_of(events))
    assert not report.ok and report.broken_at == 3


def test_cut_tail_is_found_by_the_head() -> None:
    events = chain(5)
    head = head_of(events)
    report = audit.verify("model:iris", events[:3], head)
    assert not report.ok and report.broken_at == 4


def test_empty_chain_with_genesis_head_is_ok() -> None:
    assert audit.verify("model:x", [], (0, audit.GENESIS)).ok
