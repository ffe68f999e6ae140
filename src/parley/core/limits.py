"""The documented maximum of every user-controlled field (docs/api.md lists them)."""

from __future__ import annotations

MESSAGE_BODY_MAX_CHARS = 16_000
TITLE_MAX_CHARS = 200
USER_NAME_MAX_CHARS = 64
DISPLAY_NAME_MAX_CHARS = 128
PASSWORD_MAX_CHARS = 256
CLIENT_MSG_ID_MAX_CHARS = 128
FILE_NAME_MAX_CHARS = 255
METADATA_MAX_BYTES = 4_096
METADATA_MAX_DEPTH = 4
MEMBERS_PER_REQUEST_MAX = 500
ATTACHMENTS_PER_MESSAGE_MAX = 10
PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 500
# Sequence numbers and ids fit JavaScript's safe integers, so clients never round them.
SEQ_MAX = 2**53 - 1
# The rich timeline (docs/timeline.md).
CLIENT_OP_ID_MAX_CHARS = 128
DELETE_REASON_MAX_CHARS = 500
EMOJI_MAX_CHARS = 32
REACTIONS_PER_MESSAGE_MAX = 50  # distinct emoji on one message
REACTION_USERS_SHOWN = 100  # user ids listed per emoji on a message (the count is exact)
MENTIONS_PER_MESSAGE_MAX = 50  # @names looked up per message; more are left as text
SEARCH_QUERY_MAX_CHARS = 500
SEARCH_TERMS_MAX = 10
SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 100
THREADS_LIMIT_MAX = 200
