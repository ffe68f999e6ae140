"""The website widget (static/messenger/widget.js) in Chromium, embedded on another origin.

A host page on `http://localhost:<port>` embeds the widget of a Parley running on
`http://127.0.0.1:<port>`; a visitor uses it there while an operator (alice) answers over the
REST API. What is asserted is what the visitor sees in the widget and what the operator gets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from parley.features.widget.identity import hmac_token
from tests.e2e.widget_support import HostSite, Operator, WidgetPage, admin_token, create_inbox
from tests.support.servers import ServerProcess, free_port

HOST_PROPERTIES = ["display", "position", "margin-top", "font-size", "color", "width", "height"]


def host_layout(page: Page) -> dict[str, Any]:
    """Where the host page's own elements are and how they look."""
    return dict(
        page.evaluate(
            """(names) => Object.fromEntries(
                ["host-content", "host-title", "host-text", "host-button"].map((id) => {
                    const node = document.getElementById(id);
                    const box = node.getBoundingClientRect();
                    const style = getComputedStyle(node);
                    return [id, {
                        box: [box.x, box.y, box.width, box.height],
                        style: names.map((name) => style.getPropertyValue(name)),
                    }];
                }).concat([["scroll", [document.documentElement.scrollWidth,
                                       document.documentElement.scrollHeight]]])
            )""",
            HOST_PROPERTIES,
        )
    )


def visit(browser: Browser, url: str) -> WidgetPage:
    widget = WidgetPage.visit(browser, url)
    expect(widget.launcher).to_be_visible()
    return widget


def test_the_launcher_opens_and_closes_the_chat_and_the_js_api_drives_it(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any]
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    expect(widget.panel).to_be_hidden()

    widget.open()
    expect(widget.title).to_have_text("Host shop")
    assert widget.api("isOpen") is True
    widget.panel.get_by_role("button", name="Close chat").click()
    expect(widget.panel).to_be_hidden()

    widget.api("toggle")
    expect(widget.panel).to_be_visible()
    widget.panel.get_by_role("textbox", name="Message").press("Escape")
    expect(widget.panel).to_be_hidden()
    expect(widget.launcher).to_be_focused()
    assert widget.api("isOpen") is False

    widget.api("open")
    expect(widget.panel).to_be_visible()
    widget.api("close")
    expect(widget.panel).to_be_hidden()
    widget.api("hideLauncher")
    expect(widget.launcher).to_be_hidden()
    widget.api("showLauncher")
    expect(widget.launcher).to_be_visible()
    widget.close()


def test_calls_made_before_the_widget_loaded_are_queued(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any]
) -> None:
    # On `load` widget.js has run, but the modules it imports are still on their way.
    early = "window.addEventListener('load', () => window.ParleyMessenger.open());"
    widget = visit(browser, host_site.page(widget_inbox["widget_token"], settings=early))

    expect(widget.panel).to_be_visible()
    expect(widget.title).to_have_text("Host shop")
    widget.close()


def test_the_widget_does_not_change_the_host_pages_layout_or_styles(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any]
) -> None:
    bare = WidgetPage.visit(browser, host_site.page(None))
    without_widget = host_layout(bare.page)
    bare.close()

    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    assert host_layout(widget.page) == without_widget
    # ...and the page's rude global CSS does not reach into the widget.
    send_button = widget.panel.get_by_role("button", name="Send")
    assert send_button.evaluate("(b) => getComputedStyle(b).borderStyle") != "dashed"
    assert widget.title.evaluate("(t) => getComputedStyle(t).fontFamily") != "serif"
    widget.close()


def test_privacy_line_and_link_come_from_the_inbox(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any]
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()

    expect(widget.privacy).to_contain_text("We keep chats for 30 days.")
    link = widget.privacy.get_by_role("link", name="Privacy policy")
    expect(link).to_have_attribute("href", "https://host.example/privacy")
    # No operator of the inbox is connected: the widget offers the offline form (issue 13).
    expect(widget.offline_notice).to_be_visible()
    widget.close()


def test_the_attach_button_shows_only_when_the_inbox_allows_files(
    browser: Browser, host_site: HostSite, demo_server: ServerProcess, admin: str
) -> None:
    no_files = create_inbox(demo_server, admin, name="Text only", allow_attachments=False)
    widget = visit(browser, host_site.page(no_files["widget_token"]))
    widget.open()

    expect(widget.title).to_have_text("Text only")
    expect(widget.panel.get_by_label("Attach a file")).to_be_hidden()
    widget.close()


