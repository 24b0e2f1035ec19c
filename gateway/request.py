"""What a request asks of the gateway, read from its method, path and headers. Pure: no IO.

The paths the gateway answers (`ROUTES`; a unit test pins them):

    /models/{name}/{api}                  POST  BentoML JSON passthrough; {name}@{alias} pins an
    /models/{name}/versions/{v}/{api}     POST  alias, versions/{v} a version
    /v2                                   GET   Open Inference Protocol: server metadata
    /v2/health/live, /v2/health/ready     any   server health
    /v2/models/{name}[/versions/{v}]      GET   model metadata
      .../ready                           GET   model readiness
      .../infer                           POST  inference
    /metrics                              any   Prometheus

`parse` turns method and path into a `Call`; `routing_of` reads what the routing decision needs
of the headers (pins by header, the policy's header rules, the sticky key) into a `Routing`.
A version pinned by the path wins over one pinned by a header. Neither decodes the body, except
`routing_of` for a sticky key taken from a JSON field of a passthrough body (the only decoding
of that body in the gateway).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final, NamedTuple

import msgspec

from contract.json_depth import too_deep
from contract.routes import ModelRoute, RouteTable
from contract.traffic import ALIAS_HEADER, VERSION_HEADER, TrafficPolicy
from gateway.errors import BadRequest, NoRouteTable, UnknownModel
from gateway.reply import JSON
from gateway.transport.base import TRACE_CONTEXT, Headers

# --- calls ----------------------------------------------------------------------------------------

METRICS: Final = "metrics"
SERVER_LIVE: Final = "server_live"
SERVER_READY: Final = "server_ready"
SERVER_METADATA: Final = "server_metadata"
INVOKE: Final = "invoke"  # the BentoML JSON passthrough
MODEL_METADATA: Final = "model_metadata"
MODEL_READY: Final = "model_ready"
INFER: Final = "infer"
#: An OIP path under a model that names no call the gateway answers (for that method): a 404
#: once the model is known to be served (an unknown model is reported first).
UNKNOWN: Final = "unknown"

ANY: Final = "*"
#: (method, path template, kind) of every call the gateway answers.
ROUTES: Final = (
    (ANY, "/metrics", METRICS),
    ("POST", "/models/{name}/{api}", INVOKE),
    ("POST", "/models/{name}@{alias}/{api}", INVOKE),
    ("POST", "/models/{name}/versions/{version}/{api}", INVOKE),
    ("GET", "/v2", SERVER_METADATA),
    (ANY, "/v2/health/live", SERVER_LIVE),
    (ANY, "/v2/health/ready", SERVER_READY),
    ("GET", "/v2/models/{name}", MODEL_METADATA),
    ("GET", "/v2/models/{name}/versions/{version}", MODEL_METADATA),
    ("GET", "/v2/models/{name}/ready", MODEL_READY),
    ("GET", "/v2/models/{name}/versions/{version}/ready", MODEL_READY),
    ("POST", "/v2/models/{name}/infer", INFER),
    ("POST", "/v2/models/{name}/versions/{version}/infer", INFER),
)


@dataclass(frozen=True)
class Call:
    """A frozen dataclass, not a msgspec Struct: `parse` remembers the calls it found by path,
    so one is made per path, not per request, and compiled (mypyc) it is a native class, its
    fields read as C struct members where a Struct's were generic attribute lookups (five a
    passthrough request; loadtests/hotpath_profile.py --callgrind: compiled 1.0k instructions
    a request less, interpreted the same)."""

    kind: str
    model: str = ""
    version: int | None = None  # pinned by the path
    alias: str | None = None  # pinned by the path
    api: str = ""  # the BentoML API of a passthrough call


_METRICS: Final = Call(METRICS)
_LIVE: Final = Call(SERVER_LIVE)
_READY: Final = Call(SERVER_READY)
_SERVER_METADATA: Final = Call(SERVER_METADATA)


#: Passthrough calls by path (POST only), as `parse` found them: the same few paths come again
#: and again, and reading one is two frames, a split and a Struct. Remembered up to this many.
_PASSTHROUGHS: dict[str, Call] = {}
_MAX_PASSTHROUGHS: Final = 4096


def parse(method: str, path: str) -> Call:
    """The call `method path` makes; `UnknownModel` (404) or `BadRequest` (400) if none."""
    if method == "POST":
        found = _PASSTHROUGHS.get(path)
        if found is not None:
            return found
    if path == "/metrics":
        return _METRICS
    if path.startswith("/v2/"):
        return _oip(method, path[4:])
    if path == "/v2":
        if method != "GET":
            raise UnknownModel("server metadata is GET /v2", field="path")
        return _SERVER_METADATA
    call = _passthrough(method, path[len("/models/") :])
    if len(_PASSTHROUGHS) >= _MAX_PASSTHROUGHS:
        _PASSTHROUGHS.clear()
    _PASSTHROUGHS[path] = call  # (only POST gets here: `_passthrough` refuses the rest)
    return call


def _passthrough(method: str, rest: str) -> Call:
    if method != "POST":
        raise UnknownModel("inference calls are POST /models/{name}/{api}", field="path")
    parts = rest.split("/")
    if len(parts) == 2:
        name, api = parts
        if "@" in name:
            name, alias = name.split("@", 1)
            return Call(INVOKE, name, None, alias, api)
        return Call(INVOKE, name, None, None, api)
    if len(parts) == 4 and parts[1] == "versions":
        return Call(INVOKE, parts[0], version_number(parts[2]), None, parts[3])
    raise UnknownModel("expected /models/{name}/{api}", field="path")


def is_oip(path: str) -> bool:
    """Whether `path` is one of the Open Inference Protocol's (errors then carry `error`)."""
    return path == "/v2" or path.startswith("/v2/")


