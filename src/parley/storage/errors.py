"""The one place database driver errors become Parley errors."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from parley import metrics
from parley.core.errors import ErrorCode, Unavailable

# PostgreSQL's "insufficient resources": disk_full (53100), out_of_memory, too_many_connections.
_DISK_FULL_STATES = ("53100",)


def storage_full() -> Unavailable:
    """The database's volume is full: a retryable 503, since writes resume once space returns."""
    metrics.STORAGE_FULL_REFUSALS.labels("database").inc()
    return Unavailable(
        "the database volume is full; nothing was stored, retry later with the same client_msg_id",
        ErrorCode.STORAGE_FULL,
    )


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn "the database is unreachable" (or its volume full) into a retryable 503; let the
    rest propagate."""
    try:
        yield
    except PoolTimeout as exc:
        # Every connection stayed busy for the pool's timeout (found by `parley bench soak` on
        # an overloaded box): the request may be retried, it is not a server bug.
        raise Unavailable("the database is busy; retry shortly") from exc
    except DBAPIError as exc:
        if _is_disk_full(exc):
            raise storage_full() from exc
        if isinstance(exc, OperationalError | InterfaceError):
            if _is_transaction_conflict(exc):
                raise  # the caller retries its transaction
            raise Unavailable("the database is unavailable; retry shortly") from exc
        if exc.connection_invalidated or _is_server_unavailable(exc):
            raise Unavailable("the database connection was lost; retry shortly") from exc
        raise
    except (ConnectionError, OSError) as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise storage_full() from exc
        raise Unavailable("the database is unreachable; retry shortly") from exc


def _is_disk_full(exc: DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    if "database or disk is full" in str(orig):  # aiosqlite may not carry the code
        return True
    return (getattr(orig, "sqlstate", None) or "").startswith(_DISK_FULL_STATES)


def _is_transaction_conflict(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "deadlock" in message or "could not serialize" in message


# SQLSTATEs of a server that is unreachable or (re)starting rather than of a wrong statement:
# connection exceptions (class 08), and admin/crash shutdown and "cannot connect now" (57P0x),
# which asyncpg raises as plain DBAPIErrors while PostgreSQL restarts.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


def _is_server_unavailable(exc: DBAPIError) -> bool:
    state = getattr(exc.orig, "sqlstate", None) or ""
    return state.startswith(_UNAVAILABLE_STATES)
