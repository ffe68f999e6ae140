"""Notifications (docs/notifications.md) against real local servers — SMTP (aiosmtpd), a Web Push
endpoint that decrypts what it gets (RFC 8291), a Telegram Bot API — on SQLite and PostgreSQL.

The worker runs round by round here (PARLEY_NOTIFY_WORKER=external, `run_once`) with its clock
moved forward, so "unread for N seconds" needs no waiting; `test_worker_loop_...` runs it live.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from parley.assembly import Services
from parley.core.flags import bucket
from parley.core.models import Role
from parley.features.notify.worker import NOTIFY_FLAG, NotificationWorker
from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation
from tests.support.notify_servers import PushService, SmtpCapture, TelegramApi, parts, vapid_pair
from tests.support.waiting import eventually

BOT_TOKEN = "123456:TEST-bot-token-never-logged"
ALERT_CHAT = "-1001"


@pytest.fixture
def smtp() -> Iterator[SmtpCapture]:
    server = SmtpCapture().start()
    yield server
    server.stop()


@pytest.fixture
def vapid() -> tuple[str, str]:
    return vapid_pair()


@pytest.fixture
def push(vapid: tuple[str, str]) -> Iterator[PushService]:
    service = PushService(vapid_public_key=vapid[1]).start()
    yield service
    service.stop()


@pytest.fixture
def telegram() -> Iterator[TelegramApi]:
    api = TelegramApi(BOT_TOKEN).start()
    yield api
    api.stop()


@pytest.fixture
def settings(
    database_url: str,
    tmp_path: Path,
    smtp: SmtpCapture,
    push: PushService,
    telegram: TelegramApi,
    vapid: tuple[str, str],
    request: pytest.FixtureRequest,
) -> Settings:
    extra: dict[str, Any] = dict(getattr(request, "param", {}))
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        log_json=False,
        sqlite_synchronous="NORMAL",
        public_url="https://chat.example.com",
        notify_worker=extra.pop("notify_worker", "external"),
        notify_delay_seconds=30,
        notify_digest_seconds=300,
        notify_retry_base_seconds=0.01,
        notify_max_attempts=3,
        notify_poll_seconds=0.05,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_tls="none",
        smtp_from="Parley <notify@chat.example.com>",
        push_vapid_private_key=vapid[0],
        push_vapid_public_key=vapid[1],
        push_vapid_subject="mailto:ops@chat.example.com",
        push_endpoint_hosts=["127.0.0.1"],
        telegram_bot_token=BOT_TOKEN,
        telegram_api_url=telegram.url,
        telegram_alert_chat_id=ALERT_CHAT,
        widget_poll_min_interval_seconds=0,
        **extra,
    )


class Rounds:
    """Drive the worker: move its clock, run rounds until it has nothing left to do now."""

    def __init__(self, worker: NotificationWorker) -> None:
        self.worker = worker
        self.offset = timedelta()
        worker.clock = lambda: datetime.now(UTC) + self.offset

    async def run(self, *, after: float = 0) -> None:
        self.offset += timedelta(seconds=after)
        for _ in range(50):
            if not (await self.worker.run_once()).busy:
                return
        raise AssertionError("the worker never ran out of work")


@pytest.fixture
def rounds(services: Services) -> Rounds:
    return Rounds(services.notifications.worker)


async def beta_on(services: Services, **rules: Any) -> None:
    await services.release.flags.do_update_flag(
        "test", NOTIFY_FLAG, {"enabled": True, "percentage": None, **rules}
    )


async def with_email(person: Person) -> None:
    address = f"{person.user.name}@example.com"
    response = await person.http.patch("/v1/notifications/preferences", json={"email": address})
    assert response.status_code == 200, response.text


async def with_push(person: Person, push: PushService) -> Any:
    browser = push.browser(person.user.name)
    response = await person.http.post(
        "/v1/notifications/push/subscriptions", json=browser.subscription()
    )
    assert response.status_code == 201, response.text
    return browser


async def say(person: Person, conversation_id: int, *bodies: str) -> None:
    for body in bodies:
        response = await person.http.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": f"{body}-{id(body)}", "body": body},
        )
        assert response.status_code == 201, response.text


async def pair(people: PeopleFactory) -> tuple[Person, Person, int]:
    alice, bob = await people.add(), await people.add()
    return alice, bob, await create_conversation(alice, bob, title="Contract 7")


# -- the "done when" -----------------------------------------------------------------------


async def test_offline_member_gets_one_email_and_one_push_for_a_burst(
    people: PeopleFactory,
    services: Services,
    rounds: Rounds,
    smtp: SmtpCapture,
    push: PushService,
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_email(bob)
    browser = await with_push(bob, push)

    await say(alice, cid, "first", "second", "third <b>bold</b>", "fourth", "fifth")
    await rounds.run()
    assert smtp.mails == [] and browser.received() == []  # not unread for 30 s yet
    await rounds.run(after=31)
    await rounds.run(after=600)  # nothing further: the burst is one notification

    [mail] = smtp.to(f"{bob.user.name}@example.com")
    assert mail["Subject"] == "5 new messages in Contract 7"
    assert mail["From"] == "Parley <notify@chat.example.com>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<parley\.\d+\.digest-\d+\.email@chat\.example\.com>", mail["Message-ID"])
    text, html = parts(mail)
    assert "first" in text and "fifth" in text and "third <b>bold</b>" in text
    assert "third &lt;b&gt;bold&lt;/b&gt;" in html  # the HTML part escapes what people wrote
    assert f"https://chat.example.com/?conversation={cid}" in html
    [payload] = browser.received()
    assert payload["title"] == "5 new messages in Contract 7"
    assert payload["count"] == 5 and payload["body"].endswith("(+4 more)")
    assert payload["url"] == f"https://chat.example.com/?conversation={cid}"
    [request] = push.received
    assert request["claims"]["sub"] == "mailto:ops@chat.example.com"
    assert request["ttl"] == str(24 * 3600) and request["topic"]
    assert push.problems == []

    metrics = (await people.client().get("/metrics")).text
    assert 'parley_notifications_sent_total{channel="email"}' in metrics
    status = await services.notifications.refresh_metrics()
    assert {r.channel: (r.sent, r.dropped) for r in status}["push"] == (1, 0)
    metrics = (await people.client().get("/metrics")).text
    assert 'parley_notification_drop_rate{channel="email"} 0.0' in metrics


async def test_a_mention_is_notified_at_once_without_waiting_for_the_delay(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    carol = await people.add()
    await alice.http.post(f"/v1/conversations/{cid}/members", json={"members": [carol.user.name]})
    await with_email(bob)
    await with_email(carol)

    await say(alice, cid, f"@{bob.user.name} can you sign today?")
    await rounds.run()  # no time has passed: only the mentioned member hears of it now

    [mail] = smtp.to(f"{bob.user.name}@example.com")
    assert "can you sign today?" in parts(mail)[0]
    assert smtp.to(f"{carol.user.name}@example.com") == []
    await rounds.run(after=31)  # carol, not mentioned, waits out the usual delay
    assert len(smtp.to(f"{carol.user.name}@example.com")) == 1


async def test_unsubscribe_link_works_without_login(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_email(bob)
    await say(alice, cid, "hello")
    await rounds.run(after=31)
    [mail] = smtp.mails
    header = mail["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header.strip("<>")
    assert link in parts(mail)[0] and link.startswith("https://chat.example.com/")
    path = urlsplit(link)
    token = parse_qs(path.query)["token"][0]
    anonymous = people.client()

    page = await anonymous.get(path.path, params={"token": token})
    assert page.status_code == 200 and "<form method=post" in page.text
    assert (await services.notifications.store.get_preferences(bob.user.id)).email_enabled

    one_click = await anonymous.post(
        path.path, params={"token": token}, data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200 and "unsubscribed" in one_click.text
    prefs = (await bob.http.get("/v1/notifications/preferences")).json()
    assert prefs["email_enabled"] is False

    tampered = await anonymous.post(path.path, params={"token": token[:-2] + "xx"})
    assert tampered.status_code == 401

    await say(alice, cid, "are you there?")
    await rounds.run(after=1000)
    assert len(smtp.mails) == 1  # no more e-mail


# -- the rules -------------------------------------------------------------------------------------


async def test_read_messages_and_online_members_are_not_notified_until_offline(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_email(bob)

    await say(alice, cid, "read soon")
    receipt = await bob.http.post(f"/v1/conversations/{cid}/receipts", json={"read_seq": 1})
    assert receipt.status_code == 200, receipt.text
    await rounds.run(after=31)
    assert smtp.mails == []

    ephemeral = services.stream.ephemeral
    await ephemeral.presence_touch(bob.user.id, "tab-1", 3600)
    await say(alice, cid, "while you are here")
    await rounds.run(after=31)
    assert smtp.mails == []  # online: looked at again later
    await ephemeral.presence_leave(bob.user.id, "tab-1")
    await rounds.run(after=31)
    [mail] = smtp.mails
    assert mail["Subject"] == f"New message from {alice.user.name} in Contract 7"
    assert "while you are here" in parts(mail)[0]


async def test_muted_conversations_stay_silent_and_quiet_hours_hold_until_they_end(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_email(bob)
    muted = await bob.http.put(f"/v1/notifications/mutes/{cid}", json={})
    assert muted.status_code == 200, muted.text
    assert (await bob.http.get("/v1/notifications/mutes")).json()["mutes"][0][
        "conversation_id"
    ] == cid
    await say(alice, cid, "muted")
    await rounds.run(after=31)
    assert smtp.mails == []
    assert (await bob.http.delete(f"/v1/notifications/mutes/{cid}")).status_code == 204

    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).time(), (now + timedelta(hours=2)).time()
    quiet = {"timezone": "UTC", "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}
    response = await bob.http.patch("/v1/notifications/preferences", json={"quiet_hours": quiet})
    assert response.status_code == 200 and response.json()["quiet_hours"]["end"].startswith(
        end.strftime("%H:%M")
    )
    await say(alice, cid, "at night")
    await rounds.run(after=31)
    assert smtp.mails == []  # held: quiet hours
    await rounds.run(after=2 * 3600)
    [mail] = smtp.mails
    assert "at night" in parts(mail)[0] and "muted" not in parts(mail)[0]


async def test_the_beta_flag_notifies_only_its_percentage_of_contracts(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services, percentage=5, stickiness="contract")
    alice, bob = await people.add(), await people.add()
    await with_email(bob)
    inside = outside = None
    for _ in range(200):
        cid = await create_conversation(alice, bob, title="contract")
        if bucket(str(cid), NOTIFY_FLAG) <= 5:
            inside = inside or cid
        else:
            outside = outside or cid
        if inside and outside:
            break
    assert inside and outside
    await say(alice, outside, "outside the beta")
    await say(alice, inside, "inside the beta")
    await rounds.run(after=31)
    [mail] = smtp.mails
    assert "inside the beta" in parts(mail)[0]


async def test_with_the_beta_off_messages_notify_nobody_and_leave_the_outbox(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    alice, bob, cid = await pair(people)
    await with_email(bob)
    await say(alice, cid, "nobody is in the beta", "still nobody")
    await rounds.run(after=31)
    assert smtp.mails == []
    assert await services.notifications.worker.store.count_outbox() == 0
    await beta_on(services)
    await say(alice, cid, "now bob is")
    await rounds.run(after=31)
    [mail] = smtp.mails
    assert "now bob is" in parts(mail)[0]
    assert "nobody is in the beta" not in parts(mail)[0]


# -- deduplication, retries, dead letters ----------------------------------------------------


async def test_duplicate_events_and_work_done_twice_send_nothing_twice(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_email(bob)
    await say(alice, cid, "once")
    again = await alice.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "once-dup", "body": "x"}
    )
    retry = await alice.http.post(
        f"/v1/conversations/{cid}/messages", json={"client_msg_id": "once-dup", "body": "x"}
    )
    assert again.status_code == 201 and retry.status_code == 200  # a retry is no new message
    store = services.notifications.store
    # A duplicate event: the worker's expansion replayed (the outbox row comes back after it
    # was turned into pending rows, as if a crash undid only the delete).
    from parley.storage.schema import notification_outbox

    async with services.db.read() as conn:
        saved = [row._asdict() for row in (await conn.execute(notification_outbox.select()))]
    await rounds.run()
    async with services.db.write() as conn:
        row = {k: v for k, v in saved[0].items() if k != "id"}
        await conn.execute(notification_outbox.insert(), [row])
    await rounds.run()
    await rounds.run(after=31)
    assert len(smtp.mails) == 1
    delivered = await store.list_deliveries(user_id=bob.user.id)
    # The same delivery made again (a worker that redid its step) is refused by the key.
    refused = await store.add_deliveries(
        [
            {
                "user_id": d.user_id,
                "channel": d.channel,
                "subject": d.subject,
                "target": d.target,
                "payload": d.payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": datetime.now(UTC),
                "created_at": datetime.now(UTC),
            }
            for d in delivered
        ]
    )
    assert refused == len(delivered) == 1
    await rounds.run(after=600)
    assert len(smtp.mails) == 1
    metrics = (await people.client().get("/metrics")).text
    assert re.search(r'parley_notifications_deduplicated_total\{stage="pending"\} [1-9]', metrics)


async def test_failed_sends_are_retried_with_backoff_then_dead_lettered(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    carol = await people.add()
    await with_email(bob)
    await with_email(carol)
    # bob's mail fails twice then goes through; carol's never does.
    smtp.fail = _failing(smtp, bob_failures=2, always=carol.user.name)
    cid2 = await create_conversation(alice, carol, title="Other")
    await say(alice, cid, "to bob")
    await say(alice, cid2, "to carol")
    await rounds.run(after=31)
    for _ in range(5):
        await rounds.run(after=10)

    assert [m["To"] for m in smtp.mails] == [f"{bob.user.name}@example.com"]
    [dead] = await services.notifications.store.list_deliveries(status=_dead())
    assert dead.user_id == carol.user.id and dead.attempts == 3
    assert dead.last_error == "SMTP 451"
    rates = {r.channel: r for r in await services.notifications.drop_rates()}
    assert (rates["email"].sent, rates["email"].dropped, rates["email"].rate) == (1, 1, 0.5)

    admin = await people.add(role=Role.ADMIN)
    status = await admin.http.get("/v1/admin/notifications")
    assert status.status_code == 200, status.text
    assert status.json()["dead_letters"][0]["user_id"] == carol.user.id
    assert (await bob.http.get("/v1/admin/notifications")).status_code == 403

    # The release gates read the drop rate: above 1 % is a P1 failure.
    gates = await services.release.rollout.compute_gates()
    [check] = [c for c in gates.checks if c.name == "notification_drop_rate_email"]
    assert check.ok is False and check.value == 0.5


def _failing(smtp: SmtpCapture, *, bob_failures: int, always: str) -> Any:
    seen: dict[str, int] = {}

    def fail(_attempt: int, mail: Any) -> str | None:
        to = mail["To"]
        seen[to] = seen.get(to, 0) + 1
        if always in to or seen[to] <= bob_failures:
            return "451 4.3.0 try again later"
        return None

    return fail


def _dead() -> Any:
    from parley.core.notify import DeliveryStatus

    return DeliveryStatus.DEAD


async def test_a_push_subscription_the_browser_dropped_is_removed_not_counted_as_a_drop(
    people: PeopleFactory, services: Services, rounds: Rounds, push: PushService
) -> None:
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_push(bob, push)
    push.gone.add(bob.user.name)
    await say(alice, cid, "hello")
    await rounds.run(after=31)
    assert (await bob.http.get("/v1/notifications/push/subscriptions")).json() == {
        "subscriptions": []
    }
    rates = {r.channel: r for r in await services.notifications.drop_rates()}
    assert (rates["push"].dropped, rates["push"].expired) == (0, 1)


# -- Telegram --------------------------------------------------------------------------------------


async def test_telegram_link_needs_the_code_then_carries_notifications(
    people: PeopleFactory,
    services: Services,
    rounds: Rounds,
    telegram: TelegramApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await beta_on(services)
    alice, bob, cid = await pair(people)
    started = await bob.http.put("/v1/notifications/telegram", json={"chat_id": "4242"})
    assert started.status_code == 202, started.text
    [code_message] = telegram.to("4242")
    code = re.search(r"\b(\d{6})\b", code_message)
    assert code is not None
    wrong = "000000" if code.group(1) != "000000" else "111111"
    refused = await bob.http.post("/v1/notifications/telegram/verify", json={"code": wrong})
    assert refused.status_code == 400
    linked = await bob.http.post("/v1/notifications/telegram/verify", json={"code": code.group(1)})
    assert linked.status_code == 200 and linked.json()["telegram_linked"] is True

    await say(alice, cid, "over telegram")
    await rounds.run(after=31)
    [_, note] = telegram.to("4242")
    assert "over telegram" in note and f"/?conversation={cid}" in note

    # Operational alerts go to the alert chat: a kill of the release.
    admin = await people.add(role=Role.ADMIN)
    await admin.http.post("/v1/admin/release/promote", json={"override": True, "reason": "go"})
    killed = await admin.http.post("/v1/admin/release/kill", json={"reason": "errors spike"})
    assert killed.status_code == 200, killed.text
    [alert] = telegram.to(ALERT_CHAT)
    assert "kill switch ON" in alert and "errors spike" in alert
    assert BOT_TOKEN not in caplog.text


# -- live chat: nobody online ----------------------------------------------------------------


SITE = "https://shop.example.com"


async def test_offline_form_tells_operators_and_the_reply_reaches_the_visitor_by_email(
    people: PeopleFactory, services: Services, rounds: Rounds, smtp: SmtpCapture
) -> None:
    admin = await people.add(role=Role.ADMIN)
    operator = await people.add()
    await with_email(operator)
    inbox = (
        await admin.http.post(
            "/v1/admin/inboxes",
            json={
                "name": "Shop",
                "allowed_domains": ["shop.example.com"],
                "operators": [operator.user.name],
            },
        )
    ).json()
    site = people.client()
    site.headers["Origin"] = SITE
    page = "https://shop.example.com/product/7?ref=x"
    visit = (
        await site.post(
            "/api/widget/bootstrap",
            json={"widget_token": inbox["widget_token"], "page_url": page},
        )
    ).json()
    assert visit["online"] is False  # working hours, but no operator connected

    left = await site.post(
        "/api/widget/offline",
        json={
            "session": visit["session"],
            "email": "visitor@example.org",
            "client_msg_id": "off-1",
            "body": "Do you ship to Oslo?",
        },
    )
    assert left.status_code == 201, left.text
    bad = await site.post(
        "/api/widget/offline",
        json={"session": visit["session"], "email": "nope", "client_msg_id": "o2", "body": "x"},
    )
    assert bad.status_code == 422
    await rounds.run(after=31)
    [to_operator] = smtp.to(f"{operator.user.name}@example.com")
    assert "Do you ship to Oslo?" in parts(to_operator)[0]

    cid = visit["conversation_id"]
    await say(operator, cid, "Yes, in 3 days.")
    await rounds.run(after=31)
    [reply] = smtp.to("visitor@example.org")
    assert reply["Subject"] == "New reply from Shop"
    text, _ = parts(reply)
    assert "Yes, in 3 days." in text
    link = re.search(r"(https://shop\.example\.com/product/7\?ref=x#parley-resume=\S+)", text)
    assert link is not None
    token = link.group(1).split("#parley-resume=")[1]

    # The link brings the visitor back into the same conversation, on a new device too.
    back = await site.post(
        "/api/widget/bootstrap", json={"widget_token": inbox["widget_token"], "resume": token}
    )
    assert back.status_code == 200, back.text
    assert back.json()["conversation_id"] == cid and back.json()["restored"] is True
    history = await site.get("/api/widget/messages", params={"session": back.json()["session"]})
    assert [m["body"] for m in history.json()["messages"]] == [
        "Do you ship to Oslo?",
        "Yes, in 3 days.",
    ]
    forged = await site.post(
        "/api/widget/bootstrap",
        json={"widget_token": inbox["widget_token"], "resume": token[:-3] + "abc"},
    )
    assert forged.status_code == 401

    await services.stream.ephemeral.presence_touch(operator.user.id, "console", 60)
    again = (
        await site.post("/api/widget/bootstrap", json={"widget_token": inbox["widget_token"]})
    ).json()
    assert again["online"] is True


# -- who may do what, and bad input ----------------------------------------------------------------


async def test_members_manage_only_their_own_settings(
    people: PeopleFactory, push: PushService
) -> None:
    alice, bob = await people.add(), await people.add()
    carol = await people.add()
    cid = await create_conversation(alice, bob)
    browser = push.browser("alice")
    sub = (
        await alice.http.post("/v1/notifications/push/subscriptions", json=browser.subscription())
    ).json()

    assert (
        await bob.http.delete(f"/v1/notifications/push/subscriptions/{sub['id']}")
    ).status_code == 404
    assert (await carol.http.put(f"/v1/notifications/mutes/{cid}", json={})).status_code == 404
    assert (await people.client().get("/v1/notifications/preferences")).status_code == 401
    assert (await alice.http.get("/v1/admin/notifications")).status_code == 403
    listed = (await alice.http.get("/v1/notifications/push/subscriptions")).json()
    assert [s["endpoint_host"] for s in listed["subscriptions"]] == [f"127.0.0.1:{push.port}"]
    assert (
        await alice.http.delete(f"/v1/notifications/push/subscriptions/{sub['id']}")
    ).status_code == 204


@pytest.mark.parametrize(
    ("path", "method", "body", "status"),
    [
        ("/v1/notifications/preferences", "PATCH", {"email": "not-an-address"}, 422),
        ("/v1/notifications/preferences", "PATCH", {"quiet_hours": {"timezone": "Mars/Base"}}, 422),
        ("/v1/notifications/preferences", "PATCH", {"email_enabled": "maybe"}, 422),
        ("/v1/notifications/mutes/1", "PUT", {"until": "2001-01-01T00:00:00Z"}, 422),
        (
            "/v1/notifications/push/subscriptions",
            "POST",
            {"endpoint": "https://evil.internal/x", "keys": {"p256dh": "A" * 87, "auth": "B" * 22}},
            400,
        ),
        ("/v1/notifications/push/subscriptions", "POST", {"endpoint": "ftp://x"}, 422),
        ("/v1/notifications/telegram", "PUT", {"chat_id": "1; drop"}, 422),
        ("/v1/notifications/telegram/verify", "POST", {"code": "123456"}, 404),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    people: PeopleFactory, path: str, method: str, body: dict[str, Any], status: int
) -> None:
    alice, bob = await people.add(), await people.add()
    await create_conversation(alice, bob)
    response = await alice.http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"].startswith("ERR_")


async def test_push_key_and_service_worker_are_served(people: PeopleFactory, vapid: Any) -> None:
    anonymous = people.client()
    assert (await anonymous.get("/v1/notifications/push/key")).json() == {"public_key": vapid[1]}
    sw = await anonymous.get("/parley-sw.js")
    assert sw.status_code == 200 and sw.headers["service-worker-allowed"] == "/"
    assert sw.headers["content-type"].startswith("text/javascript")
    assert "showNotification" in sw.text


@pytest.mark.parametrize("settings", [{"notify_worker": "in_process"}], indirect=True)
async def test_worker_loop_in_the_server_delivers_on_its_own(
    people: PeopleFactory, services: Services, smtp: SmtpCapture, settings: Settings
) -> None:
    services.notifications.worker.timing = services.notifications.worker.timing.__class__(
        delay=timedelta(seconds=0.2), digest_interval=timedelta(seconds=60), max_age=timedelta(1)
    )
    await beta_on(services)
    alice, bob, cid = await pair(people)
    await with_email(bob)
    await say(alice, cid, "live")
    await eventually(lambda: smtp.mails, what="the in-process worker's e-mail")
    assert parts(smtp.mails[0])[0].count("live") >= 1
