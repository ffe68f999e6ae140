"""The call page in Chromium: two tabs (alice and bob, each signed in on their own) place and
answer a call that reaches `connected`, once directly over loopback and once through a real
TURN relay (coturn) with `iceTransportPolicy: "relay"`; and a user signs in with single sign-on
at a real OpenID provider and out again.

Fake media devices stand in for a microphone (`--use-fake-device-for-media-stream`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.oidc import OpenIdProvider, client, start_provider, stop_provider
from tests.support.servers import ServerProcess, free_port
from tests.support.turn import TurnServer, turn_server  # noqa: F401 - the fixture

SECRET = "e2e-client-secret-0123456789"
# The only network these tests may use is loopback: the page may offer only loopback host
# candidates (a relay candidate is on loopback too, coturn relays on 127.0.0.1).
LOOPBACK_ONLY = """
const Native = window.RTCPeerConnection;
window.peerConnections = [];
window.RTCPeerConnection = class extends Native {
  constructor(...args) {
    super(...args);
    window.peerConnections.push(this);
  }

  addEventListener(type, listener, options) {
    if (type !== "icecandidate") return super.addEventListener(type, listener, options);
    return super.addEventListener(type, (event) => {
      if (event.candidate && !/ 127\\.0\\.0\\.1 /.test(event.candidate.candidate)) return;
      listener(event);
    }, options);
  }
};
"""


@pytest.fixture(scope="module")
def call_server(
    tmp_path_factory: pytest.TempPathFactory,
    turn_server: TurnServer,  # noqa: F811
) -> Iterator[tuple[ServerProcess, OpenIdProvider]]:
    workdir = tmp_path_factory.mktemp("calls-e2e")
    port = free_port()
    parley_url = f"http://127.0.0.1:{port}"
    provider = start_provider(workdir, [client("parley-e2e", SECRET, parley_url, "corp")])
    sso = [
        {
            "name": "corp",
            "title": "Corp SSO",
            "issuer": provider.issuer,
            "client_id": "parley-e2e",
            "client_secret": SECRET,
        }
    ]
    server = ServerProcess(
        port=port,
        workdir=workdir,
        env={
            "PARLEY_LOG_JSON": "false",
            "PARLEY_DATA_DIR": str(workdir / "var"),
            "PARLEY_DATABASE_URL": "",
            "PARLEY_REDIS_URL": "",
            "PARLEY_CALLS_TURN_URLS": json.dumps([turn_server.url]),
            "PARLEY_CALLS_TURN_SECRET": turn_server.secret,
            "PARLEY_SSO_PROVIDERS": json.dumps(sso),
        },
        args=["--demo"],
    )
    server.start()
    yield server, provider
    server.stop()
    stop_provider(provider)


# The local and remote candidate types of the pair the newest connection selected.
SELECTED_CANDIDATE_TYPES = """async () => {
  const pc = window.peerConnections.at(-1);
  const stats = [...(await pc.getStats()).values()];
  const byId = new Map(stats.map((s) => [s.id, s]));
  const transport = stats.find((s) => s.type === "transport");
  const pair = byId.get(transport.selectedCandidatePairId);
  const type = (id) => byId.get(id).candidateType;
  return [type(pair.localCandidateId), type(pair.remoteCandidateId)];
}"""
OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(
    browser: Browser, call_server: tuple[ServerProcess, OpenIdProvider]
) -> Iterator[OpenPage]:
    contexts: list[BrowserContext] = []

    def open_as(name: str | None, query: str = "") -> Page:
        context = browser.new_context(base_url=call_server[0].url)
        context.set_default_timeout(15_000)
        context.add_init_script(LOOPBACK_ONLY)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"/calls{query}")
        if name is not None:
            page.locator("#name").fill(name)
            page.locator("#password").fill(name)  # the demo's passwords are the names
            page.locator("#password-signin").click()
            expect(page.locator("#me")).to_contain_text(f"({name})")
        return page

    yield open_as
    for context in contexts:
        context.close()


def call_and_connect(alice: Page, bob: Page) -> None:
    expect(alice.locator("#member option")).to_have_text(["Bob"])
    alice.locator("#call").click()
    expect(alice.locator("#call-state")).to_have_text("ringing-out")
    expect(bob.locator("#incoming")).to_be_visible()
    expect(bob.locator("#incoming-from")).to_have_text("Alice")
    bob.locator("#answer").click()
    for page in (alice, bob):
        expect(page.locator("#peer-state")).to_have_text("connected", timeout=20_000)
        expect(page.locator("#call-state")).to_have_text("connected")


def hang_up(alice: Page, bob: Page) -> None:
    alice.locator("#hangup").click()
    expect(bob.locator("#call-state")).to_have_text("ended")
    expect(bob.locator("#call-reason")).to_have_text("hangup")
    expect(alice.locator("#call-state")).to_have_text("ended")


def test_two_tabs_connect_a_call_over_loopback(open_page: OpenPage) -> None:
    alice, bob = open_page("alice"), open_page("bob")

    call_and_connect(alice, bob)
    for page in (alice, bob):
        # Direct: our host candidate, and theirs (or "prflx", the same one seen by a check first).
        local, remote = page.evaluate(SELECTED_CANDIDATE_TYPES)
        assert (local, remote in ("host", "prflx")) == ("host", True)
    hang_up(alice, bob)

    # The call is in the timeline, as a message both see.
    token = alice.evaluate("sessionStorage.getItem('parley.calls.token')")
    conversation = alice.locator("#conversation").input_value()
    messages = httpx.get(
        f"{alice.url.split('/calls')[0]}/v1/conversations/{conversation}/messages",
        headers={"Authorization": f"Bearer {token}"},
    ).json()["messages"]
    assert messages[-1]["body"].startswith("📞 Call · ")


def test_two_tabs_connect_a_call_through_the_turn_relay(
    open_page: OpenPage,
    turn_server: TurnServer,  # noqa: F811
) -> None:
    alice, bob = open_page("alice", "?relay=1"), open_page("bob", "?relay=1")
    expect(alice.locator("#relay")).to_be_checked()

    call_and_connect(alice, bob)

    # The pair of candidates the connection uses is relayed on both sides.
    for page in (alice, bob):
        assert page.evaluate(SELECTED_CANDIDATE_TYPES) == ["relay", "relay"]
    hang_up(alice, bob)


def test_a_user_signs_in_with_single_sign_on_and_out_again(
    open_page: OpenPage, call_server: tuple[ServerProcess, OpenIdProvider], tmp_path: Path
) -> None:
    page = open_page(None)

    page.get_by_role("button", name="Sign in with Corp SSO").click()
    page.locator("input[name=login]").fill("alice")  # the provider's own sign-in form
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/calls$"))  # the one-time code left the URL
    expect(page.locator("#me")).to_contain_text("Signed in as Alice Corp")
    page.locator("#sign-out").click()
    expect(page).to_have_url(re.compile(f"^{re.escape(call_server[1].issuer)}/session/end"))
    log = call_server[0].log_path.read_text()
    assert "parley_login=" not in log and "code=" not in log


SSE_SIGNALS = """async ([aliceToken, bobToken, bobId, conversationId]) => {
  const alice = new ParleyClient({ token: aliceToken, transports: ["sse"] });
  const bob = new ParleyClient({ token: bobToken, transports: ["sse"] });
  await Promise.all([alice.connect(), bob.connect()]);
  const next = (client, type) => new Promise((resolve) => client.on(type, resolve));
  const offered = next(bob, "call.offer");
  const placed = await alice.signal("call.offer", {
    conversation_id: conversationId, call_id: `sse${Date.now()}`, to_user_id: bobId, sdp: "v=0",
  });
  const offer = await offered;
  const rejected = next(alice, "call.reject");
  await bob.signal("call.reject", { call_id: offer.call.id });
  const reject = await rejected;
  const late = bob.signal("call.answer", { call_id: offer.call.id, sdp: "v=0" });
  const refused = await late.then(() => null, (error) => error.code);
  await Promise.all([alice.close(), bob.close()]);
  return [alice.transport, placed.state, offer.sdp, reject.call.end_reason, refused];
}"""


def test_the_js_client_signals_over_rest_when_it_streams_over_sse(
    browser: Browser, call_server: tuple[ServerProcess, OpenIdProvider]
) -> None:
    server = call_server[0]
    tokens = {
        name: httpx.post(
            f"{server.url}/v1/auth/login", json={"name": name, "password": name}
        ).json()
        for name in ("alice", "bob")
    }
    auth = {"Authorization": f"Bearer {tokens['alice']['token']}"}
    room = next(
        c["id"]
        for c in httpx.get(f"{server.url}/v1/conversations", headers=auth).json()["conversations"]
        if c["kind"] == "room"
    )
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    try:
        page.goto("/static/testing/client.html")
        page.wait_for_function("window.parleyReady === true")
        result = page.evaluate(
            SSE_SIGNALS,
            [tokens["alice"]["token"], tokens["bob"]["token"], tokens["bob"]["user"]["id"], room],
        )
    finally:
        context.close()

    assert result == ["sse", "ringing", "v=0", "rejected", "ERR_CALL_ENDED"]
