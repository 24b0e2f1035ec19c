"""Which versions can take traffic, and whether the versions a traffic policy names are being
served now. Pure.

A version can be served when it has an `endpoint` of its own, or when it is in Production or
Staging with a Bento archive for a deployer to run. A traffic policy names only such versions
(`check_targets`, under the model's lock); a change that takes a named version out of service
(archived, moved to None, deleted) also takes it out of the policy in the same transaction
(`follow`), so a stored policy never sends traffic to something that cannot answer.

How a version is doing (`VersionHealth.status`): `contract.health`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Final

import msgspec
from msgspec.structs import replace

from contract.health import Status, VersionHealth
from contract.traffic import TrafficPolicy, references
from registry.catalog.changes import DeleteVersion, Op, UpdateVersion
from registry.catalog.domain import ModelVersion, Stage
from registry.errors import InvalidInput, NotFound, VersionNotServed

SERVED_STAGES: Final = (Stage.PRODUCTION, Stage.STAGING)


def wants_server(version: ModelVersion) -> bool:
    """Whether a deployer should run a model server for this version."""
    return (
        version.stage in SERVED_STAGES
        and version.endpoint is None
        and version.artifact_uri is not None
        and version.format == "bento"
    )


def why_unserved(version: ModelVersion) -> str | None:
    """None when the version can be served; else why not, in words for an error message."""
    if version.endpoint is not None or wants_server(version):
        return None
    if version.stage in SERVED_STAGES:
        return (
            f"it is in {version.stage} but has neither an endpoint nor a Bento archive to run"
            f" (format {version.format!r})"
        )
    return (
        f"it is in stage {version.stage} and has no endpoint, so no model server runs it;"
        " move it to Staging first"
    )


def refuse_unservable(name: str, version: ModelVersion, field: str) -> None:
    """A rollout or experiment stages a version in stage None itself; one that is archived,
    or that no model server could run even in Staging, cannot take its traffic."""
    if version.stage == Stage.ARCHIVED:
        raise VersionNotServed(
            f"version {version.version} of {name!r} is archived; move it to Staging first",
            field=field,
        )
    why = why_unserved(replace(version, stage=Stage.STAGING))
    if why is not None:
        why = f"version {version.version} of {name!r} cannot be served: {why}"
        raise VersionNotServed(why, field=field)


def check_targets(
    model: str, policy: TrafficPolicy, versions: Mapping[int, ModelVersion], stable: int | None
) -> TrafficPolicy:
    """Refuse a policy that names a version that does not exist (NotFound), that nothing can
    serve (VersionNotServed), or the stable version in a split (InvalidInput); `versions`
    holds at least the named ones that exist. Names the field."""
    for field, number in references(policy):
        found = versions.get(number)
        if found is None:
            raise NotFound(f"version {number} of {model!r} does not exist", field=field)
        if field.startswith("splits") and number == stable:
            raise InvalidInput(
                f"version {number} is the Production (stable) version of {model!r}: it takes"
                " whatever the splits leave, so a split cannot name it",
                field=field,
            )
        why = why_unserved(found)
        if why is not None:
            why = f"version {number} of {model!r} cannot be served: {why}"
            raise VersionNotServed(why, field=field)
    return policy


def follow(
    policy: TrafficPolicy, changed: Iterable[ModelVersion], deleted: Iterable[int] = ()
) -> TrafficPolicy:
    """The policy once `changed` versions took their new state and `deleted` ones are gone:
    splits, rules and the shadow naming a version that can no longer be served let go of it
    (its traffic goes back to the stable version), and so does a split naming the version that
    became Production (the stable version takes the rest anyway)."""
    changed = list(changed)
    gone = {v.version for v in changed if why_unserved(v) is not None} | set(deleted)
    stable = {v.version for v in changed if v.stage == Stage.PRODUCTION}
    splits = [s for s in policy.splits if s.version not in gone | stable]
    rules = [r for r in policy.rules if r.version not in gone]
    shadow = policy.shadow if policy.shadow is None or policy.shadow.version not in gone else None
    if (splits, rules, shadow) == (policy.splits, policy.rules, policy.shadow):
        return policy
    return replace(policy, splits=splits, rules=rules, shadow=shadow)


def follow_ops(policy: TrafficPolicy, ops: Sequence[Op]) -> TrafficPolicy:
    """`follow` for the versions a decision's operations update or delete."""
    changed = [op.version for op in ops if isinstance(op, UpdateVersion)]
    deleted = [op.version for op in ops if isinstance(op, DeleteVersion)]
    return follow(policy, changed, deleted)


# --- what is being served now ------------------------------------------------------------------


_NAMED_BY: Final = (
    "where the traffic names it: `stable` (the Production version, which takes what the splits"
    " leave), `splits[i]`, `rules[i]`, `shadow`"
)
_STATUS: Final = (
    "ready: it answers. On the way: not_started, preparing, starting, routing (up, not in the"
    " gateway's routes yet), checking (its endpoint has not answered yet). Failing: restarting,"
    " failed, unhealthy, not_answering, ejected. Unknown here: endpoint (its own endpoint, not"
    " checked by this process), no_deployer (this process runs no model servers). Never served:"
    " not_served, missing."
)
_SERVING: Final = "true: it answers now; false: it does not; null: this process cannot tell"


class VersionServing(msgspec.Struct, frozen=True, omit_defaults=True):
    """A version the traffic goes to, and whether it is being served now."""

    version: int
    named_by: Annotated[list[str], msgspec.Meta(description=_NAMED_BY)]
    stage: Annotated[Stage | None, msgspec.Meta(description="null: it does not exist")]
    status: Annotated[Status, msgspec.Meta(description=_STATUS)]
    serving: Annotated[bool | None, msgspec.Meta(description=_SERVING)]
    endpoint: str | None = None
    detail: str | None = None


def traffic_versions(
    policy: TrafficPolicy,
    stable: int | None,
    versions: Mapping[int, ModelVersion],
    health: Mapping[int, VersionHealth],
    *,
    deployer: bool,
) -> list[VersionServing]:
    """The stable version and every version the policy names, each with whether it is served
    now: from `health` (what this process's deployer and gateway know), else from the
    registry's own data. `deployer`: this process runs model servers."""
    named: dict[int, list[str]] = {}
    if stable is not None:
        named[stable] = ["stable"]
    for field, number in references(policy):
        named.setdefault(number, []).append(field.removesuffix(".version"))
    return [
        _serving(n, uses, versions.get(n), health.get(n), deployer) for n, uses in named.items()
    ]


def _serving(
    number: int,
    uses: list[str],
    version: ModelVersion | None,
    health: VersionHealth | None,
    deployer: bool,
) -> VersionServing:
    if version is None:
        return VersionServing(number, uses, None, "missing", False, detail="it does not exist")
    why = why_unserved(version)
    if why is not None:
        return VersionServing(number, uses, version.stage, "not_served", False, detail=why)
    if health is not None:
        ready = health.status == "ready"
        endpoint = health.endpoint or version.endpoint
        return VersionServing(
            number, uses, version.stage, health.status, ready, endpoint, health.detail
        )
    if version.endpoint is not None:
        why = "served at its own endpoint, which this process does not check"
        return VersionServing(number, uses, version.stage, "endpoint", None, version.endpoint, why)
    if deployer:  # a Bento version the deployer has not listed yet
        return VersionServing(number, uses, version.stage, "not_started", False)
    why = "this process runs no model servers (deployer none)"
    return VersionServing(number, uses, version.stage, "no_deployer", None, detail=why)
