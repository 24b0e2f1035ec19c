"""Build the running parts from Settings (and close them again), in one place."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

from adapters.artifact_router import ArtifactRouter
from adapters.bento_archive import read_bento
from adapters.bentoml_local import LocalBentoServers
from adapters.local_artifacts import LocalArtifactStore
from adapters.registry_tracing import TracedRolloutObserver, TracedStore
from adapters.sql.database_url import parse_database_url
from adapters.sql.leadership import open_leadership
from adapters.sql.routes import changes_heard
from adapters.sql.sessions import SqlSessions
from adapters.sql.store import SqlStore, open_metadata_store
from adapters.sql.tokens import revocations_heard
from adapters.sql.webhooks import SqlWebhooks
from adapters.telemetry import Tracing
from adapters.webhook_http import HttpWebhookSender
from modelyard.settings import Settings
from registry.auth import TokenAuthority
from registry.catalog.registration import Registration
from registry.catalog.service import Registry, utc_now
from registry.catalog.sweeper import Sweeper
from registry.experiments.service import BanditLoop, ExperimentService, ReadLoop
from registry.ports import ArtifactStore
from registry.rollouts.service import RolloutObserver, RolloutScheduler, RolloutService
from registry.serving.deployments import Deployments
from registry.serving.feed import RouteFeed
from registry.web.metrics import RegistryMetrics
from registry.webhooks.delivery import WebhookWorker, lease_for

SIGNING_KEY_FILE = "signing.key"


@dataclass
class Components:
    registry: Registry
    authority: TokenAuthority
    artifacts: ArtifactStore
    registration: Registration
    deployments: Deployments | None
    feed: RouteFeed
    rollouts: RolloutService
    rollout_scheduler: RolloutScheduler
    experiments: ExperimentService
    webhooks: SqlWebhooks
    sessions: SqlSessions


def signing_key(data_dir: Path) -> bytes:
    """The key that signs local download links: made once, kept in the data folder (0600)."""
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = path.open("x")
            path.chmod(0o600)
            with fd:
                fd.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _local_store(settings: Settings) -> LocalArtifactStore:
    data = Path(settings.data_dir).resolve()
    return LocalArtifactStore(data, signing_key(data), settings.base_url)


async def _artifact_store(settings: Settings, stack: contextlib.AsyncExitStack) -> ArtifactStore:
    """Uploads go to S3 when `artifact_url` names a bucket, else to local files; versions
    stored locally before a move to S3 stay readable."""
    local = _local_store(settings)
    if not settings.artifact_url:
        return ArtifactRouter(local, {"file": local})
    # imported here: aiobotocore costs ~0.1-0.2 s at every start that does not use S3
    from adapters.s3_artifacts import open_s3_store

    s3 = await open_s3_store(
        settings.artifact_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
    stack.push_async_callback(s3.close)
    return ArtifactRouter(s3, {"file": local, "s3": s3})


@contextlib.asynccontextmanager
async def open_components(
    settings: Settings,
    role: str,
    tracing: Tracing | None = None,
    metrics: RegistryMetrics | None = None,
) -> AsyncIterator[Components]:
    """`metrics`: the app's RegistryMetrics (the rollout controller and the sweeper report
    there)."""
    metrics = RegistryMetrics() if metrics is None else metrics
    async with contextlib.AsyncExitStack() as stack:
        raw = await open_metadata_store(
            settings.metadata_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        stack.push_async_callback(raw.close)
        store = raw
        observer: RolloutObserver = metrics
        if tracing is not None:  # spans around store operations, the controller's ticks
            system = parse_database_url(settings.metadata_url).kind
            store = cast(SqlStore, TracedStore(raw, tracing, system))
            observer = TracedRolloutObserver(metrics, tracing)
        registry = Registry(store, clock=utc_now)
        artifacts = await _artifact_store(settings, stack)
        data = Path(settings.data_dir)
        registration = Registration(
            registry, artifacts, read_bento, data / "uploads", settings.max_artifact_bytes
        )
        sweeper = Sweeper(
            artifacts,
            store,
            registration.spool_dir,
            min_age_s=settings.sweep_min_age_s,
            interval_s=settings.sweep_interval_s,
            on_swept=metrics.swept,
        )
        sweeper.start()
        stack.push_async_callback(sweeper.close)
        deployer = settings.deployer or ("local" if role == "serve" else "none")
        deployments = None
        if deployer == "local":
            servers = LocalBentoServers(data / "servers", artifacts)
            deployments = Deployments(registry, servers)
            stack.push_async_callback(deployments.close)
            deployments.start()
        rollouts = RolloutService(registry, store, observer)
        experiments = ExperimentService(registry, store)
        controller = RolloutScheduler(
            rollouts,
            open_leadership(settings.metadata_url),
            utc_now,
            settings.rollout_tick_s,
            keep_windows=timedelta(hours=settings.windows_retention_h),
            jobs=[
                BanditLoop(experiments, settings.bandit_rebalance_s),
                ReadLoop(experiments, settings.experiment_read_s),
            ],
        )
        controller.start()
        stack.push_async_callback(controller.close)
        webhooks = SqlWebhooks(raw.driver)
        sender = HttpWebhookSender(settings.webhook_timeout_s)
        stack.push_async_callback(sender.close)
        lease_s = lease_for(settings.webhook_timeout_s)
        worker = WebhookWorker(webhooks, sender, utc_now, lease_s=lease_s)
        registry.subscribe(worker.wake)
        worker.start()
        stack.push_async_callback(worker.close)
        authority = TokenAuthority(store, clock=utc_now)
        await stack.enter_async_context(revocations_heard(raw.driver, authority.forget))
        feed = RouteFeed(registry, deployments, settings.route_poll_s)
        stack.push_async_callback(feed.close)
        await stack.enter_async_context(changes_heard(raw.driver, feed.poke))
        yield Components(
            registry=registry,
            authority=authority,
            artifacts=artifacts,
            registration=registration,
            deployments=deployments,
            feed=feed,
            rollouts=rollouts,
            rollout_scheduler=controller,
            experiments=experiments,
            webhooks=webhooks,
            sessions=SqlSessions(raw.driver),
        )
