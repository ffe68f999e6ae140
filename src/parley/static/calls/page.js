// The call page (/calls): sign in (single sign-on or name and password), pick a conversation and
// a member, call them; answer or decline calls that ring. WebRTC does the media; signalling goes
// over the Parley stream (static/client.js). Names reach the page only as text.
import { ParleyClient } from "/static/client.js";
import { Calls } from "/static/calls/call.js";

const TOKEN_KEY = "parley.calls.token";
const DEVICE_KEY = "parley.calls.device";
const $ = (id) => document.getElementById(id);
const names = new Map(); // user id -> display name

async function exchangeLoginCode() {
  // After single sign-on the provider's round trip ends at /calls#parley_login=<one-time code>.
  const match = /parley_login=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  const response = await fetch("/v1/auth/sso/exchange", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code: match[1] }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? "sign-in failed");
  return body.token;
}

async function showSignIn(message = "") {
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  const { providers, password_login } = await (await fetch("/v1/auth/sso/providers")).json();
  $("sso-buttons").replaceChildren(
    ...providers.map((provider) => {
      const button = Object.assign(document.createElement("button"), { type: "button" });
      button.textContent = `Sign in with ${provider.title}`;
      button.addEventListener("click", () => {
        location.href = `${provider.login_url}?next=${encodeURIComponent("/calls" + location.search)}`;
      });
      return button;
    }),
  );
  $("password-form").hidden = !password_login;
  $("password-form").onsubmit = async (event) => {
    event.preventDefault();
    const response = await fetch("/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: $("name").value, password: $("password").value }),
    });
    const body = await response.json();
    if (!response.ok) return void ($("signin-error").textContent = body.error?.message ?? "refused");
    sessionStorage.setItem(TOKEN_KEY, body.token);
    location.reload();
  };
}

async function start(token) {
  const deviceId = sessionStorage.getItem(DEVICE_KEY);
  const client = new ParleyClient({ token, ...(deviceId ? { deviceId } : {}) });
  sessionStorage.setItem(DEVICE_KEY, client.deviceId);
  client.on("state", (state) => ($("stream-state").textContent = state));
  client.on("error", (error) => {
    if (error.status === 401 || error.code === "ERR_INVALID_CREDENTIALS") signOut();
  });
  await client.connect();
  $("me").textContent = `Signed in as ${client.user.display_name} (${client.user.name})`;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("sign-out").onclick = () => signOut(client);

  const config = await client.request("GET", "/v1/calls/config");
  $("relay").checked = new URLSearchParams(location.search).get("relay") === "1";
  const calls = new Calls(client, { iceServers: config.ice_servers, onChange: render });
  await calls.endStale();

  client.on("conversations", (list) => fillConversations(client, list));
  fillConversations(client, client.conversations());
  $("conversation").onchange = () => fillMembers(client);
  $("place").onsubmit = async (event) => {
    event.preventDefault();
    calls.relayOnly = $("relay").checked;
    const toUserId = Number($("member").value) || undefined;
    await calls.place(Number($("conversation").value), toUserId).catch((error) => {
      $("call-reason").textContent = error.message;
    });
  };
  $("answer").onclick = () => {
    calls.relayOnly = $("relay").checked;
    calls.answer().catch((error) => ($("call-reason").textContent = error.message));
  };
  $("decline").onclick = () => calls.decline();
  $("hangup").onclick = () => calls.hangUp();
  render(calls);
}

function fillConversations(client, list) {
  const current = $("conversation").value;
  $("conversation").replaceChildren(
    ...list.map((c) => new Option(c.title || `${c.kind} #${c.id}`, String(c.id))),
  );
  if (current) $("conversation").value = current;
  return fillMembers(client);
}

async function fillMembers(client) {
  const id = $("conversation").value;
  if (!id) return $("member").replaceChildren();
  const { members } = await client.request("GET", `/v1/conversations/${id}/members`);
  for (const member of members) names.set(member.user_id, member.display_name);
  const others = members.filter((member) => member.user_id !== client.user.id);
  $("member").replaceChildren(...others.map((m) => new Option(m.display_name, String(m.user_id))));
}

function render(calls) {
  $("call-state").textContent = calls.state;
  $("call-reason").textContent = calls.reason ?? "";
  $("peer-state").textContent = calls.peerState;
  $("incoming").hidden = !calls.incoming;
  if (calls.incoming) {
    const from = calls.incoming.call.caller_id;
    $("incoming-from").textContent = names.get(from) ?? `user ${from}`;
  }
  $("hangup").disabled = !calls.call;
  $("call").disabled = Boolean(calls.call || calls.incoming);
  $("remote-audio").srcObject = calls.remoteStream;
}

async function signOut(client) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  await client?.close();
  let next = "/calls";
  if (token) {
    const response = await fetch("/v1/auth/sso/logout", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    }).catch(() => null);
    const body = response?.ok ? await response.json() : null;
    next = body?.logout_url ?? next; // end the provider's session too
  }
  location.href = next;
}

(async () => {
  try {
    const fresh = await exchangeLoginCode();
    if (fresh) sessionStorage.setItem(TOKEN_KEY, fresh);
  } catch (error) {
    return showSignIn(error.message);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showSignIn();
  await start(token).catch((error) => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(error.message);
  });
})();
