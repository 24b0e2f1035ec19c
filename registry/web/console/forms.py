"""Console forms into the use cases' own commands, validated by the same Structs as the REST
bodies; a bad field becomes InvalidInput naming it, as the API would say."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from registry.catalog.commands import AliasChange, StageChange
from registry.errors import InvalidInput
from registry.rollouts.state import RolloutSpec

T = TypeVar("T")
Form = Mapping[str, Any]

_AT_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")
_SPLIT = re.compile(r"[,\s%]+")


def _convert(data: dict[str, Any], into: type[T]) -> T:
    try:
        return msgspec.convert(data, into, strict=False)
    except msgspec.ValidationError as exc:
        found = _AT_FIELD.search(str(exc))
        raise InvalidInput(str(exc), field=found.group(1) if found else None) from None


def text(form: Form, key: str) -> str:
    value = form.get(key)
    if isinstance(value, str) and "\x00" in value:  # as the API: PostgreSQL cannot hold it
        raise InvalidInput(f"`{key}` holds a NUL character (U+0000)", field=key)
    return value.strip() if isinstance(value, str) else ""


def _optional(form: Form, *keys: str) -> dict[str, Any]:
    return {key: value for key in keys if (value := text(form, key))}


def stage_change(form: Form) -> tuple[int, StageChange]:
    change = _convert(
        {
            "stage": text(form, "stage"),
            "archive_existing": text(form, "archive_existing") == "on",
            **_optional(form, "reason"),
        },
        StageChange,
    )
    return version_of(form), change


def alias_change(form: Form) -> tuple[str, AliasChange]:
    alias = text(form, "alias")
    if not alias:
        raise InvalidInput("name the alias to set", field="alias")
    return alias, _convert(
        {"version": text(form, "version"), **_optional(form, "reason")}, AliasChange
    )


def version_of(form: Form) -> int:
    value = text(form, "version")
    if not value.isdigit() or not 1 <= int(value) < 2**63:  # versions are BIGINTs
        raise InvalidInput("choose a version", field="version")
    return int(value)


def rollout_spec(form: Form) -> RolloutSpec:
    data: dict[str, Any] = _optional(
        form,
        "candidate",
        "interval_s",
        "min_sample_per_arm",
        "max_error_rate",
        "max_p99_ms",
        "mode",
        "alpha",
    )
    steps = [s for s in _SPLIT.split(text(form, "steps")) if s]
    if steps:
        data["steps"] = steps
    if "candidate" not in data:
        raise InvalidInput("choose the candidate version", field="candidate")
    return _convert(data, RolloutSpec)


def promote_version(form: Form) -> int | None:
    """The version to promote when stopping an experiment, or None (the field left empty)."""
    raw = text(form, "promote")
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"expected a version number, got {raw!r}", field="promote")
    return int(raw)
