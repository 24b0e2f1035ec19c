"""The gateway's span export queue (adapters.span_export.ExportPipe) with its real child
process: what was queued is exported there, what found the queue full is dropped and
counted; its `requests` session reads the environment once (`settle_environment`): each
export then carries what `requests` would have read from the environment at every post."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource

from adapters.span_export import FRAME, ExportPipe, PreparedPosts, prepare_posts, settle_environment
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


def _capture() -> tuple[Any, list[tuple[str, dict[str, str], bytes]]]:
    """A local OTLP/HTTP receiver keeping each request (path, headers, body); the first
    answer sets a cookie when the path ends in /cookie."""
    seen: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            host, port = self.server.server_address[:2]
            assert headers.pop("host") == f"{host!s}:{port}"
            seen.append((self.path, headers, body))
            self.send_response(200)
            if self.path.endswith("/cookie") and len(seen) == 1:
                self.send_header("set-cookie", "sticky=a1; Path=/")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    return server, seen


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/cookie"])
def test_prepared_posts_send_what_the_transport_sends(path: str) -> None:
    """`prepare_posts`: the same requests (path, headers, body) as the exporter's own
    transport, post after post; a cookie the collector sets is sent back, as `requests`
    does."""
    bodies = [b"first", b"a longer second body", b"3"]
    requests_seen = []
    for prepared in (False, True):
        server, seen = _capture()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}{path}"
            exporter = OTLPSpanExporter(endpoint=url, headers={"x-tenant": "t1"})
            settle_environment(exporter, {})
            if prepared:
                prepare_posts(exporter)
                assert isinstance(exporter._client._transport, PreparedPosts)  # type: ignore[attr-defined]
            for body in bodies:
                assert exporter._client.export(body).success  # type: ignore[attr-defined]
        finally:
            server.shutdown()
            server.server_close()
        requests_seen.append(seen)
    assert requests_seen[0] == requests_seen[1]
    assert [body for _, _, body in requests_seen[1]] == bodies
    assert all(headers["x-tenant"] == "t1" for _, headers, _ in requests_seen[1])
    if path.endswith("/cookie"):
        assert [h.get("cookie") for _, h, _ in requests_seen[1]] == [None, "sticky=a1", "sticky=a1"]


def test_prepared_posts_leave_other_sessions_alone() -> None:
    """Not for a session that still reads the environment, nor one with an auth hook."""
    reading = OTLPSpanExporter(endpoint=URL)
    prepare_posts(reading)
    assert not isinstance(reading._client._transport, PreparedPosts)  # type: ignore[attr-defined]
    hooked = OTLPSpanExporter(endpoint=URL)
    settle_environment(hooked, {})
    hooked._client._transport._session.auth = requests.auth.HTTPDigestAuth("u", "p")  # type: ignore[attr-defined]
    prepare_posts(hooked)
    assert not isinstance(hooked._client._transport, PreparedPosts)  # type: ignore[attr-defined]
