"""REST: webhook subscriptions, MLflow 3's API (`/api/2.0/mlflow/webhooks`), admin only.

The secret given at creation signs every delivery; it is stored for that and never returned
(responses say only whether one is set) nor logged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, PathParameter

from registry.catalog.domain import Role
from registry.errors import InvalidInput
from registry.ports import WebhookStore
from registry.web.mlflow.messages import millis, page_offset, page_token
from registry.webhooks.events import EVENTS, Secret, Webhook

WebhooksDep = NamedDependency[WebhookStore]
STATUSES: Final = ("ACTIVE", "DISABLED")
MAX_LIST: Final = 1000


class EventSpec(msgspec.Struct, frozen=True):
    entity: str
    action: str


class CreateWebhookRequest(msgspec.Struct, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", max_length=2048)]
    events: Annotated[list[EventSpec], msgspec.Meta(min_length=1, max_length=50)]
    description: Annotated[str, msgspec.Meta(max_length=5000)] = ""
    secret: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    status: str = "ACTIVE"


class WebhookOut(msgspec.Struct, omit_defaults=True):
    webhook_id: str
    name: str
    url: str
    events: list[EventSpec]
    status: str
    description: str = ""
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0


class WebhookBody(msgspec.Struct):
    webhook: WebhookOut


class WebhookList(msgspec.Struct, omit_defaults=True):
    webhooks: list[WebhookOut] = []
    next_page_token: str = ""


class EmptyBody(msgspec.Struct):
    pass


def event_name(spec: EventSpec) -> str:
    """`{"entity": "MODEL_VERSION", "action": "CREATED"}` (MLflow's enum names) or lower case."""
    name = f"{spec.entity.lower()}.{spec.action.lower()}"
    if name not in EVENTS:
        raise InvalidInput(
            f"unknown webhook event {name!r}; known: {', '.join(EVENTS)}", field="events"
        )
    return name


def to_out(w: Webhook) -> WebhookOut:
    events = [EventSpec(*(part.upper() for part in e.split("."))) for e in w.events]
    return WebhookOut(
        webhook_id=w.id,
        name=w.name,
        url=w.url,
        events=events,
        status=w.status,
        description=w.description,
        creation_timestamp=millis(w.created_at),
        last_updated_timestamp=millis(w.updated_at),
    )


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    opt = {"role": Role.ADMIN}

    @post("/", status_code=200)
    async def create(
        self, webhooks: WebhooksDep, data: JSONBody[CreateWebhookRequest]
    ) -> WebhookBody:
        if data.status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
        now = datetime.now(UTC)
        webhook = Webhook(
            id=uuid.uuid4().hex,
            name=data.name,
            url=data.url,
            events=sorted({event_name(e) for e in data.events}),
            status=data.status,
            description=data.description,
            created_at=now,
            updated_at=now,
        )
        return WebhookBody(to_out(await webhooks.create_webhook(webhook, Secret(data.secret))))

    @get("/")
    async def list_webhooks(
        self,
        webhooks: WebhooksDep,
        max_results: FromQuery[int] = 100,
        page_token: FromQuery[str | None] = None,
    ) -> WebhookList:
        if not 0 < max_results <= MAX_LIST:
            raise InvalidInput(f"max_results must be 1-{MAX_LIST}", field="max_results")
        offset = page_offset(page_token)
        found = await webhooks.list_webhooks(offset, max_results + 1)
        more = len(found) > max_results
        token = page_token_of(offset + max_results) if more else ""
        return WebhookList([to_out(w) for w in found[:max_results]], token)

    @get("/{webhook_id:str}")
    async def get_webhook(
        self, webhooks: WebhooksDep, webhook_id: Annotated[str, PathParameter()]
    ) -> WebhookBody:
        return WebhookBody(to_out(await webhooks.get_webhook(webhook_id)))

    @delete("/{webhook_id:str}", status_code=200)
    async def delete_webhook(
        self, webhooks: WebhooksDep, webhook_id: Annotated[str, PathParameter()]
    ) -> EmptyBody:
        await webhooks.delete_webhook(webhook_id)
        return EmptyBody()


page_token_of = page_token
