"""The way out to the model servers: the `Transport` port, the real keep-alive HTTP/1.1
transport and a mock for tests."""

from gateway.transport.base import Headers, Transport, UpstreamRequest, UpstreamResponse
from gateway.transport.mock import MockTransport
from gateway.transport.pool import Http1Transport, UpstreamPool

__all__ = [
    "Headers",
    "Http1Transport",
    "MockTransport",
    "Transport",
    "UpstreamPool",
    "UpstreamRequest",
    "UpstreamResponse",
]
