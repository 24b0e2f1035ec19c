"""REST: A/B experiments over fixed sticky arms, outcome feedback, results, stop."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from contract.traffic import Version
from registry.experiments.service import ExperimentService, ExperimentView
from registry.experiments.stats import Experiment, ExperimentSpec, Feedback
from registry.web.api.context import PathStr, Req, caller_of

ExperimentsDep = NamedDependency[ExperimentService]
ExperimentId = Annotated[str, PathParameter(max_length=64, description="experiment id (ex-...)")]


class Stop(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    promote: Version | None = None  # the version to make Production


class Accepted(msgspec.Struct, frozen=True):
    accepted: int


class ExperimentController(Controller):
    path = "/"
    tags = ["experiments"]

    @post("/models/{name:str}/experiments", status_code=201)
    async def start(
        self,
        experiments: ExperimentsDep,
        request: Req,
        name: PathStr,
        data: JSONBody[ExperimentSpec],
    ) -> Experiment:
        """Split the model's traffic into fixed sticky arms (409 while a rollout runs)."""
        return await experiments.start(await caller_of(request), name, data)

    @get("/models/{name:str}/experiments")
    async def of_model(
        self,
        experiments: ExperimentsDep,
        name: PathStr,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[Experiment]:
        return await experiments.of_model(name, limit)

    @get("/experiments/{experiment_id:str}")
    async def show(
        self, experiments: ExperimentsDep, experiment_id: ExperimentId
    ) -> ExperimentView:
        """The experiment and its per-arm results: means with 95 % intervals, differences
        from the control with p-values, and the verdict."""
        return await experiments.view(experiment_id)

    @post("/experiments/{experiment_id:str}/feedback", status_code=202)
    async def feedback(
        self, experiments: ExperimentsDep, experiment_id: ExperimentId, data: JSONBody[Feedback]
    ) -> Accepted:
        """Outcomes (reward, or conversion 0/1) per sticky key or per serving version."""
        return Accepted(await experiments.feedback(experiment_id, data.outcomes))

    @post("/experiments/{experiment_id:str}/stop", status_code=200)
    async def stop(
        self,
        experiments: ExperimentsDep,
        request: Req,
        experiment_id: ExperimentId,
        data: JSONBody[Stop],
    ) -> Experiment:
        """End the split; with `promote`, that arm's version becomes Production."""
        return await experiments.stop(await caller_of(request), experiment_id, data.promote)
