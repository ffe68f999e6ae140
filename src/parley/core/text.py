"""Checks every stored string passes: valid Unicode scalar values, no NUL, bounded size.

PostgreSQL refuses NUL in text and lone surrogates cannot be encoded as UTF-8; SQLite accepts
both. Refusing them here makes the two databases behave the same.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from parley.core.errors import BadInput, ErrorCode
from parley.core.limits import EMOJI_MAX_CHARS, METADATA_MAX_BYTES, METADATA_MAX_DEPTH


def check_text(value: str) -> str:
    """Return `value` if it can be stored as-is on every database, else raise BadInput."""
    if "\x00" in value:
        raise BadInput("text must not contain NUL characters", ErrorCode.INVALID_TEXT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(
            "text must be valid Unicode (no lone surrogates)", ErrorCode.INVALID_TEXT
        ) from None
    return value


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Bound free-form metadata by depth and encoded size; check every key and string in it."""

    def walk(node: Any, depth: int) -> None:
        # Depth counts objects and arrays, as JSON does: {"a": {"b": 1}} is 2 levels deep.
        if isinstance(node, dict | list) and depth > METADATA_MAX_DEPTH:
            raise BadInput(f"metadata nests deeper than {METADATA_MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                check_text(key)
                walk(item, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, str):
            check_text(node)
        elif isinstance(node, float) and not math.isfinite(node):
            # Python's parser accepts NaN and Infinity; JSON and PostgreSQL do not.
            raise BadInput("metadata numbers must be finite", ErrorCode.INVALID_JSON)

    walk(value, 1)
    if len(json.dumps(value, ensure_ascii=False).encode()) > METADATA_MAX_BYTES:
        raise BadInput(f"metadata is larger than {METADATA_MAX_BYTES} bytes")
    return value


def check_emoji(value: str) -> str:
    """A reaction: an emoji or a short name like ":party:", with no space or control character.

    Any such text is accepted (clients pick the set they offer); it is stored as given, in NFC.
    """
    value = unicodedata.normalize("NFC", check_text(value))
    if not 0 < len(value) <= EMOJI_MAX_CHARS:
        raise BadInput(f"a reaction is 1 to {EMOJI_MAX_CHARS} characters")
    for char in value:
        category = unicodedata.category(char)
        # Format characters (Cf) stay: zero-width joiners build many emoji.
        if char.isspace() or (category[0] == "C" and category != "Cf") or char in "/\\":
            raise BadInput("a reaction has no spaces, slashes or control characters")
    return value
