"""The console's cookies behind a TLS-terminating proxy, over raw HTTP against real processes:
`Secure` when a trusted peer (`MODELYARD_FORWARDED_ALLOW_IPS`, by default this host's loopback
address) says `X-Forwarded-Proto: https`; the header ignored from any other peer (issue 18: the
console cookie never got `Secure` behind a TLS proxy). The other peer is 127.0.0.2: the same
machine, another loopback address, which the default does not trust."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import Factory

pytestmark = pytest.mark.e2e

TRUSTED, OTHER = "127.0.0.1", "127.0.0.2"


@dataclass
class Answer:
    status: int
    cookies: dict[str, str]  # name -> the whole Set-Cookie line


def send(port: int, source: str, raw: bytes) -> Answer:
    """One request with `Connection: close` from the address `source`; read until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(head.split(" ", 2)[1])
    found = re.findall(r"^set-cookie: *((\w+)=[^\r\n]*)", head, re.M | re.I)
    return Answer(status, {name: line for line, name in found})


def secure(cookie_line: str) -> bool:
    return any(part.strip().lower() == "secure" for part in cookie_line.split(";"))


def login(port: int, source: str, token: str, proto: str | None) -> tuple[str, str]:
    """The login form, then the login: the Set-Cookie lines of the form's CSRF cookie and of the
    session cookie."""
    forwarded = f"X-Forwarded-Proto: {proto}\r\n" if proto else ""
    form = send(
        port,
        source,
        f"GET /ui/login HTTP/1.1\r\nHost: t\r\n{forwarded}Connection: close\r\n\r\n".encode(),
    )
    assert form.status == 200, form
    csrf_line = form.cookies["modelyard_login"]
    csrf = csrf_line.split(";", 1)[0].split("=", 1)[1]
    body = urlencode({"token": token, "csrf_token": csrf, "next": "/ui"}).encode()
    posted = send(
        port,
        source,
        (
            "POST /ui/login HTTP/1.1\r\nHost: t\r\n"
            f"{forwarded}Cookie: modelyard_login={csrf}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body,
    )
    assert posted.status == 303, posted
    return csrf_line, posted.cookies["modelyard_console"]


def secure_cookies(port: int, source: str, token: str, proto: str | None) -> tuple[bool, bool]:
    csrf, session = login(port, source, token, proto)
    return secure(csrf), secure(session)


@pytest.mark.parametrize("role", ["registry", "serve"])
def test_cookies_are_secure_only_when_a_trusted_proxy_says_https(
    server: Factory, admin_token: str, role: str
) -> None:
    """`serve` hands the console's connections from its fast HTTP server to uvicorn: the peer
    is still the one that connected."""
    proc = server(role)
    proc.start()
    port = proc.port
    assert secure_cookies(port, TRUSTED, admin_token, "https") == (True, True)
    assert secure_cookies(port, TRUSTED, admin_token, None) == (False, False)
    assert secure_cookies(port, TRUSTED, admin_token, "http") == (False, False)
    assert secure_cookies(port, OTHER, admin_token, "https") == (False, False)  # ignored


def test_the_trusted_peers_are_the_configured_ones(server: Factory, admin_token: str) -> None:
    proc = server(MODELYARD_FORWARDED_ALLOW_IPS=f"{OTHER}/32, 10.0.0.0/8")
    proc.start()
    assert secure_cookies(proc.port, OTHER, admin_token, "https") == (True, True)
    assert secure_cookies(proc.port, TRUSTED, admin_token, "https") == (False, False)
