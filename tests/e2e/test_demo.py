"""The demo page in Chromium: two people chat, text stays text, files reach the other side."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Locator, Page, Route, expect

from tests.e2e.conftest import SignIn


def conversation_button(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Conversations").get_by_role("button", name=name)


def open_conversation(page: Page, name: str) -> None:
    conversation_button(page, name).click()
    expect(page.locator("#title")).to_have_text(name)


def send(page: Page, text: str) -> None:
    page.locator("#body").fill(text)
    page.get_by_role("button", name="Send").click()


def message(page: Page, text: str) -> Locator:
    return page.locator("#messages .message").filter(has_text=text)


def test_message_sent_by_alice_appears_on_bobs_page_with_her_name(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")

    send(alice, "Hello Bob, this is Alice")

    expect(message(bob, "Hello Bob, this is Alice")).to_have_count(1)
    expect(message(bob, "Hello Bob, this is Alice").locator(".sender")).to_have_text("Alice")
    expect(message(alice, "Hello Bob, this is Alice")).to_have_count(1)
    expect(bob.locator("#transport")).to_have_text("polling")


def test_unread_count_shows_until_the_conversation_is_opened(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Alice")  # the direct conversation is titled by the other person
    room_button = conversation_button(bob, "Demo room")

    send(alice, "one")
    send(alice, "two")

    expect(room_button.locator(".unread")).to_have_text("2")
    open_conversation(bob, "Demo room")
    expect(message(bob, "two")).to_be_visible()
    expect(room_button.locator(".unread")).to_have_count(0)


def test_a_send_whose_answer_is_lost_is_retried_with_the_same_id_and_stored_once(
    sign_in: SignIn,
) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")
    sent_ids: list[str] = []

    def lose_first_answer(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        sent_ids.append(route.request.post_data_json["client_msg_id"])
        if len(sent_ids) == 1:
            route.fetch()  # the server stores the message...
            route.abort("connectionreset")  # ...but the page never hears back
        else:
            route.continue_()

    alice.route("**/v1/conversations/*/messages*", lose_first_answer)
    send(alice, "through a flaky network")
    expect(alice.locator(".message.pending")).to_have_count(0)
    send(alice, "and then some")

    for page in (alice, bob):
        expect(message(page, "and then some")).to_have_count(1)
        expect(message(page, "through a flaky network")).to_have_count(1)
    assert len(sent_ids) == 3
    assert sent_ids[0] == sent_ids[1] != sent_ids[2]


def test_html_in_a_message_is_shown_as_text_and_never_run(sign_in: SignIn) -> None:
    payload = "<img src=x onerror=window.__pwned=1>"
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")

    send(alice, payload)

    for page in (alice, bob):
        expect(message(page, payload).locator(".body")).to_have_text(payload)
        expect(page.locator("#messages img")).to_have_count(0)
        assert page.evaluate("typeof window.__pwned") == "undefined"


def test_file_attached_by_alice_can_be_downloaded_by_bob(sign_in: SignIn, tmp_path: Path) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_text("minutes of the meeting\n")
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")

    alice.locator("#file").set_input_files(upload)
    send(alice, "the notes")
    link = message(bob, "the notes").get_by_role("link", name="notes.txt")
    with bob.expect_download() as downloading:
        link.click()

    download = downloading.value
    assert download.suggested_filename == "notes.txt"
    assert Path(download.path()).read_text() == "minutes of the meeting\n"
