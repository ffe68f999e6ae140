"""Each node's copy of inboxes, branches and widget sessions: kept, and dropped on any change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from parley.core.events import Event, LivechatChangedEvent
from parley.core.models import ConversationKind, Role
from parley.features.livechat.directory import Directory
from parley.realtime.envelope import envelope_for
from parley.storage.conversations import ConversationStore
from parley.storage.database import Database
from parley.storage.inboxes import InboxStore
from parley.storage.livechat import LivechatStore
from parley.storage.users import UserStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Node:
    """One server's stores and its directory over the shared database."""

    inboxes: InboxStore
    livechat: LivechatStore
    directory: Directory


class Bus:
    """Carries what a node publishes to every node's listener, as the real bus does."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.sent: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.sent.append(event)
        envelope = envelope_for(event)
        assert envelope.broadcast  # reaches every node
        for node in self.nodes:
            node.directory.on_bus_event(envelope)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


def node(db: Database, bus: Bus, clock: Clock) -> Node:
    inboxes, livechat = InboxStore(db), LivechatStore(db)
    directory = Directory(inboxes, livechat, ttl=30, clock=clock)
    directory.publish = bus.publish
    made = Node(inboxes, livechat, directory)
    bus.nodes.append(made)
    return made


def inbox_values(name: str, token: str) -> dict[str, object]:
    return {
        "name": name,
        "widget_token": token,
        "allowed_domains": ["shop.example"],
        "operators": [],
        "offline_message": "",
        "enabled": True,
    }


async def test_an_inbox_change_on_one_node_shows_on_the_others_at_once(db: Database) -> None:
    bus, clock = Bus(), Clock()
    one, two = node(db, bus, clock), node(db, bus, clock)
    created = await one.inboxes.create_inbox(inbox_values("Shop", "wt_shop_token"))
    assert (await two.directory.find_inbox_by_token("wt_shop_token")) == created

    await one.inboxes.update_inbox(created.id, {"enabled": False, "greeting": "Hi!"})

    seen = await two.directory.find_inbox_by_token("wt_shop_token")
    assert seen is not None and not seen.enabled and seen.greeting == "Hi!"
    assert isinstance(bus.sent[-1], LivechatChangedEvent)


async def test_a_change_the_bus_never_carried_shows_once_the_cache_time_passes(
    db: Database,
) -> None:
    bus, clock = Bus(), Clock()
    serving = node(db, bus, clock)
    cli = InboxStore(db)  # the CLI: same database, no bus
    created = await cli.create_inbox(inbox_values("Shop", "wt_shop_token"))
    assert (await serving.directory.get_inbox(created.id)) == created

    await cli.update_inbox(created.id, {"name": "Renamed"})
    kept = await serving.directory.get_inbox(created.id)
    assert kept is not None and kept.name == "Shop"  # within the cache time

    clock.now += 31
    fresh = await serving.directory.get_inbox(created.id)
    assert fresh is not None and fresh.name == "Renamed"


async def test_a_new_branch_is_seen_by_every_node(db: Database) -> None:
    bus, clock = Bus(), Clock()
    one, two = node(db, bus, clock), node(db, bus, clock)
    assert await two.directory.list_branches() == []

    branch = await one.livechat.create_branch("Sales", [])

    assert await two.directory.list_branches() == [branch]
    assert await two.directory.get_branch(branch.id) == branch


async def test_a_widget_session_is_kept_with_its_inbox_as_it_is_now(db: Database) -> None:
    bus, clock = Bus(), Clock()
    one, two = node(db, bus, clock), node(db, bus, clock)
    inbox = await one.inboxes.create_inbox(inbox_values("Shop", "wt_shop_token"))
    visitor = await UserStore(db).create_user(
        name="visitor-1",
        display_name="Visitor",
        role=Role.MEMBER,
        internal=False,
        password_hash=None,
        visitor=True,
    )
    conversation, _ = await ConversationStore(db).create_conversation(
        kind=ConversationKind.GROUP, title="Shop: visitor-1", created_by=visitor.id, member_ids=[]
    )
    await one.inboxes.add_widget_session(
        token_hash="h" * 64,
        inbox_id=inbox.id,
        visitor_id=visitor.id,
        conversation_id=conversation.id,
    )
    found = await two.directory.find_visit("h" * 64)
    assert found is not None and found[1].enabled

    await one.inboxes.update_inbox(inbox.id, {"enabled": False})  # the kill switch

    again = await two.directory.find_visit("h" * 64)
    assert again is not None
    session, seen_inbox, seen_visitor = again
    assert not seen_inbox.enabled
    assert (session.visitor_id, seen_visitor.id) == (visitor.id, visitor.id)
    assert await two.directory.find_visit("x" * 64) is None
