"""The sweeper: removes what crashed uploads leave behind, at start and then periodically.

It lists the upload spool folder and the artifact store (`ArtifactStore.leftovers`), reads the
artifact URIs the versions name, asks the pure `sweep.decide` what may go, and removes that
(`ArtifactStore.remove`; spool files itself). Each replica may run it: every rule holds
whoever sweeps (an upload in progress anywhere is never touched), and removing what another
sweep removed first is fine. Counts go to `on_swept` (the registry's metrics) and the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from registry.catalog.owner import owner_in, owner_state
from registry.catalog.registration import SPOOL_PREFIX, SPOOL_SUFFIX
from registry.catalog.sweep import Kind, Leftover, counts, decide
from registry.ports import ArtifactStore, ModelReader

log = logging.getLogger("modelyard.sweeper")


def spool_leftovers(folder: Path, now: float) -> list[Leftover]:
    """The upload spool files in `folder`, with their ages and owners (blocking)."""
    found: list[Leftover] = []
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return found
    for entry in entries:
        if not (entry.name.startswith(SPOOL_PREFIX) and entry.name.endswith(SPOOL_SUFFIX)):
            continue
        try:
            age = now - entry.stat().st_mtime
        except FileNotFoundError:  # its upload ended meanwhile
            continue
        found.append(Leftover(Kind.SPOOL, str(entry), age, owner_in(entry.name)))
    return found


class Sweeper:
    def __init__(
        self,
        artifacts: ArtifactStore,
        versions: ModelReader,
        spool_dir: Path,
        *,
        min_age_s: float,
        interval_s: float,
        on_swept: Callable[[Mapping[str, int]], None] = lambda _: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.artifacts = artifacts
        self.versions = versions
        self.spool_dir = spool_dir
        self.min_age_s = min_age_s
        self.interval_s = interval_s
        self.on_swept = on_swept
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> dict[str, int]:
        """One sweep; returns how many of each kind it removed."""
        now = self.clock()
        items = await asyncio.to_thread(spool_leftovers, self.spool_dir, now)
        items += await self.artifacts.leftovers()
        referenced = await self.versions.artifact_uris()  # after the listing: see decide()
        doomed = await asyncio.to_thread(decide, items, referenced, owner_state, self.min_age_s)
        removed: list[Leftover] = []
        for item in doomed:
            try:
                if item.kind is Kind.SPOOL:
                    await asyncio.to_thread(Path(item.name).unlink, missing_ok=True)
                else:
                    await self.artifacts.remove(item)
            except Exception:  # one that resists does not stop the others
                log.exception("the sweeper could not remove %s %s", item.kind, item.name)
                continue
            removed.append(item)
            log.info("swept %s %s (%.0f s old)", item.kind, item.name, item.age_s)
        found = {str(kind): n for kind, n in counts(removed).items()}
        self.on_swept(found)
        if found:
            log.warning("the sweeper removed leftovers of crashed uploads: %s", found)
        return found

    def start(self) -> None:
        """Sweep now, then every `interval_s`, until `close`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a store outage: the next round retries
                log.exception("sweep failed")
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
