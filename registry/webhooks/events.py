"""Webhooks in MLflow 3's format, from modelyard's audit events. Pure.

A committed change appends audit events; the store turns each event that a webhook can see into
an outbox row per subscribed webhook in the same transaction (`outbox_event` decides what it
says), and a delivery worker posts the rows until they are acknowledged.

Wire format (MLflow 3, mlflow/webhooks/delivery.py): a JSON body
`{"entity", "action", "timestamp", "data"}` and the headers `X-MLflow-Delivery-Id`,
`X-MLflow-Timestamp` (unix seconds) and, with a secret, `X-MLflow-Signature:
v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`. The delivery id is fixed
per outbox row, so a retried delivery carries the same id and receivers can drop repeats.

Events: MLflow's registered_model.created, model_version.created, model_version_tag.set|deleted,
model_version_alias.created|deleted, plus modelyard's model_version_stage.transitioned (MLflow 3
has no stage event; its name follows the same entity.action pattern).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any, Final

import msgspec

from registry.catalog.domain import AuditEvent

SIGNATURE_HEADER: Final = "X-MLflow-Signature"
TIMESTAMP_HEADER: Final = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER: Final = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION: Final = "v1"

EVENTS: Final = (
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_stage.transitioned",
)

MAX_ATTEMPTS: Final = 10
FIRST_RETRY_S: Final = 1.0
MAX_RETRY_S: Final = 300.0


class Secret:
    """A webhook's signing secret: never shown by repr or str (so never in a log line)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class Webhook(msgspec.Struct, frozen=True):
    """A subscription, as shown to admins: it never holds the secret."""

    id: str
    name: str
    url: str
    events: list[str]
    status: str  # ACTIVE | DISABLED
    description: str
    created_at: datetime
    updated_at: datetime
    has_secret: bool = False


class OutboxEvent(msgspec.Struct, frozen=True):
    event: str  # entity.action
    payload: bytes  # the body to post, exactly as signed


class Due(msgspec.Struct, frozen=True):
    """One outbox row to (re)try now."""

    id: int
    delivery_id: str
    url: str
    secret: Secret
    payload: bytes
    attempts: int


class _Envelope(msgspec.Struct):
    entity: str
    action: str
    timestamp: str
    data: dict[str, Any]


_encoder = msgspec.json.Encoder()
_any = msgspec.json.Decoder(dict[str, Any])


def _side(raw: msgspec.Raw | None) -> dict[str, Any]:
    return {} if raw is None else _any.decode(raw)


def _data(ev: AuditEvent) -> tuple[str, dict[str, Any]] | None:
    """The MLflow event name and its `data` for one audit event, or None if none applies."""
    name, version = ev.model or "", str(ev.version) if ev.version is not None else ""
    before, after = _side(ev.before), _side(ev.after)
    match ev.action:
        case "model.create":
            return "registered_model.created", {
                "name": name,
                "tags": after.get("tags", {}),
                "description": after.get("description") or None,
            }
        case "version.create":
            return "model_version.created", {
                "name": name,
                "version": version,
                "source": after.get("source") or after.get("artifact_uri") or "",
                "run_id": after.get("run_id"),
                "tags": after.get("tags", {}),
                "description": after.get("description") or None,
            }
        case "version.tag.set":
            old, new = before.get("tags", {}), after.get("tags", {})
            changed = [k for k in sorted(new) if old.get(k) != new[k]]
            if not changed:
                return None
            return "model_version_tag.set", {
                "name": name,
                "version": version,
                "key": changed[0],
                "value": new[changed[0]],
            }
        case "version.tag.delete":
            gone = sorted(set(before.get("tags", {})) - set(after.get("tags", {})))
            if not gone:
                return None
            return "model_version_tag.deleted", {"name": name, "version": version, "key": gone[0]}
        case "alias.set":
            return "model_version_alias.created", {
                "name": name,
                "alias": ev.alias,
                "version": str(after.get("version")),
            }
        case "alias.delete":
            return "model_version_alias.deleted", {"name": name, "alias": ev.alias}
        case "version.stage":
            return "model_version_stage.transitioned", {
                "name": name,
                "version": version,
                "from_stage": before.get("stage"),
                "to_stage": after.get("stage"),
                "archive_existing_versions": bool(after.get("archive_existing", False)),
                "archived_by_version": (
                    str(after["archived_by_version"]) if "archived_by_version" in after else None
                ),
            }
    return None


def outbox_event(ev: AuditEvent) -> OutboxEvent | None:
    found = _data(ev)
    if found is None:
        return None
    event, data = found
    entity, action = event.split(".")
    body = _Envelope(entity=entity, action=action, timestamp=ev.at.isoformat(), data=data)
    return OutboxEvent(event=event, payload=_encoder.encode(body))


def sign(secret: str, delivery_id: str, timestamp: str, payload: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(due: Due, unix_seconds: int) -> dict[str, str]:
    stamp = str(unix_seconds)
    out = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: due.delivery_id,
        TIMESTAMP_HEADER: stamp,
    }
    if due.secret:
        out[SIGNATURE_HEADER] = sign(due.secret.reveal(), due.delivery_id, stamp, due.payload)
    return out


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4, ... capped at 5 min."""
    return float(min(FIRST_RETRY_S * 2 ** max(attempts - 1, 0), MAX_RETRY_S))


def should_retry(status: int | None) -> bool:
    """2xx is done; other answers and transport errors are tried again (until MAX_ATTEMPTS),
    except 4xx other than 408/429, which will not get better by waiting."""
    if status is None:
        return True
    return not (400 <= status < 500) or status in (408, 429)
