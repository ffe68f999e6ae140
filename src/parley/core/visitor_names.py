"""Friendly names for anonymous website visitors ("Amber Fox"), derived from their user id.

Staff need something to call a visitor by; `visitor-f1055…` is a handle, not a name. The name
is a pure function of the id, so every operator, every node and every reload agree on it
without storing it; a visitor who gives a real name (a verified site user) keeps theirs.
"""

from __future__ import annotations

import hashlib

from parley.core.models import User

ADJECTIVES = (
    "Amber", "Azure", "Brave", "Bright", "Calm", "Clever", "Coral", "Crimson",
    "Dapper", "Eager", "Frosty", "Gentle", "Golden", "Happy", "Hazel", "Indigo",
    "Jade", "Jolly", "Kind", "Lively", "Lucky", "Mellow", "Misty", "Nimble",
    "Olive", "Plum", "Quiet", "Rapid", "Rosy", "Ruby", "Sage", "Scarlet",
    "Silver", "Sunny", "Swift", "Teal", "Tidy", "Violet", "Witty", "Zesty",
)  # fmt: skip
ANIMALS = (
    "Badger", "Bear", "Beaver", "Bison", "Crane", "Deer", "Dolphin", "Eagle",
    "Falcon", "Ferret", "Finch", "Fox", "Gecko", "Hare", "Hawk", "Heron",
    "Ibex", "Koala", "Lark", "Lemur", "Lynx", "Marten", "Moose", "Newt",
    "Otter", "Owl", "Panda", "Puffin", "Quail", "Raven", "Robin", "Seal",
    "Sparrow", "Stoat", "Swan", "Tiger", "Toucan", "Walrus", "Wolf", "Wren",
)  # fmt: skip
DEFAULT_DISPLAY_NAME = "Visitor"  # what the widget gives an anonymous visitor


def friendly_name(user_id: int) -> str:
    """A stable two-word name for this visitor id (a hash, so neighbours do not look alike)."""
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    adjective = ADJECTIVES[number % len(ADJECTIVES)]
    animal = ANIMALS[(number // len(ADJECTIVES)) % len(ANIMALS)]
    return f"{adjective} {animal}"


def visitor_label(user: User) -> str:
    """What staff call a visitor: their own display name if they have one, else a friendly one."""
    if user.display_name and user.display_name != DEFAULT_DISPLAY_NAME:
        return user.display_name
    return friendly_name(user.id)
