"""The one place that maps errors to HTTP, for the three surfaces of the registry's web layer:

    surface      body                                    RegistryError's status, code
    /api/v1      {"error_code", "message", "field"}      `ERRORS[...].status`, the error's own code
    MLflow       {"error_code", "message"}               `ERRORS[...].mlflow`: MLflow's pair
    console      an HTML page (text for its refreshes)   `ERRORS[...].status` (console/render.py)

A class not in `ERRORS` takes the row of its nearest ancestor that is (500 for none). Framework
errors: a malformed request (ValidationException) is a 400 `INVALID_PARAMETER_VALUE`; other
HTTPExceptions keep their status, with the code of `HTTP_CODES`; anything else is a logged
500 `INTERNAL_ERROR` whose body says nothing of it.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final, NamedTuple

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from registry import errors
from registry.web.mlflow.messages import ErrorBody as MlflowErrorBody

log = logging.getLogger("modelyard.http")

Req = Request[Any, Any, Any]
INTERNAL: Final = "INTERNAL_ERROR"
INVALID: Final = "INVALID_PARAMETER_VALUE"
CONFLICT: Final = (409, "RESOURCE_CONFLICT")
MLFLOW_INTERNAL: Final = (500, INTERNAL)
MLFLOW_TOO_LARGE: Final = (413, INVALID)


class Row(NamedTuple):
    status: int  # /api/v1 and the console
    mlflow: tuple[int, str]  # MLflow's (status, error_code)


ERRORS: Final[dict[type[errors.RegistryError], Row]] = {
    errors.InvalidInput: Row(400, (400, INVALID)),
    errors.BadArtifact: Row(422, (400, INVALID)),
    # MLflow has no code of its own for these: the nearest of its ErrorCode enum, and the
    # status /api/v1 answers (a too-large request is the client's error, never a 500)
    errors.PayloadTooLarge: Row(413, MLFLOW_TOO_LARGE),
    errors.ArtifactCorrupt: Row(502, (502, "DATA_LOSS")),
    errors.DeployError: Row(502, (502, "INVALID_STATE")),
    errors.InsufficientStorage: Row(507, (507, "RESOURCE_EXHAUSTED")),
    errors.Unauthenticated: Row(401, (401, "UNAUTHENTICATED")),
    errors.PermissionDenied: Row(403, (403, "PERMISSION_DENIED")),
    errors.NotFound: Row(404, (404, "RESOURCE_DOES_NOT_EXIST")),
    errors.PreconditionFailed: Row(412, CONFLICT),
    errors.AlreadyExists: Row(409, (400, "RESOURCE_ALREADY_EXISTS")),
    errors.IdempotencyKeyReused: Row(422, CONFLICT),
    errors.Conflict: Row(409, CONFLICT),
    errors.StoreUnavailable: Row(503, (503, "TEMPORARILY_UNAVAILABLE")),
}
UNMAPPED: Final = Row(500, MLFLOW_INTERNAL)

#: error_code of an HTTPException (routing, methods, body size) by its status
HTTP_CODES: Final = {
    400: INVALID,
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
#: who to authenticate as, on a 401
CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
MLFLOW_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer, Basic realm="modelyard"'}
#: when to try again, on a 503 (the store is unreachable, or a write waited past its lock timeout)
RETRY_LATER: Final = {"Retry-After": "1"}

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error_code: str
    message: str
    field: str | None = None


def row_of(exc: errors.RegistryError) -> Row:
    for cls in type(exc).__mro__:
        found = ERRORS.get(cls)
        if found is not None:
            return found
    return UNMAPPED


def status_of(exc: errors.RegistryError) -> int:
    """The status of /api/v1 and the console."""
    return row_of(exc).status


def _first_problem(exc: ValidationException) -> dict[str, Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    return extra[0] if extra and isinstance(extra[0], dict) else {}


# --- /api/v1 --------------------------------------------------------------------------------


def registry_error(request: Req, exc: errors.RegistryError) -> Response[ErrorBody]:
    status = status_of(exc)
    return Response(
        ErrorBody(exc.code, exc.message, exc.field),
        status_code=status,
        headers=CHALLENGE if status == 401 else RETRY_LATER if status == 503 else None,
    )


def validation_error(request: Req, exc: ValidationException) -> Response[ErrorBody]:
    if not (isinstance(exc.extra, list) and exc.extra):
        return Response(ErrorBody(INVALID, f"malformed request: {exc.detail}"), status_code=400)
    first = _first_problem(exc)
    message = str(first.get("message", exc.detail))
    field = str(first.get("key") or "") or None
    for pattern in (_UNKNOWN_FIELD, _MISSING_FIELD):
        if (m := pattern.search(message)) is not None:
            field = m.group(1)
    if field and field.endswith("[...]"):
        field = field[:-5]
    source = first.get("source")
    where = f" (in {source} `{field}`)" if field and source else ""
    return Response(ErrorBody(INVALID, message + where, field), status_code=400)


def http_error(request: Req, exc: HTTPException) -> Response[ErrorBody]:
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return Response(
        ErrorBody(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def unexpected_error(request: Req, exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(ErrorBody(INTERNAL, "internal error; see the server log"), status_code=500)


REST_HANDLERS: Final[ExceptionHandlersMap] = {
    errors.RegistryError: registry_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}


# --- the MLflow dialect ---------------------------------------------------------------------


def mlflow_error(request: Req, exc: errors.RegistryError) -> Response[MlflowErrorBody]:
    status, code = row_of(exc).mlflow
    headers = MLFLOW_CHALLENGE if status == 401 else RETRY_LATER if status == 503 else None
    return Response(MlflowErrorBody(code, exc.message), status_code=status, headers=headers)


def mlflow_validation_error(request: Req, exc: ValidationException) -> Response[MlflowErrorBody]:
    first = _first_problem(exc)
    detail = str(first.get("message", exc.detail)) if first else ""
    key = str(first.get("key", "")) if first else ""
    message = f"invalid request: {detail or exc.detail}" + (f" (`{key}`)" if key else "")
    return Response(MlflowErrorBody(INVALID, message), status_code=400)


def mlflow_http_error(request: Req, exc: HTTPException) -> Response[MlflowErrorBody]:
    if exc.status_code == MLFLOW_TOO_LARGE[0]:  # a body over the limit: as PayloadTooLarge
        code = MLFLOW_TOO_LARGE[1]
    else:
        fallback = INTERNAL if exc.status_code >= 500 else "BAD_REQUEST"
        code = HTTP_CODES.get(exc.status_code, fallback)
    return Response(
        MlflowErrorBody(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


#: Anything else falls through to REST_HANDLERS' `Exception` (the same body, no `field`).
MLFLOW_HANDLERS: Final[ExceptionHandlersMap] = {
    errors.RegistryError: mlflow_error,
    ValidationException: mlflow_validation_error,
    HTTPException: mlflow_http_error,
}
