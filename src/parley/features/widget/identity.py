"""Visitor identity tokens: the site vouches for its logged-in user (docs/widget.md).

Two formats, both signed with the inbox's `identity_secret`:

- `v1.<user_id>.<expires_unix>.<nonce>.<signature>`, the signature being the lowercase hex
  HMAC-SHA256(secret, `<user_id>.<expires_unix>.<nonce>`) (`user_id` may contain dots; the
  last three fields never do);
- a JWT signed with HS256 only (any other `alg`, `none` included, is refused) with the claims
  `sub` (user id), `exp` and `jti` (nonce).

A token is good once: its nonce is recorded until it expires, and a second use is a replay.
The site's clock and this node's may disagree by up to `skew` seconds (PARLEY_CLOCK_SKEW_SECONDS):
a token expired by less than that is still good, and its lifetime may exceed the cap by as
much; beyond it the token is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from parley.core.errors import ErrorCode, Unauthenticated

HMAC_PREFIX = "v1."
# A token living longer than this is refused: sites mint one per page load, and every nonce is
# stored until its token expires.
MAX_LIFETIME_SECONDS = 24 * 3600
_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,100}$")
_EXPIRES = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    external_id: str
    nonce: str
    expires_at: datetime


def invalid(reason: str) -> Unauthenticated:
    return Unauthenticated(f"identity token refused: {reason}", ErrorCode.IDENTITY_INVALID)


def hmac_token(secret: str, user_id: str, expires_unix: int, nonce: str) -> str:
    """Mint a `v1.` token (what a site's backend does; here for tests and the CLI)."""
    payload = f"{user_id}.{expires_unix}.{nonce}"
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{HMAC_PREFIX}{payload}.{signature}"


def verify_identity(
    token: str, secret: str, *, now: datetime | None = None, skew: float = 0
) -> VerifiedIdentity:
    """The site's user id the token vouches for; 401 ERR_IDENTITY_INVALID if it does not."""
    now = now or datetime.now(UTC)
    if token.startswith(HMAC_PREFIX):
        user_id, expires, nonce = _verify_hmac(token, secret)
    else:
        user_id, expires, nonce = _verify_jwt(token, secret, now=now, skew=skew)
    if not _USER_ID.match(user_id):
        raise invalid("the user id is empty, too long or has control characters")
    if not _NONCE.match(nonce):
        raise invalid("the nonce must be 8-100 characters of A-Z a-z 0-9 _ -")
    if expires + skew <= now.timestamp():
        raise invalid(f"it has expired (clock skew allowed: {skew:g} s)")
    if expires > now.timestamp() + MAX_LIFETIME_SECONDS + skew:
        raise invalid(f"it expires more than {MAX_LIFETIME_SECONDS} s from now")
    # The nonce is kept until the token can no longer pass on any node.
    return VerifiedIdentity(
        external_id=user_id,
        nonce=nonce,
        expires_at=datetime.fromtimestamp(expires + skew, UTC),
    )


def _verify_hmac(token: str, secret: str) -> tuple[str, int, str]:
    parts = token[len(HMAC_PREFIX) :].split(".")
    if len(parts) < 4:
        raise invalid("a v1 token has the form v1.<user_id>.<expires>.<nonce>.<signature>")
    *user_parts, expires, nonce, signature = parts
    user_id = ".".join(user_parts)
    if not _EXPIRES.match(expires) or not _SIGNATURE.match(signature):
        raise invalid("malformed expiry or signature")
    expected = hmac_token(secret, user_id, int(expires), nonce).rsplit(".", 1)[1]
    if not hmac.compare_digest(expected, signature):
        raise invalid("bad signature")
    return user_id, int(expires), nonce


def _verify_jwt(token: str, secret: str, *, now: datetime, skew: float) -> tuple[str, int, str]:
    try:
        # PyJWT judges `exp` (and `nbf`, `iat`) by this node's clock; `leeway` is the skew, and
        # expiry is checked again below against `now` like the v1 format.
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=skew + max(0.0, datetime.now(UTC).timestamp() - now.timestamp()),
            options={"require": ["sub", "exp", "jti"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise invalid("it has expired") from None
    except jwt.InvalidTokenError as exc:
        raise invalid(f"not a valid HS256 JWT ({type(exc).__name__})") from None
    sub, exp, jti = claims.get("sub"), claims.get("exp"), claims.get("jti")
    if not isinstance(sub, str) or not isinstance(jti, str) or not isinstance(exp, int | float):
        raise invalid("sub and jti must be strings, exp a number")
    return sub, int(exp), jti
