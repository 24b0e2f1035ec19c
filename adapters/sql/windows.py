"""Traffic windows in SQL: what the gateways measured, one row per window as received, summed
per version and variant when a rollout or an experiment reads them."""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters.sql import rows
from adapters.sql.driver import OnDriver
from contract.windows import TrafficWindow
from registry.ports import WindowStore
from registry.rollouts.windows import VariantTraffic

_latencies = msgspec.json.Decoder(list[float])
_ROWS = 100  # windows per INSERT statement (10 parameters each)
_Sums = tuple[int, int, list[float], int, int]  # requests, errors, latencies, compared, agreed


class SqlWindows(OnDriver, WindowStore):
    async def add_windows(self, source: str, windows: list[TrafficWindow], now: datetime) -> None:
        """One multi-row INSERT per `_ROWS` windows: a report of a hundred windows is one
        statement, not a hundred (the cost that grows with gateways x models)."""
        received = rows.to_micros(now)
        values = [
            (
                w.model,
                w.version,
                w.variant,
                source,
                received,
                w.requests,
                w.errors,
                rows.dumps(w.latencies_ms),
                w.compared,
                w.agreed,
            )
            for w in windows
        ]
        async with self.driver.writing() as conn:
            for start in range(0, len(values), _ROWS):
                chunk = values[start : start + _ROWS]
                marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                await conn.execute(
                    "INSERT INTO traffic_windows (model, version, variant, source, received_at,"
                    f" requests, errors, latencies_ms, compared, agreed) VALUES {marks}",
                    [x for row in chunk for x in row],
                )

    async def prune_windows(self, before: datetime) -> int:
        async with self.driver.writing() as conn:
            gone = await conn.fetch(
                "DELETE FROM traffic_windows WHERE received_at < ? RETURNING id",
                (rows.to_micros(before),),
            )
        return len(gone)

    async def windows(self, model: str, since: datetime) -> list[VariantTraffic]:
        found = await self._read(
            "SELECT version, variant, requests, errors, latencies_ms, compared, agreed"
            " FROM traffic_windows WHERE model = ? AND received_at >= ? ORDER BY id",
            (model, rows.to_micros(since)),
        )
        summed: dict[tuple[int, str], _Sums] = {}
        for version, variant, requests, errors, latencies, compared, agreed in found:
            r, e, lat, c, a = summed.get((int(version), variant), (0, 0, [], 0, 0))
            lat.extend(_latencies.decode(latencies))
            sums = (r + int(requests), e + int(errors), lat, c + int(compared), a + int(agreed))
            summed[(int(version), variant)] = sums
        return [
            VariantTraffic(version, variant, r, e, lat, since, c, a)
            for (version, variant), (r, e, lat, c, a) in sorted(summed.items())
        ]
