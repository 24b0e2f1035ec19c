"""The sweeper's decision (registry/catalog/sweep.py): what a crash left may go, an upload in
progress (here or on another replica) never."""

from __future__ import annotations

import os

import pytest

from registry.catalog.owner import owner_in, owner_state, this_process
from registry.catalog.sweep import Kind, Leftover, OwnerState, counts, decide

HOUR = 3600.0
LIVE, DEAD, ELSEWHERE = "1.2.aaaaaaaaaaaa.bbbbbbbb", "3.4.aaaaaaaaaaaa.bbbbbbbb", "5.6.c.d"
STATES = {LIVE: OwnerState.LIVE, DEAD: OwnerState.DEAD}


def state(owner: str | None) -> OwnerState:
    return STATES.get(owner or "", OwnerState.UNKNOWN)


def artifact(uri: str, age_s: float) -> Leftover:
    return Leftover(Kind.ARTIFACT, uri, age_s)


def swept(items: list[Leftover], referenced: set[str] = frozenset()) -> list[Leftover]:  # type: ignore[assignment]
    return decide(items, referenced, state, HOUR)


@pytest.mark.parametrize("kind", [Kind.SPOOL, Kind.TEMPORARY])
def test_a_file_of_a_live_writer_stays_however_old(kind: Kind) -> None:
    stale = Leftover(kind, "/data/uploads/upload-x.bento", age_s=100 * HOUR, owner=LIVE)
    assert swept([stale]) == []


@pytest.mark.parametrize("kind", [Kind.SPOOL, Kind.TEMPORARY])
def test_a_file_of_a_dead_writer_goes_at_once(kind: Kind) -> None:
    fresh = Leftover(kind, "/data/uploads/upload-y.bento", age_s=0.5, owner=DEAD)
    assert swept([fresh]) == [fresh]


@pytest.mark.parametrize("owner", [ELSEWHERE, None])
@pytest.mark.parametrize("kind", [Kind.SPOOL, Kind.TEMPORARY, Kind.MULTIPART])
def test_an_unknown_writer_is_judged_by_age(kind: Kind, owner: str | None) -> None:
    young = Leftover(kind, "young", age_s=HOUR - 1, owner=owner)
    at_limit = Leftover(kind, "at-limit", age_s=HOUR, owner=owner)
    old = Leftover(kind, "old", age_s=HOUR + 1, owner=owner)
    assert swept([young, at_limit, old]) == [old]


def test_an_unreferenced_artifact_goes_only_once_old() -> None:
    kept = artifact("file:///d/artifacts/iris/" + "a" * 32 + ".bento", 10 * HOUR)
    young = artifact("file:///d/artifacts/iris/" + "b" * 32 + ".bento", 60.0)
    orphan = artifact("file:///d/artifacts/iris/" + "c" * 32 + ".bento", HOUR + 1)
    assert swept([kept, young, orphan], {kept.name}) == [orphan]


def test_references_match_by_key_not_by_the_whole_uri() -> None:
    """A data folder reached by another path must not make every artifact unreferenced."""
    moved = artifact("file:///new/place/artifacts/iris/" + "d" * 32 + ".bento", 10 * HOUR)
    in_s3 = artifact("s3://bucket/p/artifacts/iris/" + "e" * 32 + ".bento", 10 * HOUR)
    referenced = {
        "file:///old/place/artifacts/iris/" + "d" * 32 + ".bento",
        "s3://bucket/old-prefix/artifacts/iris/" + "e" * 32 + ".bento",
    }
    assert swept([moved, in_s3], referenced) == []


def test_the_age_limit_is_the_setting() -> None:
    item = Leftover(Kind.MULTIPART, "s3://b/k?uploadId=1", age_s=2.0)
    assert decide([item], set(), state, 1.0) == [item]
    assert decide([item], set(), state, 5.0) == []


def test_counts_by_kind() -> None:
    items = [
        Leftover(Kind.SPOOL, "a", 1),
        Leftover(Kind.SPOOL, "b", 1),
        Leftover(Kind.ARTIFACT, "c", 1),
    ]
    assert counts(items) == {Kind.SPOOL: 2, Kind.ARTIFACT: 1}


def test_this_process_is_live_and_a_gone_one_dead() -> None:
    owner = this_process()
    if owner is None:
        pytest.skip("no /proc here: owners are not recorded")
    assert owner_in(f"upload-{owner}-k2j3h4.bento") == owner
    assert owner_state(owner) is OwnerState.LIVE
    pid, start, boot, host = owner.split(".")
    assert owner_state(f"{pid}.{int(start) + 1}.{boot}.{host}") is OwnerState.DEAD  # pid reused
    assert owner_state(f"{os.getpid()}.{start}.{'0' * 12}.{host}") is OwnerState.UNKNOWN
    assert owner_state(f"{os.getpid()}.{start}.{boot}.{'0' * 8}") is OwnerState.UNKNOWN
    assert owner_state(None) is OwnerState.UNKNOWN
    assert owner_in("upload-abc123.bento") is None
