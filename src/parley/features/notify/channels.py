"""The three channels: e-mail (SMTP, aiosmtplib), Web Push (pywebpush, VAPID), Telegram (Bot API).

Each turns one delivery's payload into a send and answers an `Outcome`: sent, retry later,
failed for good (dead-lettered at once), or gone (the address no longer exists). Errors kept
for the record never carry a credential: no Telegram URL (it holds the bot token), no push
endpoint (a capability URL), no SMTP password.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import aiosmtplib
import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from parley.core.notify import Channel
from parley.settings import Settings
from parley.storage.notify import Delivery, NotifyStore

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    error: str | None = None
    retry_after: float | None = None


class Sender(Protocol):
    channel: Channel

    async def send(self, delivery: Delivery) -> Result: ...

    async def close(self) -> None: ...


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


# -- e-mail ------------------------------------------------------------------------------------


class EmailSender:
    channel = Channel.EMAIL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            keep_trailing_newline=True,
        )
        _, sender = parseaddr(settings.smtp_from)
        self._domain = sender.rpartition("@")[2] or "localhost"
        self._tls: ssl.SSLContext | None = None
        if settings.smtp_tls != "none":
            self._tls = ssl.create_default_context(cafile=settings.smtp_ca_file or None)

    def compose(self, delivery: Delivery) -> EmailMessage:
        """The e-mail for a delivery: text and HTML parts, List-Unsubscribe, a stable Message-ID."""
        payload = delivery.payload
        context = {**payload, "more": max(0, payload.get("count", 0) - len(payload["items"]))}
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = payload["to"]
        message["Subject"] = payload["title"]
        message["Date"] = formatdate(localtime=False)
        # The same notification always has the same Message-ID: should a crash make the worker
        # send it again, mail systems see one message, not two.
        key = f"{delivery.user_id}.{delivery.subject}.{delivery.channel}".replace(":", "-")
        message["Message-ID"] = f"<parley.{key}@{self._domain}>"
        message["List-Unsubscribe"] = f"<{payload['unsubscribe_url']}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        message["Auto-Submitted"] = "auto-generated"
        message["X-Parley-Notification"] = delivery.subject
        message.set_content(self._env.get_template("email.txt").render(context))
        message.add_alternative(
            self._env.get_template("email.html").render(context), subtype="html"
        )
        return message

    async def send(self, delivery: Delivery) -> Result:
        settings = self.settings
        try:
            await aiosmtplib.send(
                self.compose(delivery),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                use_tls=settings.smtp_tls == "tls",
                start_tls=settings.smtp_tls == "starttls",
                tls_context=self._tls,
                timeout=settings.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            permanent = all(500 <= code < 600 for code in codes)
            return Result(Outcome.FAILED if permanent else Outcome.RETRY, _short(exc))
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            return Result(Outcome.FAILED if permanent else Outcome.RETRY, f"SMTP {exc.code}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Result(Outcome.RETRY, _short(exc))
        return Result(Outcome.SENT)

    async def close(self) -> None:
        return None


# -- Web Push ----------------------------------------------------------------------------------


class PushSender:
    channel = Channel.PUSH

    def __init__(self, settings: Settings, store: NotifyStore) -> None:
        self.settings = settings
        self.store = store
        self._vapid = Vapid.from_string(settings.push_vapid_private_key)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, delivery: Delivery) -> Result:
        subscription = await self.store.get_subscription(int(delivery.target))
        if subscription is None:
            return Result(Outcome.GONE, "the subscription was removed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        payload = delivery.payload
        data = json.dumps(
            {
                "title": payload["title"],
                "body": payload["text"],
                "url": payload["url"],
                "tag": payload["tag"],
                "count": payload.get("count", 1),
            }
        )
        # A newer notification with the same Topic replaces one the browser has not fetched yet.
        topic = hashlib.sha256(payload["tag"].encode()).hexdigest()[:32]
        try:
            await webpush_async(
                subscription_info={
                    "endpoint": subscription.endpoint,
                    "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                },
                data=data,
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self.settings.push_vapid_subject},
                ttl=self.settings.push_ttl_seconds,
                timeout=10,
                headers={"Topic": topic, "Urgency": "normal"},
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.status_code
            if status in (404, 410):
                await self.store.delete_subscription(subscription.id)
                return Result(Outcome.GONE, f"push service answered {status}: subscription gone")
            if status is not None and 400 <= status < 500 and status != 429:
                return Result(Outcome.FAILED, f"push service refused it: HTTP {status}")
            retry_after = _seconds(exc.retry_after)
            return Result(Outcome.RETRY, f"push service answered HTTP {status}", retry_after)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Result(Outcome.RETRY, f"push service unreachable: {type(exc).__name__}")
        return Result(Outcome.SENT)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


# -- Telegram ----------------------------------------------------------------------------------


class TelegramError(Exception):
    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _HideToken(logging.Filter):
    """httpx logs each request's URL (INFO); a Bot API URL carries the bot's token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            record.msg = str(record.msg).replace(self.token, "<bot-token>")
            if record.args:
                record.args = tuple(
                    str(a).replace(self.token, "<bot-token>") if self.token in str(a) else a
                    for a in (record.args if isinstance(record.args, tuple) else (record.args,))
                )
        return True


