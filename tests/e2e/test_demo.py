"""The demo page in Chromium: two people chat, text stays text, files reach the other side; they
edit, unsend, reply, react, talk in threads and search, and the other side sees it live."""

from __future__ import annotations

import time
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
    expect(bob.locator("#transport")).to_have_text("ws")


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
    alice.goto("/?transport=sse")  # sends go over REST, where the network can lose an answer
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
    # The stream may show the stored message before the retry is answered: wait for the retry.
    deadline = time.monotonic() + 30
    while len(sent_ids) < 2:
        assert time.monotonic() < deadline, "the lost send was never retried"
        alice.wait_for_timeout(100)  # lets Playwright run the route handler meanwhile
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


def actions(page: Page, text: str) -> Locator:
    return message(page, text).locator(".actions")


def test_alice_edits_and_unsends_and_bob_sees_it_live(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")
    send(alice, "see you at 5")
    send(alice, "my password is hunter2")
    expect(message(bob, "my password is hunter2")).to_have_count(1)

    actions(alice, "see you at 5").get_by_role("button", name="Edit").click()
    alice.get_by_role("textbox", name="Edit message").fill("see you at 6")
    alice.get_by_role("button", name="Save").click()
    actions(alice, "my password is hunter2").get_by_role("button", name="Delete").click()

    expect(message(bob, "see you at 6")).to_have_count(1)
    expect(message(bob, "see you at 5")).to_have_count(0)
    expect(message(bob, "hunter2")).to_have_count(0)
    expect(bob.locator("#messages .message.deleted .tombstone")).to_have_text(
        "This message was unsent"
    )
    message(bob, "see you at 6").get_by_role("button", name="edited").click()
    expect(message(bob, "see you at 6").locator(".history li")).to_have_count(2)
    expect(message(bob, "see you at 6").locator(".history li").first).to_contain_text(
        "see you at 5"
    )


def test_bob_replies_with_a_quote_and_reacts(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")
    send(alice, "pizza or sushi?")

    actions(bob, "pizza or sushi?").get_by_role("button", name="Reply", exact=True).click()
    expect(bob.locator("#replying-to")).to_contain_text("pizza or sushi?")
    send(bob, "sushi!")
    # The reply quotes the question, so it matches "pizza or sushi?" too once it is shown.
    expect(message(bob, "sushi!")).to_have_count(1)
    question = message(bob, "pizza or sushi?").filter(has_not_text="sushi!")
    question.locator(".actions").get_by_role("button", name="React 👍").click()

    reply = message(alice, "sushi!")
    expect(reply.locator(".quote")).to_contain_text("pizza or sushi?")
    reaction = message(alice, "pizza or sushi?").get_by_role("button", name="👍 1")
    expect(reaction).to_have_attribute("aria-pressed", "false")
    reaction.click()  # alice adds hers
    expect(message(bob, "pizza or sushi?").get_by_role("button", name="👍 2")).to_be_visible()


def test_a_thread_keeps_replies_out_of_the_timeline_and_counts_them(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    open_conversation(bob, "Demo room")
    send(alice, "retro notes here")

    actions(bob, "retro notes here").get_by_role("button", name="Reply in thread").click()
    bob.get_by_role("textbox", name="Thread reply").fill("@alice the deploy went well")
    bob.get_by_role("button", name="Send in thread").click()

    expect(bob.locator("#thread-messages .message")).to_have_count(2)
    expect(message(alice, "retro notes here").locator(".replies")).to_have_text("1 reply")
    expect(alice.locator("#messages").get_by_text("the deploy went well")).to_have_count(0)
    message(alice, "retro notes here").locator(".replies").click()
    expect(alice.locator("#thread-messages .message.mentioned")).to_contain_text(
        "the deploy went well"
    )


def test_search_finds_readable_messages_with_highlighted_hits(sign_in: SignIn) -> None:
    alice, bob = sign_in("alice"), sign_in("bob")
    open_conversation(alice, "Demo room")
    send(alice, "the <b>quarterly</b> report is out")
    send(alice, "lunch?")

    bob.get_by_role("searchbox", name="Search messages").fill("quarterly")
    bob.get_by_role("button", name="Search").click()

    results = bob.get_by_role("region", name="Search results").locator("li")
    expect(results).to_have_count(1)
    expect(results.locator("mark")).to_have_text("quarterly")
    expect(results).to_contain_text("the <b>quarterly</b> report is out")
    assert bob.locator("#results b").count() == 0  # text, never markup
    results.get_by_role("button").click()
    expect(bob.locator("#title")).to_have_text("Demo room")
    expect(message(bob, "quarterly")).to_have_count(1)
