"""The report's table: one line per store and operation, with its target and verdict."""

from __future__ import annotations

from typing import Any


def _verdict(result: dict[str, Any]) -> tuple[str, str]:
    if "target" not in result:
        return "-", "-"
    target = result["target"]
    unit = target["stat"].rsplit("_", 1)[1]
    stat = target["stat"].rsplit("_", 1)[0]
    return f"{stat} <= {target['limit']:g} {unit}", "PASS" if result["pass"] else "MISS"


def _problem(found: dict[str, Any]) -> str:
    """One line for a store that was skipped or failed: the first and last line of the why."""
    if "skipped" in found:
        return f"SKIPPED: {found['skipped']}"
    lines = [line.strip() for line in str(found["error"]).splitlines() if line.strip()]
    summary = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"ERROR: {summary[:300]} (details on stderr)"


def table(report: dict[str, Any]) -> str:
    head = f"{'store':<9}{'operation':<26}{'n':>6}{'p50':>10}{'p99':>10}{'max':>10}  {'target':<18}"
    lines = [head + "result", "-" * (len(head) + 6)]
    for store, found in report["stores"].items():
        if "skipped" in found or "error" in found:
            lines.append(f"{store:<9}{_problem(found)}")
            continue
        s = found["startup"]
        target, verdict = _verdict(s)
        lines.append(
            f"{store:<9}{'start-up (s)':<26}{s['n']:>6}{s['median_s']:>10.3f}"
            f"{'':>10}{s['max_s']:>10.3f}  {target:<18}{verdict}"
        )
        for name, r in found["operations"].items():
            label = "livez (baseline)" if name == "livez" else name
            target, verdict = _verdict(r)
            lines.append(
                f"{store:<9}{label + ' (ms)':<26}{r['n']:>6}{r['p50_ms']:>10.3f}"
                f"{r['p99_ms']:>10.3f}{r['max_ms']:>10.3f}  {target:<18}{verdict}"
            )
    return "\n".join(lines)
