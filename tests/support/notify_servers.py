"""Real local servers the notification channels talk to, each able to fail on purpose:

- `SmtpCapture`: an aiosmtpd SMTP server that keeps every mail (parsed) it accepts;
- `PushService`: an HTTP push endpoint that checks the VAPID JWT and decrypts each request with
  the subscription's private key and auth secret (RFC 8291, via http_ece);
- `TelegramApi`: an HTTP server that speaks the Bot API's `sendMessage`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.servers import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- SMTP --------------------------------------------------------------------------------------


@dataclass
class SmtpCapture:
    """Accepts mail on 127.0.0.1; `fail` decides per attempt: None, or an SMTP error reply."""

    port: int = field(default_factory=free_port)
    mails: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0
    fail: Callable[[int, EmailMessage], str | None] = lambda _n, _m: None
    on_mail: Callable[[EmailMessage], None] | None = None
    delay: float = 0.0  # seconds each DATA takes (a slow relay), so a kill lands mid-batch
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        mail = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        with self._lock:
            self.attempts += 1
            refusal = self.fail(self.attempts, mail)
            if refusal is None:
                self.mails.append(mail)
        if refusal is None and self.on_mail is not None:
            self.on_mail(mail)
        return refusal or "250 OK"

    def start(self) -> SmtpCapture:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.mails if m["To"] == address]


def parts(mail: EmailMessage) -> tuple[str, str]:
    """The text and the HTML part of a notification e-mail."""
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()  # type: ignore[attr-defined]


# -- Web Push ----------------------------------------------------------------------------------


@dataclass
class Browser:
    """A browser's push subscription: its keys stay here, the service only relays ciphertext."""

    service: PushService
    name: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def endpoint(self) -> str:
        return f"{self.service.url}/push/{self.name}"

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
            "expirationTime": None,
        }

    def received(self) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.service.received if r["name"] == self.name]


@dataclass
class PushService:
    port: int = field(default_factory=free_port)
    vapid_public_key: str = ""
    browsers: dict[str, Browser] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    # Per attempt: None (201 Created), or the HTTP status to answer instead.
    fail: Callable[[int, str], int | None] = lambda _n, _name: None
    gone: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def browser(self, name: str) -> Browser:
        self.browsers[name] = Browser(self, name)
        return self.browsers[name]

    def handle(self, path: str, headers: Any, body: bytes) -> int:
        name = path.rsplit("/", 1)[-1]
        with self._lock:
            self.attempts += 1
            attempt = self.attempts
        if name in self.gone:
            return 410
        refusal = self.fail(attempt, name)
        if refusal is not None:
            return refusal
        browser = self.browsers.get(name)
        if browser is None:
            return 404
        try:
            claims = self._check_vapid(headers.get("Authorization", ""))
            plain = http_ece.decrypt(
                body,
                private_key=browser.private_key,
                auth_secret=browser.auth,
                version=headers.get("Content-Encoding", ""),
            )
        except Exception as exc:
            self.problems.append(f"{type(exc).__name__}: {exc}")
            return 400
        with self._lock:
            self.received.append(
                {
                    "name": name,
                    "payload": json.loads(plain),
                    "claims": claims,
                    "ttl": headers.get("TTL"),
                    "topic": headers.get("Topic"),
                }
            )
        return 201

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        """RFC 8292: `vapid t=<JWT signed ES256>, k=<the application server's public key>`."""
        scheme, _, rest = authorization.partition(" ")
        assert scheme.lower() == "vapid", authorization
        params = dict(part.strip().split("=", 1) for part in rest.split(","))
        assert params["k"] == self.vapid_public_key, "signed with another key"
        point = b64url_decode(params["k"])
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        claims: dict[str, Any] = jwt.decode(
            params["t"], public, algorithms=["ES256"], audience=self.url
        )
        assert claims["sub"].startswith("mailto:")
        return claims

    def start(self) -> PushService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                status = service.handle(self.path, self.headers, self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# -- Telegram ----------------------------------------------------------------------------------


@dataclass
class TelegramApi:
    token: str
    port: int = field(default_factory=free_port)
    messages: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail: Callable[[int], int | None] = lambda _n: None
    blocked: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, chat_id: str) -> list[str]:
        with self._lock:
            return [m["text"] for m in self.messages if str(m["chat_id"]) == chat_id]

    def handle(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != f"/bot{self.token}/sendMessage":
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        request = json.loads(body)
        with self._lock:
            self.attempts += 1
            refusal = self.fail(self.attempts)
        if refusal == 429:
            return 429, {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            }
        if refusal is not None:
            return refusal, {"ok": False, "error_code": refusal, "description": "Server error"}
        if str(request["chat_id"]) in self.blocked:
            return 403, {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            }
        with self._lock:
            self.messages.append(request)
        return 200, {"ok": True, "result": {"message_id": len(self.messages)}}

    def start(self) -> TelegramApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                status, answer = api.handle(self.path, self.rfile.read(length))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def vapid_pair() -> tuple[str, str]:
    """A VAPID key pair as `parley push keys` prints it (raw private scalar, public point)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(private), b64url(public)
