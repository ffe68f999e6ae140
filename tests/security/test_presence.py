"""Attack: find out who is online by asking about arbitrary user ids. Presence answers only
for the caller and the people they share a conversation with; anyone else reads as offline."""

from __future__ import annotations

from tests.security.conftest import Deployment
from tests.support.streams import WsReader


async def test_presence_reveals_only_people_you_share_a_conversation_with(
    shared: Deployment,
) -> None:
    alice, bob, mallory = shared.add(), shared.add(), shared.add()
    async with shared.client(alice) as http:
        created = await http.post(
            "/v1/conversations", json={"kind": "direct", "members": [bob.name]}
        )
    assert created.status_code == 201
    online = await WsReader(shared.url, alice.token).opened()
    ids = f"{alice.id},{bob.id},{mallory.id}"

    async with shared.client(bob) as http:
        seen_by_bob = (await http.get("/v1/presence", params={"user_ids": ids})).json()
    async with shared.client(mallory) as http:
        seen_by_mallory = (await http.get("/v1/presence", params={"user_ids": ids})).json()

    assert seen_by_bob == {"online": [alice.id]}
    assert seen_by_mallory == {"online": []}
    await online.close()
