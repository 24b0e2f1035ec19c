"""Plain-text rendering of API responses: aligned tables and key/value listings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

Json = dict[str, Any]

MODEL_COLUMNS: Final = ("name", "latest_version", "aliases", "tags", "owner", "updated_at")
VERSION_COLUMNS: Final = (
    "version",
    "stage",
    "status",
    "aliases",
    "artifact_uri",
    "endpoint",
    "created_at",
)
AUDIT_COLUMNS: Final = ("seq", "at", "actor", "action", "version", "alias", "reason")
TOKEN_COLUMNS: Final = ("id", "name", "role", "prefix", "created_by", "created_at", "revoked_at")


def cell(value: Any) -> str:
    """One value as text: `-` for none, `k=v, ...` for mappings, `a, b` for lists."""
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(f"{{{cell(v)}}}" if isinstance(v, dict) else cell(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Json]) -> str:
    """Rows (objects) as a table with an upper-case header and left-aligned columns."""
    lines = [[c.upper() for c in columns], *([cell(row.get(c)) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def fields(obj: Json) -> str:
    """An object as `key: value` lines, keys padded to one width."""
    width = max((len(k) for k in obj), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {cell(v)}" for k, v in obj.items())


def page(columns: Sequence[str], body: Json) -> str:
    """A listing page as a table, with a hint when the server has more."""
    text = table(columns, body["items"])
    if body.get("next_cursor"):
        text += "\n(more results: use --all or a larger --limit)"
    return text
