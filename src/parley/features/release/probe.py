"""The Go/No-Go probe conversation: one per smoke account, reused by every run and trimmed.

Smoke and Go/No-Go write their messages and attachments into a group conversation titled
`PROBE_TITLE`, created once by the smoke sender. After a run the sender trims it to its newest
`KEEP_MESSAGES` messages (and the attachments those carry), so runs never pile up data in a
live deployment. Only that conversation, and only by the account that created it, can be trimmed.
"""

from __future__ import annotations

from parley.core.errors import Forbidden
from parley.core.models import User
from parley.services.attachments import Attachments
from parley.services.timeline import Timeline
from parley.storage.probes import ProbeStore, Trimmed

PROBE_TITLE = "parley go/no-go probe"
KEEP_MESSAGES = 100


class ProbeConversations:
    def __init__(self, timeline: Timeline, store: ProbeStore, attachments: Attachments) -> None:
        self.timeline = timeline
        self.store = store
        self.attachments = attachments

    async def do_trim(self, actor: User, conversation_id: int, keep: int) -> Trimmed:
        """Keep the newest `keep` messages of the actor's probe conversation; delete the rest."""
        access = await self.timeline.access_conversation(actor, conversation_id)
        conversation = access.conversation
        if conversation.title != PROBE_TITLE or conversation.created_by != actor.id:
            raise Forbidden(
                f"only a conversation titled {PROBE_TITLE!r} that you created can be trimmed"
            )
        trimmed = await self.store.trim_conversation(conversation_id, keep)
        for attachment_id in trimmed.attachment_ids:
            await self.attachments.blobs.delete(attachment_id)
        return trimmed
