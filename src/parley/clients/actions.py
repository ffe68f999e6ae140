"""What the Python client does to stored messages and reads beyond the timeline: edit, unsend,
react, a message's history, threads, unread counts, "mark all read", and search.

These go over REST on every transport (each is idempotent, so a retry is safe). A change's
answer updates the held timeline at once and is handed out as a `message.updated` event with
`source="update"`; the stream's copy of the same change then changes nothing more.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from parley.clients.listeners import Listeners
from parley.clients.mirror import Mirror
from parley.clients.models import Event, Message, TransportName
from parley.clients.rest import RestApi


class TimelineActions:
    """Mixed into `ParleyClient`, which provides the attributes below."""

    _rest: RestApi
    _mirror: Mirror
    _listeners: Listeners

    @property
    def transport(self) -> TransportName:  # pragma: no cover - ParleyClient's
        raise NotImplementedError

    async def edit(
        self, conversation_id: int, message_id: int, body: str, *, client_op_id: str | None = None
    ) -> Message:
        """Replace your message's text (within the server's edit window); returns it as it is
        now. Retrying with the same `client_op_id` edits once."""
        data = await self._rest.message_call(
            "PATCH",
            conversation_id,
            message_id,
            payload={"body": body, "client_op_id": client_op_id or str(uuid.uuid4())},
        )
        return await self._updated(data)

    async def unsend(
        self, conversation_id: int, message_id: int, *, reason: str | None = None
    ) -> Message:
        """Delete a message for everyone (yours; anyone's for staff): it becomes a tombstone
        that keeps its seq. Doing it twice is harmless."""
        params = {"reason": reason} if reason else None
        data = await self._rest.message_call("DELETE", conversation_id, message_id, params=params)
        return await self._updated(data)

    async def react(self, conversation_id: int, message_id: int, emoji: str) -> Message:
        """Add your `emoji` to a message (once, however often this is called)."""
        tail = f"/reactions/{quote(emoji, safe='')}"
        return await self._updated(
            await self._rest.message_call("PUT", conversation_id, message_id, tail)
        )

    async def unreact(self, conversation_id: int, message_id: int, emoji: str) -> Message:
        tail = f"/reactions/{quote(emoji, safe='')}"
        return await self._updated(
            await self._rest.message_call("DELETE", conversation_id, message_id, tail)
        )

    async def message(self, conversation_id: int, message_id: int) -> Message:
        """One message, e.g. the one a reply quotes that the timeline does not hold."""
        return Message.from_json(await self._rest.message_call("GET", conversation_id, message_id))

    async def history(self, conversation_id: int, message_id: int) -> list[dict[str, Any]]:
        """Every version of a message's text, oldest first: `{version, body, written_at, ...}`."""
        data = await self._rest.message_call("GET", conversation_id, message_id, "/history")
        return list(data["versions"])

    async def thread(
        self, conversation_id: int, root_id: int, *, after: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        """A thread: `{root, replies, following, read_seq, unread}` (messages parsed)."""
        data = await self._rest.get(
            f"/v1/conversations/{conversation_id}/threads/{root_id}",
            {"after": after, "limit": limit},
        )
        data["root"] = Message.from_json(data["root"])
        data["replies"] = [Message.from_json(reply) for reply in data["replies"]]
        return data

    async def mark_thread_read(self, conversation_id: int, root_id: int, seq: int) -> int:
        """Mark a thread read up to `seq` (never backwards); returns the cursor now."""
        data = await self._rest.post(
            f"/v1/conversations/{conversation_id}/threads/{root_id}/read", {"read_seq": seq}
        )
        return int(data["read_seq"])

    async def unread(self, conversation_id: int | None = None) -> dict[str, Any]:
        """Unread and mention counts per conversation and followed thread (`GET /v1/unread`)."""
        params = {"conversation_id": conversation_id} if conversation_id else None
        return await self._rest.get("/v1/unread", params)

    async def mark_all_read(self, conversation_id: int | None = None) -> dict[str, Any]:
        """Mark everything (or one conversation, with its threads) read; returns the counts."""
        body = {"conversation_id": conversation_id} if conversation_id else {}
        return await self._rest.post("/v1/unread/read-all", body)

    async def search(
        self, query: str, *, cursor: str | None = None, limit: int = 20, **filters: Any
    ) -> dict[str, Any]:
        """Search the messages you can read: `{results: [{message, snippet}], next_cursor}`.

        `filters`: conversation_id, from_ (user names), after, before, has="attachment".
        Snippets are `[{text, hit}]` plain-text pieces.
        """
        params: dict[str, Any] = {"q": query, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        for name, value in filters.items():
            if value is not None:
                params[name.rstrip("_")] = value
        data = await self._rest.get("/v1/search", params)
        for result in data["results"]:
            result["message"] = Message.from_json(result["message"])
        return data

    async def _updated(self, data: dict[str, Any]) -> Message:
        message = Message.from_json(data)
        if self._mirror.take_update(message):
            event = {"type": "message.updated", "conversation_id": message.conversation_id}
            await self._listeners.emit(
                Event(
                    "message.updated", event | {"message": data}, self.transport, message, "update"
                )
            )
        return message