class TelegramBot:
    """The Bot API's `sendMessage`, at PARLEY_TELEGRAM_API_URL (tests run a local one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        if settings.telegram_bot_token:
            httpx_log = logging.getLogger("httpx")
            if not any(
                isinstance(f, _HideToken) and f.token == settings.telegram_bot_token
                for f in httpx_log.filters
            ):
                httpx_log.addFilter(_HideToken(settings.telegram_bot_token))

    @property
    def configured(self) -> bool:
        return bool(self.settings.telegram_bot_token)

    async def send_message(self, chat_id: str, text: str) -> None:
        """Send `text`; raises TelegramError (never showing the URL, which holds the token)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.telegram_timeout_seconds)
        url = (
            f"{self.settings.telegram_api_url.rstrip('/')}/bot"
            f"{self.settings.telegram_bot_token}/sendMessage"
        )
        try:
            response = await self._client.post(
                url,
                json={"chat_id": chat_id, "text": text[:4096], "disable_web_page_preview": True},
            )
        except httpx.HTTPError as exc:
            raise TelegramError(f"Telegram unreachable: {type(exc).__name__}", status=0) from None
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and body.get("ok"):
            return
        parameters = body.get("parameters") or {}
        raise TelegramError(
            f"Telegram answered {response.status_code}: {str(body.get('description', ''))[:200]}",
            status=response.status_code,
            retry_after=parameters.get("retry_after"),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class TelegramSender:
    channel = Channel.TELEGRAM

    def __init__(self, bot: TelegramBot) -> None:
        self.bot = bot

    async def send(self, delivery: Delivery) -> Result:
        payload = delivery.payload
        try:
            await self.bot.send_message(payload["chat_id"], telegram_text(payload))
        except TelegramError as exc:
            if exc.status in (400, 403):
                # Blocked by the user, or the chat is gone: nobody there to tell.
                return Result(Outcome.GONE, str(exc))
            return Result(Outcome.RETRY, str(exc), exc.retry_after)
        return Result(Outcome.SENT)

    async def close(self) -> None:
        return None


def telegram_text(payload: dict[str, Any]) -> str:
    lines = [payload["title"], ""]
    for item in payload["items"]:
        where = f" in {item['conversation']}" if item.get("conversation") else ""
        lines.append(f"{item['sender']}{where}: {item['body']}")
    more = payload.get("count", 0) - len(payload["items"])
    if more > 0:
        lines.append(f"... and {more} more.")
    lines += ["", payload["url"]]
    return "\n".join(lines)
