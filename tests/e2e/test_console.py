"""The operator console (/console) in Chromium against a real server: a visitor's conversation
appears live, the operator assigns it, replies, writes an internal note the visitor never sees,
changes status and priority; visitor text renders as text; filters follow live changes."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.e2e.console_support import Console, Deployment, Visitor
from tests.e2e.widget_support import HostSite, WidgetPage
from tests.support.servers import ServerProcess

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
XSS_FILE = "report &amp; ' onmouseover=window.__xss=3 x='"

# -- the page's headers --------------------------------------------------------------------------


def test_the_console_is_served_with_a_strict_content_security_policy(
    deployment: Deployment,
) -> None:
    response = httpx.get(f"{deployment.url}/console")

    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_the_page_runs_under_its_policy_and_streams_over_the_websocket(console: Console) -> None:
    # The console fixture fails the test on any console error, CSP violations included.
    console.sign_in("ana", "ana-password")

    expect(console.page.get_by_test_id("connection")).to_have_text("Live (ws)")


def test_a_wrong_password_is_refused_on_the_page(console: Console) -> None:
    page = console.page
    page.goto("/console")
    page.get_by_label("Name").fill("ana")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
    expect(page.locator("#workspace")).to_be_hidden()


# -- the operator's day, visitor over the Widget API ---------------------------------------------


def test_operator_answers_a_new_visitor_and_the_note_stays_internal(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    console.sign_in("ana", "ana-password")
    page = console.page

    visitor = Visitor(deployment, page_url="https://shop.example.com/pricing", language="de")
    visitors.append(visitor)
    attachment = visitor.upload("invoice-42.txt", b"total: 42 EUR\n")
    visitor.send("Hello, is shipping free?", [attachment["id"]])

    # It appears in the list without a reload, marked new.
    item = console.item(visitor.conversation_id)
    expect(item).to_contain_text("Hello, is shipping free?")
    expect(item.locator(".new-dot")).to_be_visible()
    console.open(visitor.conversation_id, visitor.name)
    expect(item.locator(".new-dot")).to_have_count(0)

    first = console.timeline_entry("Hello, is shipping free?")
    expect(first).to_have_class("entry message visitor")
    expect(first.get_by_role("link", name="invoice-42.txt")).to_be_visible()
    with page.expect_download() as download:
        first.get_by_role("link", name="invoice-42.txt").click()
    assert Path(download.value.path()).read_bytes() == b"total: 42 EUR\n"
    page_link = page.locator("#visitor-page").get_by_role("link")
    expect(page_link).to_have_attribute("href", "https://shop.example.com/pricing")
    expect(page_link).to_have_attribute("rel", "noopener noreferrer")
    expect(page.locator("#visitor-language")).to_have_text("de")

    page.get_by_role("button", name="Assign to me").click()
    expect(page.get_by_label("Assignee", exact=True)).to_have_value(str(_user_id(page)))
    expect(page.get_by_role("button", name="Assign to me")).to_be_disabled()

    page.get_by_label("Message").fill("Yes, above 50 EUR.")
    page.get_by_role("button", name="Send reply").click()
    reply = console.timeline_entry("Yes, above 50 EUR.")
    expect(reply).to_have_class("entry message operator")

    page.get_by_role("button", name="Note", exact=True).click()
    page.get_by_label("Message").fill("VIP customer, offer the discount")
    page.get_by_role("button", name="Add note").click()
    note = console.timeline_entry("VIP customer, offer the discount")
    expect(note).to_have_class("entry note")
    expect(note.locator(".note-label")).to_have_text("Internal note")

    page.get_by_label("Status", exact=True).select_option("pending")
    page.get_by_label("Priority", exact=True).select_option("high")
    expect(item.locator(".badge.status-pending")).to_have_text("Pending")
    expect(item.locator(".badge.priority-high")).to_have_text("High")

    # The visitor gets the reply, and the note is nowhere in what they can read.
    bodies = [message["body"] for message in visitor.messages()]
    assert bodies == ["Hello, is shipping free?", "Yes, above 50 EUR."]

    # The visitor reads it: the operator sees the read mark; then the visitor types.
    visitor.read(visitor.messages()[-1]["seq"])
    expect(reply.locator(".receipt")).to_have_text("✓✓ Read")
    visitor.typing()
    expect(page.get_by_test_id("typing")).to_be_visible()


# -- the scenario with the real widget on another origin ---------------------------------


def test_visitor_in_the_widget_and_operator_in_the_console_chat_and_the_note_stays_internal(
    console: Console, deployment: Deployment, browser: Browser, tmp_path: Path
) -> None:
    console.sign_in("ana", "ana-password")
    page = console.page
    with HostSite(deployment.url) as site:
        widget = WidgetPage.visit(browser, site.page(deployment.inbox["widget_token"]))
        try:
            widget.open()
            # Opening the chat starts the conversation: it is in the list at once, marked new.
            item = page.locator(".conversation-item").filter(has_text="No messages yet").first
            expect(item.locator(".new-dot")).to_be_visible()
            conversation_id = int(item.get_attribute("data-conversation-id") or 0)
            item.get_by_role("button").click()
            expect(page.locator("#conversation-title")).not_to_be_empty()

            # The operator watches the visitor type, then the message and a file arrive.
            composer = widget.panel.get_by_role("textbox", name="Message")
            composer.press_sequentially("My teapot arrived broken")
            expect(page.get_by_test_id("typing")).to_be_visible()
            widget.panel.get_by_role("button", name="Send").click()
            expect(console.timeline_entry("My teapot arrived broken")).to_have_count(1)
            expect(page.get_by_test_id("typing")).to_be_hidden()
            photo = tmp_path / "teapot.txt"
            photo.write_text("a broken teapot\n")
            widget.file_input.set_input_files(str(photo))
            timeline = page.get_by_test_id("timeline")
            expect(timeline.get_by_role("link", name="teapot.txt")).to_be_visible()
            expect(console.item(conversation_id)).to_contain_text("(attachment)")

            page.get_by_role("button", name="Assign to me").click()
            expect(console.item(conversation_id)).to_contain_text("→ ana")
            page.get_by_label("Message").fill("Sorry! A new one ships today.")
            page.get_by_role("button", name="Send reply").click()
            page.get_by_role("button", name="Note", exact=True).click()
            page.get_by_label("Message").fill("Refund approved by Ben, do not tell yet")
            page.get_by_role("button", name="Add note").click()
            expect(console.timeline_entry("Refund approved by Ben")).to_have_class("entry note")
            page.get_by_label("Status", exact=True).select_option("pending")
            page.get_by_label("Priority", exact=True).select_option("urgent")
            expect(console.item(conversation_id).locator(".badge.status-pending")).to_be_visible()
            expect(console.item(conversation_id).locator(".badge.priority-urgent")).to_be_visible()

            # The widget shows the reply, read by the visitor, and never the note.
            expect(widget.message("Sorry! A new one ships today.")).to_have_count(1)
            reply = console.timeline_entry("Sorry! A new one ships today.")
            expect(reply.locator(".receipt")).to_have_text("✓✓ Read")
            assert "Refund approved" not in _widget_markup(widget)

            # A reload of the host page restores the history (still without the note).
            widget.page.reload()
            widget.open()
            expect(widget.message("My teapot arrived broken")).to_have_count(1)
            expect(widget.message("Sorry! A new one ships today.")).to_have_count(1)
            assert "Refund approved" not in _widget_markup(widget)

            # The page's own buttons drive the widget through window.ParleyMessenger.
            widget.api("close")
            expect(widget.panel).to_be_hidden()
            widget.api("open")
            expect(widget.panel).to_be_visible()
        finally:
            widget.close()


def _widget_markup(widget: WidgetPage) -> str:
    """Everything in the widget's shadow DOM, as markup (text, attributes, hidden parts)."""
    script = "() => document.querySelector('parley-messenger').shadowRoot.innerHTML"
    return str(widget.page.evaluate(script))


