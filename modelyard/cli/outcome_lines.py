"""Experiment outcomes as a user writes them, one a line, parsed and checked before anything is
sent; then cut into request bodies the API accepts. Pure: bytes in, outcomes (or every bad line
with its number) out.

Two formats, told apart by the first non-blank line:

- JSON lines: `{"key": "user-7", "value": 1}` (by the sticky key the request carried) or
  `{"version": 2, "value": 0.5}` (by the version that served it: its x-modelyard-version header);
  either may add `"covariate": 3.5`, a figure measured before the experiment (CUPED).
- CSV: `key,value` rows (`user-7,1`); an optional header row `key,value`, or `version,value` to
  give versions instead of keys; a third column `covariate` when the header names it
  (`key,value,covariate`). Spaces around a field are ignored; a key with a comma is quoted
  (`"a,b",1`).

Blank lines are skipped; line numbers count every line, the first being 1.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

KEY_MAX_LENGTH: Final = (
    256  # registry.experiments.stats.Outcome.key (a unit test pins them together)
)
MAX_INPUT_BYTES: Final = 64 * 1024 * 1024
MAX_OUTCOMES: Final = 1_000_000
MAX_LINE_BYTES: Final = 4096  # an outcome fits in far less; longer is not an outcome line
MAX_REPORTED: Final = 20  # bad lines listed before giving up
BATCH_MAX_OUTCOMES: Final = 10_000  # registry.experiments.stats.Feedback.outcomes max_length
BATCH_MAX_BYTES: Final = 256 * 1024  # well under the registry's request body limit (1 MiB)

_NUMBER: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_VERSION: Final = re.compile(r"\d+")
_ENVELOPE: Final = len(b'{"outcomes":[]}')


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One outcome, as the API's `outcomes` items: a value and exactly one of key, version."""

    value: float
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=KEY_MAX_LENGTH)] | None = None
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    covariate: float | None = None  # measured before the experiment, for CUPED


@dataclass(frozen=True)
class Rules:
    """What the experiment accepts: conversions are 0 or 1; versions must be arms."""

    conversion: bool = False
    arms: frozenset[int] | None = None  # None: any version


@dataclass(frozen=True)
class Parsed:
    outcomes: list[Outcome]
    lines: list[int]  # the line number of each outcome


class BadInput(Exception):
    """The input is refused: every bad line found (up to MAX_REPORTED), or why as a whole."""

    def __init__(self, problems: list[tuple[int, str]], whole: str | None = None) -> None:
        self.problems = problems  # (line number, what is wrong)
        self.whole = whole  # a problem of the input as a whole (size, count, empty)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"line {n}: {what}" for n, what in self.problems]
        if len(self.problems) >= MAX_REPORTED:
            lines.append(f"(stopped after {MAX_REPORTED} bad lines)")
        return "\n".join(lines + ([self.whole] if self.whole else []))


