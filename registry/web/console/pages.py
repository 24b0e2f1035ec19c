"""The console's pages (GET): models, a model, a rollout, an experiment, the gateway. Each page
has a `?fragment=live` form holding only the part that console.js refreshes."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter
from litestar.response import Template

from registry.catalog.domain import MAX_NAME
from registry.catalog.service import Registry
from registry.experiments.service import ExperimentService
from registry.rollouts.service import RolloutService
from registry.web.api.context import PathStr
from registry.web.console import experiment_views, views
from registry.web.console.render import Req, page
from registry.web.state import web_of

# a prefix of a model name, and the last name a page showed: up to a name's length (MAX_NAME)
Query = Annotated[str | None, QueryParameter(max_length=MAX_NAME, description="name prefix")]
Fragment = Annotated[str | None, QueryParameter(description="`live`: only the live part")]
After = Annotated[str | None, QueryParameter(max_length=MAX_NAME, description="the last name seen")]


def registry_of(request: Req) -> Registry:
    return web_of(request).registry


def rollouts_of(request: Req) -> RolloutService:
    return web_of(request).rollouts


def experiments_of(request: Req) -> ExperimentService:
    return web_of(request).experiments


def _pick(fragment: str | None, whole: str, live: str) -> str:
    return live if fragment == "live" else whole


async def render_model(
    request: Req,
    name: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
    fragment: str | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    view = await views.model_page(
        registry_of(request), rollouts_of(request), experiments_of(request), name
    )
    template = _pick(fragment, "model.html", "_model_live.html")
    return page(request, template, status, view=view, errors=errors or {}, form=form or {})


async def render_rollout(
    request: Req,
    rollout_id: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
    fragment: str | None = None,
) -> Template:
    view = await views.rollout_page(rollouts_of(request), rollout_id)
    template = _pick(fragment, "rollout.html", "_rollout_live.html")
    return page(request, template, status, view=view, errors=errors or {})


async def render_experiment(
    request: Req,
    experiment_id: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
    fragment: str | None = None,
) -> Template:
    view = await experiment_views.experiment_page(experiments_of(request), experiment_id)
    template = _pick(fragment, "experiment.html", "_experiment_live.html")
    return page(request, template, status, view=view, errors=errors or {})


class ConsolePages(Controller):
    path = "/"

    @get("/")
    async def models(
        self, request: Req, q: Query = None, after: After = None, fragment: Fragment = None
    ) -> Template:
        view = await views.models_page(registry_of(request), (q or "").strip(), after)
        return page(request, _pick(fragment, "models.html", "_models_live.html"), view=view)

    @get("/models/{name:str}")
    async def model(self, request: Req, name: PathStr, fragment: Fragment = None) -> Template:
        return await render_model(request, name, fragment=fragment)

    @get("/rollouts/{rollout_id:str}")
    async def rollout(
        self, request: Req, rollout_id: PathStr, fragment: Fragment = None
    ) -> Template:
        return await render_rollout(request, rollout_id, fragment=fragment)

    @get("/experiments/{experiment_id:str}")
    async def experiment(
        self, request: Req, experiment_id: PathStr, fragment: Fragment = None
    ) -> Template:
        return await render_experiment(request, experiment_id, fragment=fragment)

    @get("/gateway")
    async def gateway(self, request: Req, fragment: Fragment = None) -> Template:
        status_of = web_of(request).gateway_status
        gw = status_of() if status_of is not None else None
        template = _pick(fragment, "gateway.html", "_gateway_live.html")
        return page(request, template, gw=gw, in_process=status_of is not None)
