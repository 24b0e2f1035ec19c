"""What the registry's handlers work with, in one typed object on the app's state.

The composition root builds a `WebState` once the parts run (in the app's lifespan) and puts it
on `app.state` with `install`; handlers read it through `web_of(connection)`, and the
routers inject its parts by name (`registry`, `feed`, ...) with `provide`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide

from contract.health import ReadinessSource
from registry.auth import TokenAuthority
from registry.catalog.registration import Registration
from registry.catalog.service import Registry
from registry.experiments.service import ExperimentService
from registry.ports import ArtifactStore, WebhookStore
from registry.rollouts.service import RolloutScheduler, RolloutService
from registry.serving.deployments import Deployments
from registry.serving.feed import RouteFeed
from registry.web.console.sessions import Sessions
from registry.web.forwarded import TrustedProxies

__all__ = ["STATE_KEY", "WebState", "install", "provide", "web_of", "web_state"]

STATE_KEY: Final = "web"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WebState:
    """The registry's running parts, as the web layer (REST, MLflow, console) sees them."""

    registry: Registry
    authority: TokenAuthority
    artifacts: ArtifactStore
    registration: Registration
    deployments: Deployments | None  # None: this process serves no model versions itself
    feed: RouteFeed
    rollouts: RolloutService
    rollout_scheduler: RolloutScheduler
    experiments: ExperimentService
    webhooks: WebhookStore
    sessions: Sessions  # the console's
    readiness: ReadinessSource
    #: what the in-process gateway shows the console (`modelyard serve`); None without one
    gateway_status: Callable[[], object] | None = None
    #: peers whose X-Forwarded-Proto is believed (the console's `Secure` cookies)
    proxies: TrustedProxies = field(default_factory=TrustedProxies)


def install(state: State, web: WebState) -> None:
    state[STATE_KEY] = web


def web_state(state: State) -> WebState:
    found = state.get(STATE_KEY)
    if not isinstance(found, WebState):  # only before the lifespan ran: a wiring mistake
        raise RuntimeError("the registry's parts are not running (no WebState installed)")
    return found


def web_of(connection: ASGIConnection[Any, Any, Any, Any]) -> WebState:
    return web_state(connection.app.state)


def provide(part: Callable[[WebState], T]) -> Provide:
    """A dependency taking one part of the WebState: `provide(lambda web: web.registry)`."""

    def dependency(state: State) -> T:
        return part(web_state(state))

    return Provide(dependency, sync_to_thread=False)