def _user_id(page: Page) -> int:
    return int(
        page.evaluate(
            "async () => (await (await fetch('/v1/me', {headers: {Authorization: "
            "'Bearer ' + sessionStorage.getItem('parley.console.token')}})).json()).id"
        )
    )


def test_an_admin_outside_the_conversation_assigns_it_to_read_and_reply(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("Can an admin help?")
    console.sign_in("root", "root-password")
    page = console.page
    console.open(visitor.conversation_id, visitor.name)

    expect(page.locator("#not-member")).to_be_visible()
    expect(console.timeline_entry("Can an admin help?")).to_have_count(0)
    page.get_by_role("button", name="Assign to me").click()

    expect(page.locator("#not-member")).to_be_hidden()
    expect(console.timeline_entry("Can an admin help?")).to_have_count(1)
    page.get_by_label("Message").fill("Yes, I can.")
    page.get_by_role("button", name="Send reply").click()
    expect(console.timeline_entry("Yes, I can.")).to_have_class("entry message operator")
    assert [m["body"] for m in visitor.messages()] == ["Can an admin help?", "Yes, I can."]

    # A reload keeps the session (this tab) and reopens the conversation from the URL.
    page.reload()
    expect(page.locator("#conversation-title")).to_have_text(visitor.name)
    expect(console.timeline_entry("Yes, I can.")).to_have_count(1)


# -- visitor text is text ------------------------------------------------------------------------


def test_html_from_a_visitor_renders_as_text_and_never_runs(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    # Attribute values are the site's free text; keys are restricted to [A-Za-z0-9_.-].
    visitor = Visitor(deployment, attributes={"plan": XSS, "name": XSS})
    visitors.append(visitor)
    # The server strips `/ < > "` from file names; what is left must still show verbatim
    # (`&amp;` read as HTML would show as `&`; the quote would end an attribute).
    attachment = visitor.upload(f"{XSS_FILE}.txt", b"x")
    assert attachment["file_name"] == f"{XSS_FILE}.txt"
    visitor.send(XSS, [attachment["id"]])
    console.sign_in("ana", "ana-password")
    page = console.page

    expect(console.item(visitor.conversation_id)).to_contain_text(XSS)
    console.open(visitor.conversation_id, visitor.name)

    entry = console.timeline_entry(XSS)
    expect(entry.locator(".body")).to_have_text(XSS)
    expect(entry.locator("a.download")).to_have_text(f"{XSS_FILE}.txt")
    attributes = page.get_by_test_id("visitor-attributes")
    expect(attributes.locator("dt").filter(has_text="plan")).to_have_count(1)
    expect(attributes.locator("dd").filter(has_text=XSS)).to_have_count(2)
    assert page.locator("#timeline img, #visitor-attributes img, #timeline script").count() == 0
    assert page.evaluate("window.__xss") is None


# -- filters -------------------------------------------------------------------------------------


def test_a_conversation_leaves_and_rejoins_the_list_as_its_status_changes(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("Where is my parcel?")
    console.sign_in("ana", "ana-password")
    page = console.page
    item = console.item(visitor.conversation_id)

    page.get_by_label("Status filter").select_option("open")
    expect(item).to_be_visible()
    page.get_by_label("Status filter").select_option("resolved")
    expect(item).to_have_count(0)

    # Another operator resolves it: it appears live in the "resolved" list.
    ben = httpx.post(
        f"{deployment.url}/v1/auth/login", json={"name": "ben", "password": "ben-password"}
    ).json()["token"]
    response = httpx.patch(
        f"{deployment.url}/v1/livechat/conversations/{visitor.conversation_id}",
        headers={"Authorization": f"Bearer {ben}"},
        json={"status": "resolved"},
    )
    assert response.status_code == 200, response.text
    expect(item).to_be_visible()
    expect(item.locator(".badge.status-resolved")).to_have_text("Resolved")

    # A new visitor message reopens it: it leaves the "resolved" list by itself.
    visitor.send("Still waiting")
    expect(item).to_have_count(0)
    page.get_by_label("Status filter").select_option("open")
    expect(item).to_contain_text("Still waiting")


# -- the demo ------------------------------------------------------------------------------------


def test_the_demo_links_the_console_where_alice_works_the_demo_shop_inbox(
    browser: Browser, demo_server: ServerProcess
) -> None:
    context = browser.new_context(base_url=demo_server.url)
    context.set_default_timeout(10_000)
    console = Console(context.new_page())
    page = console.page
    page.goto("/")

    page.get_by_role("link", name="operator console").click()
    expect(page).to_have_url(f"{demo_server.url}/console")
    console.sign_in("alice", "alice", display_name="Alice")

    expect(page.get_by_label("Inbox filter").locator("option")).to_have_text(
        ["All inboxes", "Demo shop"]
    )
    context.close()
    assert console.problems == [], console.problems


def test_staff_keep_working_in_maintenance_and_see_what_everyone_else_is_told(
    console: Console, deployment: Deployment
) -> None:
    console.sign_in("ana", "ana-password")
    login = httpx.post(
        f"{deployment.url}/v1/auth/login", json={"name": "root", "password": "root-password"}
    )
    admin = {"Authorization": f"Bearer {login.json()['token']}"}
    banner = console.page.locator("#maintenance")
    try:
        httpx.put(
            f"{deployment.url}/v1/admin/maintenance",
            json={"active": True, "message": "Upgrade until 02:30 UTC"},
            headers=admin,
        ).raise_for_status()
        expect(banner).to_have_text(
            "Maintenance mode is on. Visitors and users see: “Upgrade until 02:30 UTC”"
        )
        expect(console.page.get_by_test_id("connection")).to_contain_text("Live")
    finally:
        httpx.put(
            f"{deployment.url}/v1/admin/maintenance", json={"active": False}, headers=admin
        ).raise_for_status()
    expect(banner).to_be_hidden()


# -- the rich timeline in the console --------------------------------------------------------


def test_operator_quotes_reacts_edits_and_unsends_and_the_visitor_sees_it(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    console.sign_in("ana", "ana-password")
    page = console.page
    visitor = Visitor(deployment)
    visitors.append(visitor)
    visitor.send("Where is my order 1234?")
    console.open(visitor.conversation_id, visitor.name)
    page.get_by_role("button", name="Assign to me").click()
    question = page.locator('#timeline .entry[data-seq="1"]')  # replies quote its text
    expect(question).to_contain_text("Where is my order 1234?")

    question.get_by_role("button", name="Quote").click()
    page.get_by_label("Message").fill("It shipped today")
    page.get_by_role("button", name="Send reply").click()
    question.get_by_role("button", name="React 👍").click()
    page.get_by_label("Message").fill("It was lost, sorry")
    page.get_by_role("button", name="Send reply").click()
    reply = page.locator('#timeline .entry[data-seq="2"]')
    expect(reply.locator(".quote")).to_contain_text("Where is my order 1234?")
    expect(question.get_by_role("button", name="👍 1")).to_have_attribute("aria-pressed", "true")

    reply.get_by_role("button", name="Edit").click()
    page.get_by_role("textbox", name="Edit message").fill("It shipped today, tracking ZX9")
    page.get_by_role("button", name="Save").click()
    console.timeline_entry("It was lost, sorry").get_by_role("button", name="Delete").click()

    expect(
        console.timeline_entry("tracking ZX9").get_by_role("button", name="edited")
    ).to_be_visible()
    expect(page.get_by_test_id("timeline").locator(".tombstone")).to_have_text(
        "This message was unsent"
    )
    seen_by_visitor = {m["seq"]: m for m in visitor.messages()}
    assert seen_by_visitor[2]["body"] == "It shipped today, tracking ZX9"
    assert seen_by_visitor[2]["reply_to_id"] == seen_by_visitor[1]["id"]
    assert seen_by_visitor[3]["body"] == "" and seen_by_visitor[3]["deleted_at"] is not None
    assert seen_by_visitor[1]["reactions"][0]["emoji"] == "👍"


def test_operator_searches_her_conversations(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    console.sign_in("ana", "ana-password")
    page = console.page
    visitor = Visitor(deployment)
    visitors.append(visitor)
    word = f"refund{uuid.uuid4().hex[:6]}"
    visitor.send(f"I want a {word} <b>now</b>")
    console.open(visitor.conversation_id, visitor.name)
    page.get_by_role("button", name="Assign to me").click()
    expect(console.timeline_entry(word)).to_have_count(1)

    page.get_by_role("searchbox", name="Search").fill(word)
    page.get_by_role("button", name="Search").click()

    results = page.get_by_role("region", name="Search results").locator("li")
    expect(results).to_have_count(1)
    expect(results.locator("mark")).to_have_text(word)
    expect(results).to_contain_text("<b>now</b>")
    expect(results).to_contain_text(visitor.name)
    assert page.locator("#results b").count() == 0
    results.get_by_role("button").click()
    expect(page.locator("#conversation-title")).to_have_text(visitor.name)


def test_the_export_button_saves_the_conversation_package(
    console: Console, deployment: Deployment, visitors: list[Visitor]
) -> None:
    import csv
    import io
    import json
    import zipfile

    console.sign_in("ana", "ana-password")
    page = console.page
    visitor = Visitor(deployment)
    visitors.append(visitor)
    attachment = visitor.upload("order.txt", b"order 7\n")
    visitor.send("Where is my order?", [attachment["id"]])
    console.item(visitor.conversation_id).get_by_role("button").click()
    page.get_by_role("button", name="Assign to me").click()
    page.get_by_label("Message").fill("On its way.")
    page.get_by_role("button", name="Send reply").click()
    expect(console.timeline_entry("On its way.")).to_be_visible()

    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    expect(page.locator("#export-status")).to_contain_text("Export ready (2 messages)")
    package = zipfile.ZipFile(download.value.path())
    assert {"README.md", "messages.csv", "metadata.json"} <= set(package.namelist())
    rows = list(csv.DictReader(io.StringIO(package.read("messages.csv").decode("utf-8-sig"))))
    assert [r["body"] for r in rows] == ["Where is my order?", "On its way."]
    files = [n for n in package.namelist() if n.startswith("attachments/")]
    assert len(files) == 1 and package.read(files[0]) == b"order 7\n"
    assert json.loads(package.read("metadata.json"))["requested_by"]["name"] == "ana"
