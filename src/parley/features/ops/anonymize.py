"""`parley backup --anonymize`: a copy for staging with personal data replaced.

Names, e-mails, message bodies, notes, visitor attributes, page URLs and attachment contents are
replaced; ids, counts, lengths, timestamps and the links between rows stay, so staging behaves
like production (same shapes, same volumes, same timings) without anyone's data in it.

How: the deployment is backed up as usual, restored into a scratch database, rewritten there by
the POLICY below, backed up again as `parley-anon-...` (manifest `anonymized: true`) and the
scratch copy dropped. The live database is never written.

- Text is scrambled keyed by a random per-run secret: letters stay letters (same case), digits
  stay digits, spaces and punctuation stay, so lengths and the look of an e-mail survive while
  the content is gone; the same input maps to the same output within one run.
- User names become `user-<id>` everywhere they appear (users, audit actors, flag and rollout
  actors, inbox and branch operator lists).
- Secrets (token hashes, identity secrets, widget tokens) become fresh random values, so no
  production credential works against staging. Passwords are removed: set staging ones with
  `parley user add` / tokens with `parley user token`.
- The audit log is append-only (triggers, migration 0005). In the scratch copy only, its
  triggers are set aside for the rewrite and put back (storage/rewrite.py); actors are renamed
  like users, `cli:<login>` becomes `cli:operator`, reasons are scrambled, and in before/after
  values known names are renamed and free text scrambled while identifier-like values (flag
  keys, stages, statuses) stay.

Every text or JSON column of every table must have a rule here; a table added by a later
migration without one makes `--anonymize` refuse (ERR_ANONYMIZE_UNCOVERED) rather than copy
personal data by omission.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from parley.core.errors import ErrorCode
from parley.features.ops.backup import Backup, BackupError, Progress, create_backup, no_progress
from parley.features.ops.restore import restore_to
from parley.settings import Settings
from parley.storage import snapshots
from parley.storage.rewrite import rewrite_rows, text_columns

KEEP = "keep"  # not personal: statuses, keys, ids, configuration
TEXT = "text"  # free text: scrambled, same length and shape
NAME = "name"  # a user's login name: user-<id> (users.name; elsewhere via the name map)
DISPLAY_NAME = "display_name"  # "User <id>"
NAMES = "names"  # a user name, or a JSON list of them, mapped through the name map
ACTOR = "actor"  # audit/rollout actor labels: names mapped, cli:<login> -> cli:operator
SECRET = "secret"  # noqa: S105 - replaced by a fresh random value of the same length
DROP = "drop"  # set to NULL (password hashes)
FILE_NAME = "file_name"  # stem scrambled, extension kept
URL = "url"  # scheme and host kept, path and query scrambled
JSON_TEXT = "json_text"  # a JSON document: every string scrambled, keys and numbers kept
JSON_AUDIT = "json_audit"  # audit before/after: names mapped, identifiers kept, text scrambled
ATTACHMENT_REFS = "attachment_refs"  # messages.attachments: file names as in `attachments`
EXTERNAL_ID = "external_id"  # a site's user id: ext-<keyed hash>, the same in every table
CHECKSUM = "checksum"  # attachments.sha256: recomputed for the replaced content

POLICY: dict[str, dict[str, str]] = {
    "alembic_version": {"version_num": KEEP},
    "users": {
        "name": NAME,
        "display_name": DISPLAY_NAME,
        "password_hash": DROP,
        "role": KEEP,
        "email": TEXT,
    },
    "api_tokens": {"token_hash": SECRET, "label": TEXT},
    "conversations": {"kind": KEEP, "title": TEXT, "direct_key": KEEP},
    "members": {"role": KEEP},
    "messages": {
        "client_msg_id": KEEP,
        "body": TEXT,
        "attachments": ATTACHMENT_REFS,
        "metadata": JSON_TEXT,
        "mentions": KEEP,  # user ids
        "reactions": KEEP,  # emoji, counts, user ids
        "deleted_by": KEEP,
        "delete_reason": TEXT,
    },
    # -- the rich timeline (migration 0006) --
    "message_changes": {"kind": KEEP, "client_op_id": KEEP},
    "message_edits": {"body": TEXT},  # earlier versions of a message's text
    "message_reactions": {"emoji": KEEP},
    "attachments": {
        "id": KEEP,
        "file_name": FILE_NAME,
        "content_type": KEEP,
        "sha256": CHECKSUM,
    },
    "runtime_settings": {"key": KEEP, "value": KEEP},
    "flags": {
        "key": KEEP,
        "description": KEEP,
        "stickiness": KEEP,
        "bucket_group": KEEP,
        "allow_users": KEEP,
        "allow_keys": KEEP,
        "roles": KEEP,
        "updated_by": ACTOR,
    },
    "release_state": {
        "release": KEEP,
        "stage": KEEP,
        "reason": TEXT,
        "actor": ACTOR,
    },
    "release_history": {
        "action": KEEP,
        "from_stage": KEEP,
        "to_stage": KEEP,
        "decision": KEEP,
        "reason": TEXT,
        "actor": ACTOR,
        "owner": ACTOR,
        "gates": KEEP,
    },
    "release_client_reports": {
        "cohort": KEEP,
        "transport": KEEP,
        "write_receipt_ms": KEEP,
        "client_ip": TEXT,  # digits stay digits: an address's shape, not the address
    },
    "release_server_samples": {"node": KEEP},
    "inboxes": {
        "name": KEEP,
        "widget_token": SECRET,
        "allowed_domains": KEEP,
        "operators": NAMES,
        "privacy_url": KEEP,
        "privacy_text": KEEP,
        "working_hours": KEEP,
        "offline_message": KEEP,
        "identity_secret": SECRET,
        "routing_rules": KEEP,
        "greeting": KEEP,
        "reply_time": KEEP,
    },
    "widget_sessions": {"token_hash": SECRET, "external_id": EXTERNAL_ID},
    "branches": {"name": KEEP, "operators": NAMES},
    "livechat_conversations": {
        "status": KEEP,
        "priority": KEEP,
        "page_url": URL,
        "language": KEEP,
        "country": KEEP,
        "attributes": JSON_TEXT,
    },
    "livechat_notes": {"body": TEXT},
    "widget_identities": {"external_id": EXTERNAL_ID},
    "widget_identity_nonces": {"nonce": KEEP},
    "audit_log": {
        "actor": ACTOR,
        "source": KEEP,
        "action": KEEP,
        "target_kind": KEEP,
        "target_id": KEEP,
        "before": JSON_AUDIT,
        "after": JSON_AUDIT,
        "reason": TEXT,
    },
    # -- notifications (migration 0007) --
    "notification_deliveries": {
        "channel": KEEP,
        "status": KEEP,
        "target": TEXT,  # an e-mail address, a push endpoint, a Telegram chat
        "subject": TEXT,
        "payload": JSON_TEXT,
        "last_error": TEXT,
    },
    "notification_preferences": {
        "email": TEXT,
        "quiet_hours": KEEP,
        "telegram_chat_id": TEXT,
        "telegram_pending": SECRET,
    },
    "push_subscriptions": {
        "endpoint": SECRET,  # a capability URL: as secret as a token
        "p256dh": SECRET,
        "auth": SECRET,
        "user_agent": TEXT,
    },
    # -- calls and single sign-on (migration 0008) --
    "calls": {
        "id": KEEP,
        "state": KEEP,
        "end_reason": KEEP,
        "media": KEEP,
        "caller_device": KEEP,
        "callee_device": KEEP,
        "offer_sdp": TEXT,  # SDP and ICE candidates name network addresses
        "answer_sdp": TEXT,
        "caller_candidates": JSON_TEXT,
        "callee_candidates": JSON_TEXT,
    },
    "call_claims": {"call_id": KEEP, "key": KEEP},
    "user_identities": {"provider": KEEP, "subject": EXTERNAL_ID, "email": TEXT},
    # -- moderation and disputes (migration 0011) --
    "moderation_rules": {
        "name": KEEP,
        "kind": KEEP,
        "verdict": KEEP,
        "scope": KEEP,
        "scope_value": KEEP,
        "config": KEEP,  # word lists and patterns: configuration, not anyone's data
        "updated_by": ACTOR,
    },
    "moderation_sanctions": {
        "kind": KEEP,
        "reason": TEXT,
        "created_by": ACTOR,
        "lifted_by": ACTOR,
    },
    "moderation_items": {
        "kind": KEEP,
        "status": KEEP,
        "client_msg_id": KEEP,
        "body": TEXT,  # a held or reported message's text
        "attachments": ATTACHMENT_REFS,
        "metadata": JSON_TEXT,
        "rule": KEEP,
        "reason": TEXT,
        "resolved_by": ACTOR,
        "resolution": KEEP,
        "note": TEXT,
    },
    "moderation_reports": {"reason": KEEP, "note": TEXT},
    "disputes": {
        "currency": KEEP,
        "reference": TEXT,  # the marketplace's order id may name the buyer
        "reason": TEXT,
        "status": KEEP,
        "opened_by": ACTOR,
        "outcome": KEEP,
    },
    "dispute_events": {
        "actor": ACTOR,
        "kind": KEEP,
        "from_status": KEEP,
        "to_status": KEEP,
        "reason": TEXT,
        "detail": KEEP,  # ids, amounts, statuses and deadlines
    },
    "dispute_evidence": {
        "attachment_id": KEEP,
        "body": TEXT,
        "attachments": ATTACHMENT_REFS,
        "note": TEXT,
        "pinned_by": ACTOR,
    },
    "dispute_webhooks": {
        "event": KEEP,
        "payload": JSON_AUDIT,  # statuses and ids kept, reasons and names scrambled
        "last_error": TEXT,
    },
    # -- export packages and privacy (migration 0014) --
    "export_jobs": {
        "id": KEEP,
        "kind": KEEP,
        "requested_by_name": ACTOR,
        "status": KEEP,
        "sha256": KEEP,
        "error": TEXT,
        "params": JSON_TEXT,
        "runner": KEEP,
    },
    "legal_holds": {"reason": TEXT, "placed_by": ACTOR, "released_by": ACTOR},
    # -- canned replies (migration 0015); the inbox's greeting and reply time are configuration
    "canned_replies": {"shortcut": KEEP, "body": TEXT},
}

_IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_.:/-]{0,63}$")
FILLER = b"This attachment was replaced by `parley backup --anonymize`.\n"


def uncovered(columns: dict[str, dict[str, str]]) -> list[str]:
    """`table.column` of every text or JSON column the policy has no rule for."""
    return sorted(
        f"{table}.{column}"
        for table, found in columns.items()
        for column in found
        if column not in POLICY.get(table, {})
    )


class Scrambler:
    """Keyed, deterministic replacement of personal values (one random key per run)."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        self.names: dict[str, str] = {}  # original login name -> user-<id>

    def _stream(self, value: str, salt: str) -> bytes:
        seed = hmac.new(self.key, f"{salt}\x00{value}".encode(), hashlib.sha256).digest()
        out = b""
        counter = 0
        while len(out) < len(value):
            out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
            counter += 1
        return out

    def text(self, value: str | None) -> str | None:
        if not value:
            return value
        stream = self._stream(value, "text")
        out = []
        for char, byte in zip(value, stream, strict=False):
            if char.isdigit():
                out.append(string.digits[byte % 10])
            elif char.isalpha():
                letters = string.ascii_uppercase if char.isupper() else string.ascii_lowercase
                out.append(letters[byte % 26])
            else:
                out.append(char)
        return "".join(out)

    def secret(self, value: str | None) -> str | None:
        if value is None:
            return None
        return secrets.token_hex(max(8, len(value)))[: max(len(value), 16)]

    def external_id(self, value: str | None) -> str | None:
        if value is None:
            return None
        return "ext-" + hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:24]

    def file_name(self, value: str | None) -> str | None:
        if not value:
            return value
        stem, dot, ext = value.rpartition(".")
        if not dot or not stem:
            return self.text(value)
        return f"{self.text(stem)}.{ext}"

    def url(self, value: str | None) -> str | None:
        if not value:
            return value
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc:
            return self.text(value)
        return urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                self.text(parts.path) or "",
                self.text(parts.query) or "",
                self.text(parts.fragment) or "",
            )
        )

    def name(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self.names.get(value) or self.text(value)

    def actor(self, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("cli:"):
            return "cli:operator"
        if value in ("system", "watcher", ""):
            return value
        return self.name(value)

    def names_in(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.name(v) if isinstance(v, str) else v for v in value]
        if isinstance(value, str):
            return self.name(value)
        return value

    def json_text(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.json_text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_text(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def json_audit(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.json_audit(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_audit(v) for v in value]
        if isinstance(value, str):
            if value in self.names:
                return self.names[value]
            if value.startswith("cli:"):
                return "cli:operator"
            return value if _IDENTIFIER.fullmatch(value) else self.text(value)
        return value

    def attachment_refs(self, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [
            {**ref, "file_name": self.file_name(ref.get("file_name"))}
            if isinstance(ref, dict)
            else ref
            for ref in value
        ]


def _column_rule(scrambler: Scrambler, rule: str) -> Callable[[Any], Any] | None:
    rules: dict[str, Callable[[Any], Any]] = {
        TEXT: scrambler.text,
        SECRET: scrambler.secret,
        DROP: lambda _value: None,
        FILE_NAME: scrambler.file_name,
        URL: scrambler.url,
        NAMES: scrambler.names_in,
        ACTOR: scrambler.actor,
        JSON_TEXT: scrambler.json_text,
        JSON_AUDIT: scrambler.json_audit,
        ATTACHMENT_REFS: scrambler.attachment_refs,
        EXTERNAL_ID: scrambler.external_id,
    }
    return rules.get(rule)


def _filler(size: int) -> bytes:
    return (FILLER * (size // len(FILLER) + 1))[:size]


def _replace_attachment_files(root: Path) -> dict[str, str]:
    """Overwrite every attachment file with filler of the same size; new sha256 by file name."""
    checksums = {}
    for path in root.rglob("*") if root.exists() else []:
        if path.is_file():
            content = _filler(path.stat().st_size)
            path.write_bytes(content)
            checksums[path.name] = hashlib.sha256(content).hexdigest()
    return checksums


@dataclass
class AnonymizeReport:
    backup: Backup
    tables: dict[str, int]  # rows rewritten per table


async def anonymize_database(
    url: str, attachments_dir: Path, scrambler: Scrambler | None = None
) -> dict[str, int]:
    """Rewrite the (scratch) database at `url` and the files in `attachments_dir` by POLICY."""
    columns = await text_columns(url)
    missing = uncovered(columns)
    if missing:
        raise BackupError(
            "no anonymization rule for " + ", ".join(missing) + ": add one to POLICY in "
            "parley/features/ops/anonymize.py before making staging copies",
            ErrorCode.ANONYMIZE_UNCOVERED,
        )
    scrambler = scrambler or Scrambler()
    changed: dict[str, int] = {}

    def users_rule(row: dict[str, Any]) -> dict[str, Any]:
        scrambler.names[row["name"]] = f"user-{row['id']}"
        return {
            "name": f"user-{row['id']}",
            "display_name": f"User {row['id']}",
            "password_hash": None,
        }

    if "users" in columns:
        changed["users"] = await rewrite_rows(url, "users", columns["users"], users_rule)
    checksums = _replace_attachment_files(attachments_dir)
    for table, found in sorted(columns.items()):
        if table == "users":
            continue
        rules = {
            column: rule
            for column in found
            if (rule := POLICY[table][column]) not in (KEEP, CHECKSUM)
        }
        if table == "attachments":
            rules["sha256"] = CHECKSUM
        if not rules:
            continue

        def rewrite(row: dict[str, Any], rules: dict[str, str] = rules) -> dict[str, Any]:
            new = {}
            for column, rule in rules.items():
                if rule == CHECKSUM:
                    new[column] = checksums.get(str(row.get("id")), row[column])
                    continue
                apply = _column_rule(scrambler, rule)
                if apply is not None:
                    new[column] = apply(row[column])
            return {c: v for c, v in new.items() if v != row[c]}

        changed[table] = await rewrite_rows(url, table, found, rewrite)
    return changed


def _scratch_url(settings: Settings, workdir: Path) -> str:
    url = settings.effective_database_url
    if snapshots.dialect_of(url) == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'anonymize.db'}"
    base = snapshots.database_name(url) or "parley"
    return snapshots.with_database(url, f"{base}_anonymize_{secrets.token_hex(4)}"[:63])


async def create_anonymized_backup(
    settings: Settings, *, label: str = "staging", progress: Progress = no_progress
) -> AnonymizeReport:
    """Back up, restore into scratch, anonymize there, back the result up as `parley-anon-*`."""
    with tempfile.TemporaryDirectory(prefix="parley-anonymize-") as work:
        workdir = Path(work)
        raw_settings = settings.model_copy(update={"backup_dir": workdir / "raw"})
        raw = await create_backup(raw_settings, label="raw", progress=progress)
        url = _scratch_url(settings, workdir)
        attachments = workdir / "attachments"
        try:
            restored = await restore_to(raw, url, attachments_dir=attachments, progress=progress)
            if not restored.ok:
                raise BackupError(
                    "the scratch copy does not match the backup: " + "; ".join(restored.problems),
                    ErrorCode.RESTORE_MISMATCH,
                )
            shutil.rmtree(raw.path)  # personal data: gone as soon as it is not needed
            tables = await anonymize_database(url, attachments)
            backup = await create_backup(
                settings,
                label=label,
                url=url,
                attachments_dir=attachments,
                anonymized=True,
                source=snapshots.public_url(settings.effective_database_url),
                progress=progress,
            )
        finally:
            if snapshots.dialect_of(url) == "postgresql":
                await snapshots.pg_drop_database(url)
    return AnonymizeReport(backup, tables)
