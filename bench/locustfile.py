"""Locust scenario for the live-chat shape: visitors and operators over REST and long-poll.

Until the widget exists, visitors are plain chat users. Every user keeps a long-poll going in
the background, as the JS client does. A visitor bootstraps (opens a direct conversation with an
operator, lists its conversations, loads the newest page), then sends a message every few
seconds. An operator answers every visitor message its stream brings, and now and then reloads
its inbox (the conversation list).

Besides Locust's per-endpoint figures, each message that arrives on a stream is recorded as a
`DELIVER` sample: the time from its send (stamped in the body) to the poll that returned it.
Long-poll rows measure waiting, not work: read them as "how long until something happened".
At the end, the 5xx count is printed (and the run exits 1 if there was any).

Users come from `parley user add-many PREFIX N --json` (run with the server's PARLEY_* env):

    PARLEY_BENCH_USERS=users.json PARLEY_BENCH_OPERATORS=10 \\
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
_next_operator = itertools.count()  # which operator a new visitor talks to
_next_operator_account = itertools.count()
_next_visitor = itertools.count()
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
            sent_at = _sent_at(message["body"])
            if sent_at is not None:
                events.request.fire(
                    request_type="DELIVER",
                    name=f"{self.role}: message arrived (send -> poll)",
                    response_time=max(0.0, (arrived - sent_at) * 1000),
                    response_length=len(message["body"]),
                    exception=None,
                    context={},
                )
        return found

    def send(self, conversation_id: int, text: str) -> None:
        self.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": uuid.uuid4().hex, "body": f"t={time.time():.6f} {text}"},
            headers=self.auth,
            name="/v1/conversations/{id}/messages (send)",
        )


class Visitor(ChatUser):
    """A website visitor: bootstrap, then send and follow the conversation."""

    wait_time = between(2, 5)
    role = "visitor"

    def pick_account(self) -> dict[str, Any]:
        visitors = _USERS[_OPERATORS:]
        return visitors[next(_next_visitor) % len(visitors)]

    def on_start(self) -> None:
        operator = _USERS[next(_next_operator) % _OPERATORS]
        with self.client.post(
            "/v1/conversations",
            json={"kind": "direct", "members": [operator["name"]]},
            headers=self.auth,
            name="/v1/conversations (bootstrap)",
        ) as response:
            self.conversation_id = response.json()["id"]
        self.client.get("/v1/conversations", headers=self.auth, name="/v1/conversations")
        self.client.get(
            f"/v1/conversations/{self.conversation_id}/messages?limit=50",
            headers=self.auth,
            name="/v1/conversations/{id}/messages (page)",
        )
        self.start_stream()

    @task
    def say_something(self) -> None:
        self.send(self.conversation_id, "hello, I have a question about my order")


class Operator(ChatUser):
    """A support agent: follow every conversation, answer visitors, reload the inbox."""

    fixed_count = _OPERATORS
    wait_time = between(5, 10)
    role = "operator"

    def pick_account(self) -> dict[str, Any]:
        return _USERS[next(_next_operator_account) % _OPERATORS]

    def on_start(self) -> None:
        self.start_stream()

    def on_message(self, event: dict[str, Any]) -> None:
        if event["message"]["sender_id"] != self.account["id"]:
            # Answer beside the stream, not in its way: the next poll starts at once.
            gevent.spawn(self.send, event["conversation_id"], "thanks, let me check")

    @task
    def inbox(self) -> None:
        self.client.get("/v1/conversations", headers=self.auth, name="/v1/conversations (inbox)")


def _sent_at(body: str) -> float | None:
    if not body.startswith("t="):
        return None
    try:
        return float(body[2:].split(" ", 1)[0])
    except ValueError:
        return None
