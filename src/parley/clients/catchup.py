"""Catching up over REST: the hole a stream message reveals, or a conversation's newest page.

Neither runs on the happy path: a gap means a position the stream skipped, and a newest page
is loaded after the server could no longer resume from the client's cursor, or on request.
"""

from __future__ import annotations

from parley.clients.models import Message, ParleyClientError
from parley.clients.rest import PAGE_LIMIT_MAX, RestApi
from parley.clients.timeline import Timeline

NEWEST_PAGE = 50
# Past this many pages a hole is left to `load_history` (the server keeps the messages).
FILL_PAGES_MAX = 20
SEQ_MAX = 2**53 - 1


async def fill_gap(rest: RestApi, timeline: Timeline, gap: tuple[int, int]) -> list[Message]:
    """Fetch seqs `gap[0]..gap[1]` into the timeline; returns the ones it did not hold.

    A transient failure raises (the gap stays open and the next message tries again); a
    permanent refusal (say, no longer a member) closes the gap with what was fetched.
    """
    first, last = gap
    added: list[Message] = []
    after = first - 1
    try:
        for _ in range(FILL_PAGES_MAX):
            if after >= last:
                break
            page, _ = await rest.list_messages(
                timeline.conversation_id, after=after, limit=min(PAGE_LIMIT_MAX, last - after)
            )
            added += [m for m in page if m.seq <= last and timeline.add_known(m)]
            if not page:
                break
            after = page[-1].seq
    except ParleyClientError as exc:
        if exc.transient:
            raise
    timeline.mark_complete_through(last)
    return added


async def load_newest_page(
    rest: RestApi, timeline: Timeline, limit: int = NEWEST_PAGE
) -> list[Message]:
    """The conversation's newest messages into its timeline; returns the ones it did not hold.

    A hole between what the timeline held and the page is filled too, so a client that
    resynced after missing a few hundred messages still has them all.
    """
    page, last_seq = await rest.list_messages(timeline.conversation_id, before=SEQ_MAX, limit=limit)
    added: list[Message] = []
    through = timeline.complete_through
    first = page[0].seq if page else last_seq + 1
    if through is not None and through < first - 1:
        added += await fill_gap(rest, timeline, (through + 1, first - 1))
    return added + timeline.load_page(page, last_seq)
