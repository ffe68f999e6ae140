"""Rewriting rows of a database copy in place (the anonymizer's hands): which columns hold text,
and an UPDATE of chosen columns row by row, append-only triggers set aside for the rewrite.

Only ever pointed at a scratch copy (features/ops/anonymize.py restores a backup into one first):
the append-only audit log of a live deployment is never touched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import JSON, String, Text, bindparam, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from parley.storage.errors import translate_db_errors

# A row's values by column name -> the new values of the columns that change (or {}).
RowRewrite = Callable[[dict[str, Any]], dict[str, Any]]
_PAGE = 1_000


def _describe(sync: Connection) -> dict[str, dict[str, str]]:
    inspector = inspect(sync)
    found: dict[str, dict[str, str]] = {}
    for table in inspector.get_table_names():
        columns = {}
        for column in inspector.get_columns(table):
            kind = column["type"]
            if isinstance(kind, JSON):
                columns[column["name"]] = "json"
            elif isinstance(kind, String | Text):
                columns[column["name"]] = "text"
        found[table] = columns
    return found


async def text_columns(url: str) -> dict[str, dict[str, str]]:
    """Every table's columns that hold text or JSON: {table: {column: "text" | "json"}}."""
    engine = create_async_engine(url)
    try:
        with translate_db_errors():
            async with engine.connect() as conn:
                return await conn.run_sync(_describe)
    finally:
        await engine.dispose()


def _keys(sync: Connection, table: str) -> list[str]:
    inspector = inspect(sync)
    keys = inspector.get_pk_constraint(table).get("constrained_columns") or []
    return list(keys) or [c["name"] for c in inspector.get_columns(table)]


async def _set_triggers_aside(conn: AsyncConnection, table: str) -> list[str]:
    """Disable the table's own triggers (the audit log's append-only guard) for this rewrite;
    answers the SQLite statements that re-create them."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f'ALTER TABLE "{table}" DISABLE TRIGGER USER'))
        return []
    rows = await conn.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
        {"t": table},
    )
    triggers = [(str(name), str(sql)) for name, sql in rows]
    for name, _ in triggers:
        await conn.execute(text(f'DROP TRIGGER "{name}"'))
    return [sql for _, sql in triggers]


async def _restore_triggers(conn: AsyncConnection, table: str, saved: list[str]) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f'ALTER TABLE "{table}" ENABLE TRIGGER USER'))
        return
    for sql in saved:
        await conn.execute(text(sql))


def _stored(value: Any, kind: str, dialect: str) -> Any:
    if kind == "json" and value is not None and dialect == "sqlite":
        return json.dumps(value)
    return value


def _loaded(value: Any, kind: str) -> Any:
    if kind == "json" and isinstance(value, str):
        return json.loads(value)
    return value


async def rewrite_rows(url: str, table: str, columns: dict[str, str], rewrite: RowRewrite) -> int:
    """Apply `rewrite` to every row of `table` (reading `columns`, {name: "text"|"json"});
    answers how many rows changed. One transaction; triggers of the table set aside inside it.

    A table with a one-column key is read a page at a time in key order (a big messages table
    never sits in memory whole); one with a composite key (small link tables) at once.
    """
    engine = create_async_engine(url)
    changed = 0
    try:
        with translate_db_errors():
            async with engine.begin() as conn:
                keys = await conn.run_sync(lambda sync: _keys(sync, table))
                wanted = list(dict.fromkeys([*keys, *columns]))
                saved = await _set_triggers_aside(conn, table)
                async for rows in _pages(conn, table, wanted, keys):
                    changed += await _apply(conn, table, columns, keys, rows, rewrite)
                await _restore_triggers(conn, table, saved)
    finally:
        await engine.dispose()
    return changed


async def _pages(
    conn: AsyncConnection, table: str, wanted: list[str], keys: list[str]
) -> AsyncIterator[list[dict[str, Any]]]:
    quote = conn.dialect.identifier_preparer.quote
    select_list = ", ".join(quote(c) for c in wanted)
    order = ", ".join(quote(k) for k in keys)
    if len(keys) != 1:
        query = text(f"SELECT {select_list} FROM {quote(table)} ORDER BY {order}")  # noqa: S608
        yield [dict(zip(wanted, row, strict=True)) for row in await conn.execute(query)]
        return
    key = quote(keys[0])
    first = text(f"SELECT {select_list} FROM {quote(table)} ORDER BY {key} LIMIT {_PAGE}")  # noqa: S608
    after = text(
        f"SELECT {select_list} FROM {quote(table)} WHERE {key} > :last "  # noqa: S608
        f"ORDER BY {key} LIMIT {_PAGE}"
    )
    rows = [dict(zip(wanted, row, strict=True)) for row in await conn.execute(first)]
    while rows:
        yield rows
        last = rows[-1][keys[0]]
        rows = [
            dict(zip(wanted, row, strict=True)) for row in await conn.execute(after, {"last": last})
        ]


async def _apply(
    conn: AsyncConnection,
    table: str,
    columns: dict[str, str],
    keys: list[str],
    rows: list[dict[str, Any]],
    rewrite: RowRewrite,
) -> int:
    quote = conn.dialect.identifier_preparer.quote
    updates: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for row in rows:
        new = rewrite({c: _loaded(v, columns.get(c, "")) for c, v in row.items()})
        if not new:
            continue
        if len(keys) == 1 and keys[0] in new:
            raise ValueError(f"{table}.{keys[0]} is the key it is read by: it cannot be rewritten")
        params = {f"new_{c}": _stored(v, columns[c], conn.dialect.name) for c, v in new.items()}
        params.update({f"key_{k}": row[k] for k in keys})
        updates.append((tuple(sorted(new)), params))
    for names in sorted({names for names, _ in updates}):
        batch = [params for n, params in updates if n == names]
        assignments = ", ".join(f"{quote(c)} = :new_{c}" for c in names)
        where = " AND ".join(f"{quote(k)} = :key_{k}" for k in keys)
        statement = text(f"UPDATE {quote(table)} SET {assignments} WHERE {where}")  # noqa: S608
        if conn.dialect.name == "postgresql":
            statement = _with_json_casts(statement, names, columns)
        await conn.execute(statement, batch)
    return len(updates)


def _with_json_casts(statement: Any, names: tuple[str, ...], columns: dict[str, str]) -> Any:
    """Bind JSON values as JSON on PostgreSQL (asyncpg will not guess a jsonb parameter)."""
    return statement.bindparams(
        *[bindparam(f"new_{c}", type_=JSON()) for c in names if columns.get(c) == "json"]
    )
