"""One exception tree and one table of stable error codes.

    ParleyError                      (code, message, status)
     ├── BadInput                    400/413/422 — the request itself is wrong
     ├── Unauthenticated             401 — no or bad credentials
     ├── Forbidden                   403 — authenticated, but not allowed
     ├── NotFound                    404 — absent, or not visible to this user (same answer)
     ├── Conflict                    409 — the state forbids it
     │    ├── ResyncRangeUnavailable 409 — the cursor is outside the resume window
     │    └── Held                   409 — a send waits for a moderator (not in the timeline)
     ├── RateLimited                 429 — too often; `retry_after` seconds
     ├── StorageFull                 507 — no room for this upload (attachment volume full)
     └── Unavailable                 503 — retry later (database or bus down, database volume
          │                                full: ERR_STORAGE_FULL)
          └── UnderMaintenance       503 — maintenance mode; `retry_after` seconds

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
    ACCOUNT_DISABLED = "ERR_ACCOUNT_DISABLED"
    # Website visitors are reachable in their own live-chat conversations only.
    VISITOR_NOT_REACHABLE = "ERR_VISITOR_NOT_REACHABLE"
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
    # Moderation: a send the filters hold for a moderator or refuse, and senders under a sanction.
    HELD_FOR_REVIEW = "ERR_HELD_FOR_REVIEW"
    MESSAGE_REJECTED = "ERR_MESSAGE_REJECTED"
    MUTED = "ERR_MUTED"
    BANNED = "ERR_BANNED"
    # A queue item escalated to a higher tier than the caller's.
    ESCALATED = "ERR_ESCALATED"
    # A feature flag (e.g. dispute_tools_v2) is off for the caller.
    FEATURE_DISABLED = "ERR_FEATURE_DISABLED"
    # Disputes: the outcome's amounts do not add up to the amount in escrow.
    AMOUNTS_MISMATCH = "ERR_AMOUNTS_MISMATCH"
    # Calls: the action does not fit the call's state; the call is over; a device (or the
    # conversation) already has a ringing or active call.
    CALL_STATE = "ERR_CALL_STATE"
    CALL_ENDED = "ERR_CALL_ENDED"
    CALL_BUSY = "ERR_CALL_BUSY"
    # Single sign-on: an unknown, used or foreign `state`; the provider refused or its answer
    # did not validate (code, ID token); no Parley account may be made for that identity.
    SSO_STATE = "ERR_SSO_STATE"
    SSO_FAILED = "ERR_SSO_FAILED"
    SSO_NO_ACCOUNT = "ERR_SSO_NO_ACCOUNT"
    # Operations (docs/operations.md): maintenance mode, backups, restores, deploys.
    MAINTENANCE = "ERR_MAINTENANCE"
    BACKUP_NOT_FOUND = "ERR_BACKUP_NOT_FOUND"
    BACKUP_CORRUPT = "ERR_BACKUP_CORRUPT"
    BACKUP_FAILED = "ERR_BACKUP_FAILED"
    RESTORE_TARGET_NOT_EMPTY = "ERR_RESTORE_TARGET_NOT_EMPTY"
    RESTORE_MISMATCH = "ERR_RESTORE_MISMATCH"
    ANONYMIZE_UNCOVERED = "ERR_ANONYMIZE_UNCOVERED"
    DEPLOY_FAILED = "ERR_DEPLOY_FAILED"
    # Exports and privacy: the package is still being made; a legal hold blocks a deletion.
    EXPORT_NOT_READY = "ERR_EXPORT_NOT_READY"
    LEGAL_HOLD = "ERR_LEGAL_HOLD"
    # The rich timeline: a change to a tombstone, an edit after the window, too many emoji.
    MESSAGE_DELETED = "ERR_MESSAGE_DELETED"
    EDIT_WINDOW_CLOSED = "ERR_EDIT_WINDOW_CLOSED"
    TOO_MANY_REACTIONS = "ERR_TOO_MANY_REACTIONS"
    # A volume is full: uploads (507) or, for the database's volume, every write (503, retry).
    STORAGE_FULL = "ERR_STORAGE_FULL"


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


class UnderMaintenance(Unavailable):
    """The deployment is in maintenance mode: 503 with the operators' message and Retry-After."""

    default_code = ErrorCode.MAINTENANCE

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFull(ParleyError):
    """507 Insufficient Storage: the attachment store has no room; nothing was kept."""

    status = 507
    default_code = ErrorCode.STORAGE_FULL


class ResyncRangeUnavailable(Conflict):
    default_code = ErrorCode.RESYNC_RANGE_UNAVAILABLE


class Held(Conflict):
    """The send is kept for a moderator's review: not stored in the timeline, not delivered.

    A 409 rather than a 2xx: every client already treats it as "not sent, do not retry".
    """

    default_code = ErrorCode.HELD_FOR_REVIEW


class RateLimited(ParleyError):
    status = 429
    default_code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, code: ErrorCode | None = None, *, retry_after: float) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after
