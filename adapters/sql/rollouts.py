"""Rollouts in SQL: the state of each rollout as one JSON document (the engine's Struct, as
it is), with its phase beside it so that a partial unique index allows one active rollout per
model; and its looks (verdicts with their evidence), one row each.

Rollouts are written inside a model's transaction (adapters/sql/changes.py calls `save` and
`append_look`); `SqlRollouts` reads them.
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.sql import rows
from adapters.sql.driver import OnDriver, SqlConn
from registry.errors import NotFound
from registry.ports import RolloutReader
from registry.rollouts.state import ACTIVE_PHASES, Look, Rollout

_rollout = msgspec.json.Decoder(Rollout)
_look = msgspec.json.Decoder(Look)
_ACTIVE: Final = tuple(sorted(p.value for p in ACTIVE_PHASES))
_IN_ACTIVE: Final = f"phase IN ({', '.join('?' * len(_ACTIVE))})"


async def active_for(conn: SqlConn, model: str) -> Rollout | None:
    found = await conn.fetch(
        f"SELECT state FROM rollouts WHERE model = ? AND {_IN_ACTIVE}", (model, *_ACTIVE)
    )
    return _rollout.decode(found[0][0]) if found else None


async def save(conn: SqlConn, rollout: Rollout) -> None:
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


async def append_look(conn: SqlConn, rollout_id: str, look: Look) -> None:
    await conn.execute(
        "INSERT INTO rollout_looks (rollout_id, seq, at, look) VALUES (?, ?, ?, ?)",
        (rollout_id, look.seq, rows.to_micros(look.at), rows.dumps(look)),
    )


class SqlRollouts(OnDriver, RolloutReader):
    async def get_rollout(self, rollout_id: str) -> Rollout:
        found = await self._read("SELECT state FROM rollouts WHERE id = ?", (rollout_id,))
        if not found:
            raise NotFound(f"rollout {rollout_id!r} does not exist", field="id")
        return _rollout.decode(found[0][0])

    async def list_rollouts(self, model: str, limit: int) -> list[Rollout]:
        found = await self._read(
            "SELECT state FROM rollouts WHERE model = ? ORDER BY created_at DESC, id LIMIT ?",
            (model, limit),
        )
        return [_rollout.decode(r[0]) for r in found]

    async def active_rollouts(self) -> list[Rollout]:
        found = await self._read(
            f"SELECT state FROM rollouts WHERE {_IN_ACTIVE} ORDER BY model", _ACTIVE
        )
        return [_rollout.decode(r[0]) for r in found]

    async def rollout_looks(self, rollout_id: str, after: int, limit: int) -> list[Look]:
        found = await self._read(
            "SELECT look FROM rollout_looks WHERE rollout_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (rollout_id, after, limit),
        )
        return [_look.decode(r[0]) for r in found]
