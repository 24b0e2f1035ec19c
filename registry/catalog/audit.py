"""The audit log's hash chain. Pure.

Each scope (one per model, plus `system`) is a chain: event n carries the hash of event n-1 and
its own hash over every other field. Editing, removing or re-ordering any event, or cutting the
tail (the store keeps the head's hash apart), breaks verification at a precise sequence number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from registry.catalog.changes import Audit
from registry.catalog.domain import AuditEvent

GENESIS: Final = "0" * 64

_encoder = msgspec.json.Encoder()


class _Sealed(msgspec.Struct, array_like=True):
    scope: str
    seq: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None
    alias: str | None
    before: msgspec.Raw | None
    after: msgspec.Raw | None
    reason: str | None
    request_id: str | None
    prev_hash: str


def _digest(body: _Sealed) -> str:
    return hashlib.sha256(_encoder.encode(body)).hexdigest()


def seal(scope: str, head_seq: int, head_hash: str, draft: Audit) -> AuditEvent:
    body = _Sealed(
        scope=scope,
        seq=head_seq + 1,
        at=draft.at,
        actor=draft.actor,
        action=draft.action,
        model=draft.model,
        version=draft.version,
        alias=draft.alias,
        before=draft.before,
        after=draft.after,
        reason=draft.reason,
        request_id=draft.request_id,
        prev_hash=head_hash,
    )
    return AuditEvent(**{f: getattr(body, f) for f in body.__struct_fields__}, hash=_digest(body))


class ChainReport(msgspec.Struct, frozen=True):
    scope: str
    ok: bool
    events: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None
    problem: str | None = None


def verify(scope: str, events: Iterable[AuditEvent], head: tuple[int, str]) -> ChainReport:
    """Walk the chain from genesis; report the first event that does not fit."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for ev in events:
        fields = {f: getattr(ev, f) for f in _Sealed.__struct_fields__}
        problem = None
        if ev.seq != expected_seq:
            problem = f"sequence gap: expected {expected_seq}, found {ev.seq}"
        elif ev.prev_hash != prev_hash:
            problem = "prev_hash does not match the previous event"
        elif _digest(_Sealed(**fields)) != ev.hash:
            problem = "event content does not match its hash"
        if problem:
            return ChainReport(scope, False, count, head[0], head[1], ev.seq, problem)
        prev_hash, expected_seq, count = ev.hash, expected_seq + 1, count + 1
    if (expected_seq - 1, prev_hash) != head:
        return ChainReport(
            scope,
            False,
            count,
            head[0],
            head[1],
            expected_seq,
            "chain ends before the recorded head",
        )
    return ChainReport(scope, True, count, head[0], head[1])