def test_outside_working_hours_the_offline_message_shows(
    browser: Browser, host_site: HostSite, demo_server: ServerProcess, admin: str
) -> None:
    # Open on no day at all: always outside working hours.
    hours = {"timezone": "UTC", "days": [], "start": "09:00", "end": "18:00"}
    inbox = create_inbox(
        demo_server,
        admin,
        name="Closed shop",
        working_hours=hours,
        offline_message="We are away until Monday, leave a message.",
    )
    widget = visit(browser, host_site.page(inbox["widget_token"]))
    widget.open()

    expect(widget.offline_notice).to_have_text("We are away until Monday, leave a message.")
    expect(widget.composer).to_be_visible()  # a message can still be left
    widget.close()


def test_visitor_and_operator_exchange_messages_and_a_file(
    browser: Browser,
    host_site: HostSite,
    widget_inbox: dict[str, Any],
    demo_server: ServerProcess,
    tmp_path: Path,
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    widget.send("Hello, is the teapot in stock?")
    expect(widget.message("Hello, is the teapot in stock?")).to_have_count(1)

    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])
    alice.wait_for_message(conversation, lambda m: m["body"] == "Hello, is the teapot in stock?")

    receipt = tmp_path / "receipt.txt"
    receipt.write_text("order 42\n")
    widget.file_input.set_input_files(str(receipt))
    link = widget.panel.get_by_role("link", name="receipt.txt")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert widget.page.evaluate("async (href) => (await fetch(href)).text()", href) == "order 42\n"
    stored = alice.wait_for_message(conversation, lambda m: m["attachments"])
    assert [a["file_name"] for a in stored["attachments"]] == ["receipt.txt"]

    reply = alice.reply(conversation, "Yes, three left.")
    expect(widget.message("Yes, three left.")).to_have_count(1)
    expect(widget.message("Yes, three left.")).to_have_class("message theirs")
    # The chat is open, so the visitor has read it, and the operator can see that.
    alice.wait_for_visitor_read(conversation, reply["seq"])
    widget.close()


def test_the_visitors_message_shows_read_once_the_operator_read_it(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any], demo_server: ServerProcess
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    widget.send("Anyone there?")
    status = widget.message("Anyone there?").locator(".status")
    expect(status).to_have_text("Sent")

    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])
    stored = alice.wait_for_message(conversation, lambda m: m["body"] == "Anyone there?")
    alice.mark_read(conversation, stored["seq"])

    expect(status).to_have_text("Read")
    widget.page.reload()
    widget.open()
    expect(widget.message("Anyone there?").locator(".status")).to_have_text("Read")
    widget.close()


def test_the_operator_typing_shows_in_the_widget(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any], demo_server: ServerProcess
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    widget.send("Question about delivery")
    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])

    alice.typing(conversation)

    expect(widget.typing).to_be_visible()
    widget.close()


def test_a_reload_brings_the_conversation_back(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any], demo_server: ServerProcess
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    widget.send("first visit")
    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])
    alice.reply(conversation, "welcome back later")
    expect(widget.message("welcome back later")).to_have_count(1)

    widget.page.reload()
    widget.open()

    expect(widget.message("first visit")).to_have_count(1)
    expect(widget.message("welcome back later")).to_have_count(1)
    assert alice.conversation_of(widget_inbox["id"]) == conversation
    widget.close()


def test_html_in_an_operator_reply_is_shown_as_text(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any], demo_server: ServerProcess
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    widget.send("hi")
    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])
    payload = '<img src=x onerror="window.__xss = 1"><b>bold</b>'

    alice.reply(conversation, payload)

    expect(widget.message("bold")).to_have_count(1)
    assert widget.message("bold").locator(".body").text_content() == payload
    assert widget.panel.locator(".messages img, .messages b").count() == 0
    assert widget.page.evaluate("() => window.__xss") is None
    widget.close()


def test_a_site_that_is_not_allowed_gets_a_clear_error_and_no_chat(
    browser: Browser, host_site: HostSite, demo_server: ServerProcess, admin: str
) -> None:
    inbox = create_inbox(demo_server, admin, name="Elsewhere", allowed_domains=["shop.example"])
    widget = visit(browser, host_site.page(inbox["widget_token"]))

    widget.launcher.click()

    expect(widget.error).to_contain_text("Chat is not available")
    expect(widget.composer).to_be_hidden()
    expect(widget.panel.get_by_role("button", name="Try again")).to_be_visible()
    widget.close()


