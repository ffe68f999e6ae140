"""The HTTP/1.1 protocol uvicorn runs, plus a deadline for receiving request headers.

uvicorn's keep-alive timer stops at the first byte of a request, so a client trickling header
bytes (slowloris) could hold a connection forever. Every request here must finish its headers
within `PARLEY_HTTP_HEADER_TIMEOUT_SECONDS` of its first byte (or of the connection opening).

Every accepted socket also gets TCP_USER_TIMEOUT = `PARLEY_STREAM_SEND_TIMEOUT_SECONDS` (Linux):
a peer that takes none of our bytes for that long (it stopped reading, or vanished) has its
connection aborted by the kernel. Without it, a stream client that stops reading keeps its
socket, its task and its buffers forever: asyncio's `close()` waits for a flush that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_SECONDS = 10.0
SEND_TIMEOUT_SECONDS = 30.0


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT_SECONDS
    send_timeout = SEND_TIMEOUT_SECONDS
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_send_timeout(transport.get_extra_info("socket"), self.send_timeout)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def set_send_timeout(sock: Any, seconds: float) -> None:
    """Abort the connection when sent bytes stay unacknowledged (or unread) for `seconds`."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def header_deadline_protocol(
    seconds: float, send_timeout: float = SEND_TIMEOUT_SECONDS
) -> type[HeaderDeadlineProtocol]:
    return type(
        "HeaderDeadline",
        (HeaderDeadlineProtocol,),
        {"header_timeout": seconds, "send_timeout": send_timeout},
    )
