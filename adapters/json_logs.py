"""Logs as JSON lines (stdlib logging), configured once at start (`MODELYARD_LOG_FORMAT`).

One object a line: `time` (UTC, RFC 3339 with milliseconds), `level`, `logger`, `message`, and
when known `trace_id` and `span_id` (of the span current where the line was logged, or given as
`extra`), `request_id`, `model` and `version` (from `extra={...}`, or the request id the
registry's middleware put in `REQUEST_ID`), and `exception` with the traceback.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from opentelemetry import trace

#: The request id of the API call being served (set by the registry's middleware).
REQUEST_ID: ContextVar[str | None] = ContextVar("modelyard_request_id", default=None)

EXTRA_FIELDS: Final = ("request_id", "model", "version", "trace_id", "span_id")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, int | str) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


def configure_logging(level: str, fmt: str) -> None:
    """One handler on the root logger (stderr): uvicorn's, modelyard's and the libraries'
    lines all go through it, in `fmt` ("json" or "text")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
