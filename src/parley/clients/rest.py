"""The REST calls the Python client makes: send, pages, receipts, reports, who am I, and the
calls on one message (edit, delete, react) and on threads, unread and search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from parley.clients.models import Message, ParleyClientError, Unauthenticated

PAGE_LIMIT_MAX = 500


class RestApi:
    """Bearer-authenticated calls to the node `base_url()` names (it changes on failover)."""

    def __init__(self, http: httpx.AsyncClient, token: str, base_url: Callable[[], str]) -> None:
        self.http = http
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def send_message(
        self, conversation_id: int, fields: dict[str, Any]
    ) -> tuple[Message, bool]:
        """Store a message; returns it and whether it was a retry of a stored one (200)."""
        status, data = await self._call(
            "POST", f"/v1/conversations/{conversation_id}/messages", fields
        )
        return Message.from_json(data), status == 200

    async def message_call(
        self,
        method: str,
        conversation_id: int,
        message_id: int,
        tail: str = "",
        payload: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A call on one message (`/v1/conversations/{c}/messages/{m}{tail}`)."""
        path = f"/v1/conversations/{conversation_id}/messages/{message_id}{tail}"
        _, data = await self._call(method, path, payload, params=params)
        return data

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        _, data = await self._call("GET", path, params=params)
        return data

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        _, data = await self._call("POST", path, payload)
        return data

    async def list_conversations(self) -> list[dict[str, Any]]:
        _, data = await self._call("GET", "/v1/conversations")
        return list(data["conversations"])

    async def list_messages(
        self,
        conversation_id: int,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = PAGE_LIMIT_MAX,
    ) -> tuple[list[Message], int]:
        """A page of messages (oldest first) and the conversation's `last_seq`."""
        params: dict[str, int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        if before is not None:
            params["before"] = before
        _, data = await self._call(
            "GET", f"/v1/conversations/{conversation_id}/messages", params=params
        )
        return [Message.from_json(m) for m in data["messages"]], int(data["last_seq"])

    async def post_receipt(
        self, conversation_id: int, *, delivered_seq: int, read_seq: int
    ) -> dict[str, Any]:
        receipt = {"delivered_seq": delivered_seq, "read_seq": read_seq}
        _, data = await self._call("POST", f"/v1/conversations/{conversation_id}/receipts", receipt)
        return data

    async def me(self) -> dict[str, Any]:
        """The signed-in user (`GET /v1/me`)."""
        _, data = await self._call("GET", "/v1/me")
        return data

    async def post_typing(self, conversation_id: int) -> None:
        await self._call("POST", f"/v1/conversations/{conversation_id}/typing", {})

    async def post_report(self, report: dict[str, Any]) -> None:
        await self._call("POST", "/v1/stream/report", report)

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """The response's status and JSON object; errors raise `ParleyClientError`."""
        try:
            response = await self.http.request(
                method, self.base_url() + path, json=payload, params=params, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise ParleyClientError(
                "ERR_UNAVAILABLE", f"{method} {path}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return response.status_code, {}
        data: dict[str, Any] = response.json()
        return response.status_code, data


def error_from_response(response: httpx.Response) -> ParleyClientError:
    """The `{"error": {"code", "message"}}` body of a failed response as an exception."""
    code, message, retry_after = (
        "ERR_HTTP_" + str(response.status_code),
        response.reason_phrase,
        None,
    )
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        retry_after = error.get("retry_after")
    except (ValueError, AttributeError):
        pass
    if retry_after is None and "retry-after" in response.headers:
        try:
            retry_after = float(response.headers["retry-after"])
        except ValueError:
            retry_after = None
    kind = Unauthenticated if response.status_code == 401 else ParleyClientError
    return kind(code, message, status=response.status_code, retry_after=retry_after)
