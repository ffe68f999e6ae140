"""The moderation and disputes pages of the console in Chromium, against a real server: a
moderator clears the queue (one item arriving live), a dispute agent takes a dispute from open
to a partial release, and every step is in the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.support.servers import ServerProcess, free_port

ENV = {"PARLEY_LOG_JSON": "false", "PARLEY_DATABASE_URL": ""}


class Deployment:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {**ENV, "PARLEY_DATA_DIR": str(workdir / "var")}
        self.server = ServerProcess(port=free_port(), workdir=workdir, env=self.env)
        self.tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self.server.url

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "parley", *args],
            cwd=self.workdir,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def add_user(self, name: str, role: str) -> None:
        out = self.cli("user", "add", name, "--role", role, "--password", f"{name}-password")
        self.tokens[name] = out.strip().splitlines()[-1]

    def call(self, who: str, method: str, path: str, **kw: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=30,
            **kw,
        )
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def send(self, who: str, cid: int, body: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/conversations/{cid}/messages",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            json={"client_msg_id": uuid.uuid4().hex, "body": body},
            timeout=30,
        )

    def audit(self, action: str) -> list[dict[str, Any]]:
        return list(
            self.call("root", "GET", "/v1/admin/audit", params={"action": action})["entries"]
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("trust-console"))
    for name, role in (
        ("root", "admin"),
        ("mia", "moderator"),
        ("dan", "dispute_ops"),
        ("bea", "member"),
        ("sam", "member"),
    ):
        deployment.add_user(name, role)
    deployment.cli("release", "flag", "dispute_tools_v2", "--on")
    deployment.server.start()
    yield deployment
    deployment.server.stop()


@pytest.fixture
def page(browser: Browser, deployment: Deployment) -> Iterator[Page]:
    context = browser.new_context(base_url=deployment.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # An answered 4xx is logged by Chromium as "Failed to load resource"; that is expected.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert problems == [], problems  # no CSP violation, no script error


def sign_in(page: Page, path: str, name: str) -> None:
    page.goto(path)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(f"{name}-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-name")).to_have_text(name)
    expect(page.get_by_test_id("connection")).to_contain_text("Live")


def test_a_moderator_clears_the_queue_and_every_decision_is_audited(
    page: Page, deployment: Deployment
) -> None:
    d = deployment
    cid = d.call(
        "bea",
        "POST",
        "/v1/conversations",
        json={"kind": "group", "title": "market", "members": ["sam"]},
    )["id"]
    d.call(
        "mia",
        "POST",
        "/v1/moderation/rules",
        json={"name": "scam", "kind": "words", "config": {"words": ["free money"]}},
    )
    assert d.send("bea", cid, "free money for the first ten buyers!").status_code == 409
    rude = d.send("sam", cid, "you are a fool").json()
    d.call(
        "bea",
        "POST",
        f"/v1/conversations/{cid}/messages/{rude['id']}/report",
        json={"reason": "harassment", "note": "not the first time"},
    )

    sign_in(page, "/console/moderation", "mia")
    queue = page.get_by_test_id("queue-list")
    expect(queue.locator(".queue-item")).to_have_count(2)
    expect(page.get_by_test_id("backlog")).to_have_text("2 open")

    # A held send that arrives now shows up without a reload.
    assert d.send("bea", cid, "more free money, click here").status_code == 409
    expect(queue.locator(".queue-item")).to_have_count(3)

    queue.locator(".queue-item").filter(has_text="first ten buyers").get_by_role("button").click()
    expect(page.get_by_test_id("item-body")).to_have_text("free money for the first ten buyers!")
    expect(page.get_by_test_id("item-facts")).to_contain_text("rule “scam”")
    page.get_by_label("Reason (kept in the audit log)").fill("a real promotion")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text(f"Approved: #{_item_id(page)}")
    expect(queue.locator(".queue-item")).to_have_count(2)

    queue.locator(".queue-item").filter(has_text="you are a fool").get_by_role("button").click()
    expect(page.get_by_test_id("item-body")).to_have_text("you are a fool")
    expect(page.locator("#item-reports")).to_contain_text("harassment")
    expect(page.locator("#item-reports")).to_contain_text("not the first time")
    page.get_by_label("Reason (kept in the audit log)").fill("first warning")
    page.locator("#decide-remove").uncheck()
    page.get_by_role("button", name="Warn").click()
    expect(queue.locator(".queue-item")).to_have_count(1)

    queue.locator(".queue-item").get_by_role("button").click()
    expect(page.get_by_test_id("item-body")).to_have_text("more free money, click here")
    page.get_by_label("Reason (kept in the audit log)").fill("spam")
    page.get_by_role("button", name="Remove").click()
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.get_by_test_id("backlog")).to_have_text("0 open")

    # What members see: the approved message is delivered, the removed one never was.
    bodies = [
        m["body"] for m in d.call("sam", "GET", f"/v1/conversations/{cid}/messages")["messages"]
    ]
    assert bodies == ["you are a fool", "free money for the first ten buyers!"]
    decisions = {
        e["action"]: (e["actor"], e["reason"])
        for e in d.audit("moderation.")
        if e["actor"] == "mia"
    }
    assert decisions["moderation.approve"] == ("mia", "a real promotion")
    assert decisions["moderation.warn"] == ("mia", "first warning")
    assert decisions["moderation.remove"] == ("mia", "spam")
    warnings = d.call("sam", "GET", "/v1/me/sanctions")["sanctions"]
    assert [(w["kind"], w["reason"]) for w in warnings] == [("warn", "first warning")]


def _item_id(page: Page) -> str:
    return (page.locator("#item-title").text_content() or "").rsplit("#", 1)[-1]


def test_a_dispute_agent_takes_a_dispute_from_open_to_a_partial_release(
    page: Page, deployment: Deployment
) -> None:
    d = deployment
    cid = d.call(
        "bea",
        "POST",
        "/v1/conversations",
        json={"kind": "group", "title": "order 1001", "members": ["sam"]},
    )["id"]
    reference = f"order-{uuid.uuid4().hex[:6]}"

    sign_in(page, "/console/disputes", "dan")
    page.get_by_role("button", name="Open a dispute").click()
    page.get_by_label("Conversation id").fill(str(cid))
    page.get_by_label("Buyer", exact=True).fill("bea")
    page.get_by_label("Seller", exact=True).fill("sam")
    page.get_by_label("Amount in escrow (minor units, e.g. cents)").fill("10000")
    page.get_by_label("Currency").fill("EUR")
    page.get_by_label("Reference (order or contract)").fill(reference)
    page.get_by_label("Reason", exact=True).fill("parcel arrived damaged")
    page.get_by_role("button", name="Open dispute").click()

    status = page.get_by_test_id("dispute-status")
    expect(status).to_have_text("open")
    expect(page.locator("#d-amount")).to_contain_text("10000 minor units")
    expect(page.get_by_test_id("dispute-list")).to_contain_text(reference)
    page.get_by_role("button", name="Assign to me").click()
    expect(page.locator("#d-assignee")).to_have_text("dan")
    page.get_by_label("Reason (kept in the history and the audit log)").fill("asked for photos")
    page.get_by_role("button", name="Collect evidence").click()
    expect(status).to_have_text("evidence")
    page.get_by_role("button", name="Start review").click()
    expect(status).to_have_text("review")

    page.get_by_label("Outcome").select_option("partial_release")
    page.get_by_label("To the seller (minor units)").fill("7000")
    page.get_by_label("To the buyer (minor units)").fill("2000")
    expect(page.get_by_test_id("resolve-sum")).to_contain_text("9000 of 10000")
    expect(page.get_by_role("button", name="Resolve dispute")).to_be_disabled()
    page.get_by_label("To the buyer (minor units)").fill("3000")
    expect(page.get_by_test_id("resolve-sum")).to_contain_text("Adds up")
    page.get_by_label("Reason (kept in the history and the audit log)").fill("damage is minor")
    page.get_by_role("button", name="Resolve dispute").click()

    expect(status).to_have_text("resolved")
    expect(page.locator("#d-outcome")).to_contain_text("partial_release")
    history = page.get_by_test_id("dispute-history").locator("li")
    expect(history).to_have_count(5)  # opened, assigned, evidence, review, resolved
    expect(history.last).to_contain_text("resolved")

    dispute_id = d.call("dan", "GET", "/v1/disputes")["disputes"][0]["id"]
    steps = [
        (e["action"], e["actor"]) for e in d.audit("dispute.") if e["target_id"] == str(dispute_id)
    ][::-1]
    assert steps == [
        ("dispute.open", "dan"),
        ("dispute.assign", "dan"),
        ("dispute.transition", "dan"),
        ("dispute.transition", "dan"),
        ("dispute.resolve", "dan"),
    ]
    resolved = d.call("dan", "GET", f"/v1/disputes/{dispute_id}")
    assert resolved["outcome"] == {
        "kind": "partial_release",
        "seller_amount": 7000,
        "buyer_amount": 3000,
    }


def test_the_pages_refuse_accounts_of_other_roles(page: Page) -> None:
    page.goto("/console/moderation")
    page.get_by_label("Name").fill("dan")
    page.get_by_label("Password").fill("dan-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("dan is not a moderator")
    expect(page.locator("#workspace")).to_be_hidden()

    page.goto("/console/disputes")
    page.get_by_label("Name").fill("bea")
    page.get_by_label("Password").fill("bea-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("bea is not in dispute_ops")