def parse(data: bytes, rules: Rules | None = None, max_outcomes: int = MAX_OUTCOMES) -> Parsed:
    """Every outcome of `data`, or BadInput naming each bad line (so nothing is sent)."""
    if len(data) > MAX_INPUT_BYTES:
        raise BadInput([], f"the input is larger than {MAX_INPUT_BYTES // 2**20} MiB: split it")
    rules = rules or Rules()
    outcomes: list[Outcome] = []
    numbers: list[int] = []
    problems: list[tuple[int, str]] = []
    reader: _LineReader | None = None
    for number, raw in _lines(data):
        if len(problems) >= MAX_REPORTED:
            break
        if len(raw) > MAX_LINE_BYTES:
            problems.append((number, f"longer than {MAX_LINE_BYTES} bytes"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append((number, "not UTF-8 text"))
            continue
        if not text.strip():
            continue
        if reader is None:
            reader = _JsonLines() if text.lstrip().startswith("{") else _Csv()
            if reader.header(text):
                continue
        try:
            outcome = _checked(reader.outcome(text), rules)
        except ValueError as exc:
            problems.append((number, str(exc)))
        else:
            if len(outcomes) == max_outcomes:
                raise BadInput(problems, f"more than {max_outcomes:,} outcomes: split the input")
            outcomes.append(outcome)
            numbers.append(number)
    if problems or not outcomes:
        raise BadInput(problems, None if problems else "no outcomes in the input")
    return Parsed(outcomes, numbers)


def batches(outcomes: Sequence[Outcome]) -> list[tuple[int, int]]:
    """[start, end) ranges of `outcomes`, each a body of at most BATCH_MAX_OUTCOMES outcomes
    and BATCH_MAX_BYTES bytes of JSON (one outcome is far smaller than a batch)."""
    ranges: list[tuple[int, int]] = []
    start, size = 0, _ENVELOPE
    for i, outcome in enumerate(outcomes):
        item = len(msgspec.json.encode(outcome))
        if i > start and (i - start >= BATCH_MAX_OUTCOMES or size + 1 + item > BATCH_MAX_BYTES):
            ranges.append((start, i))
            start, size = i, _ENVELOPE
        size += item + (1 if i > start else 0)
    if start < len(outcomes):
        ranges.append((start, len(outcomes)))
    return ranges


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark (spreadsheet exports)
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        yield number, raw.removesuffix(b"\r")


def _checked(outcome: Outcome, rules: Rules) -> Outcome:
    if (outcome.key is None) == (outcome.version is None):
        raise ValueError("give exactly one of key, version")
    if not math.isfinite(outcome.value):
        raise ValueError("value must be a finite number")
    if outcome.covariate is not None and not math.isfinite(outcome.covariate):
        raise ValueError("covariate must be a finite number")
    if rules.conversion and outcome.value not in (0.0, 1.0):
        raise ValueError(f"a conversion is 0 or 1, got {outcome.value:g}")
    if outcome.version is not None and rules.arms is not None and outcome.version not in rules.arms:
        arms = ", ".join(str(v) for v in sorted(rules.arms))
        raise ValueError(f"version {outcome.version} is not an arm (arms: {arms})")
    return outcome


class _LineReader:
    def header(self, text: str) -> bool:
        """Whether this first line is a header (not an outcome)."""
        return False

    def outcome(self, text: str) -> Outcome:
        raise NotImplementedError


class _JsonLines(_LineReader):
    def outcome(self, text: str) -> Outcome:
        if not text.lstrip().startswith("{"):
            raise ValueError('expected a JSON object such as {"key": "user-7", "value": 1}')
        try:
            return msgspec.json.decode(text, type=Outcome)
        except msgspec.ValidationError as exc:
            raise ValueError(
                f"{exc} (fields: key or version, value, and optionally covariate)"
            ) from None
        except msgspec.DecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None


class _Csv(_LineReader):
    def __init__(self) -> None:
        self.by_version = False
        self.covariate = False
        self.first = True

    def _fields(self, text: str) -> list[str]:
        try:
            row = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise ValueError(f"not a CSV row: {exc}") from None
        return [f.strip() for f in row]

    def header(self, text: str) -> bool:
        try:
            row = [f.lower() for f in self._fields(text)]
        except ValueError:
            return False
        if row[:2] in (["key", "value"], ["version", "value"]) and row[2:] in ([], ["covariate"]):
            self.by_version, self.first = row[0] == "version", False
            self.covariate = len(row) == 3
            return True
        return False

    def outcome(self, text: str) -> Outcome:
        first, self.first = self.first, False
        try:
            return self._outcome(text)
        except ValueError as exc:
            hint = " (a header row is `key,value` or `version,value`)" if first else ""
            raise ValueError(f"{exc}{hint}") from None

    def _outcome(self, text: str) -> Outcome:
        if text.lstrip().startswith("{"):
            raise ValueError("a JSON line in CSV input (its first line is CSV): use one format")
        row = self._fields(text)
        column = "version" if self.by_version else "key"
        columns = f"{column},value,covariate" if self.covariate else f"{column},value"
        if len(row) != len(columns.split(",")):
            raise ValueError(
                f"expected {len(columns.split(','))} fields ({columns}), got {len(row)}"
            )
        for name, field in zip(("value", "covariate"), row[1:], strict=False):
            if not _NUMBER.fullmatch(field):
                raise ValueError(f"{name} {field!r} is not a number")
        value = float(row[1])
        covariate = float(row[2]) if self.covariate else None
        if not self.by_version:
            if not 1 <= len(row[0]) <= KEY_MAX_LENGTH:
                raise ValueError(f"a key has 1 to {KEY_MAX_LENGTH} characters")
            return Outcome(value, key=row[0], covariate=covariate)
        if not _VERSION.fullmatch(row[0]) or int(row[0]) < 1:
            raise ValueError(f"version {row[0]!r} is not a positive integer")
        return Outcome(value, version=int(row[0]), covariate=covariate)
