"""The one place that maps errors to HTTP: `{"error_code", "message", "field"}` bodies."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from registry import errors

log = logging.getLogger("modelyard.http")

STATUS: Final[dict[type[errors.RegistryError], int]] = {
    errors.InvalidInput: 400,
    errors.BadArtifact: 422,
    errors.PayloadTooLarge: 413,
    errors.ArtifactCorrupt: 502,
    errors.DeployError: 502,
    errors.InsufficientStorage: 507,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.PreconditionFailed: 412,
    errors.IdempotencyKeyReused: 422,
    errors.Conflict: 409,
    errors.StoreUnavailable: 503,
}

HTTP_CODES: Final = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error_code: str
    message: str
    field: str | None = None


def status_of(exc: errors.RegistryError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def registry_error(
    request: Request[Any, Any, Any], exc: errors.RegistryError
) -> Response[ErrorBody]:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(
        ErrorBody(exc.code, exc.message, exc.field), status_code=status, headers=headers
    )


def validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    if not extra:
        return Response(
            ErrorBody("INVALID_PARAMETER_VALUE", f"malformed request: {exc.detail}"),
            status_code=400,
        )
    first = extra[0] if isinstance(extra[0], dict) else {}
    message = str(first.get("message", exc.detail))
    field = str(first.get("key") or "") or None
    for pattern in (_UNKNOWN_FIELD, _MISSING_FIELD):
        if (m := pattern.search(message)) is not None:
            field = m.group(1)
    if field and field.endswith("[...]"):
        field = field[:-5]
    source = first.get("source")
    where = f" (in {source} `{field}`)" if field and source else ""
    return Response(ErrorBody("INVALID_PARAMETER_VALUE", message + where, field), status_code=400)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return Response(
        ErrorBody(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(
        ErrorBody("INTERNAL_ERROR", "internal error; see the server log"), status_code=500
    )


EXCEPTION_HANDLERS: Final = {
    errors.RegistryError: registry_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