def test_a_host_page_with_a_strict_csp_still_gets_a_working_widget(
    browser: Browser, host_site: HostSite, widget_inbox: dict[str, Any], demo_server: ServerProcess
) -> None:
    parley = demo_server.url
    ws = parley.replace("http://", "ws://")
    csp = (
        f"default-src 'self'; script-src 'self' {parley}; connect-src 'self' {parley} {ws}; "
        "style-src 'self'; img-src 'self'; object-src 'none'"
    )
    widget = visit(browser, host_site.page(widget_inbox["widget_token"], csp=csp))
    widget.open()
    widget.send("from a strict page")

    expect(widget.message("from a strict page")).to_have_count(1)
    # Styled by its own sheet: the launcher is a fixed round button, not an inline one.
    assert widget.launcher.evaluate("(b) => getComputedStyle(b).position") == "fixed"
    widget.close()


@pytest.mark.parametrize("blocked", [["ws"], ["ws", "sse"]])
def test_the_widget_falls_back_when_websockets_and_event_streams_are_blocked(
    browser: Browser,
    host_site: HostSite,
    widget_inbox: dict[str, Any],
    demo_server: ServerProcess,
    blocked: list[str],
) -> None:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    # Chromium's WebSockets cannot be cut with page.route; point them at a closed port instead.
    page.add_init_script(
        "(() => { const Real = window.WebSocket;"
        " window.WebSocket = function (url, protocols) {"
        " const target = new URL(url); target.port = '9'; return new Real(target, protocols); };"
        " window.WebSocket.prototype = Real.prototype; })();"
    )
    if "sse" in blocked:
        page.route("**/api/widget/sse*", lambda route: route.abort("connectionrefused"))
    streams: list[str] = []
    page.on(
        "request",
        lambda r: (
            streams.append(r.url.split("/api/widget/")[1].split("?")[0])
            if "/api/widget/sse" in r.url or "/api/widget/poll" in r.url
            else None
        ),
    )
    page.goto(host_site.page(widget_inbox["widget_token"]))
    widget = WidgetPage(page)
    widget.open()
    widget.send("over a fallback")
    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])

    alice.reply(conversation, "answer without a websocket")

    expect(widget.message("answer without a websocket")).to_have_count(1)
    assert ("poll" in streams) == ("sse" in blocked)
    context.close()


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
def test_the_js_client_passes_on_livechat_events_it_does_not_know(
    browser: Browser,
    widget_inbox: dict[str, Any],
    demo_server: ServerProcess,
    host_site: HostSite,
    transport: str,
) -> None:
    alice = Operator.sign_in(demo_server, "alice")
    context = browser.new_context(base_url=demo_server.url)
    page = context.new_page()
    page.goto("/static/testing/client.html")
    page.wait_for_function("() => window.parleyReady")
    page.evaluate(
        """async ([token, transport]) => {
            window.seen = [];
            window.client = new ParleyClient({ token, transports: [transport] });
            client.on("livechat.conversation", (event) => seen.push(event));
            await client.connect();
        }""",
        [alice.token, transport],
    )
    # A visitor writes (the Widget API straight from Python, as the widget would). Staff events
    # are not replayed to a long-poll that was between two polls when they happened, so the
    # visitor writes again until one lands (each visitor message makes a new event).
    origin = {"Origin": host_site.origin}
    visit = httpx.post(
        f"{demo_server.url}/api/widget/bootstrap",
        json={"widget_token": widget_inbox["widget_token"]},
        headers=origin,
    ).json()
    arrived = "(id) => seen.some((e) => e.conversation.conversation_id === id)"
    for attempt in range(5):
        httpx.post(
            f"{demo_server.url}/api/widget/messages",
            json={"session": visit["session"], "client_msg_id": f"v-{attempt}", "body": "hi"},
            headers=origin,
        ).raise_for_status()
        if attempt:
            # A member operator hears of the visitor's later messages as messages only; a change
            # of priority is announced to every operator of the inbox again.
            alice.call(
                "PATCH",
                f"/v1/livechat/conversations/{visit['conversation_id']}",
                json={"priority": "high" if attempt % 2 else "normal"},
            ).raise_for_status()
        try:
            page.wait_for_function(arrived, arg=visit["conversation_id"], timeout=3000)
            break
        except PlaywrightTimeoutError:
            continue
    page.wait_for_function(arrived, arg=visit["conversation_id"])
    assert page.evaluate("() => client.transport") == transport
    context.close()


