"""Proof-of-work challenges for busy addresses (docs/widget.md, "Proof of work").

Past `PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP` bootstraps, an address must spend CPU before it gets
another session: find a decimal `nonce` such that SHA-256(`id + ":" + nonce`) starts with
`difficulty` zero bits (about 2**difficulty hashes; the server checks with one).

The id is stateless — `c1.<expires_unix>.<difficulty>.<salt>.<hmac>` signed with
PARLEY_SECRET_KEY and bound to the client address — so any node can check it; only "this id was
used" is stored (Redis when configured, so every node sees it) until the id expires.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from parley.core.errors import ErrorCode, Forbidden
from parley.metrics import WIDGET_REFUSED
from parley.realtime.ephemeral import Ephemeral
from parley.settings import Settings

log = logging.getLogger(__name__)

CHALLENGE_TTL_SECONDS = 300
_PREFIX = "c1"


@dataclass(frozen=True, slots=True)
class Solution:
    id: str
    nonce: str


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def solve(challenge_id: str, difficulty: int) -> str:
    """The smallest decimal nonce that solves the challenge (clients, tests)."""
    nonce = 0
    while True:
        digest = hashlib.sha256(f"{challenge_id}:{nonce}".encode()).digest()
        if leading_zero_bits(digest) >= difficulty:
            return str(nonce)
        nonce += 1


class Challenges:
    def __init__(self, settings: Settings, ephemeral: Ephemeral) -> None:
        self.difficulty = settings.widget_challenge_difficulty
        # Another node (whose clock may run ahead) may have issued the challenge.
        self.skew = settings.clock_skew_seconds
        self.ephemeral = ephemeral
        if not settings.secret_key:
            log.warning(
                "PARLEY_SECRET_KEY is empty: widget challenges are signed with a per-process "
                "key, so a challenge issued by one node fails on another"
            )
        self._key = (settings.secret_key or secrets.token_hex(32)).encode()

    def issue(self, client_ip: str) -> dict[str, object]:
        expires = int(time.time()) + CHALLENGE_TTL_SECONDS
        payload = f"{_PREFIX}.{expires}.{self.difficulty}.{secrets.token_hex(12)}"
        challenge_id = f"{payload}.{self._sign(payload, client_ip)}"
        return {"id": challenge_id, "difficulty": self.difficulty, "algorithm": "sha256"}

    def required(self, client_ip: str) -> Forbidden:
        return Forbidden(
            "too many chats from your address: solve the proof-of-work challenge and retry",
            ErrorCode.CHALLENGE_REQUIRED,
            details={"challenge": self.issue(client_ip)},
        )

    async def check_solution(self, solution: Solution, client_ip: str) -> None:
        """Pass a correct, unexpired, unused solution; else 403 ERR_CHALLENGE_FAILED."""
        reason = self._problem(solution, client_ip)
        if reason is None:
            expires = int(solution.id.split(".")[1])
            ttl = max(1.0, expires + self.skew - time.time())
            if not await self.ephemeral.claim(f"widget-challenge:{solution.id}", ttl):
                reason = "this challenge was already used"
        if reason is not None:
            WIDGET_REFUSED.labels("challenge_failed").inc()
            raise Forbidden(
                f"challenge failed: {reason}; solve the new one",
                ErrorCode.CHALLENGE_FAILED,
                details={"challenge": self.issue(client_ip)},
            )

    def _problem(self, solution: Solution, client_ip: str) -> str | None:
        parts = solution.id.split(".")
        if len(parts) != 5 or parts[0] != _PREFIX or not parts[1].isdigit():
            return "not a challenge id"
        payload, signature = solution.id.rsplit(".", 1)
        if not hmac.compare_digest(self._sign(payload, client_ip), signature):
            return "not issued to this address by this server"
        if int(parts[1]) + self.skew <= time.time():
            return "it expired"
        digest = hashlib.sha256(f"{solution.id}:{solution.nonce}".encode()).digest()
        if leading_zero_bits(digest) < int(parts[2]):
            return "wrong nonce"
        return None

    def _sign(self, payload: str, client_ip: str) -> str:
        message = f"{payload}|{client_ip}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
