"""The registry's use cases: thin glue between the pure rules and the metadata store."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import msgspec

from contract.traffic import TrafficPolicy, references
from contract.windows import WindowReport
from registry.catalog import aliases, audit, models, versions
from registry.catalog import traffic as traffic_rules
from registry.catalog.changes import (
    Caller,
    Decision,
    LoadSpec,
    ModelFilter,
    ModelState,
    VersionFilter,
    WriteContext,
)
from registry.catalog.commands import (
    AliasChange,
    ModelCreate,
    SourceVersionCreate,
    StageChange,
    VersionCreate,
)
from registry.catalog.decisions import AliasTarget
from registry.catalog.domain import (
    AuditEvent,
    Model,
    ModelVersion,
    Stage,
    model_scope,
    validate_alias,
    validate_name,
    validate_tag_key,
)
from registry.errors import AlreadyExists, Conflict, NotFound
from registry.ports import MetadataStore
from registry.rollouts.windows import VariantTraffic

T = TypeVar("T")

#: How long the identical source-registration again (a client's retry of a create whose answer
#: it lost) returns the version the first one made; after it, the same request is a new version.
REPEAT_WINDOW: Final = timedelta(seconds=10)


def utc_now() -> datetime:
    return datetime.now(UTC)


class AliasAt(msgspec.Struct, frozen=True):
    model: str
    alias: str
    at: datetime
    version: int | None


class Registry:
    def __init__(self, store: MetadataStore, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener(model_name)` after every committed change to a model."""
        self._listeners.append(listener)

    async def write(
        self,
        name: str,
        caller: Caller,
        load: LoadSpec,
        decide: Callable[[ModelState, WriteContext], Decision[T]],
    ) -> T:
        def locked(state: ModelState) -> Decision[T]:
            ctx = WriteContext(**msgspec.structs.asdict(caller), now=self.clock())
            return decide(state, ctx)

        result = await self.store.transact(validate_name(name), load, locked)
        for listener in self._listeners:
            listener(name)
        return result

    # --- models ---------------------------------------------------------------------------

    async def create_model(self, caller: Caller, cmd: ModelCreate) -> Model:
        return await self.write(
            cmd.name, caller, _idem(caller), lambda s, c: models.create_model(s, c, cmd)
        )

    async def update_model(
        self, caller: Caller, name: str, description: str | None, if_match: str | None
    ) -> Model:
        return await self.write(
            name,
            caller,
            LoadSpec(),
            lambda s, c: models.update_model(s, c, name, description, if_match),
        )

    async def set_model_tag(
        self, caller: Caller, name: str, key: str, value: str | None, if_match: str | None
    ) -> Model:
        validate_tag_key(key)
        return await self.write(
            name,
            caller,
            LoadSpec(),
            lambda s, c: models.set_model_tag(s, c, name, key, value, if_match),
        )

    async def delete_model(self, caller: Caller, name: str, if_match: str | None) -> None:
        await self.write(
            name, caller, LoadSpec(), lambda s, c: models.delete_model(s, c, name, if_match)
        )

    async def rename_model(
        self, caller: Caller, name: str, new_name: str, if_match: str | None = None
    ) -> Model:
        validate_name(new_name, "new_name")
        try:
            return await self.write(
                name,
                caller,
                LoadSpec(),
                lambda s, c: models.rename_model(s, c, name, new_name, if_match),
            )
        except Conflict as exc:
            if type(exc) is not Conflict:  # a rule's own conflict, not the unique name
                raise
            raise AlreadyExists(
                f"registered model {new_name!r} already exists", field="new_name"
            ) from exc

    async def set_traffic(
        self, caller: Caller, name: str, policy: TrafficPolicy | None, if_match: str | None
    ) -> Model:
        """Set or clear the traffic policy, checked against the versions as they are under the
        model's lock (a stage change cannot slip in between the check and the write)."""
        named = sorted({n for _, n in references(policy)}) if policy is not None else []
        return await self.write(
            name,
            caller,
            LoadSpec(versions=tuple(named), stage_holders=True, rollout=True),
            lambda s, c: traffic_rules.set_traffic(s, c, name, policy, if_match),
        )

    async def traffic_versions(self, name: str) -> tuple[Model, int | None, list[ModelVersion]]:
        """The model, its Production version's number, and the versions its traffic names."""
        model = await self.get_model(name)
        held = await self.list_versions(name, VersionFilter(stage=Stage.PRODUCTION), None, 1)
        stable = held[0].version if held else None
        found = {v.version: v for v in held}
        for _, number in references(model.traffic or TrafficPolicy()):
            if number not in found:
                with contextlib.suppress(NotFound):
                    found[number] = await self.get_version(name, number)
        return model, stable, list(found.values())

    async def add_windows(self, report: WindowReport) -> None:
        await self.store.add_windows(report.source, report.windows, self.clock())

    async def traffic(self, name: str, since: datetime) -> list[VariantTraffic]:
        return await self.store.windows(validate_name(name), since)

    async def change_count(self) -> int:
        """Grows with every committed change anywhere in the registry."""
        return await self.store.change_count()

    async def get_model(self, name: str) -> Model:
        return await self.store.get_model(validate_name(name))

    async def list_models(self, where: ModelFilter, after: str | None, limit: int) -> list[Model]:
        return await self.store.list_models(where, after, limit)

    # --- versions -------------------------------------------------------------------------

    async def create_version(self, caller: Caller, name: str, cmd: VersionCreate) -> ModelVersion:
        return await self.write(
            name, caller, _idem(caller), lambda s, c: versions.create_version(s, c, name, cmd)
        )

    async def register_source_version(
        self, caller: Caller, name: str, cmd: SourceVersionCreate
    ) -> ModelVersion:
        """A version known by its `source` (the MLflow client's create). Repeating the same
        request within REPEAT_WINDOW returns the version the first one made."""
        return await self.write(
            name,
            caller,
            LoadSpec(latest=True),
            lambda s, c: versions.register_source_version(s, c, name, cmd, c.now - REPEAT_WINDOW),
        )

    async def update_version(
        self,
        caller: Caller,
        name: str,
        number: int,
        description: str | None,
        if_match: str | None,
        endpoint: str | None = None,
    ) -> ModelVersion:
        return await self.write(
            name,
            caller,
            LoadSpec(versions=(number,)),
            lambda s, c: versions.update_version(
                s, c, name, number, description, if_match, endpoint
            ),
        )

    async def set_version_tag(
        self,
        caller: Caller,
        name: str,
        number: int,
        key: str,
        value: str | None,
        if_match: str | None,
    ) -> ModelVersion:
        validate_tag_key(key)
        return await self.write(
            name,
            caller,
            LoadSpec(versions=(number,)),
            lambda s, c: versions.set_version_tag(s, c, name, number, key, value, if_match),
        )

    async def transition_stage(
        self, caller: Caller, name: str, number: int, cmd: StageChange, if_match: str | None
    ) -> ModelVersion:
        return await self.write(
            name,
            caller,
            LoadSpec(versions=(number,), stage_holders=True, rollout=True),
            lambda s, c: traffic_rules.transition_stage(s, c, name, number, cmd, if_match),
        )

    async def delete_version(
        self,
        caller: Caller,
        name: str,
        number: int,
        if_match: str | None,
        release_aliases: bool = False,
    ) -> None:
        await self.write(
            name,
            caller,
            LoadSpec(versions=(number,), rollout=True),
            lambda s, c: traffic_rules.delete_version(
                s, c, name, number, if_match, release_aliases
            ),
        )

    async def get_version(self, name: str, number: int) -> ModelVersion:
        return await self.store.get_version(validate_name(name), number)

    async def list_versions(
        self, name: str, where: VersionFilter, before: int | None, limit: int
    ) -> list[ModelVersion]:
        return await self.store.list_versions(validate_name(name), where, before, limit)

    # --- aliases --------------------------------------------------------------------------

    async def set_alias(
        self, caller: Caller, name: str, alias: str, cmd: AliasChange, if_match: str | None
    ) -> ModelVersion:
        validate_alias(alias)
        return await self.write(
            name,
            caller,
            LoadSpec(versions=(cmd.version,)),
            lambda s, c: aliases.set_alias(s, c, name, alias, cmd, if_match),
        )

    async def delete_alias(
        self, caller: Caller, name: str, alias: str, if_match: str | None
    ) -> None:
        validate_alias(alias)
        await self.write(
            name, caller, LoadSpec(), lambda s, c: aliases.delete_alias(s, c, name, alias, if_match)
        )

    async def resolve_alias(self, name: str, alias: str) -> ModelVersion:
        return await self.store.resolve_alias(validate_name(name), validate_alias(alias))

    async def alias_at(self, name: str, alias: str, at: datetime) -> AliasAt:
        """Which version the alias pointed to at time `at`, answered from the audit log."""
        event = await self.store.last_alias_event(
            model_scope(validate_name(name)), validate_alias(alias), at
        )
        version = None
        if event is not None and event.after is not None:
            version = msgspec.json.decode(event.after, type=AliasTarget).version
        return AliasAt(model=name, alias=alias, at=at, version=version)

    # --- audit ----------------------------------------------------------------------------

    async def audit_events(
        self, name: str, version: int | None, after_seq: int, limit: int
    ) -> list[AuditEvent]:
        scope = model_scope(validate_name(name))
        return await self.store.events(scope, version=version, after_seq=after_seq, limit=limit)

    async def verify_chain(self, scope: str, batch: int = 1000) -> audit.ChainReport:
        head = await self.store.head(scope)

        async def walk() -> list[AuditEvent]:
            out: list[AuditEvent] = []
            after = 0
            while True:
                page = await self.store.events(scope, version=None, after_seq=after, limit=batch)
                out += page
                if len(page) < batch:
                    return out
                after = page[-1].seq

        return audit.verify(scope, await walk(), head)


def _idem(caller: Caller) -> LoadSpec:
    if caller.idempotency_key is None:
        return LoadSpec()
    return LoadSpec(idempotency=(caller.principal.token_id, caller.idempotency_key))
