"""A schema-driven fuzzer of a running registry's HTTP API (issue 18): every operation of the
OpenAPI document the registry serves (`/api/v1` and the MLflow dialect under `/api/2.0/mlflow`),
with requests that fit the schema and requests that do not (schemathesis' positive and negative
generation, driven by hypothesis), plus any method and path under the MLflow prefixes that the
document leaves out (their catch-all answers ENDPOINT_NOT_FOUND). Each request goes to the real
process over HTTP; what counts is the answer's status: a 5xx, or a connection the server drops,
is a server error.

Half of the cases carry numbers at the edges of their types (EDGE_INTS, EDGE_FLOATS) instead of
the generated ones; half are pinned to objects that exist (`Seed`: a model with a tag, two
versions, an alias, a webhook), so the fuzz reaches past the 404s into the use cases. URLs the
registry would call (a webhook's `url`, a version's `endpoint`) are pointed at a closed loopback
port: the fuzz never makes the registry call out; a long-poll waits at most MAX_WAIT_S; the
fuzz never revokes the tokens it runs with. The
headers the document leaves out (`If-Match`, `Idempotency-Key`) are sent now and then.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis import GenerationMode

from registry.web.mlflow.api import MLFLOW_PREFIXES

#: where a URL the registry would call is sent instead: nothing listens on the discard port
CLOSED: Final = "http://127.0.0.1:9/"
#: body fields holding a URL the registry calls
CALLED_URLS: Final = ("url", "endpoint")
#: a long-poll's wait (GET /api/v1/routes), held short: the routes' revision rarely moves
LONG_POLL: Final = "wait_s"
MAX_WAIT_S: Final = 0.1
TIMEOUT_S: Final = 30.0
MIN_EXAMPLES: Final = 5
TOKEN_ID: Final = "token_id"  # DELETE /api/v1/tokens/{token_id}
NO_TOKEN: Final = 2**31 - 1
#: numbers at the edges of what stores them (BIGINT, float64, a JSON number exact in a double),
#: which generated cases seldom reach
EDGE_INTS: Final = (0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1)
EDGE_FLOATS: Final = (-1.0, 0.0, 5e-324, 2.0**63, 1e300, -1e300)
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
_SEGMENT: Final = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_.~%"), min_size=1, max_size=24
)
#: the request headers the API reads that its document does not declare, sometimes sent
_HEADER_TEXT: Final = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=300
)
_HEADERS: Final = st.fixed_dictionaries(
    {},
    optional={
        "If-Match": _HEADER_TEXT | st.just('"1"') | st.just("*"),
        "Idempotency-Key": _HEADER_TEXT,
    },
)
_JSON: Final = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@dataclass(frozen=True)
class Seed:
    """Objects that exist, by the parameter names that name them."""

    model: str = "fz"
    tag: str = "team"
    alias: str = "champion"
    webhook_id: str = ""
    tokens: frozenset[int] = frozenset()  # the fuzz's own tokens: never revoked by it

    def known(self) -> dict[str, str]:
        values = {"name": self.model, "version": "1", "alias": self.alias, "key": self.tag}
        if self.webhook_id:
            values["webhook_id"] = self.webhook_id
        return values


@dataclass(frozen=True)
class ServerError:
    operation: str
    status: int  # 0: the connection failed or was dropped
    answer: str
    request: str  # a curl command that repeats it


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # by class: 2, 3, 4, 5; 0 dropped
    operations: int = 0
    planned: int = 0  # the most cases it could make (max_examples, summed)
    reduced: int = 0  # operations given fewer cases, the time budget spent
    covered: set[str] = field(default_factory=set)  # "METHOD /path" of each fuzzed operation
    server_errors: list[ServerError] = field(default_factory=list)
    seconds: float = 0.0
    slowest: Counter[str] = field(default_factory=Counter)  # seconds by operation

    def count(self, status: int) -> None:
        self.requests += 1
        self.statuses[status // 100] += 1

    def summary(self) -> str:
        classes = ", ".join(
            f"{k}xx: {v}" if k else f"dropped: {v}" for k, v in sorted(self.statuses.items())
        )
        slowest = ", ".join(f"{op} {s:.1f} s" for op, s in self.slowest.most_common(3))
        return (
            f"{self.requests} requests over {self.operations} operations in"
            f" {self.seconds:.1f} s ({classes}); {len(self.server_errors)} server errors;"
            f" {self.reduced} operations past the time budget;"
            f" slowest: {slowest}"
        )


def closed(node: Any) -> None:
    """Say `additionalProperties: false` on every object schema with properties that does not
    say otherwise. Litestar leaves it out, but /api/v1's bodies refuse unknown fields: without
    it the cases meant to fit the schema mostly carry a random extra field and stop at the 400
    that names it. (The MLflow dialect ignores unknown fields; there the negative cases still
    send them.)"""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            closed(value)
    elif isinstance(node, list):
        for value in node:
            closed(value)


def load_schema(base_url: str) -> schemathesis.BaseSchema:
    """The OpenAPI document the process serves (`closed`), as schemathesis reads it."""
    answer = httpx.get(f"{base_url}/schema/openapi.json", timeout=TIMEOUT_S)
    answer.raise_for_status()
    document = answer.json()
    closed(document)
    return schemathesis.openapi.from_dict(document)


def _pin(case: schemathesis.Case, known: Mapping[str, str]) -> None:
    """Point the case's parameters and body fields that name objects at existing ones."""
    for where in (case.path_parameters, case.query):
        if isinstance(where, dict):
            for key in where.keys() & known.keys():
                where[key] = known[key]
    if isinstance(case.body, dict):
        for key in case.body.keys() & known.keys():
            old, new = case.body[key], known[key]
            number = isinstance(old, int) and not isinstance(old, bool) and new.isdigit()
            case.body[key] = int(new) if number else new


