"""What a member can see of a conversation, to assert that a refused request changed nothing."""

from __future__ import annotations

from typing import Any

from tests.conftest import Person


async def what_is_stored(person: Person, conversation_id: int) -> dict[str, Any]:
    """The conversation, its whole timeline, its members' cursors and `person`'s list."""
    base = f"/v1/conversations/{conversation_id}"
    parts = {
        "conversation": await person.http.get(base),
        "messages": await person.http.get(f"{base}/messages", params={"limit": 500}),
        "members": await person.http.get(f"{base}/members"),
        "conversations": await person.http.get("/v1/conversations"),
    }
    for name, response in parts.items():
        assert response.status_code == 200, (name, response.text)
    return {name: response.json() for name, response in parts.items()}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """`response` is the JSON error a client can act on: exact status, exact code, a message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error