def test_the_demo_shop_page_has_a_working_widget(
    browser: Browser, demo_server: ServerProcess
) -> None:
    context = browser.new_context(base_url=demo_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/")
    page.get_by_role("link", name="demo shop").click()
    widget = WidgetPage(page)
    widget.open()
    expect(widget.title).to_have_text("Demo shop")
    widget.send("Do you ship abroad?")
    expect(widget.message("Do you ship abroad?")).to_have_count(1)

    alice = Operator.sign_in(demo_server, "alice")
    inboxes = alice.call("GET", "/v1/livechat/inboxes").json()["inboxes"]
    (shop,) = [inbox for inbox in inboxes if inbox["name"] == "Demo shop"]
    conversation = alice.conversation_of(shop["id"])
    alice.wait_for_message(conversation, lambda m: m["body"] == "Do you ship abroad?")
    context.close()


@pytest.fixture
def challenging_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A demo server that asks for proof of work from the second bootstrap of an address on."""
    server = ServerProcess(
        port=free_port(),
        workdir=tmp_path,
        env={
            "PARLEY_LOG_JSON": "false",
            "PARLEY_DATA_DIR": str(tmp_path / "var"),
            "PARLEY_DATABASE_URL": "",
            "PARLEY_WIDGET_CHALLENGE_AFTER_PER_IP": "1/minute",
            "PARLEY_WIDGET_CHALLENGE_DIFFICULTY": "12",
        },
        args=["--demo"],
    )
    server.start()
    yield server
    server.stop()


def test_a_visitor_past_the_challenge_threshold_solves_it_and_chats(
    browser: Browser, challenging_server: ServerProcess
) -> None:
    inbox = create_inbox(challenging_server, admin_token(challenging_server), name="Busy shop")
    with HostSite(challenging_server.url) as site:
        url = site.page(inbox["widget_token"])
        first = visit(browser, url)
        first.open()  # this address's one free bootstrap
        second = visit(browser, url)
        answers: list[int] = []
        second.page.on(
            "response",
            lambda r: answers.append(r.status) if r.url.endswith("/bootstrap") else None,
        )

        second.open()
        second.send("I had to work for this")

        expect(second.message("I had to work for this")).to_have_count(1)
        assert answers == [403, 200]  # asked for a challenge, then let in with the solution
        first.close()
        second.close()


def test_a_verified_visitor_gets_in_with_the_sites_identity_token_and_others_do_not(
    browser: Browser,
    host_site: HostSite,
    widget_inbox: dict[str, Any],
    demo_server: ServerProcess,
    admin: str,
) -> None:
    secret = httpx.post(
        f"{demo_server.url}/v1/admin/inboxes/{widget_inbox['id']}/identity-secret",
        headers={"Authorization": f"Bearer {admin}"},
    ).json()["identity_secret"]
    token = hmac_token(secret, "customer-42", int(time.time()) + 600, "nonce-for-this-page")
    verified = visit(browser, host_site.page(widget_inbox["widget_token"], identity=token))
    anonymous = visit(browser, host_site.page(widget_inbox["widget_token"]))

    verified.open()
    verified.send("I am customer 42")
    anonymous.launcher.click()

    expect(verified.message("I am customer 42")).to_have_count(1)
    expect(anonymous.error).to_contain_text("Chat is not available")
    verified.close()
    anonymous.close()


def test_only_the_embeddable_static_files_may_be_read_by_other_sites(
    demo_server: ServerProcess,
) -> None:
    def allowed(path: str) -> str | None:
        response = httpx.get(f"{demo_server.url}{path}", headers={"Origin": "http://x.example"})
        response.raise_for_status()
        return response.headers.get("access-control-allow-origin")

    for path in (
        "/static/messenger/widget.js",
        "/static/messenger/messenger.js",
        "/static/messenger/widget.css",
        "/static/client.js",
        "/static/client/rest.js",
    ):
        assert allowed(path) == "*", path
    assert allowed("/static/demo/demo.js") is None
    assert allowed("/static/admin/release.js") is None


def test_with_nobody_online_a_visitor_may_leave_an_email_for_the_answer(
    browser: Browser,
    host_site: HostSite,
    widget_inbox: dict[str, Any],
    demo_server: ServerProcess,
) -> None:
    widget = visit(browser, host_site.page(widget_inbox["widget_token"]))
    widget.open()
    expect(widget.offline_notice).to_be_visible()  # no operator of the inbox is connected

    widget.panel.get_by_label("Your e-mail address").fill("not an address")
    widget.send("Please write back")
    expect(widget.message("Please write back")).to_have_count(0)  # refused, nothing sent

    widget.panel.get_by_label("Your e-mail address").fill("zoe@example.org")
    widget.panel.get_by_role("button", name="Send").click()
    expect(widget.offline_notice).to_contain_text("We will answer at zoe@example.org")
    expect(widget.message("Please write back")).to_have_count(1)
    alice = Operator.sign_in(demo_server, "alice")
    conversation = alice.conversation_of(widget_inbox["id"])
    alice.wait_for_message(conversation, lambda m: m["body"] == "Please write back")
    widget.close()