def _edges(value: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """`value` with some numbers in it (and strings of digits) made edge values."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        if not draw(st.booleans()):
            return value
        if isinstance(value, float):
            return draw(st.sampled_from(EDGE_FLOATS))
        edge = draw(st.sampled_from(EDGE_INTS))
        return edge if isinstance(value, int) else str(edge)
    if isinstance(value, list):
        return [_edges(item, draw) for item in value]
    if isinstance(value, dict):
        return {key: _edges(item, draw) for key, item in value.items()}
    return value


def _to_edges(case: schemathesis.Case, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
    if isinstance(case.path_parameters, dict):
        case.path_parameters = _edges(case.path_parameters, draw)
    if isinstance(case.query, dict):
        case.query = _edges(case.query, draw)
    if isinstance(case.body, dict | list):
        case.body = _edges(case.body, draw)


def _tame(case: schemathesis.Case, tokens: frozenset[int]) -> None:
    """No call out of the registry, no long-poll held for long, none of `tokens` revoked."""
    if isinstance(case.path_parameters, dict):
        token_id = case.path_parameters.get(TOKEN_ID)
        if str(token_id) in {str(t) for t in tokens}:
            case.path_parameters[TOKEN_ID] = NO_TOKEN
    if isinstance(case.query, dict):
        wait = case.query.get(LONG_POLL)
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            case.query[LONG_POLL] = min(wait, MAX_WAIT_S)
    if isinstance(case.body, dict):
        for key in CALLED_URLS:
            value = case.body.get(key)
            if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
                case.body[key] = CLOSED


def _fuzz_settings(examples: int, seed: int) -> Callable[[Any], Any]:
    def apply(test: Any) -> Any:
        configured = settings(
            max_examples=examples,
            deadline=None,
            database=None,  # nothing written under .hypothesis
            phases=[Phase.explicit, Phase.generate],  # no shrinking: every error is kept
            suppress_health_check=list(HealthCheck),
        )(test)
        return hypothesis_seed(seed)(configured)

    return apply


class Fuzzer:
    """Requests to one process with one token; `report` adds up what they got."""

    def __init__(self, base_url: str, token: str, seed: int) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.seed = seed
        self.session = requests.Session()
        self.report = FuzzReport()

    def _send(
        self, label: str, send: Callable[[], requests.Response], curl: Callable[[], str]
    ) -> None:
        try:
            answer = send()
        except (requests.ConnectionError, requests.Timeout) as exc:  # dropped, or no answer
            self.report.count(0)
            self.report.server_errors.append(ServerError(label, 0, repr(exc), curl()))
            return
        self.report.count(answer.status_code)
        if answer.status_code >= 500:
            error = ServerError(label, answer.status_code, answer.text[:300], curl())
            self.report.server_errors.append(error)

    def operation(self, op: schemathesis.APIOperation, examples: int, seed: Seed) -> None:
        known = seed.known()
        cases = st.one_of(
            op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)
        )

        @_fuzz_settings(examples, self.seed)
        @given(
            case=cases,
            pinned=st.booleans(),
            edges=st.booleans(),
            headers=_HEADERS,
            data=st.data(),
        )
        def run(
            case: schemathesis.Case,
            pinned: bool,
            edges: bool,
            headers: dict[str, str],
            data: st.DataObject,
        ) -> None:
            if pinned:
                _pin(case, known)
            if edges:
                _to_edges(case, data.draw)
            _tame(case, seed.tokens)

            def send() -> requests.Response:
                return case.call(
                    base_url=self.base_url,
                    session=self.session,
                    headers={**self.headers, **headers},
                    timeout=TIMEOUT_S,
                )

            self._send(op.label, send, lambda: case.as_curl_command(base_url=self.base_url))

        started = time.perf_counter()
        run()
        self.report.slowest[op.label] += time.perf_counter() - started
        self.report.operations += 1
        self.report.covered.add(op.label)

    def unserved(self, examples: int) -> None:
        """Any method and path under the MLflow prefixes, with or without a JSON body."""

        @_fuzz_settings(examples, self.seed)
        @given(
            method=st.sampled_from(METHODS),
            prefix=st.sampled_from(MLFLOW_PREFIXES),
            segments=st.lists(_SEGMENT, min_size=1, max_size=4),
            body=st.none() | _JSON,
        )
        def run(method: str, prefix: str, segments: list[str], body: Any) -> None:
            url = f"{self.base_url}{prefix}/{'/'.join(segments)}"
            kwargs: dict[str, Any] = {"headers": self.headers, "timeout": TIMEOUT_S}
            if body is not None:
                kwargs["json"] = body

            def send() -> requests.Response:
                return self.session.request(method, url, **kwargs)

            self._send(f"{method} {prefix}/…", send, lambda: f"curl -X {method} '{url}'")

        run()
        self.report.operations += 1


def fuzz(
    base_url: str,
    token: str,
    examples: int,
    seed: int,
    before_each: Callable[[], Seed],
    *,
    budget_s: float = float("inf"),
    only: str = "",
) -> FuzzReport:
    """Every operation of the served OpenAPI document, `examples` cases each (fewer when an
    operation has fewer distinct inputs), then the MLflow prefixes' unserved paths.
    Past `budget_s` seconds the operations left get a fifth of `examples` (at least
    MIN_EXAMPLES): bounded in time on a slow machine, and still every operation.
    `before_each` (re)creates the seeded objects before each operation and says what they are;
    `only` (a part of an operation's label, "POST /api/v1/windows") fuzzes just those."""
    started = time.perf_counter()
    fuzzer = Fuzzer(base_url, token, seed)
    report = fuzzer.report

    def cases() -> int:
        if time.perf_counter() - started < budget_s:
            return examples
        report.reduced += 1
        return max(MIN_EXAMPLES, examples // 5)

    for result in load_schema(base_url).get_all_operations():
        op = result.ok()  # an operation schemathesis cannot read is a broken document: raise
        if only in op.label:
            n = cases()
            report.planned += n
            fuzzer.operation(op, n, before_each())
    if not only:
        before_each()
        n = 2 * cases()
        report.planned += n
        fuzzer.unserved(n)
    fuzzer.session.close()
    report.seconds = time.perf_counter() - started
    return report
