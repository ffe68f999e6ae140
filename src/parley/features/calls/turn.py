"""ICE servers for clients: STUN as configured, TURN with time-limited credentials.

The TURN REST API convention (draft-uberti-behave-turn-rest, coturn's `use-auth-secret`): the
username is `<expiry unix time>:<user id>` and the password base64(HMAC-SHA1(secret, username)).
The TURN server checks the HMAC with the secret it shares with Parley and refuses the credentials
once the expiry has passed, so nothing is stored and a leaked credential dies by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from parley.settings import Settings


def turn_credentials(secret: str, user_id: int, expires_at: int) -> tuple[str, str]:
    """The (username, password) pair a TURN server with `secret` accepts until `expires_at`."""
    username = f"{expires_at}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(settings: Settings, user_id: int, now: float) -> dict[str, Any]:
    """What `GET /v1/calls/config` answers: RTCPeerConnection's `iceServers`, and their TTL."""
    servers: list[dict[str, Any]] = []
    if settings.calls_stun_urls:
        servers.append({"urls": list(settings.calls_stun_urls)})
    expires_at = None
    if settings.calls_turn_urls and settings.calls_turn_secret:
        expires_at = int(now) + settings.calls_turn_ttl_seconds
        username, credential = turn_credentials(settings.calls_turn_secret, user_id, expires_at)
        servers.append(
            {"urls": list(settings.calls_turn_urls), "username": username, "credential": credential}
        )
    return {
        "ice_servers": servers,
        "ttl_seconds": settings.calls_turn_ttl_seconds if expires_at else None,
        "expires_at": expires_at,
        "ring_seconds": settings.calls_ring_seconds,
    }
