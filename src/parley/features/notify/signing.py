"""Signed links in notifications: unsubscribe (no login) and back into a live-chat conversation.

HS256 tokens (PyJWT) under PARLEY_SECRET_KEY, or — when that is unset — a key Parley makes once
and keeps in the database, so links made by one worker open on every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from parley.core.errors import ErrorCode, Unauthenticated

ALGORITHM = "HS256"
RESUME_LIFETIME = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Resume:
    visitor_id: int
    conversation_id: int
    inbox_id: int


class Signer:
    def __init__(self, key: str) -> None:
        self._key = key

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def _read(self, token: str, scope: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], options={"require": ["sub", "scope"]}
            )
        except jwt.PyJWTError:
            claims = {}
        if claims.get("scope") != scope:
            raise Unauthenticated(
                "this link is not valid (altered, or expired)", ErrorCode.INVALID_CREDENTIALS
            )
        return claims

    def unsubscribe_token(self, user_id: int, channel: str) -> str:
        """Never expires: an unsubscribe link must work whenever the mail is read."""
        return self._sign({"sub": str(user_id), "scope": "unsubscribe", "ch": channel})

    def read_unsubscribe(self, token: str) -> tuple[int, str]:
        claims = self._read(token, "unsubscribe")
        return int(claims["sub"]), str(claims.get("ch", "email"))

    def resume_token(self, resume: Resume, *, now: datetime | None = None) -> str:
        issued = now or datetime.now(UTC)
        return self._sign(
            {
                "sub": str(resume.visitor_id),
                "scope": "resume",
                "cid": resume.conversation_id,
                "inbox": resume.inbox_id,
                "exp": int((issued + RESUME_LIFETIME).timestamp()),
            }
        )

    def read_resume(self, token: str) -> Resume:
        claims = self._read(token, "resume")
        return Resume(
            visitor_id=int(claims["sub"]),
            conversation_id=int(claims["cid"]),
            inbox_id=int(claims["inbox"]),
        )
