"""The gateway's error tree. Only the gateway's HTTP layer maps these to status codes.

GatewayError
├── BadRequest              malformed JSON, wrong OIP shape or datatype (names the field)  400
├── PayloadTooLarge         request body over the limit                                     413
├── UnknownModel            no route for that model, version or alias                       404
├── NoHealthyUpstream       every candidate upstream is down or its breaker is open          503
├── Overloaded              past the concurrency limit (load shedding)                       503
├── FeedUnavailable         the registry cannot give routes or take windows now (the
│                           gateway keeps its last table; never sent to a client)
└── UpstreamError           talking to the model server failed
    ├── ConnectFailed       refused or reset before anything was sent: safe to retry        502
    ├── UpstreamTimeout     no full answer within the deadline                              504
    └── UpstreamBroken      the connection broke after the request was sent, or the
                            answer was not valid HTTP: not safe to retry                    502
"""

from __future__ import annotations


class GatewayError(Exception):
    code = "GATEWAY_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(GatewayError):
    code = "INVALID_PARAMETER_VALUE"


class PayloadTooLarge(GatewayError):
    code = "REQUEST_TOO_LARGE"


class UnknownModel(GatewayError):
    code = "RESOURCE_DOES_NOT_EXIST"


class NoHealthyUpstream(GatewayError):
    code = "NO_HEALTHY_UPSTREAM"


class Overloaded(GatewayError):
    code = "OVERLOADED"


class NoRouteTable(Overloaded):
    """No route table yet (the registry not reached since start, none saved): 503, retry."""

    code = "NO_ROUTE_TABLE"


class UpstreamError(GatewayError):
    code = "UPSTREAM_ERROR"


class ConnectFailed(UpstreamError):
    code = "UPSTREAM_UNREACHABLE"


class UpstreamTimeout(UpstreamError):
    code = "UPSTREAM_TIMEOUT"


class UpstreamBroken(UpstreamError):
    code = "UPSTREAM_BROKEN"


class FeedUnavailable(GatewayError):
    """The registry cannot give the route table or take traffic windows now."""

    code = "REGISTRY_UNAVAILABLE"
