"""Structured logs: one JSON object per line (or plain text for a person at a terminal).

No credential reaches a line: every record passes `redact` first, whoever logged it (uvicorn
logs WebSocket paths with their query strings, exceptions quote URLs, `extra` fields carry
headers).
"""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

MASK = "[redacted]"
# Query parameters that carry a credential: stream tickets, widget sessions, tokens, identities.
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:ticket|session|token|access_token|identity|secret|password|key)=)[^&\s\"'#]+"
)
# Parley's own credentials by their prefixes (API token, ticket, widget session, identity secret).
_PREFIXED = re.compile(r"\b(pk|tk|vs|is)_[A-Za-z0-9_-]{16,}")
# user:password@ in any URL (database, Redis, webhook).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]*:[^\s/@]*@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# LogRecord attributes that are not `extra` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """`text` with every credential Parley knows the shape of replaced by [redacted]."""
    text = _QUERY_SECRET.sub(rf"\1{MASK}", text)
    text = _PREFIXED.sub(rf"\1_{MASK}", text)
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    return _BEARER.sub(rf"\1{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks credentials in the message, its arguments, `extra` fields and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what was given, masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure_logging(*, json_lines: bool, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if json_lines:
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our own access log has the route template and latency; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO; a Telegram Bot API URL holds the bot's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def redacted(url: str) -> str:
    """A database or Redis URL without its credentials, fit for a log line or a terminal."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}" if "@" in rest else url


def url_host(url: str) -> str:
    """Only the scheme and host of a URL, for a log line (webhook URLs can hold a secret)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}" if rest else "(invalid URL)"
