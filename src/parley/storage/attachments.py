"""AttachmentStore: what is known about each uploaded file (the bytes live in a BlobStore)."""

from __future__ import annotations

from sqlalchemy import insert, select

from parley.core.models import Attachment
from parley.storage.database import Database
from parley.storage.rows import attachment_from_row
from parley.storage.schema import attachments


class AttachmentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_attachment(self, attachment: Attachment) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(attachments).values(
                    id=attachment.id,
                    conversation_id=attachment.conversation_id,
                    uploader_id=attachment.uploader_id,
                    file_name=attachment.file_name,
                    content_type=attachment.content_type,
                    size=attachment.size,
                    sha256=attachment.sha256,
                    created_at=attachment.created_at,
                )
            )

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(attachments).where(attachments.c.id == attachment_id))
            ).first()
        return attachment_from_row(row) if row else None

    async def find_attachments(self, ids: list[str]) -> list[Attachment]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(attachments).where(attachments.c.id.in_(ids)))
            return [attachment_from_row(row) for row in rows]
