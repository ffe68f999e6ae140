"""Inboxes as admins manage them: create, list, read, change."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from parley.core.audit import Target
from parley.core.errors import BadInput, ErrorCode, Forbidden, InvalidValue, NotFound
from parley.core.events import CredentialsRevokedEvent
from parley.core.inboxes import Inbox, WorkingHours, is_public_suffix
from parley.core.models import Role, User
from parley.features.livechat import routing
from parley.features.livechat.branches import Branches
from parley.services.audit import AuditLog
from parley.services.timeline import Publish, Timeline
from parley.storage.inboxes import InboxStore

WIDGET_TOKEN_PREFIX = "wt_"  # noqa: S105 - a prefix, not a secret


def new_widget_token() -> str:
    return WIDGET_TOKEN_PREFIX + secrets.token_urlsafe(24)


def new_identity_secret() -> str:
    """32 random bytes: the HMAC / HS256 key a site signs its visitors' identity tokens with."""
    return "is_" + secrets.token_urlsafe(32)


_DOMAIN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def check_domain(domain: str) -> str:
    """A host name (`example.com`), or `*.example.com` for it and its subdomains — never a
    wildcard over a public suffix (`*.com`, `*.co.uk`, `*.github.io`: anyone's site)."""
    domain = domain.strip().lower()
    if len(domain) > 253 or not _DOMAIN.match(domain):
        raise BadInput(f"{domain!r} is not a host name like example.com or *.example.com")
    if domain.startswith("*.") and is_public_suffix(domain[2:]):
        raise BadInput(
            f"{domain!r} would allow every site under the public suffix {domain[2:]!r}; "
            "name your own domain (*.example.com)"
        )
    return domain


def check_privacy_url(url: str | None) -> str | None:
    """An http(s) address (the widget shows it as a link), or None/empty for the default."""
    if not url:
        return url
    parts = urlsplit(url.strip())
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or any(ch.isspace() or ord(ch) < 32 for ch in url)
    ):
        raise BadInput(
            "privacy_url must be an http:// or https:// address like https://example.com/privacy"
        )
    return url.strip()


class Inboxes:
    def __init__(
        self,
        store: InboxStore,
        timeline: Timeline,
        audit: AuditLog,
        branches: Branches | None = None,
        *,
        publish: Publish | None = None,
    ) -> None:
        self.store = store
        self.timeline = timeline
        self.audit = audit
        self.branches = branches
        self.publish = publish or timeline.publish

    def access_admin(self, actor: User) -> None:
        if actor.role is not Role.ADMIN:
            raise Forbidden("only admins manage inboxes", ErrorCode.FORBIDDEN)

    async def access_inbox(self, actor: User, inbox_id: int) -> Inbox:
        self.access_admin(actor)
        inbox = await self.store.get_inbox(inbox_id)
        if inbox is None:
            raise NotFound("no such inbox")
        return inbox

    async def do_create_inbox(self, actor: User | str, name: str, **fields: Any) -> Inbox:
        """A new inbox with a fresh widget token (callers have checked the actor is an admin)."""
        values = await self._column_values(fields)
        values.setdefault("allowed_domains", [])
        values.setdefault("operators", [])
        values.setdefault("offline_message", "")
        values.setdefault("enabled", True)
        inbox = await self.store.create_inbox(
            {"name": name, "widget_token": new_widget_token(), **values}
        )
        await self.audit.record(
            actor, "inbox.create", Target.of("inbox", inbox.id), after=_audited(inbox)
        )
        return inbox

    async def do_update_inbox(self, actor: User | str, inbox: Inbox, **fields: Any) -> Inbox:
        values = await self._column_values(fields)
        if not values:
            return inbox
        updated = await self.store.update_inbox(inbox.id, values)
        if updated is None:
            raise NotFound("no such inbox")
        before, after = _audited(inbox), _audited(updated)
        await self.audit.record(
            actor,
            "inbox.update",
            Target.of("inbox", inbox.id),
            before={k: before[k] for k in values if k in before},
            after={k: after[k] for k in values if k in after},
        )
        return updated

    async def list_inboxes(self) -> list[Inbox]:
        return await self.store.list_inboxes()

    async def do_set_identity_secret(
        self, actor: User | str, inbox: Inbox, *, enabled: bool
    ) -> tuple[Inbox, str]:
        """A new identity secret (rotating any old one at once), or none: verification off.

        While an inbox has a secret, every bootstrap must carry an identity token signed with it.
        """
        secret = new_identity_secret() if enabled else ""
        updated = await self.store.update_inbox(inbox.id, {"identity_secret": secret or None})
        if updated is None:
            raise NotFound("no such inbox")
        # The secret itself never reaches the log: only that verification is on or off.
        await self.audit.record(
            actor,
            "inbox.identity_secret_rotate" if enabled else "inbox.identity_secret_remove",
            Target.of("inbox", inbox.id),
            before={"identity_verification": inbox.identity_secret is not None},
            after={"identity_verification": enabled},
        )
        if not enabled:
            # Verified sessions end with the secret that vouched for them, streams included.
            for visitor_id in await self.store.list_verified_visitor_ids(inbox.id):
                await self.publish(
                    CredentialsRevokedEvent(
                        user_id=visitor_id,
                        all_streams=True,
                        reason="identity verification was switched off",
                    )
                )
        return updated, secret

    async def _column_values(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = dict(fields)
        if "operators" in values:
            await self.timeline.check_user_names(values["operators"])
        if "allowed_domains" in values:
            values["allowed_domains"] = [check_domain(d) for d in values["allowed_domains"]]
        if "privacy_url" in values:
            values["privacy_url"] = check_privacy_url(values["privacy_url"])
        if isinstance(values.get("working_hours"), WorkingHours):
            values["working_hours"] = values["working_hours"].model_dump(mode="json")
        await self._check_routing(values)
        return values

    async def _check_routing(self, values: dict[str, Any]) -> None:
        """Rules of known shape naming existing branches; 400 with the reason otherwise."""
        wanted: list[int] = []
        if "routing_rules" in values:
            values["routing_rules"] = routing.check_rules(values["routing_rules"])
            wanted += routing.rule_branch_ids(values["routing_rules"])
        if values.get("branch_id") is not None:
            wanted.append(values["branch_id"])
        if wanted:
            if self.branches is None:
                raise InvalidValue("branches are not available here", ErrorCode.UNKNOWN_BRANCH)
            await self.branches.check_branch_ids(wanted)


def _audited(inbox: Inbox) -> dict[str, Any]:
    """An inbox as the audit log keeps it: every setting, never the identity secret."""
    return {
        "name": inbox.name,
        "allowed_domains": list(inbox.allowed_domains),
        "operators": list(inbox.operators),
        "privacy_url": inbox.privacy_url,
        "privacy_text": inbox.privacy_text,
        "working_hours": inbox.working_hours.model_dump(mode="json")
        if inbox.working_hours
        else None,
        "offline_message": inbox.offline_message,
        "enabled": inbox.enabled,
        "routing_rules": inbox.routing_rules,
        "branch_id": inbox.branch_id,
        "allow_attachments": inbox.allow_attachments,
        "auto_assign": inbox.auto_assign,
        "retention_days": inbox.retention_days,
        "greeting": inbox.greeting,
        "reply_time": inbox.reply_time,
    }
