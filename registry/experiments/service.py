"""Experiment use cases: start, show with results (and their history), list, feed outcomes
back, stop (and promote the winner); and the leading registry's periodic jobs (run by the
rollout scheduler after its ticks): `BanditLoop` moves the due bandit experiments' arms
(`rebalance_due`, `rebalance_model`), `ReadLoop` records the running experiments' reads when
they change (`record_reads`), for the console's charts over time."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Final

import msgspec

from registry.catalog.changes import Caller, LoadSpec, VersionFilter
from registry.catalog.domain import Principal, Role, Stage, validate_name
from registry.catalog.service import Registry
from registry.errors import InvalidState
from registry.experiments import bandit
from registry.experiments import rules as experiment_rules
from registry.experiments import stats as experiments
from registry.experiments.readout import weights
from registry.experiments.stats import Experiment, ExperimentSpec, Outcome, Read, Results
from registry.ports import MetadataStore

log = logging.getLogger("modelyard.experiments")

BANDIT: Final = Caller(principal=Principal(token_id=0, name="experiment-bandit", role=Role.ADMIN))
REBALANCE_EVERY_S: Final = 600.0  # a bandit experiment's arms move at most this often
READS_SHOWN: Final = 500  # the reads a history holds (the latest)


class ExperimentView(msgspec.Struct, frozen=True):
    experiment: Experiment
    results: Results


def new_id() -> str:
    return "ex-" + secrets.token_hex(6)


class ExperimentService:
    def __init__(self, registry: Registry, store: MetadataStore) -> None:
        self.registry = registry
        self.store = store

    async def start(self, caller: Caller, name: str, spec: ExperimentSpec) -> Experiment:
        experiment_id = new_id()
        load = LoadSpec(
            versions=tuple(sorted({a.version for a in spec.arms})), stage_holders=True, rollout=True
        )
        return await self.registry.write(
            name,
            caller,
            load,
            lambda s, c: experiment_rules.start(s, c, name, spec, experiment_id),
        )

    async def view(self, experiment_id: str) -> ExperimentView:
        found = await self.store.get_experiment(experiment_id)
        tallies = await self.store.outcomes(experiment_id)
        return ExperimentView(found, experiments.results(found, tallies))

    async def history(self, experiment_id: str, limit: int = READS_SHOWN) -> list[Read]:
        """The experiment's recorded reads, oldest first (the latest `limit`)."""
        return await self.store.reads(experiment_id, limit)

    async def of_model(self, name: str, limit: int = 50) -> list[Experiment]:
        return await self.store.list_experiments(validate_name(name), limit)

    async def _production(self, name: str) -> int | None:
        held = await self.registry.list_versions(
            name, VersionFilter(stage=Stage.PRODUCTION), None, 1
        )
        return held[0].version if held else None

    async def feedback(self, experiment_id: str, outcomes: list[Outcome]) -> int:
        """Add outcomes to their arms (by key, as the gateway assigned it, or by version; in
        bandit mode by key only, and a key not enrolled yet is accepted but not counted)."""
        found = await self.store.get_experiment(experiment_id)
        if not found.active:
            raise InvalidState(f"experiment {experiment_id} is {found.phase}", field="phase")
        production = await self._production(found.model)
        tallies = experiments.tally(found, production, outcomes)
        await self.store.add_outcomes(experiment_id, list(tallies.values()))
        return len(outcomes)

    async def stop(self, caller: Caller, experiment_id: str, promote: int | None) -> Experiment:
        found = await self.store.get_experiment(experiment_id)
        if not found.active:
            raise InvalidState(f"experiment {experiment_id} is {found.phase}", field="phase")
        arms = {a.version for a in found.spec.arms}
        named = tuple(sorted(arms | set(experiment_rules.to_restore(found))))
        load = LoadSpec(versions=named, stage_holders=True, rollout=True)
        return await self.registry.write(
            found.model,
            caller,
            load,
            lambda s, c: experiment_rules.stop(s, c, found.model, experiment_id, promote),
        )

    async def rebalance_model(
        self, name: str, every_s: float = REBALANCE_EVERY_S, caller: Caller = BANDIT
    ) -> Experiment | None:
        """Move the arms of the model's running bandit experiment, if it has one and its last
        update is `every_s` old: the result, or None when there is nothing to move.

        Meant for a periodic loop on the leading replica (as the rollout controller runs):
        every minute or so, for each model with a running experiment. Cheap when nothing is
        due (one read of the experiment); the due check is repeated under the model's lock."""
        running = [
            e
            for e in await self.store.list_experiments(validate_name(name), 1)
            if e.active and e.allocation is not None
        ]
        if not running or not bandit.due(running[0], self.registry.clock(), every_s):
            return None
        found = running[0]
        tallies = await self.store.outcomes(found.id)
        load = LoadSpec(
            versions=tuple(a.version for a in found.spec.arms), stage_holders=True, rollout=True
        )
        return await self.registry.write(
            name,
            caller,
            load,
            lambda s, c: experiment_rules.rebalance(s, c, name, found.id, tallies, every_s),
        )

    async def rebalance_due(self, every_s: float = REBALANCE_EVERY_S) -> list[Experiment]:
        """Move the arms of every running bandit experiment whose last update is `every_s`
        old (`rebalance_model` for each): those moved. One model failing (logged) does not
        hold the others up."""
        now = self.registry.clock()
        moved: list[Experiment] = []
        for found in await self.store.active_experiments():
            if not bandit.due(found, now, every_s):
                continue
            try:
                done = await self.rebalance_model(found.model, every_s)
            except Exception:
                log.exception("rebalancing experiment %s of %s failed", found.id, found.model)
                continue
            if done is not None:
                moved.append(done)
        return moved

    async def record_reads(self, seen: dict[str, Read]) -> int:
        """Record a read (tallies and traffic shares now) of every running experiment whose
        tallies or shares differ from its read in `seen` (the last recorded, by experiment id;
        kept up to date, stopped experiments dropped): how many were recorded."""
        now = self.registry.clock()
        running = await self.store.active_experiments()
        done = 0
        for found in running:
            tallies = await self.store.outcomes(found.id)
            read = Read(now, [tallies[v] for v in sorted(tallies)], weights(found))
            last = seen.get(found.id)
            if last is not None and (last.tallies, last.weights) == (read.tallies, read.weights):
                continue
            await self.store.add_read(found.id, read)
            seen[found.id] = read
            done += 1
        for gone in set(seen) - {e.id for e in running}:
            del seen[gone]
        return done


class ReadLoop:
    """The leading registry's periodic job that records the running experiments' reads (one
    of `RolloutScheduler`'s jobs), every `every_s`: a read only when something changed."""

    def __init__(self, service: ExperimentService, every_s: float) -> None:
        self.service = service
        self.every_s = every_s
        self._seen: dict[str, Read] = {}
        self._checked_at: datetime | None = None

    async def __call__(self, now: datetime) -> None:
        last = self._checked_at
        if last is not None and (now - last).total_seconds() < self.every_s:
            return
        self._checked_at = now
        await self.service.record_reads(self._seen)


class BanditLoop:
    """The leading registry's periodic job for bandit experiments (one of
    `RolloutScheduler`'s jobs): every `check_s` (at most a minute, a quarter of `every_s`
    below that) it moves the arms of the running bandit experiments that are due."""

    def __init__(self, service: ExperimentService, every_s: float) -> None:
        self.service = service
        self.every_s = every_s
        self.check_s = min(60.0, every_s / 4)
        self._checked_at: datetime | None = None

    async def __call__(self, now: datetime) -> None:
        last = self._checked_at
        if last is not None and (now - last).total_seconds() < self.check_s:
            return
        self._checked_at = now
        await self.service.rebalance_due(self.every_s)
