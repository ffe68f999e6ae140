"""The chat app at `/` as a person sees it: on a phone and a desktop, with avatars, "Seen",
typing, the title counter, the connection banner, polite notifications, and without the
operator's live-chat conversations."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import SignIn
from tests.e2e.screens import DESKTOP, PHONE, horizontal_overflow, save_screenshot
from tests.e2e.test_demo import conversation_button, message, open_conversation, send
from tests.e2e.widget_support import WidgetPage
from tests.support.servers import ServerProcess

# A stand-in for the browser's Notification API: it records what the page asks and shows.
FAKE_NOTIFICATIONS = """
window.__asked = 0;
window.__shown = [];
class FakeNotification {
  static permission = "default";
  static async requestPermission() {
    window.__asked += 1;
    FakeNotification.permission = "granted";
    return "granted";
  }
  constructor(title, options) { window.__shown.push({ title, body: options.body }); }
  addEventListener() {}
}
window.Notification = FakeNotification;
"""


def png_dot() -> bytes:
    """A valid 1 by 1 red PNG, built here (chunks with their CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def fully_in_view(page: Page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    return (
        box["x"] >= 0
        and box["x"] + box["width"] <= size["width"]
        and (box["y"] + box["height"] <= size["height"])
    )


def open_on_phone(page: Page, name: str) -> None:
    """Back to the list first if a conversation fills the screen, then open `name`."""
    back = page.get_by_role("button", name="Back to conversations")
    if back.is_visible():
        back.click()
    open_conversation(page, name)


def test_on_a_phone_the_open_room_own_messages_and_send_fit_the_screen(
    sign_in: SignIn,
) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    alice.set_viewport_size(PHONE)
    open_conversation(bob, "Demo room")
    open_on_phone(alice, "Demo room")
    send(alice, "A long line from a phone that has to wrap inside the screen, not widen it")
    send(bob, "Hi Alice!")

    expect(message(alice, "Hi Alice!")).to_be_visible()
    expect(message(alice, "has to wrap")).to_be_visible()
    expect(alice.get_by_role("button", name="Send", exact=True)).to_be_visible()
    assert fully_in_view(alice, "#composer button[type=submit]")
    assert fully_in_view(alice, "#messages .message.mine")
    expect(alice.get_by_role("navigation", name="Conversations")).to_be_hidden()
    assert horizontal_overflow(alice) <= 0
    save_screenshot(alice, "chat-room-phone")

    alice.get_by_role("button", name="Back to conversations").click()
    expect(conversation_button(alice, "Demo room")).to_be_visible()
    expect(alice.locator("#composer")).to_be_hidden()
    assert horizontal_overflow(alice) <= 0
    save_screenshot(alice, "chat-list-phone")

    open_conversation(alice, "Bob")
    expect(alice.get_by_role("navigation", name="Conversations")).to_be_hidden()
    expect(alice.get_by_role("button", name="Send", exact=True)).to_be_visible()


def test_on_a_desktop_the_list_stays_beside_the_open_room(sign_in: SignIn) -> None:
    alice = sign_in("alice")
    alice.set_viewport_size(DESKTOP)
    open_conversation(alice, "Demo room")
    send(alice, "From the desktop")

    expect(message(alice, "From the desktop")).to_be_visible()
    nav = alice.get_by_role("navigation", name="Conversations").bounding_box()
    room = alice.locator(".conversation").bounding_box()
    assert nav is not None and room is not None and nav["x"] + nav["width"] <= room["x"]
    expect(alice.get_by_role("button", name="Back to conversations")).to_be_hidden()
    assert horizontal_overflow(alice) <= 0
    save_screenshot(alice, "chat-room-desktop")


def test_people_have_initials_avatars(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    send(bob, "with a face")

    expect(message(alice, "with a face").locator(".avatar")).to_have_text("BO")
    expect(conversation_button(alice, "Bob").locator(".avatar")).to_have_text("BO")
    expect(alice.locator("#me-avatar")).to_have_text("AL")


def test_alice_sees_seen_once_bob_reads_and_sees_him_typing(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Alice")
    send(alice, "did you read this?")
    expect(message(alice, "did you read this?")).to_be_visible()
    expect(alice.locator("#messages .seen")).to_have_count(0)

    open_conversation(bob, "Demo room")

    expect(message(alice, "did you read this?").locator(".seen")).to_have_text("Seen")
    bob.locator("#body").press_sequentially("typing a rep")
    expect(alice.locator("#typing")).to_have_text("Bob is typing…")
    bob.get_by_role("button", name="Send", exact=True).click()
    expect(message(alice, "typing a rep")).to_be_visible()
    expect(alice.locator("#typing")).to_have_text("")


def test_the_title_counts_unread_messages_in_other_conversations(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Alice")
    expect(bob).to_have_title("Parley")

    send(alice, "one")
    send(alice, "two")

    expect(bob).to_have_title("(2) Parley")
    open_conversation(bob, "Demo room")
    expect(bob).to_have_title("Parley")


def test_notifications_are_asked_for_with_a_button_and_shown_for_other_conversations(
    browser: Browser, demo_server: ServerProcess, sign_in: SignIn
) -> None:
    context = browser.new_context(base_url=demo_server.url)
    context.add_init_script(FAKE_NOTIFICATIONS)
    bob = context.new_page()
    bob.goto("/")
    bob.get_by_role("button", name="bob", exact=True).click()
    open_conversation(bob, "Alice")
    ask = bob.get_by_role("button", name="Turn on notifications")
    expect(ask).to_be_visible()
    assert bob.evaluate("window.__asked") == 0  # nothing asked on load

    ask.click()
    expect(ask).to_be_hidden()
    alice = sign_in("alice")
    open_conversation(alice, "Demo room")
    send(alice, "ping from the room")

    expect(conversation_button(bob, "Demo room").locator(".unread")).to_have_text("1")
    shown = bob.evaluate("window.__shown")
    assert shown == [{"title": "Alice · Demo room", "body": "ping from the room"}]
    context.close()


def test_a_lost_connection_shows_a_banner(sign_in: SignIn, demo_server: ServerProcess) -> None:
    alice = sign_in("alice")
    open_conversation(alice, "Demo room")
    expect(alice.locator("#connection")).to_be_hidden()

    demo_server.stop()

    expect(alice.locator("#connection")).to_have_text("Connection lost. Reconnecting…")


def test_an_operators_live_chat_conversations_stay_out_of_the_chat_list(
    browser: Browser, demo_server: ServerProcess, sign_in: SignIn
) -> None:
    visitor = WidgetPage.visit(browser, f"{demo_server.url}/demo/shop")
    visitor.open()
    visitor.send("Hello shop")
    expect(visitor.message("Hello shop")).to_have_count(1)
    visitor.close()

    alice = sign_in("alice")

    expect(conversation_button(alice, "Demo room")).to_be_visible()
    expect(alice.get_by_role("navigation", name="Conversations").locator("li")).to_have_count(2)


def test_an_image_attachment_shows_as_a_preview_on_the_other_side(
    sign_in: SignIn, tmp_path: Path
) -> None:
    picture = tmp_path / "dot.png"
    picture.write_bytes(png_dot())
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")

    alice.locator("#file").set_input_files(picture)
    send(alice, "look at this")

    preview = message(bob, "look at this").get_by_role("img", name="dot.png")
    expect(preview).to_be_visible()
    assert bob.wait_for_function(
        "() => document.querySelector('#messages img.preview')?.naturalWidth === 1"
    )


def test_on_a_phone_a_thread_covers_the_room_and_escape_closes_it(
    sign_in: SignIn,
) -> None:
    alice = sign_in("alice")
    alice.set_viewport_size(PHONE)
    open_on_phone(alice, "Demo room")
    send(alice, "start a thread here")
    message(alice, "start a thread here").get_by_role("button", name="Reply in thread").click()

    thread = alice.get_by_role("complementary", name="Thread")
    expect(thread).to_be_visible()
    alice.get_by_role("textbox", name="Thread reply").fill("first reply")
    alice.get_by_role("button", name="Send in thread").click()
    expect(alice.locator("#thread-messages .message")).to_have_count(2)
    assert fully_in_view(alice, "#thread-composer button[type=submit]")
    assert horizontal_overflow(alice) <= 0
    save_screenshot(alice, "chat-thread-phone")

    alice.keyboard.press("Escape")
    expect(thread).to_be_hidden()
    expect(message(alice, "start a thread here").locator(".replies")).to_have_text("1 reply")
