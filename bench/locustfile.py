"""Locust scenario for the live chat (seed 001 section 6): widget visitors and operators.

Every user keeps a long-poll going in the background, as the JS client does when WebSockets are
blocked. A visitor goes through the real Widget API: bootstrap with the inbox's widget token
(`Origin` set to an allowed domain), load the history page, then send a message every few seconds
and long-poll `/api/widget/poll`. An operator (a member of every visitor conversation of the
inbox) follows `/v1/stream/poll`, answers the visitor messages of its share of conversations, and
now and then reloads its inbox (the conversation list).

Besides Locust's per-endpoint figures, each message that arrives on a stream is recorded as a
`DELIVER` sample: the time from its send (stamped in the body) to the poll that returned it.
Long-poll rows measure waiting, not work: read them as "how long until something happened".
At the end, the 5xx count is printed (and the run exits 1 if there was any).

Operators come from `parley user add-many PREFIX N --json`, the inbox from `parley inbox add`
(with those operators and the domain `bench.example`); run with the server's PARLEY_* env:

    PARLEY_BENCH_USERS=users.json PARLEY_BENCH_OPERATORS=10 PARLEY_BENCH_WIDGET_TOKEN=wt_... \\
      locust -f bench/locustfile.py --headless -u 110 -r 50 -t 60s \\
      --host http://127.0.0.1:8000 --only-summary

`PARLEY_BENCH_HOSTS=http://127.0.0.1:8001,http://127.0.0.1:8002` spreads users over several
servers. `bench/locust.sh` starts servers, creates users, runs this and stops everything.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task

_USERS: list[dict[str, Any]] = json.loads(
    open(os.environ.get("PARLEY_BENCH_USERS", "users.json")).read()  # noqa: SIM115
)["users"]
_OPERATORS = int(os.environ.get("PARLEY_BENCH_OPERATORS", "10"))
_HOSTS = [h for h in os.environ.get("PARLEY_BENCH_HOSTS", "").split(",") if h]
_POLL_SECONDS = float(os.environ.get("PARLEY_BENCH_POLL_SECONDS", "10"))
_OPERATOR_IDS = {user["id"] for user in _USERS[:_OPERATORS]}
_WIDGET_TOKEN = os.environ.get("PARLEY_BENCH_WIDGET_TOKEN", "")
_ORIGIN = {"Origin": "https://bench.example"}
_next_operator_account = itertools.count()
_next_host = itertools.count()
_server_errors = {"count": 0}


@events.request.add_listener
def _count_5xx(response: Any = None, **_: Any) -> None:
    if response is not None and getattr(response, "status_code", 0) >= 500:
        _server_errors["count"] += 1


@events.quitting.add_listener
def _report_5xx(environment: Any, **_: Any) -> None:
    print(f"5xx responses: {_server_errors['count']}")
    if _server_errors["count"]:
        environment.process_exit_code = 1


class ChatUser(FastHttpUser):
    abstract = True
    role = "?"

    def __init__(self, environment: Any) -> None:
        if _HOSTS:
            self.host = _HOSTS[next(_next_host) % len(_HOSTS)]
        super().__init__(environment)
        self.account = self.pick_account()
        self.auth = {"Authorization": f"Bearer {self.account['token']}"}
        self.cursor = ""

    def pick_account(self) -> dict[str, Any]:
        raise NotImplementedError

    def start_stream(self) -> None:
        """Take the stream's current cursor, then long-poll in the background until stopped."""
        with self.client.get(
            "/v1/stream/poll?timeout=0", headers=self.auth, name="/v1/stream/poll (start)"
        ) as response:
            self.cursor = response.json()["cursor"]
        self.follower = gevent.spawn(self._follow)

    def on_stop(self) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.kill(block=False)

    def _follow(self) -> None:
        while True:
            try:
                for event in self.poll():
                    self.on_message(event)
            except Exception:  # a failed poll is in the stats already; back off, try again
                gevent.sleep(1)

    def on_message(self, event: dict[str, Any]) -> None:
        return None

    def poll(self) -> list[dict[str, Any]]:
        """One long-poll; the message events it brought, each recorded as a DELIVER sample."""
        with self.client.get(
            f"/v1/stream/poll?cursor={self.cursor}&timeout={_POLL_SECONDS:g}",
            headers=self.auth,
            name="/v1/stream/poll (long-poll)",
        ) as response:
            payload = response.json()
        self.cursor = payload["cursor"]
        arrived = time.time()
        found = [e for e in payload["events"] if e["type"] == "message"]
        for event in found:
            message = event["message"]
            if message["sender_id"] == self.account["id"]:
                continue
            _record_delivery(self.role, message["body"], arrived)
        return found

    def send(self, conversation_id: int, text: str) -> None:
        self.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": uuid.uuid4().hex, "body": f"t={time.time():.6f} {text}"},
            headers=self.auth,
            name="/v1/conversations/{id}/messages (send)",
        )


