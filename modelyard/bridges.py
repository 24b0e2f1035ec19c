"""`modelyard serve`: the gateway talks to the registry in the same process, without HTTP.

The gateway declares what it needs (`RouteSource`, `WindowSink`); these adapters give it the
registry's route feed and window store, translating the registry's errors into the gateway's.
They live in the composition root so that neither half imports the other."""

from __future__ import annotations

from contract.routes import RouteChanges
from contract.windows import WindowReport
from gateway.errors import FeedUnavailable
from registry.catalog.service import Registry
from registry.errors import RegistryError
from registry.serving.feed import RouteFeed


class InProcessRoutes:
    """The route feed of the registry in this process."""

    def __init__(self, feed: RouteFeed) -> None:
        self.feed = feed

    async def next(self, after: int, wait_s: float) -> RouteChanges | None:
        try:
            return await self.feed.wait(after, wait_s)
        except RegistryError as exc:
            raise FeedUnavailable(exc.message) from exc

    async def close(self) -> None:
        return None


class InProcessSink:
    """The window store of the registry in this process."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def send(self, report: WindowReport) -> None:
        try:
            await self.registry.add_windows(report)
        except RegistryError as exc:
            raise FeedUnavailable(exc.message) from exc
