"""Build one export package: page through the database, stream attachments, write the ZIP.

`zipfile` blocks, so each write happens in a worker thread; reads stay on the event loop. The
memory an export holds is one page of messages plus the attachment ids met so far, whatever the
conversation's length (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parley import __version__
from parley.core.exports import ExportJob, ExportKind
from parley.core.models import Attachment, Message, User
from parley.core.ports import BlobStore
from parley.features.export.package import Package
from parley.services.attachments import safe_file_name
from parley.storage.exports import ExportStore

PAGE = 1000
FORMAT = "parley-export/1"
Progress = Callable[[int, int], Awaitable[None]]

CONVERSATION_COLUMNS = [
    "seq",
    "message_id",
    "sent_at_utc",
    "author_id",
    "author_name",
    "body",
    "attachments",
    "reply_to_id",
    "thread_root_id",
    "edited_at_utc",
    "deleted",
    "deleted_by",
    "client_msg_id",
]
PERSON_COLUMNS = ["conversation_id", "conversation_title", *CONVERSATION_COLUMNS]


def iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else ""


@dataclass
class Counts:
    messages: int = 0
    deleted: int = 0
    attachments: int = 0


class PackageBuilder:
    """Writes the package of one job to `path`, reporting progress as (done, total)."""

    def __init__(self, store: ExportStore, blobs: BlobStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock

    async def build(self, job: ExportJob, path: Path, progress: Progress) -> dict[str, Any]:
        """Write the package; return its metadata. A failure deletes the partial file."""
        package = Package(path)
        try:
            if job.kind is ExportKind.CONVERSATION:
                metadata = await self._conversation(job, package, progress)
            else:
                metadata = await self._person(job, package, progress)
            await asyncio.to_thread(package.close)
            return metadata
        except BaseException:
            await asyncio.to_thread(package.abandon)
            raise

    # -- a conversation ------------------------------------------------------------------------

    async def _conversation(
        self, job: ExportJob, package: Package, progress: Progress
    ) -> dict[str, Any]:
        conversation = await self.store.get_conversation(job.subject_id)
        if conversation is None:
            raise LookupError(f"conversation {job.subject_id} no longer exists")
        members = await self.store.list_members(conversation.id)
        names = {u.id: u for u in await self.store.find_users([m.user_id for m in members])}
        total = conversation.last_seq
        counts = Counts()
        attachment_ids: dict[str, int] = {}  # id -> seq of the message carrying it
        await asyncio.to_thread(package.begin_csv, "messages.csv", CONVERSATION_COLUMNS)
        after = 0
        while page := await self.store.list_messages_page(conversation.id, after, PAGE):
            missing = {m.sender_id for m in page} - set(names)
            names.update({u.id: u for u in await self.store.find_users(sorted(missing))})
            rows = [self._row(m, names, attachment_ids) for m in page]
            await asyncio.to_thread(package.write_rows, rows)
            counts.messages += len(page)
            counts.deleted += sum(1 for m in page if _deleted(m))
            after = page[-1].seq
            await progress(counts.messages, max(total, counts.messages))
        await asyncio.to_thread(package.end)
        counts.attachments = await self._attachments(
            package, attachment_ids, lambda a: f"{attachment_ids[a.id]:08d}"
        )
        members_out = [
            {
                "user_id": m.user_id,
                "name": names[m.user_id].name if m.user_id in names else None,
                "display_name": names[m.user_id].display_name if m.user_id in names else None,
                "role": m.role.value,
                "joined_at_utc": iso(m.joined_at),
                "delivered_seq": m.delivered_seq,
                "read_seq": m.read_seq,
            }
            for m in members
        ]
        subject = {
            "id": conversation.id,
            "kind": conversation.kind.value,
            "title": conversation.title,
            "created_by": conversation.created_by,
            "created_at_utc": iso(conversation.created_at),
            "last_seq": conversation.last_seq,
        }
        readme = _conversation_readme(job, subject, counts, self.clock())
        await asyncio.to_thread(package.write_text, "README.md", readme)
        metadata = self._metadata(job, counts, package, conversation=subject, members=members_out)
        await asyncio.to_thread(package.write_json, "metadata.json", metadata)
        await progress(counts.messages, counts.messages)
        return metadata

    def _row(self, m: Message, names: dict[int, User], seen: dict[str, int]) -> list[Any]:
        for ref in m.attachments:
            seen.setdefault(ref.id, m.seq)
        author = names.get(m.sender_id)
        return [
            m.seq,
            m.id,
            iso(m.created_at),
            m.sender_id,
            author.name if author else "",
            m.body,
            ";".join(ref.id for ref in m.attachments),
            getattr(m, "reply_to_id", None) or "",
            getattr(m, "thread_root_id", None) or "",
            iso(getattr(m, "edited_at", None)),
            "yes" if _deleted(m) else "",
            str(getattr(m, "deleted_by", "") or ""),
            m.client_msg_id,
        ]

    async def _attachments(
        self, package: Package, ids: dict[str, int], prefix: Callable[[Attachment], str]
    ) -> int:
        """Stream each attachment's bytes into attachments/; returns how many were written."""
        written = 0
        wanted = list(ids)
        for start in range(0, len(wanted), PAGE):
            for attachment in await self.store.find_attachments(wanted[start : start + PAGE]):
                await self._attachment(package, attachment, prefix(attachment))
                written += 1
        return written

    async def _attachment(self, package: Package, attachment: Attachment, prefix: str) -> None:
        name = f"attachments/{prefix}-{attachment.id}-{safe_file_name(attachment.file_name)}"
        await asyncio.to_thread(
            package.begin,
            name,
            attachment_id=attachment.id,
            original_name=attachment.file_name,
            content_type=attachment.content_type,
            uploaded_at_utc=iso(attachment.created_at),
            stored_sha256=attachment.sha256,
        )
        try:
            async for chunk in self.blobs.open(attachment.id):
                await asyncio.to_thread(package.write, chunk)
        except FileNotFoundError:
            package.files.setdefault(name, {})["missing"] = True
        await asyncio.to_thread(package.end)

    # -- a person ------------------------------------------------------------------------------

    async def _person(self, job: ExportJob, package: Package, progress: Progress) -> dict[str, Any]:
        found = await self.store.find_users([job.subject_id])
        if not found:
            raise LookupError(f"user {job.subject_id} no longer exists")
        person = found[0]
        memberships = await self.store.list_memberships_of(person.id)
        titles = {c.id: c.title for c, _ in memberships}
        total = await self.store.count_messages_by_sender(person.id)
        counts = Counts()
        await asyncio.to_thread(package.begin_csv, "messages.csv", PERSON_COLUMNS)
        names = {person.id: person}
        after = 0
        while page := await self.store.list_messages_by_sender_page(person.id, after, PAGE):
            rows = [
                [m.conversation_id, titles.get(m.conversation_id, ""), *self._row(m, names, {})]
                for m in page
            ]
            await asyncio.to_thread(package.write_rows, rows)
            counts.messages += len(page)
            counts.deleted += sum(1 for m in page if _deleted(m))
            after = page[-1].id
            await progress(counts.messages, max(total, counts.messages))
        await asyncio.to_thread(package.end)
        uploads = await self.store.list_attachments_by_uploader(person.id)
        for attachment in uploads:
            await self._attachment(package, attachment, f"{attachment.conversation_id}")
        counts.attachments = len(uploads)
        profile = {
            "id": person.id,
            "name": person.name,
            "display_name": person.display_name,
            "role": person.role.value,
            "internal": person.internal,
            "created_at_utc": iso(person.created_at),
        }
        conversations = [
            {
                "conversation_id": c.id,
                "kind": c.kind.value,
                "title": c.title,
                "role": m.role.value,
                "joined_at_utc": iso(m.joined_at),
                "delivered_seq": m.delivered_seq,
                "read_seq": m.read_seq,
            }
            for c, m in memberships
        ]
        tokens = [
            {k: iso(v) if isinstance(v, datetime) else v for k, v in token.items()}
            for token in await self.store.list_token_labels(person.id)
        ]
        readme = _person_readme(job, profile, counts, self.clock())
        await asyncio.to_thread(package.write_text, "README.md", readme)
        records = await self.store.list_person_records(person.id)
        metadata = self._metadata(
            job,
            counts,
            package,
            profile={**profile, "email": records.pop("email")},
            conversations=conversations,
            api_tokens=tokens,
            **records,
        )
        await asyncio.to_thread(package.write_json, "metadata.json", metadata)
        await progress(counts.messages, counts.messages)
        return metadata

    # -- shared --------------------------------------------------------------------------------

    def _metadata(
        self, job: ExportJob, counts: Counts, package: Package, **sections: Any
    ) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": job.kind.value,
            "export_id": job.id,
            "exported_at_utc": iso(self.clock()),
            "requested_at_utc": iso(job.created_at),
            "requested_by": {"id": job.requested_by, "name": job.requested_by_name},
            "parley_version": __version__,
            "parameters": job.params,
            **sections,
            "counts": {
                "messages": counts.messages,
                "deleted_messages": counts.deleted,
                "attachments": counts.attachments,
            },
            # Every other file of the package, with its SHA-256 (metadata.json cannot hold its own).
            "files": dict(sorted(package.files.items())),
        }