def _oip(method: str, rest: str) -> Call:
    if rest == "health/live":
        return _LIVE
    if rest == "health/ready":
        return _READY
    parts = rest.split("/")
    if len(parts) < 2 or parts[0] != "models":
        raise UnknownModel("unknown OIP path", field="path")
    name, tail = parts[1], parts[2:]
    version: int | None = None
    if len(tail) >= 2 and tail[0] == "versions":
        version, tail = version_number(tail[1]), tail[2:]
    action = tail[0] if tail else ""
    if action == "infer" and method == "POST":
        return Call(INFER, name, version)
    if action == "" and method == "GET":
        return Call(MODEL_METADATA, name, version)
    if action == "ready" and method == "GET":
        return Call(MODEL_READY, name, version)
    return Call(UNKNOWN, name, version)


def version_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive number, got {text[:20]!r}", field="version")
    return int(text)


def served(table: RouteTable | None, name: str) -> ModelRoute:
    """The route of the model `name` in the table being served, or `UnknownModel`
    (`NoRouteTable` when there is no table yet: the model may well exist)."""
    if table is None:
        raise NoRouteTable("no route table yet: the registry has not been reached; retry")
    route = table.models.get(name)
    if route is None:
        raise UnknownModel(f"no model named {name!r} is served here", field="model")
    return route


# --- what routing reads of the headers ------------------------------------------------------------


class Routing(msgspec.Struct, frozen=True, gc=False):
    """The inputs of `gateway.routing.choose` besides the route."""

    version: int | None
    alias: str | None
    key: str | None  # the sticky key, when the policy has one and the request carries it
    headers: dict[str, str]  # the headers the policy reads, names in lower case


_PIN_HEADERS: Final = frozenset({VERSION_HEADER.encode(), ALIAS_HEADER.encode()})


class _Reads(NamedTuple):
    """What routing reads of a request under one policy, worked out once per policy."""

    policy: TrafficPolicy  # kept: its id cannot be reused while it is cached
    wanted: frozenset[bytes]  # the header names routing reads, lower case
    names: dict[bytes, str]  # ... and each as text: no `decode` a request (0.55k instructions)
    sticky_header: str | None  # the header a sticky key comes from, lower case


#: Per policy (by id, checked by identity): a request under a split used to build two sets
#: and lower-case every name the policy reads (measured: 2 of the 25k instructions a sticky
#: 10 % canary request cost over a pinned one, loadtests/hotpath_profile.py).
_READS: dict[int, _Reads] = {}
_MAX_READS: Final = 4096  # policies remembered; a route table with more starts over


def _reads(policy: TrafficPolicy) -> _Reads:
    found = _READS.get(id(policy))
    if found is not None and found.policy is policy:
        return found
    wanted = _PIN_HEADERS
    sticky = policy.sticky
    if policy.rules or sticky is not None:
        names = {r.header.lower() for r in policy.rules}
        if sticky is not None:
            names.add((sticky.header or "cookie").lower())
        wanted = wanted | {n.encode() for n in names}
    header = sticky.header.lower() if sticky is not None and sticky.header is not None else None
    if len(_READS) >= _MAX_READS:
        _READS.clear()
    texts = {name: name.decode("latin-1") for name in wanted}
    found = _READS[id(policy)] = _Reads(policy, wanted, texts, header)
    return found


