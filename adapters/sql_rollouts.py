"""Rollouts in SQL: the state of each rollout as one JSON document (the engine's Struct, as
it is), with its phase beside it so that a partial unique index allows one active rollout per
model; and its looks (verdicts with their evidence), one row each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

import msgspec

from adapters import sql_rows as rows
from registry.rollouts.state import ACTIVE_PHASES, Look, Rollout

_rollout = msgspec.json.Decoder(Rollout)
_look = msgspec.json.Decoder(Look)
_ACTIVE: Final = tuple(sorted(p.value for p in ACTIVE_PHASES))
_IN_ACTIVE: Final = f"phase IN ({', '.join('?' * len(_ACTIVE))})"


class Conn(Protocol):
    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None: ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[rows.Row]: ...


async def active_for(conn: Conn, model: str) -> Rollout | None:
    found = await conn.fetch(
        f"SELECT state FROM rollouts WHERE model = ? AND {_IN_ACTIVE}", (model, *_ACTIVE)
    )
    return _rollout.decode(found[0][0]) if found else None


async def save(conn: Conn, rollout: Rollout) -> None:
    await conn.execute(
        "INSERT INTO rollouts (id, model, phase, state, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET phase = excluded.phase,"
        " state = excluded.state, updated_at = excluded.updated_at",
        (
            rollout.id,
            rollout.model,
            rollout.phase.value,
            rows.dumps(rollout),
            rows.to_micros(rollout.created_at),
            rows.to_micros(rollout.updated_at),
        ),
    )


async def append_look(conn: Conn, rollout_id: str, look: Look) -> None:
    await conn.execute(
        "INSERT INTO rollout_looks (rollout_id, seq, at, look) VALUES (?, ?, ?, ?)",
        (rollout_id, look.seq, rows.to_micros(look.at), rows.dumps(look)),
    )


async def get(conn: Conn, rollout_id: str) -> Rollout | None:
    found = await conn.fetch("SELECT state FROM rollouts WHERE id = ?", (rollout_id,))
    return _rollout.decode(found[0][0]) if found else None


async def of_model(conn: Conn, model: str, limit: int) -> list[Rollout]:
    found = await conn.fetch(
        "SELECT state FROM rollouts WHERE model = ? ORDER BY created_at DESC, id LIMIT ?",
        (model, limit),
    )
    return [_rollout.decode(r[0]) for r in found]


async def active(conn: Conn) -> list[Rollout]:
    found = await conn.fetch(
        f"SELECT state FROM rollouts WHERE {_IN_ACTIVE} ORDER BY model", _ACTIVE
    )
    return [_rollout.decode(r[0]) for r in found]


async def looks(conn: Conn, rollout_id: str, after: int, limit: int) -> list[Look]:
    found = await conn.fetch(
        "SELECT look FROM rollout_looks WHERE rollout_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (rollout_id, after, limit),
    )
    return [_look.decode(r[0]) for r in found]
