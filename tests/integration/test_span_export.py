"""The gateway's span export queue (adapters.span_export.ExportPipe) with its real child
process: what was queued is exported there, what found the queue full is dropped and
counted; its `requests` session reads the environment once (`settle_environment`): each
export then carries what `requests` would have read from the environment at every post."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource

from adapters.span_export import FRAME, ExportPipe, settle_environment
from contract.spans import SpanRecord


def record(name: str) -> SpanRecord:
    return (name, 1, 7, 8, 0, False, 1, "", 1, 2, {"k": "v"}, 0, "", (), ())


def test_the_export_queue_is_bounded_and_counts_its_drops(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A real child process with the console exporter: what was queued is exported by it
    (its stdout is this process's), what found the queue full is counted, not kept."""
    pipe = ExportPipe("console", Resource({"service.name": "t"}), "scope", max_queue=3, delay_s=60)
    try:
        for i in range(5):  # the sender thread waits 60 s or for a full batch: nothing leaves
            pipe.emit(record(f"span-{i}"))
        assert pipe.dropped == 2
    finally:
        pipe.close()
    out = capfd.readouterr().out
    assert [f'"span-{i}"' in out for i in range(5)] == [True, True, True, False, False]
    assert pipe.dropped == 2


def test_batches_cross_in_frames_and_every_span_is_exported(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """More records than a frame holds, in batches of 100 on a timer: each crosses in frames
    (adapters.span_export.FRAME) and the child exports every one, once."""
    count = 3 * FRAME + 17
    pipe = ExportPipe(
        "console",
        Resource({"service.name": "t"}),
        "scope",
        max_queue=4 * FRAME,
        delay_s=0.05,
        max_batch=100,
    )
    try:
        for i in range(count):
            pipe.emit(record(f"span-{i}"))
    finally:
        pipe.close()
    out = capfd.readouterr().out
    assert pipe.dropped == 0
    assert [out.count(f'"span-{i}"') for i in range(count)] == [1] * count


URL = "http://collector.example:4318/v1/traces"


def effective(exporter: OTLPSpanExporter) -> tuple[object, ...]:
    """What a post of this exporter's session would use: proxies, verify, auth header."""
    session = exporter._client._transport._session  # type: ignore[attr-defined]
    settings = session.merge_environment_settings(URL, {}, None, None, None)
    prepared = session.prepare_request(requests.Request("POST", URL, data=b"x"))
    return settings["proxies"], settings["verify"], prepared.headers.get("Authorization")


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTP_PROXY": "http://proxy.example:3128", "REQUESTS_CA_BUNDLE": "/etc/ca.pem"},
        {"HTTP_PROXY": "http://proxy.example:3128", "NO_PROXY": "collector.example"},
        {"CURL_CA_BUNDLE": "/etc/curl.pem", "ALL_PROXY": "socks5://proxy.example:1080"},
        {"NETRC": "netrc"},
    ],
)
def test_the_same_settings_as_reading_the_environment_each_post(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector.example login user password secret\n")
    netrc.chmod(0o600)
    for name, value in env.items():
        monkeypatch.setenv(name, str(netrc) if name == "NETRC" else value)
    reading = OTLPSpanExporter(endpoint=URL)
    settled = OTLPSpanExporter(endpoint=URL)
    settle_environment(settled, os.environ)
    assert settled._client._transport._session.trust_env is False  # type: ignore[attr-defined]
    assert effective(settled) == effective(reading)
    if "HTTP_PROXY" in env and "NO_PROXY" not in env:
        assert effective(settled)[0] == {"http": env["HTTP_PROXY"]}
    if "NETRC" in env:
        assert effective(settled)[2] is not None  # the netrc's login, read once


def test_a_session_with_trust_env_off_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    exporter = OTLPSpanExporter(endpoint=URL)
    session = exporter._client._transport._session  # type: ignore[attr-defined]
    session.trust_env = False
    settle_environment(exporter, {"REQUESTS_CA_BUNDLE": "/etc/ca.pem"})
    assert session.proxies == {}
    assert session.verify is True
