"""A local HTTP receiver that keeps every JSON body POSTed to it (webhooks, Alertmanager)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    url: str
    bodies: list[Any] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int = 200  # what the receiver answers


@contextmanager
def webhook_receiver() -> Iterator[Received]:
    """Serve on a free loopback port until the block ends."""
    received = Received(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            received.bodies.append(json.loads(self.rfile.read(length) or b"null"))
            received.paths.append(self.path)
            self.send_response(received.status)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
