"""Mentions in a message body: `@name` for a member, `@here` for everyone in the conversation.

Only names are found here; which of them are members is the timeline's question. A name may end
in `.`, `_` or `-` (user names allow them), so "@bob." is looked up as "bob." and as "bob".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parley.core.limits import MENTIONS_PER_MESSAGE_MAX, USER_NAME_MAX_CHARS

HERE = "here"
# Not after a word character or another "@" (so "a@b.com" and "@@x" mention no one).
_MENTION = re.compile(rf"(?<![\w@])@([A-Za-z0-9._-]{{1,{USER_NAME_MAX_CHARS}}})")


@dataclass(frozen=True, slots=True)
class MentionedNames:
    names: list[str]
    here: bool


def find_mentions(body: str) -> MentionedNames:
    """The names `body` mentions (at most MENTIONS_PER_MESSAGE_MAX), and whether @here is in it."""
    names: dict[str, None] = {}
    here = False
    for match in _MENTION.finditer(body):
        raw = match.group(1)
        trimmed = raw.rstrip("._-")
        if trimmed.lower() == HERE:
            here = True
            continue
        for name in (raw, trimmed):
            if name and len(names) < MENTIONS_PER_MESSAGE_MAX:
                names[name] = None
    return MentionedNames(list(names), here)


def may_mention(body: str) -> bool:
    """A cheap test that keeps the lookup of names off the path of messages without any."""
    return "@" in body
