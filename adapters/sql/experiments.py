"""Experiments in SQL: each experiment's state as one JSON document beside its phase (a
partial unique index allows one running experiment per model), and each arm's outcomes as
running sums (count, sum, sum of squares, and the CUPED covariate's sums) that feedback
increments in place.

Experiments are started and stopped inside a model's transaction (adapters/sql/changes.py
calls `save`); outcomes are added outside it, by `SqlExperiments.add_outcomes`.
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.sql import rows
from adapters.sql.driver import OnDriver, SqlConn
from registry.errors import NotFound
from registry.experiments.stats import Experiment, Phase, Read, Tally
from registry.ports import ExperimentStore

_experiment = msgspec.json.Decoder(Experiment)
_read = msgspec.json.Decoder(Read)
#: An arm's running sums (Tally's fields after `version`), each added to in place.
_SUMS: Final = ("n", "total", "total_sq", "cov_n", "cov_total", "cov_total_sq", "cov_cross")
_ADD: Final = (
    f"INSERT INTO experiment_outcomes (experiment_id, version, {', '.join(_SUMS)})"
    f" VALUES (?, ?, {', '.join('?' * len(_SUMS))}) ON CONFLICT (experiment_id, version)"
    " DO UPDATE SET " + ", ".join(f"{c} = experiment_outcomes.{c} + excluded.{c}" for c in _SUMS)
)


async def running_for(conn: SqlConn, model: str) -> Experiment | None:
    found = await conn.fetch(
        "SELECT state FROM experiments WHERE model = ? AND phase = ?", (model, Phase.RUNNING.value)
    )
    return _experiment.decode(found[0][0]) if found else None


async def save(conn: SqlConn, experiment: Experiment) -> None:
    await conn.execute(
        "INSERT INTO experiments (id, model, phase, state, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET phase = excluded.phase,"
        " state = excluded.state, updated_at = excluded.updated_at",
        (
            experiment.id,
            experiment.model,
            experiment.phase.value,
            rows.dumps(experiment),
            rows.to_micros(experiment.created_at),
            rows.to_micros(experiment.updated_at),
        ),
    )


class SqlExperiments(OnDriver, ExperimentStore):
    async def get_experiment(self, experiment_id: str) -> Experiment:
        found = await self._read("SELECT state FROM experiments WHERE id = ?", (experiment_id,))
        if not found:
            raise NotFound(f"experiment {experiment_id!r} does not exist", field="id")
        return _experiment.decode(found[0][0])

    async def list_experiments(self, model: str, limit: int) -> list[Experiment]:
        found = await self._read(
            "SELECT state FROM experiments WHERE model = ? ORDER BY created_at DESC, id LIMIT ?",
            (model, limit),
        )
        return [_experiment.decode(r[0]) for r in found]

    async def active_experiments(self) -> list[Experiment]:
        found = await self._read(
            "SELECT state FROM experiments WHERE phase = ? ORDER BY model", (Phase.RUNNING.value,)
        )
        return [_experiment.decode(r[0]) for r in found]

    async def add_outcomes(self, experiment_id: str, tallies: list[Tally]) -> None:
        async with self.driver.writing() as conn:
            for t in tallies:
                await conn.execute(_ADD, (experiment_id, t.version, *_sums(t)))

    async def add_read(self, experiment_id: str, read: Read) -> None:
        async with self.driver.writing() as conn:
            await conn.execute(
                "INSERT INTO experiment_reads (experiment_id, at, state) VALUES (?, ?, ?)"
                " ON CONFLICT (experiment_id, at) DO NOTHING",
                (experiment_id, rows.to_micros(read.at), rows.dumps(read)),
            )

    async def reads(self, experiment_id: str, limit: int) -> list[Read]:
        found = await self._read(
            "SELECT state FROM experiment_reads WHERE experiment_id = ? ORDER BY at DESC LIMIT ?",
            (experiment_id, limit),
        )
        return [_read.decode(r[0]) for r in reversed(found)]

    async def outcomes(self, experiment_id: str) -> dict[int, Tally]:
        found = await self._read(
            f"SELECT version, {', '.join(_SUMS)} FROM experiment_outcomes WHERE experiment_id = ?",
            (experiment_id,),
        )
        return {
            int(r[0]): Tally(
                int(r[0]),
                int(r[1]),
                float(r[2]),
                float(r[3]),
                int(r[4]),
                float(r[5]),
                float(r[6]),
                float(r[7]),
            )
            for r in found
        }


def _sums(t: Tally) -> tuple[int, float, float, int, float, float, float]:
    return (t.n, t.total, t.total_sq, t.cov_n, t.cov_total, t.cov_total_sq, t.cov_cross)
