"""REST: start, show, list and steer rollouts. Writes need the deployer role."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from registry.rollouts.service import RolloutService
from registry.rollouts.state import Look, Rollout, RolloutSpec
from registry.web.api.context import MAX_BIGINT, PathStr, Req, caller_of

RolloutsDep = NamedDependency[RolloutService]
RolloutId = Annotated[str, PathParameter(max_length=64, description="rollout id (ro-...)")]


class RolloutView(msgspec.Struct, frozen=True):
    """A rollout with every look (verdict and its evidence) so far."""

    rollout: Rollout
    looks: list[Look]


class RolloutController(Controller):
    path = "/"
    tags = ["rollouts"]

    @post("/models/{name:str}/rollouts", status_code=201)
    async def start(
        self, rollouts: RolloutsDep, request: Req, name: PathStr, data: JSONBody[RolloutSpec]
    ) -> Rollout:
        """Start a rollout of `candidate` against the Production version (409 if one runs)."""
        return await rollouts.start(await caller_of(request), name, data)

    @get("/models/{name:str}/rollouts")
    async def of_model(
        self,
        rollouts: RolloutsDep,
        name: PathStr,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[Rollout]:
        """The model's rollouts, newest first."""
        return await rollouts.of_model(name, limit)

    @get("/rollouts/{rollout_id:str}")
    async def show(
        self,
        rollouts: RolloutsDep,
        rollout_id: RolloutId,
        after: Annotated[
            int, QueryParameter(ge=0, le=MAX_BIGINT, description="only looks after this seq")
        ] = 0,
    ) -> RolloutView:
        return RolloutView(await rollouts.get(rollout_id), await rollouts.looks(rollout_id, after))

    @post("/rollouts/{rollout_id:str}/pause", status_code=200)
    async def pause(self, rollouts: RolloutsDep, request: Req, rollout_id: RolloutId) -> Rollout:
        return await rollouts.pause(await caller_of(request), rollout_id)

    @post("/rollouts/{rollout_id:str}/resume", status_code=200)
    async def resume(self, rollouts: RolloutsDep, request: Req, rollout_id: RolloutId) -> Rollout:
        return await rollouts.resume(await caller_of(request), rollout_id)

    @post("/rollouts/{rollout_id:str}/abort", status_code=200)
    async def abort(self, rollouts: RolloutsDep, request: Req, rollout_id: RolloutId) -> Rollout:
        """Every request back to the baseline at once."""
        return await rollouts.abort(await caller_of(request), rollout_id)

    @post("/rollouts/{rollout_id:str}/promote", status_code=200)
    async def promote(self, rollouts: RolloutsDep, request: Req, rollout_id: RolloutId) -> Rollout:
        """Make the candidate Production now, skipping the remaining steps."""
        return await rollouts.promote(await caller_of(request), rollout_id)