def _deleted(message: Message) -> bool:
    return getattr(message, "deleted_at", None) is not None


_READING = """## How to read it

- `messages.csv` — one row per message, oldest first, UTF-8 (with a byte-order mark so
  spreadsheets pick the encoding). Times are UTC (ISO 8601). `seq` is the message's number in
  its conversation: it has no gaps, so a missing number would mean a missing row. A deleted
  message keeps its row and number with `deleted` = `yes` and an empty body. `attachments`
  lists the attachment ids of a message; the files are in `attachments/`, named
  `<prefix>-<attachment id>-<original name made safe>`.
- A cell that begins with `=`, `+`, `-` or `@` starts with an added `'` so that a spreadsheet
  shows it instead of running it as a formula; the text is everything after that `'`.
- `metadata.json` — who and what this export covers, the parameters, counts, and the SHA-256 of
  every other file. Check a file with `sha256sum <file>` against `files.<name>.sha256`.
"""


def _conversation_readme(
    job: ExportJob, conversation: dict[str, Any], counts: Counts, now: datetime
) -> str:
    title = conversation["title"] or f"{conversation['kind']} conversation"
    return f"""# Export of conversation {conversation["id"]}: {title}

- What: every message of this {conversation["kind"]} conversation, its members and their read
  receipts, and its attachments ({counts.messages} messages, {counts.deleted} of them deleted,
  {counts.attachments} attachments).
- When: requested {iso(job.created_at)}, written {iso(now)} (UTC).
- Who asked: {job.requested_by_name} (user id {job.requested_by or "-"}); export id `{job.id}`.

{_READING}"""


def _person_readme(job: ExportJob, profile: dict[str, Any], counts: Counts, now: datetime) -> str:
    return f"""# Personal data of {profile["name"]} (user {profile["id"]})

- What: everything this deployment stores about this person: their profile, the conversations
  they belong to (with their read receipts), every message they wrote ({counts.messages}, of
  which {counts.deleted} deleted), the files they uploaded ({counts.attachments}) and their
  API tokens (labels and dates only; the secrets themselves are never stored).
- When: requested {iso(job.created_at)}, written {iso(now)} (UTC).
- Who asked: {job.requested_by_name} (user id {job.requested_by or "-"}); export id `{job.id}`.

{_READING}"""