class Visitor(FastHttpUser):
    """A website visitor on the Widget API: bootstrap, history, then send and long-poll."""

    wait_time = between(2, 5)

    def __init__(self, environment: Any) -> None:
        if _HOSTS:
            self.host = _HOSTS[next(_next_host) % len(_HOSTS)]
        super().__init__(environment)

    def on_start(self) -> None:
        with self.client.post(
            "/api/widget/bootstrap",
            json={"widget_token": _WIDGET_TOKEN, "page_url": "https://bench.example/pricing"},
            headers=_ORIGIN,
            name="/api/widget/bootstrap",
        ) as response:
            answer = response.json()
        self.session = answer["session"]
        self.visitor_id = answer["visitor_id"]
        self.client.get(
            f"/api/widget/messages?session={self.session}&limit=50",
            headers=_ORIGIN,
            name="/api/widget/messages (history)",
        )
        with self.client.get(
            f"/api/widget/poll?session={self.session}&timeout=0",
            headers=_ORIGIN,
            name="/api/widget/poll (start)",
        ) as response:
            self.cursor = response.json()["cursor"]
        self.follower = gevent.spawn(self._follow)

    def on_stop(self) -> None:
        self.follower.kill(block=False)

    def _follow(self) -> None:
        while True:
            try:
                self._poll()
            except Exception:  # a failed poll is in the stats already; back off, try again
                gevent.sleep(1)

    def _poll(self) -> None:
        with self.client.get(
            f"/api/widget/poll?session={self.session}&cursor={self.cursor}"
            f"&timeout={_POLL_SECONDS:g}",
            headers=_ORIGIN,
            name="/api/widget/poll (long-poll)",
        ) as response:
            payload = response.json()
        self.cursor = payload["cursor"]
        arrived = time.time()
        for event in payload["events"]:
            if event["type"] == "message" and event["message"]["sender_id"] != self.visitor_id:
                _record_delivery("visitor", event["message"]["body"], arrived)

    @task
    def say_something(self) -> None:
        self.client.post(
            "/api/widget/messages",
            json={
                "session": self.session,
                "client_msg_id": uuid.uuid4().hex,
                "body": f"t={time.time():.6f} hello, I have a question about my order",
            },
            headers=_ORIGIN,
            name="/api/widget/messages (send)",
        )


class Operator(ChatUser):
    """A support agent: follow every conversation, answer visitors, reload the inbox."""

    fixed_count = _OPERATORS
    wait_time = between(5, 10)
    role = "operator"

    def pick_account(self) -> dict[str, Any]:
        self.index = next(_next_operator_account) % _OPERATORS
        return _USERS[self.index]

    def on_start(self) -> None:
        self.start_stream()

    def on_message(self, event: dict[str, Any]) -> None:
        # Every operator hears every visitor; each answers its share of the conversations.
        mine = event["conversation_id"] % _OPERATORS == self.index
        if mine and event["message"]["sender_id"] not in _OPERATOR_IDS:
            # Answer beside the stream, not in its way: the next poll starts at once.
            gevent.spawn(self.send, event["conversation_id"], "thanks, let me check")

    @task
    def inbox(self) -> None:
        self.client.get("/v1/conversations", headers=self.auth, name="/v1/conversations (inbox)")


def _record_delivery(role: str, body: str, arrived: float) -> None:
    """A `DELIVER` sample: from the send (stamped in the body) to the poll that brought it."""
    sent_at = _sent_at(body)
    if sent_at is not None:
        events.request.fire(
            request_type="DELIVER",
            name=f"{role}: message arrived (send -> poll)",
            response_time=max(0.0, (arrived - sent_at) * 1000),
            response_length=len(body),
            exception=None,
            context={},
        )


def _sent_at(body: str) -> float | None:
    if not body.startswith("t="):
        return None
    try:
        return float(body[2:].split(" ", 1)[0])
    except ValueError:
        return None
