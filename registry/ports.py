"""The Protocols the registry needs from the outside; adapters/ implements them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

from contract.routes import ApiSpec
from contract.windows import TrafficWindow
from registry.catalog.changes import Decision, LoadSpec, ModelFilter, ModelState, VersionFilter
from registry.catalog.domain import AuditEvent, Model, ModelVersion, Stage, Token
from registry.catalog.sweep import Leftover
from registry.experiments.stats import Experiment, Read, Tally
from registry.rollouts.state import Look, Rollout
from registry.rollouts.windows import VariantTraffic
from registry.webhooks.events import Due, Secret, Webhook

T = TypeVar("T")
R = TypeVar("R")


class ModelWriter(Protocol):
    async def transact(
        self, model: str, load: LoadSpec, decide: Callable[[ModelState], Decision[T]]
    ) -> T:
        """Lock the model's chain, load `load`, apply `decide(state).ops` atomically.

        Everything `decide` returns is committed together or not at all; writes to one model
        are serialized (on every replica) so `decide` always sees the latest state.
        """
        ...


class Comparison(msgspec.Struct, frozen=True):
    """One clause of an MLflow search filter: `tags.k = 'v'`, `name LIKE 'a%'`, ..."""

    entity: Literal["attribute", "tag"]
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN, NOT IN
    value: str | int | tuple[str, ...]


class Filter(msgspec.Struct, frozen=True):
    clauses: tuple[Comparison, ...] = ()


class OrderBy(msgspec.Struct, frozen=True):
    key: str  # name, version_number, creation_timestamp, last_updated_timestamp
    ascending: bool = True


class Search(msgspec.Struct, frozen=True):
    """A search: every clause holds; sorted by `order` then the store's tie-breakers (name
    ascending, then version descending); the rows after the keyset `after` (from a previous
    page's `last`), at most `limit` of them."""

    where: Filter
    order: tuple[OrderBy, ...]
    limit: int
    after: tuple[Any, ...] | None = None


class SearchPage(msgspec.Struct, Generic[R], frozen=True):
    items: list[R]
    last: tuple[Any, ...] | None  # the keyset to continue after, when more rows follow


class ModelReader(Protocol):
    async def get_model(self, name: str) -> Model: ...

    async def list_models(
        self, where: ModelFilter, after: str | None, limit: int
    ) -> list[Model]: ...

    async def get_version(self, model: str, version: int) -> ModelVersion: ...

    async def list_versions(
        self, model: str, where: VersionFilter, before: int | None, limit: int
    ) -> list[ModelVersion]: ...

    async def resolve_alias(self, model: str, alias: str) -> ModelVersion: ...

    async def latest_versions(
        self, models: Sequence[str], stages: Sequence[Stage]
    ) -> dict[str, list[ModelVersion]]:
        """The newest version of each model in each of `stages`, oldest first, in one query
        for all of them (a model missing or without such versions maps to nothing)."""
        ...

    async def search_models(self, query: Search) -> SearchPage[Model]:
        """MLflow's `search_registered_models`: one indexed query, keyset-paged."""
        ...

    async def search_versions(self, query: Search) -> SearchPage[ModelVersion]:
        """MLflow's `search_model_versions`: one indexed query, keyset-paged."""
        ...

    async def artifact_uris(self) -> set[str]:
        """Every artifact URI a version names (what the sweeper must keep)."""
        ...


class AuditLog(Protocol):
    async def events(
        self, scope: str, *, version: int | None, after_seq: int, limit: int
    ) -> list[AuditEvent]: ...

    async def last_alias_event(self, scope: str, alias: str, at: datetime) -> AuditEvent | None: ...

    async def head(self, scope: str) -> tuple[int, str]: ...

    async def change_count(self) -> int:
        """The sum of every chain's length: it grows with each committed change."""
        ...


class Serving(msgspec.Struct, frozen=True):
    """A model and those of its versions that may take traffic: Production, Staging, any with
    an outside endpoint, and any an alias or the traffic policy names (the route feed's input)."""

    model: Model
    versions: list[ModelVersion]


class RouteState(Protocol):
    """What the route feed reads. Every committed change to a model ticks one registry-wide
    clock, in commit order, and stamps the model with it; the feed asks what changed after the
    clock it has seen, then reads only those models, in batches."""

    async def route_clock(self) -> int:
        """The clock of the latest committed change (0 before any)."""
        ...

    async def changed_models(self, after: int, limit: int) -> list[tuple[str, int]]:
        """The models stamped after clock `after` as (name, clock), oldest stamp first; a
        deleted or renamed-away model is listed under its old name."""
        ...

    async def serving(self, names: Sequence[str]) -> list[Serving]:
        """The serving state of those of `names` that exist (any order)."""
        ...

    async def serving_page(self, after: str | None, limit: int) -> list[Serving]:
        """The serving state of the models after the name `after`, by name."""
        ...


class TokenStore(Protocol):
    async def create_token(
        self, name: str, role: str, token_hash: str, prefix: str, created_by: str, now: datetime
    ) -> Token: ...

    async def find_token(self, token_hash: str) -> Token | None: ...

    async def list_tokens(self) -> list[Token]: ...

    async def revoke_token(self, token_id: int, by: str, now: datetime) -> Token: ...


class WindowStore(Protocol):
    async def add_windows(
        self, source: str, windows: list[TrafficWindow], now: datetime
    ) -> None: ...

    async def windows(self, model: str, since: datetime) -> list[VariantTraffic]:
        """Every window of `model` received at or after `since`, summed per version+variant."""
        ...

    async def prune_windows(self, before: datetime) -> int:
        """Delete the windows received before `before`; how many went."""
        ...


class RolloutReader(Protocol):
    """Rollouts are written through `ModelWriter.transact` (SaveRollout, AppendLook)."""

    async def get_rollout(self, rollout_id: str) -> Rollout: ...

    async def list_rollouts(self, model: str, limit: int) -> list[Rollout]:
        """Newest first."""
        ...

    async def active_rollouts(self) -> list[Rollout]: ...

    async def rollout_looks(self, rollout_id: str, after: int, limit: int) -> list[Look]: ...


class ExperimentStore(Protocol):
    """Experiments are started and stopped through `ModelWriter.transact` (SaveExperiment);
    outcomes are added to each arm's running sums outside the model's lock."""

    async def get_experiment(self, experiment_id: str) -> Experiment: ...

    async def list_experiments(self, model: str, limit: int) -> list[Experiment]: ...

    async def active_experiments(self) -> list[Experiment]:
        """The running ones, of every model (at most one a model), by model name."""
        ...

    async def add_outcomes(self, experiment_id: str, tallies: list[Tally]) -> None: ...

    async def outcomes(self, experiment_id: str) -> dict[int, Tally]: ...

    async def add_read(self, experiment_id: str, read: Read) -> None:
        """Record a read (a second one at the same instant is ignored)."""
        ...

    async def reads(self, experiment_id: str, limit: int) -> list[Read]:
        """The latest `limit` reads, oldest first."""
        ...


class Leadership(Protocol):
    """Which registry replica drives the rollouts: only the holder of the lead acts."""

    async def lead(self) -> bool:
        """True while this replica leads (take the lead if nobody holds it)."""
        ...

    async def close(self) -> None: ...


class MetadataStore(
    ModelWriter,
    ModelReader,
    AuditLog,
    RouteState,
    TokenStore,
    WindowStore,
    RolloutReader,
    ExperimentStore,
    Protocol,
):
    """Everything the registry keeps: one object per backend (SQLite, PostgreSQL)."""

    async def close(self) -> None: ...


class StoredArtifact(msgspec.Struct, frozen=True):
    uri: str  # file://... or s3://bucket/key
    digest: str  # sha256:<hex>
    size_bytes: int


@runtime_checkable
class ArtifactStore(Protocol):
    """Where version archives live. Keys are never reused, so nothing is overwritten."""

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> StoredArtifact:
        """Stream `chunks` to a new, unique key under `name`; memory stays bounded whatever
        the size. Returns where it went with the sha256 and size computed on the way."""
        ...

    def get(self, uri: str, digest: str) -> AsyncIterator[bytes]:
        """Stream the object back; raises ArtifactCorrupt at the end if its sha256 is not
        `digest`, ArtifactNotFound if it is gone."""
        ...

    async def download_url(self, uri: str, expires_s: int) -> str:
        """A link that fetches the object without a bearer token, valid for `expires_s`."""
        ...

    async def delete(self, uri: str) -> None:
        """Remove the object (used to clean up a registration that failed half-way)."""
        ...

    async def leftovers(self) -> list[Leftover]:
        """What the store holds that a sweep judges (registry/catalog/sweep.py): its artifacts,
        its temporary files and its unfinished multipart uploads, with their ages."""
        ...

    async def remove(self, leftover: Leftover) -> None:
        """Remove one of `leftovers()` (gone already is fine)."""
        ...


@runtime_checkable
class SignedFiles(Protocol):
    """An artifact store that serves its own download links (the local one)."""

    def signed_file(self, key: str, expires: int, signature: str) -> Path:
        """The file behind a link (`key`: the id it names, never a path); raises
        PermissionDenied for a bad or expired signature, ArtifactNotFound when it is gone."""
        ...


class BentoInfo(msgspec.Struct, frozen=True):
    """What a `.bento` archive declares (read from its bento.yaml)."""

    tag: str  # name:version
    service: str
    bentoml_version: str | None
    apis: list[ApiSpec]
    models: list[str]


class BentoInspector(Protocol):
    def __call__(self, path: Path) -> BentoInfo:
        """Read a Bento archive on disk; raises BadArtifact when it is not a usable Bento."""
        ...


class ServerState(msgspec.Struct, frozen=True):
    """A model server that modelyard runs for one version (the local deployer)."""

    model: str
    version: int
    status: str  # preparing | starting | ready | unhealthy | failed | stopped
    endpoint: str | None = None
    restarts: int = 0
    detail: str | None = None
    pid: int | None = None  # of the `bentoml serve` parent process


class ModelServers(Protocol):
    """Runs versions as model servers. `ensure` and `stop` return at once; the work (fetch,
    import, start, wait for ready, restart after a crash) goes on in the background."""

    def ensure(self, version: ModelVersion) -> None: ...

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever a server's state changes."""
        ...

    async def stop(self, model: str, version: int) -> None: ...

    def states(self) -> list[ServerState]: ...

    async def close(self) -> None: ...


# --- webhooks (registry/webhooks/events.py, delivered by registry/webhooks/delivery.py) -----------


@runtime_checkable
class WebhookStore(Protocol):
    """Subscriptions and the outbox the store fills in the same transaction as each change."""

    async def create_webhook(self, webhook: Webhook, secret: Secret) -> Webhook: ...

    async def list_webhooks(self, offset: int, limit: int) -> list[Webhook]: ...

    async def get_webhook(self, webhook_id: str) -> Webhook: ...

    async def delete_webhook(self, webhook_id: str) -> None: ...


class WebhookOutbox(Protocol):
    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Due]:
        """Lease due rows (oldest first) so that no other worker posts them meanwhile."""
        ...

    async def delivered(self, row_id: int, status: int, now: datetime) -> None: ...

    async def attempt_failed(
        self, row_id: int, status: int | None, error: str, retry_at: datetime | None
    ) -> None: ...


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` and return the HTTP status; raise OSError when there is no answer."""
        ...


# --- the web console's login sessions -------------------------------------------------------


@dataclass(frozen=True)
class StoredSession:
    id_hash: str
    token_hash: str
    csrf: str
    expires_at: float
    idle_until: float
    flash: str | None


class SessionStore(Protocol):
    async def put_session(self, session: StoredSession) -> None:
        """Insert, or replace the one with the same `id_hash`."""
        ...

    async def get_session(self, id_hash: str) -> StoredSession | None: ...

    async def drop_session(self, id_hash: str) -> None: ...

    async def drop_expired_sessions(self, now: float) -> int: ...
