"""The console as an operator's desk (issue 20): the open + pending view, friendly visitor
names, and activity entries (assigned, status, priority: by whom, when) every operator sees."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.e2e.console_support import Console, Deployment, Visitor


def _token(deployment: Deployment, name: str) -> str:
    response = httpx.post(
        f"{deployment.url}/v1/auth/login", json={"name": name, "password": f"{name}-password"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_the_list_shows_open_and_pending_chats_by_friendly_name_and_resolved_ones_leave(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    waiting, done = Visitor(deployment), Visitor(deployment)
    visitors.extend([waiting, done])
    waiting.send("Do you ship to Norway?")
    done.send("Thanks, all sorted")
    response = httpx.patch(
        f"{deployment.url}/v1/livechat/conversations/{done.conversation_id}",
        headers={"Authorization": f"Bearer {_token(deployment, 'ben')}"},
        json={"status": "resolved"},
    )
    assert response.status_code == 200, response.text

    console.sign_in("ana", "ana-password")
    page = console.page
    expect(page.get_by_label("Status filter")).to_have_value("open,pending")
    item = console.item(waiting.conversation_id)
    expect(item.locator(".visitor")).to_have_text(waiting.name)
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", waiting.name)
    expect(item).not_to_contain_text("visitor-")
    expect(console.item(done.conversation_id)).to_have_count(0)

    # Resolving it from the console takes it out of the list; "Any status" brings it back.
    console.open(waiting.conversation_id, waiting.name)
    page.get_by_label("Status", exact=True).select_option("resolved")
    expect(item).to_have_count(0)
    page.get_by_label("Status filter").select_option("")
    expect(item).to_be_visible()
    expect(console.item(done.conversation_id)).to_be_visible()


def test_assigning_and_changing_status_leave_activity_every_operator_sees(
    console: Console, deployment: Deployment, visitors: list[Visitor], browser: Browser
) -> None:
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("My order never arrived")
    ben_context = browser.new_context(base_url=deployment.url)
    try:
        ben = Console(ben_context.new_page())
        ben.sign_in("ben", "ben-password")
        ben.open(visitor.conversation_id, visitor.name)

        console.sign_in("ana", "ana-password")
        page = console.page
        console.open(visitor.conversation_id, visitor.name)
        # One change at a time, as a person makes them (each is its own request).
        page.get_by_label("Assignee", exact=True).select_option(label="ben (online)")
        expect(console.timeline_entry("ana assigned this to ben")).to_have_count(1)
        page.get_by_label("Priority", exact=True).select_option("high")
        expect(console.timeline_entry("ana changed priority")).to_have_count(1)
        page.get_by_label("Status", exact=True).select_option("pending")

        for desk in (console, ben):  # ben's page updates live, without a reload
            activity = desk.page.get_by_test_id("timeline").locator(".entry.activity")
            expect(activity).to_have_text(
                [
                    re.compile(r"^ana assigned this to ben · \S"),
                    re.compile(r"^ana changed priority from Normal to High · "),
                    re.compile(r"^ana changed status from Open to Pending · "),
                ]
            )
        # They sit after the visitor's message, in the order they happened; and survive a reload.
        entries = page.get_by_test_id("timeline").locator(".entry")
        expect(entries.first).to_contain_text("My order never arrived")
        page.reload()
        console.open(visitor.conversation_id, visitor.name)
        expect(console.timeline_entry("ana assigned this to ben")).to_have_count(1)
        assert ben.problems == [], ben.problems
    finally:
        ben_context.close()


def test_slash_in_the_message_box_offers_the_inbox_canned_replies(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    url = f"{deployment.url}/v1/livechat/inboxes/{deployment.inbox['id']}/canned-replies"
    root = {"Authorization": f"Bearer {_token(deployment, 'root')}"}
    for shortcut, body in [
        ("hello", "Hello! How can I help you today?"),
        ("shipping", "We ship within 2 working days."),
    ]:
        response = httpx.post(url, headers=root, json={"shortcut": shortcut, "body": body})
        assert response.status_code in (201, 409), response.text  # 409: made by a rerun
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("When do you ship?")
    console.sign_in("ana", "ana-password")
    page = console.page
    console.open(visitor.conversation_id, visitor.name)
    page.get_by_role("button", name="Assign to me").click()

    box = page.get_by_label("Message")
    box.press_sequentially("/")
    choices = page.get_by_role("listbox", name="Canned replies").get_by_role("option")
    expect(choices).to_have_count(2)
    box.press_sequentially("ship")
    expect(choices).to_have_text(["/shipping We ship within 2 working days."])
    box.press("Enter")
    expect(box).to_have_value("We ship within 2 working days.")
    expect(page.get_by_role("listbox", name="Canned replies")).to_be_hidden()
    page.get_by_role("button", name="Send reply").click()
    expect(console.timeline_entry("We ship within 2 working days.")).to_have_count(1)


def test_the_operator_attaches_a_file_and_the_visitor_gets_it(
    console: Console, deployment: Deployment, visitors: list[Visitor], tmp_path: Path
) -> None:
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("Can you send me the invoice?")
    invoice = tmp_path / "invoice-1042.txt"
    invoice.write_text("Invoice 1042: one teapot, 35 EUR\n")
    console.sign_in("ana", "ana-password")
    page = console.page
    console.open(visitor.conversation_id, visitor.name)
    page.get_by_role("button", name="Assign to me").click()

    page.get_by_label("Attach file").set_input_files(str(invoice))

    timeline = page.get_by_test_id("timeline")
    expect(timeline.get_by_role("link", name="invoice-1042.txt")).to_be_visible()
    files = [a["file_name"] for m in visitor.messages() for a in m.get("attachments", [])]
    assert files == ["invoice-1042.txt"]
    # Notes never carry files: the button is only there while replying.
    page.get_by_role("button", name="Note", exact=True).click()
    expect(page.get_by_label("Attach file")).to_be_hidden()
