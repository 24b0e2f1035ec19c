"""A real HTTP endpoint that records webhook deliveries (a thread in the test process)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    status: int = 200  # what it answers; set to 5xx to make deliveries fail
    attempts: list[Delivery] = field(default_factory=list)  # every request, failed ones too
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Delivery]:
        """Deliveries answered 2xx, one per delivery id (retries of a delivered one dropped)."""
        seen: dict[str, Delivery] = {}
        with self.lock:
            for d in self.attempts:
                if d.headers.get("x-ok") == "1":
                    seen.setdefault(d.headers["x-mlflow-delivery-id"], d)
        return list(seen.values())

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.accepted()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(self.accepted())} of {count} deliveries after {timeout}s")


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # the answer leaves in more than one write

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.status
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-ok"] = "1" if 200 <= status < 300 else "0"
            with receiver.lock:
                receiver.attempts.append(Delivery(headers, body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
