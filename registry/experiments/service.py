"""Experiment use cases: start, show with results, list, feed outcomes back, stop (and
promote the winner)."""

from __future__ import annotations

import secrets

import msgspec

from registry.catalog.changes import Caller, LoadSpec, VersionFilter
from registry.catalog.domain import Stage, validate_name
from registry.catalog.service import Registry
from registry.errors import InvalidState
from registry.experiments import rules as experiment_rules
from registry.experiments import stats as experiments
from registry.experiments.stats import Experiment, ExperimentSpec, Outcome, Results
from registry.ports import MetadataStore


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
        load = LoadSpec(versions=tuple(sorted({a.version for a in spec.arms})),
                        stage_holders=True, rollout=True)  # fmt: skip
        return await self.registry.write(
            name, caller, load,
            lambda s, c: experiment_rules.start(s, c, name, spec, experiment_id),
        )  # fmt: skip

    async def view(self, experiment_id: str) -> ExperimentView:
        found = await self.store.get_experiment(experiment_id)
        tallies = await self.store.outcomes(experiment_id)
        return ExperimentView(found, experiments.results(found, tallies))

    async def of_model(self, name: str, limit: int = 50) -> list[Experiment]:
        return await self.store.list_experiments(validate_name(name), limit)

    async def _production(self, name: str) -> int | None:
        held = await self.registry.list_versions(name, VersionFilter(stage=Stage.PRODUCTION),
                                                 None, 1)  # fmt: skip
        return held[0].version if held else None

    async def feedback(self, experiment_id: str, outcomes: list[Outcome]) -> int:
        """Add outcomes to their arms (by key, as the gateway assigned it, or by version)."""
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
        load = LoadSpec(versions=tuple(a.version for a in found.spec.arms), stage_holders=True,
                        rollout=True)  # fmt: skip
        return await self.registry.write(
            found.model, caller, load,
            lambda s, c: experiment_rules.stop(s, c, found.model, experiment_id, promote),
        )  # fmt: skip
