"""What a crash leaves behind, and which of it a sweep may remove. Pure: no clock, no IO.

A registry that dies mid-upload (kill -9, a lost node) leaves its upload spool file
(registration.py), the artifact store's temporary file or open multipart upload, and maybe a
stored artifact whose version row was never written. The sweeper (sweeper.py) lists them
through the artifact store and asks `decide` what goes. The rules never touch an upload in
progress, on this replica or another sharing the storage:

- a spool or temporary file whose name carries its writer (`owner.py`) goes at once when that
  writer is known dead (same host and boot, its process gone); never while it is alive;
- any other leftover (written by another host, or named before owners were recorded, or an S3
  multipart upload) goes only when older than `min_age_s` (its last write, so a slow upload
  that keeps writing stays young);
- an artifact goes only when no version references it AND it is older than `min_age_s`: the
  version row is written just after the artifact, so a young unreferenced one may be on its
  way to becoming a version. References are compared by the key's last segment (a fresh
  uuid4 per upload), not the whole URI: a data folder reached by another path, or a bucket
  prefix renamed, must never make every artifact look unreferenced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from enum import StrEnum
from typing import assert_never

import msgspec


class Kind(StrEnum):
    SPOOL = "spool"  # an upload being received (the registry's spool folder)
    TEMPORARY = "temporary"  # an artifact being written (the store's temp file)
    MULTIPART = "multipart"  # an S3 multipart upload not completed nor aborted
    ARTIFACT = "artifact"  # a stored archive, referenced by a version or not


class OwnerState(StrEnum):
    LIVE = "live"  # its process runs (on this host): never touch
    DEAD = "dead"  # on this host and boot, and its process is gone
    UNKNOWN = "unknown"  # another host, another boot, or no owner recorded: age decides


class Leftover(msgspec.Struct, frozen=True):
    """One thing a store holds that a sweep may judge."""

    kind: Kind
    name: str  # the artifact's URI; for the rest, what the store needs to remove it
    age_s: float  # since its last write (S3: since the upload was started)
    owner: str | None = None  # the writing process, when its name records it (owner.py)


def artifact_id(uri: str) -> str:
    """The last segment of an artifact's URI: `<uuid4 hex>.bento`, unique to one upload."""
    return uri.rsplit("/", 1)[-1]


def removable(item: Leftover, kept: AbstractSet[str], owner: OwnerState, min_age_s: float) -> bool:
    """Whether a sweep may remove `item` (rules in the module's docstring); `kept`: the
    `artifact_id` of every referenced URI."""
    old = item.age_s > min_age_s
    match item.kind:
        case Kind.ARTIFACT:
            return old and artifact_id(item.name) not in kept
        case Kind.SPOOL | Kind.TEMPORARY:
            if owner is OwnerState.LIVE:
                return False
            return owner is OwnerState.DEAD or old
        case Kind.MULTIPART:
            return old
        case _:
            assert_never(item.kind)


def decide(
    items: Iterable[Leftover],
    referenced: AbstractSet[str],
    owner_state: Callable[[str | None], OwnerState],
    min_age_s: float,
) -> list[Leftover]:
    """The leftovers to remove, in the order given. `referenced`: every artifact URI a version
    names, read AFTER the listing (an artifact listed before its version row was read is then
    known as referenced; one written after the listing is not in it)."""
    kept = {artifact_id(uri) for uri in referenced}
    return [item for item in items if removable(item, kept, owner_state(item.owner), min_age_s)]


def counts(removed: Iterable[Leftover]) -> dict[Kind, int]:
    """How many of each kind: what the metrics and the log report."""
    out: dict[Kind, int] = {}
    for item in removed:
        out[item.kind] = out.get(item.kind, 0) + 1
    return out