def routing_of(
    route: ModelRoute,
    raw: Headers,
    version: int | None,
    alias: str | None,
    body: bytes | None,
    forward: Headers | None = None,
) -> Routing:
    """`version`/`alias`: the path's pins; `body`: a JSON body a sticky key may be read from
    (None: not from the body); `forward`: a list to which `passthrough_headers` are added,
    in the same loop over the headers (a passthrough call: a frame and a loop less)."""
    policy = route.policy
    reads = _READS.get(id(policy))  # `_reads`, its common case inlined: one frame a request
    if reads is None or reads.policy is not policy:
        reads = _reads(policy)
    names = reads.names
    headers = {}  # a loop, not a comprehension: one frame less (as `passthrough_headers`)
    if forward is None:
        for k, v in raw:
            if k in names:
                headers[names[k]] = v.decode("latin-1")
    else:
        for pair in raw:
            k = pair[0]
            if k in names:
                headers[names[k]] = pair[1].decode("latin-1")
            if k in _PASSED_ON:
                forward.append(pair)
    if headers and version is None and alias is None:
        if VERSION_HEADER in headers:
            version = version_number(headers[VERSION_HEADER])
        else:
            alias = headers.get(ALIAS_HEADER)
    key: str | None = None
    if reads.sticky_header is not None:
        key = headers.get(reads.sticky_header)
    elif policy.sticky is not None:
        key = sticky_key(policy, headers, body)
    return Routing(version, alias, key, headers)


def routing_headers(raw: Headers, policy: TrafficPolicy) -> dict[str, str]:
    """Only the headers routing reads (pins, the policy's rules and sticky key), decoded:
    most requests need two lookups, not every header of the request turned into text."""
    wanted = _reads(policy).wanted
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k in wanted}


def sticky_key(policy: TrafficPolicy, headers: dict[str, str], body: bytes | None) -> str | None:
    """The sticky key: a header, a cookie, or a top-level field of a JSON body."""
    sticky = policy.sticky
    if sticky is None:
        return None
    if sticky.header is not None:
        return headers.get(sticky.header.lower())
    if sticky.cookie is not None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == sticky.cookie:
                return value
        return None
    if sticky.json_field is not None and body and not too_deep(body):
        with contextlib.suppress(msgspec.DecodeError):
            found = msgspec.json.decode(body)
            if isinstance(found, dict) and sticky.json_field in found:
                return str(found[sticky.json_field])
    return None


# --- what is forwarded ----------------------------------------------------------------------------

_PASSED_ON: Final = frozenset({b"content-type", b"accept", *TRACE_CONTEXT})


def passthrough_headers(raw: Headers) -> Headers:
    """What a passthrough call forwards: its body's type, what it accepts, its trace context.
    A loop, not a list comprehension: that is one more frame (Python 3.11), on every call."""
    forward = []
    for pair in raw:
        if pair[0] in _PASSED_ON:
            forward.append(pair)
    return forward


HEADER_LENGTH: Final = b"inference-header-content-length"
_MAX_HEADER_LENGTH_DIGITS: Final = 12


def oip_headers(raw: Headers, header_length: int | None = None) -> Headers:
    """What an inference call forwards: its trace context, and a JSON body (`header_length`:
    the JSON's length, when binary tensor data follows it; the type is then binary)."""
    forward = [(k, v) for k, v in raw if k in TRACE_CONTEXT]
    if header_length is None:
        forward.append(JSON)
    else:
        forward.append((b"content-type", b"application/octet-stream"))
        forward.append((HEADER_LENGTH, str(header_length).encode()))
    return forward


def inference_header_length(raw: Headers) -> int | None:
    """The binary tensor data extension's ``Inference-Header-Content-Length``: how many bytes
    of the body are JSON (None: the header is absent, the whole body is JSON)."""
    for key, value in raw:
        if key == HEADER_LENGTH:
            text = value.strip()
            if not text.isdigit() or len(text) > _MAX_HEADER_LENGTH_DIGITS:
                raise BadRequest(
                    "Inference-Header-Content-Length must be a number of bytes, "
                    f"got {value[:20].decode('latin-1')!r}",
                    field="Inference-Header-Content-Length",
                )
            return int(text)
    return None
