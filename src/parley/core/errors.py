"""One exception tree and one table of stable error codes.

    ParleyError                      (code, message, status)
     ├── BadInput                    400/413/422 — the request itself is wrong
     ├── Unauthenticated             401 — no or bad credentials
     ├── Forbidden                   403 — authenticated, but not allowed
     ├── NotFound                    404 — absent, or not visible to this user (same answer)
     ├── Conflict                    409 — the state forbids it
     │    └── ResyncRangeUnavailable 409 — the cursor is outside the resume window
     ├── RateLimited                 429 — too often; `retry_after` seconds
     └── Unavailable                 503 — retry later (database or bus down)

Third-party errors (SQLAlchemy, Redis) are converted in one place at the storage boundary.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_REQUEST = "ERR_BAD_REQUEST"
    VALIDATION = "ERR_VALIDATION"
    INVALID_JSON = "ERR_INVALID_JSON"
    INVALID_TEXT = "ERR_INVALID_TEXT"
    PAYLOAD_TOO_LARGE = "ERR_PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "ERR_UNSUPPORTED_MEDIA_TYPE"
    UNAUTHENTICATED = "ERR_UNAUTHENTICATED"
    INVALID_CREDENTIALS = "ERR_INVALID_CREDENTIALS"
    FORBIDDEN = "ERR_FORBIDDEN"
    NOT_FOUND = "ERR_NOT_FOUND"
    METHOD_NOT_ALLOWED = "ERR_METHOD_NOT_ALLOWED"
    CONFLICT = "ERR_CONFLICT"
    NAME_TAKEN = "ERR_NAME_TAKEN"
    RECEIPT_BEYOND_LAST_SEQ = "ERR_RECEIPT_BEYOND_LAST_SEQ"
    ATTACHMENT_UNAVAILABLE = "ERR_ATTACHMENT_UNAVAILABLE"
    RATE_LIMITED = "ERR_RATE_LIMITED"
    RESYNC_RANGE_UNAVAILABLE = "ERR_RESYNC_RANGE_UNAVAILABLE"
    RESYNC_THROTTLED = "ERR_RESYNC_THROTTLED"
    TRANSPORT_DISABLED = "ERR_TRANSPORT_DISABLED"
    TOO_MANY_CONNECTIONS = "ERR_TOO_MANY_CONNECTIONS"
    ILLEGAL_TRANSITION = "ERR_ILLEGAL_TRANSITION"
    GATES_NOT_PASSED = "ERR_GATES_NOT_PASSED"
    UNAVAILABLE = "ERR_UNAVAILABLE"
    INTERNAL = "ERR_INTERNAL"
    ORIGIN_NOT_ALLOWED = "ERR_ORIGIN_NOT_ALLOWED"
    MESSENGER_DISABLED = "ERR_MESSENGER_DISABLED"
    # Live chat: a value outside its set (status, priority, routing rule), or an unknown branch.
    INVALID_VALUE = "ERR_INVALID_VALUE"
    UNKNOWN_BRANCH = "ERR_UNKNOWN_BRANCH"
    IDENTITY_INVALID = "ERR_IDENTITY_INVALID"
    CHALLENGE_REQUIRED = "ERR_CHALLENGE_REQUIRED"
    CHALLENGE_FAILED = "ERR_CHALLENGE_FAILED"
    ATTACHMENTS_DISABLED = "ERR_ATTACHMENTS_DISABLED"
    # Exports and privacy: the package is still being made; a legal hold blocks a deletion.
    EXPORT_NOT_READY = "ERR_EXPORT_NOT_READY"
    LEGAL_HOLD = "ERR_LEGAL_HOLD"
    # The rich timeline: a change to a tombstone, an edit after the window, too many emoji.
    MESSAGE_DELETED = "ERR_MESSAGE_DELETED"
    EDIT_WINDOW_CLOSED = "ERR_EDIT_WINDOW_CLOSED"
    TOO_MANY_REACTIONS = "ERR_TOO_MANY_REACTIONS"


class ParleyError(Exception):
    """Base of every error Parley reports to a client."""

    status = 500
    default_code = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        # JSON-able extras a client acts on (e.g. the proof-of-work challenge to solve).
        self.details = details


class BadInput(ParleyError):
    status = 422
    default_code = ErrorCode.VALIDATION


class InvalidValue(BadInput):
    """A well-formed field whose value is not one of the allowed ones (400, not 422)."""

    status = 400
    default_code = ErrorCode.INVALID_VALUE


class PayloadTooLarge(BadInput):
    status = 413
    default_code = ErrorCode.PAYLOAD_TOO_LARGE


class Unauthenticated(ParleyError):
    status = 401
    default_code = ErrorCode.UNAUTHENTICATED


class Forbidden(ParleyError):
    status = 403
    default_code = ErrorCode.FORBIDDEN


class NotFound(ParleyError):
    status = 404
    default_code = ErrorCode.NOT_FOUND


class Conflict(ParleyError):
    status = 409
    default_code = ErrorCode.CONFLICT


class Unavailable(ParleyError):
    status = 503
    default_code = ErrorCode.UNAVAILABLE


class ResyncRangeUnavailable(Conflict):
    default_code = ErrorCode.RESYNC_RANGE_UNAVAILABLE


class RateLimited(ParleyError):
    status = 429
    default_code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, code: ErrorCode | None = None, *, retry_after: float) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after
