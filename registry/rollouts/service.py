"""Rollout use cases (start, show, pause, resume, abort, promote) and the controller that drives
active rollouts: each tick it sums the gateways' windows of both arms since the step began and
hands them to the pure `step`, through the same locked write as every other change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol, assert_never

from contract.traffic import CANARY_VARIANT, SHADOW_VARIANT, STABLE_VARIANT
from registry.catalog.changes import Caller, LoadSpec
from registry.catalog.domain import Principal, Role, validate_name
from registry.catalog.service import Registry
from registry.errors import InvalidState, RegistryError
from registry.ports import Leadership, MetadataStore
from registry.rollouts import engine as rollouts
from registry.rollouts import rules as rollout_rules
from registry.rollouts.judge import ArmStats
from registry.rollouts.state import (
    Look,
    Mode,
    Moved,
    Phase,
    Rollout,
    RolloutSpec,
    ShadowStats,
    Snapshot,
)
from registry.rollouts.windows import VariantTraffic, prune_cutoff

log = logging.getLogger("modelyard.rollouts")

#: Other work only the leading replica does, run after each tick with the time (the bandit
#: experiments' rebalance and the experiments' reads over time:
#: `registry.experiments.service.BanditLoop`, `ReadLoop`).
LeaderJob = Callable[[datetime], Awaitable[object]]

CONTROLLER: Final = Caller(
    principal=Principal(token_id=0, name="rollout-controller", role=Role.ADMIN)
)
PRUNE_EVERY_S: Final = 60.0  # how often the leading replica deletes old traffic windows


class RolloutObserver(Protocol):
    """What metrics and tracing learn from the controller (adapters implement it)."""

    def active(self, rollouts: list[Rollout]) -> None:
        """The active rollouts as this tick found them (phase and weight gauges)."""
        ...

    def tick(self) -> contextlib.AbstractContextManager[None]:
        """Around a tick that advances at least one rollout (the tick's span)."""
        ...

    def moved(self, before: Rollout, after: Rollout) -> None:
        """A rollout changed: a new verdict, a new phase or weight."""
        ...


class _Unobserved:
    def active(self, rollouts: list[Rollout]) -> None:
        pass

    def tick(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def moved(self, before: Rollout, after: Rollout) -> None:
        pass


def new_id() -> str:
    return "ro-" + secrets.token_hex(6)


class RolloutService:
    def __init__(
        self, registry: Registry, store: MetadataStore, observer: RolloutObserver | None = None
    ) -> None:
        self.registry = registry
        self.store = store
        self.observer: RolloutObserver = observer or _Unobserved()

    def _load(self, rollout: Rollout | None = None, candidate: int | None = None) -> LoadSpec:
        numbers = set() if rollout is None else {rollout.baseline, rollout.spec.candidate}
        if candidate is not None:
            numbers.add(candidate)
        return LoadSpec(versions=tuple(sorted(numbers)), stage_holders=True, rollout=True)

    async def start(self, caller: Caller, name: str, spec: RolloutSpec) -> Rollout:
        rollout_id = new_id()
        return await self.registry.write(
            name,
            caller,
            self._load(candidate=spec.candidate),
            lambda s, c: rollout_rules.start(s, c, name, spec, rollout_id),
        )

    async def get(self, rollout_id: str) -> Rollout:
        return await self.store.get_rollout(rollout_id)

    async def of_model(self, name: str, limit: int = 50) -> list[Rollout]:
        return await self.store.list_rollouts(validate_name(name), limit)

    async def looks(self, rollout_id: str, after: int = 0, limit: int = 1000) -> list[Look]:
        return await self.store.rollout_looks(rollout_id, after, limit)

    async def _move(
        self, caller: Caller, rollout_id: str, move: Callable[[Rollout, datetime], Moved]
    ) -> Rollout:
        found = await self.store.get_rollout(rollout_id)
        if not found.active:
            raise InvalidState(f"rollout {rollout_id} is {found.phase}: it is over", field="phase")
        return await self.registry.write(
            found.model,
            caller,
            self._load(found),
            lambda s, c: rollout_rules.apply(
                s, c, found.model, rollout_id, lambda r: move(r, c.now)
            ),
        )

    async def pause(self, caller: Caller, rollout_id: str) -> Rollout:
        why = caller.reason or f"paused by {caller.principal.name}"
        return await self._move(caller, rollout_id, lambda r, now: rollouts.pause(r, now, why))

    async def resume(self, caller: Caller, rollout_id: str) -> Rollout:
        return await self._move(caller, rollout_id, rollouts.resume)

    async def abort(self, caller: Caller, rollout_id: str) -> Rollout:
        why = caller.reason or f"aborted by {caller.principal.name}"
        return await self._move(caller, rollout_id, lambda r, now: rollouts.abort(r, now, why))

    async def promote(self, caller: Caller, rollout_id: str) -> Rollout:
        why = caller.reason or f"promoted by {caller.principal.name}"
        return await self._move(
            caller, rollout_id, lambda r, now: rollouts.promote_now(r, now, why)
        )

    # --- the controller's part --------------------------------------------------------------

    async def snapshot(self, rollout: Rollout) -> Snapshot:
        found = await self.store.windows(rollout.model, rollout.step_started_at)
        return snapshot_of(rollout, found)

    async def advance(self, rollout: Rollout) -> Rollout:
        snapshot = None
        if rollout.phase in (Phase.PROGRESSING, Phase.PROMOTING):
            snapshot = await self.snapshot(rollout)
        return await self._move(
            CONTROLLER, rollout.id, lambda r, now: rollouts.step(r, snapshot, now)
        )

    async def prune_windows(self, now: datetime, keep: timedelta) -> int:
        """Delete traffic windows older than `keep`, except what an active rollout still reads."""
        active = await self.store.active_rollouts()
        cutoff = prune_cutoff(now, keep, [r.step_started_at for r in active])
        return await self.store.prune_windows(cutoff)

    async def tick(self, now: datetime) -> list[Rollout]:
        """Advance every active rollout that is due; returns the ones that changed."""
        changed: list[Rollout] = []
        active = await self.store.active_rollouts()
        due = [
            r
            for r in active
            if r.phase == Phase.PENDING
            or (r.phase in (Phase.PROGRESSING, Phase.PROMOTING) and now >= r.next_look_at)
        ]
        if due:
            with self.observer.tick():
                for rollout in due:
                    try:
                        moved = await self.advance(rollout)
                    except RegistryError as exc:  # e.g. it was paused or aborted in between
                        log.info("rollout %s not advanced: %s", rollout.id, exc.message)
                        continue
                    if moved != rollout:
                        changed.append(moved)
                        _log_move(rollout, moved)
                        self.observer.moved(rollout, moved)
        if changed:
            now_by_id = {r.id: r for r in changed}
            active = [now_by_id.get(r.id, r) for r in active]
        self.observer.active([r for r in active if r.active])
        return changed


def snapshot_of(rollout: Rollout, traffic: list[VariantTraffic]) -> Snapshot:
    """Both arms from the same windows: the baseline's `stable` traffic, and the candidate's
    canary traffic (shadow mode: its shadow copies). Pinned and rule-routed requests are not
    part of the comparison."""
    mode = rollout.spec.mode
    match mode:
        case Mode.CANARY:
            arm = CANARY_VARIANT
        case Mode.SHADOW:
            arm = SHADOW_VARIANT
        case _:
            assert_never(mode)
    baseline = _arm(traffic, rollout.baseline, STABLE_VARIANT)
    candidate = _arm(traffic, rollout.spec.candidate, arm)
    compared = sum(t.compared for t in traffic if t.version == rollout.spec.candidate)
    agreed = sum(t.agreed for t in traffic if t.version == rollout.spec.candidate)
    return Snapshot(rollout.step_started_at, baseline, candidate, ShadowStats(compared, agreed))


def _arm(traffic: list[VariantTraffic], version: int, variant: str) -> ArmStats:
    found = [t for t in traffic if t.version == version and t.variant == variant]
    latencies = [ms for t in found for ms in t.latencies_ms]
    return ArmStats(sum(t.requests for t in found), sum(t.errors for t in found), latencies)


def _log_move(before: Rollout, after: Rollout) -> None:
    look = after.last if after.last is not None and after.looks != before.looks else None
    verdict = f" verdict {look.verdict.outcome}: {look.verdict.reason}" if look else ""
    log.info(
        "rollout %s of %s: %s %g%% -> %s %g%%%s",
        after.id,
        after.model,
        before.phase,
        before.weight,
        after.phase,
        after.weight,
        verdict,
    )


class RolloutScheduler:
    """Ticks the rollouts every `tick_s` while this replica holds the lead, and (every
    `PRUNE_EVERY_S`) deletes traffic windows older than `keep_windows`: one replica does it,
    like the ticks. Both come from the settings (`rollout_tick_s`, `windows_retention_h`).
    After each tick it runs the other leader `jobs`, each on its own."""

    def __init__(
        self,
        service: RolloutService,
        leadership: Leadership,
        clock: Callable[[], datetime],
        tick_s: float,
        keep_windows: timedelta,
        jobs: Sequence[LeaderJob] = (),
    ) -> None:
        self.service = service
        self.leadership = leadership
        self.clock = clock
        self.tick_s = tick_s
        self.keep_windows = keep_windows
        self.jobs = tuple(jobs)
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: datetime | None = None
        self.leading = False  # as of the latest tick

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                self.leading = await self.leadership.lead()
                if self.leading:
                    now = self.clock()
                    await self.service.tick(now)
                    last = self._pruned_at
                    if last is None or (now - last).total_seconds() >= PRUNE_EVERY_S:
                        self._pruned_at = now
                        gone = await self.service.prune_windows(now, self.keep_windows)
                        if gone:
                            kept = self.keep_windows
                            log.info("deleted %d traffic windows older than %s", gone, kept)
            except Exception:  # a store outage: keep ticking, the next tick retries
                log.exception("rollout controller tick failed")
            if self.leading:
                await self._jobs()
            await asyncio.sleep(self.tick_s)

    async def _jobs(self) -> None:
        for job in self.jobs:  # each on its own: one failing does not hold the others up
            try:
                await job(self.clock())
            except Exception:
                log.exception("leader job %r failed", job)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.leadership.close()
