"""Attachments: upload into a conversation, download by its members, safe by construction.

The content type is sniffed from the bytes (never taken from the client), files are stored
under server-made ids, and the client's file name is only ever echoed back sanitized.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass

import filetype

from parley import metrics
from parley.core import limits
from parley.core.errors import BadInput, ErrorCode, NotFound, StorageFull
from parley.core.models import Attachment, User
from parley.core.ports import BlobStore
from parley.services.timeline import Timeline
from parley.storage.attachments import AttachmentStore
from parley.storage.rows import now

# Types a browser may show inline. Everything else (HTML, SVG, PDF, unknown) is a download, and
# so is text: bytes cannot tell a script from prose, and a `.js` file must never render.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_SNIFF_BYTES = 8192
# What browsers take for markup when they sniff (WHATWG MIME Sniffing, "HTML" patterns).
_HTML_START = re.compile(
    r"<(?:!--|(?:!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p)"
    r"[\s/>])"
)
_SVG_STARTS = ("<svg", "<?xml", "<!doctype svg")
# Unicode line and paragraph separators act as line breaks but are not category "C".
_UNSAFE_CATEGORIES = frozenset({"Zl", "Zp"})


def safe_file_name(name: str) -> str:
    """A file name with no path, no control characters and a bounded length."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if _is_safe_name_char(c))
    name = name.strip(" .")[: limits.FILE_NAME_MAX_CHARS]
    return name or "file"


def sniff_content_type(head: bytes) -> str:
    """The type the bytes say they are; text only when they decode as UTF-8 without markup."""
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            return "application/octet-stream"
        text = head[: exc.start].decode("utf-8")
    lowered = text.lstrip("\ufeff \t\n\r\f").lower()
    if lowered.startswith(_SVG_STARTS):
        return "image/svg+xml"
    if _HTML_START.match(lowered):
        return "text/html"
    return "text/plain"


def _is_safe_name_char(c: str) -> bool:
    category = unicodedata.category(c)
    return category[0] != "C" and category not in _UNSAFE_CATEGORIES and c not in '"<>|:*?'


@dataclass(frozen=True, slots=True)
class Download:
    attachment: Attachment
    inline: bool
    chunks: AsyncIterator[bytes]


class Attachments:
    def __init__(
        self, *, timeline: Timeline, store: AttachmentStore, blobs: BlobStore, max_bytes: int
    ) -> None:
        self.timeline = timeline
        self.store = store
        self.blobs = blobs
        self.max_bytes = max_bytes

    async def do_upload(
        self,
        actor: User,
        conversation_id: int,
        file_name: str,
        chunks: AsyncIterator[bytes],
        *,
        size_hint: int | None = None,
    ) -> Attachment:
        """Store the file, then its row; a failure at either step keeps neither.

        `size_hint` (the size the request declared) refuses a file that cannot fit before any
        byte is written; a volume that fills up during the write refuses it the same way.
        """
        await self.timeline.access_conversation(actor, conversation_id)
        try:
            return await self._store_upload(actor, conversation_id, file_name, chunks, size_hint)
        except StorageFull:
            metrics.STORAGE_FULL_REFUSALS.labels("attachments").inc()
            raise

    async def _store_upload(
        self,
        actor: User,
        conversation_id: int,
        file_name: str,
        chunks: AsyncIterator[bytes],
        size_hint: int | None,
    ) -> Attachment:
        if size_hint is not None and size_hint > self.blobs.free_bytes():
            raise StorageFull(
                "the attachment store has no room for this file; text messages still work, "
                "try the file later"
            )
        attachment_id = "att_" + secrets.token_urlsafe(18)
        digest = hashlib.sha256()
        head = bytearray()

        async def observed() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                digest.update(chunk)
                if len(head) < _SNIFF_BYTES:
                    head.extend(chunk[: _SNIFF_BYTES - len(head)])
                yield chunk

        size = await self.blobs.put(attachment_id, observed(), self.max_bytes)
        if size == 0:
            await self.blobs.delete(attachment_id)
            raise BadInput("the file is empty", ErrorCode.VALIDATION)
        attachment = Attachment(
            id=attachment_id,
            conversation_id=conversation_id,
            uploader_id=actor.id,
            file_name=safe_file_name(file_name),
            content_type=sniff_content_type(bytes(head)),
            size=size,
            sha256=digest.hexdigest(),
            created_at=now(),
        )
        try:
            await self.store.add_attachment(attachment)
        except BaseException:
            await self.blobs.delete(attachment_id)
            raise
        return attachment

    async def open_download(self, attachment_id: str) -> Download:
        """The file, for callers that authorized the reader themselves (dispute evidence)."""
        attachment = await self.store.get_attachment(attachment_id)
        if attachment is None:
            raise NotFound("no such attachment")
        return Download(
            attachment=attachment,
            inline=attachment.content_type in INLINE_TYPES,
            chunks=self.blobs.open(attachment.id),
        )

    async def access_download(self, actor: User, attachment_id: str) -> Download:
        """The file if `actor` is a member of its conversation; 404 otherwise, alike."""
        attachment = await self.store.get_attachment(attachment_id)
        if attachment is None:
            raise NotFound("no such attachment")
        try:
            await self.timeline.access_conversation(actor, attachment.conversation_id)
        except NotFound:
            # The same answer as a missing id, so ids cannot be probed from outside.
            raise NotFound("no such attachment") from None
        return Download(
            attachment=attachment,
            inline=attachment.content_type in INLINE_TYPES,
            chunks=self.blobs.open(attachment.id),
        )
