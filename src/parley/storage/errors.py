"""The one place database driver errors become Parley errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from parley.core.errors import Unavailable


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn "the database is unreachable" into a retryable 503; let the rest propagate."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        if _is_transaction_conflict(exc):
            raise  # the caller retries its transaction
        raise Unavailable("the database is unavailable; retry shortly") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_server_unavailable(exc):
            raise Unavailable("the database connection was lost; retry shortly") from exc
        raise
    except (ConnectionError, OSError) as exc:
        raise Unavailable("the database is unreachable; retry shortly") from exc


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
