"""REST: the model servers modelyard runs itself (the local deployer)."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from registry.errors import NotFound
from registry.ports import ServerState
from registry.serving.deployments import Deployments
from registry.web.api.context import PathStr, VersionNo

DeploymentsDep = NamedDependency[Deployments | None]


class DeploymentList(msgspec.Struct):
    deployer: str  # local | none
    items: list[ServerState]


class DeploymentController(Controller):
    path = "/"
    tags = ["deployments"]

    @get("/deployments")
    async def list_deployments(self, deployments: DeploymentsDep) -> DeploymentList:
        if deployments is None:
            return DeploymentList("none", [])
        return DeploymentList("local", deployments.states())

    @get("/models/{name:str}/versions/{version:int}/deployment")
    async def version_deployment(
        self, deployments: DeploymentsDep, name: PathStr, version: VersionNo
    ) -> ServerState:
        for state in deployments.states() if deployments is not None else []:
            if (state.model, state.version) == (name, version):
                return state
        raise NotFound(
            f"modelyard runs no server for version {version} of {name!r}", field="version"
        )
