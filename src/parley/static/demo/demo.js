// The demo page: sign in as alice or bob, pick a conversation, chat over the REST API.
// Text from users reaches the page only as text nodes (append/textContent), never as HTML.

const SESSION_KEY = "parley.demo.session";
const TRANSPORT = "polling";
const POLL_MS = 1000;
const HISTORY = 50; // messages shown when a conversation opens
const SEND_ATTEMPTS = 5;

const $ = (id) => document.getElementById(id);

const state = {
  // sessionStorage, not localStorage: each tab signs in on its own, so two tabs can be two people.
  session: JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null"),
  conversations: new Map(), // id -> the list item from GET /v1/conversations
  items: new Map(), // id -> its sidebar <li>, kept so polling never swaps a button mid-click
  names: new Map(), // user id -> display name
  open: null, // {id, cursor, seen: Set of seq} for the conversation on screen
  readSent: new Map(), // conversation id -> highest read_seq sent; receipts only move forward
};

class HttpError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// --- maintenance mode: a banner with the operators' message while the API refuses us ----------

function showMaintenance(message) {
  const banner = $("maintenance");
  banner.hidden = !message;
  banner.textContent = message ?? "";
}

async function checkMaintenance() {
  try {
    const status = await (await fetch("/v1/maintenance")).json();
    showMaintenance(status.active ? status.message : null);
  } catch {
    // the server is unreachable: the status line says so
  }
}

async function api(path, { method = "GET", json, form } = {}) {
  const headers = {};
  if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
  let body = form;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body });
  if (response.status === 401 && state.session) forgetSession();
  if (!response.ok) {
    const problem = await response.json().catch(() => null);
    if (problem?.error?.code === "ERR_MAINTENANCE") showMaintenance(problem.error.message);
    throw new HttpError(response.status, problem?.error?.message ?? response.statusText, problem?.error?.code);
  }
  return response;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function setStatus(text) {
  $("status").textContent = text;
}

// --- signing in -----------------------------------------------------------------------------

async function signIn(name) {
  const response = await api("/demo/session", { method: "POST", json: { name } });
  state.session = await response.json();
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  start();
}

function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
  location.reload();
}

async function signOut() {
  await api("/v1/auth/logout", { method: "POST" }).catch(() => null);
  forgetSession();
}

function start() {
  const me = state.session.user;
  state.names.set(me.id, me.display_name);
  $("me-name").textContent = me.display_name;
  $("transport").textContent = TRANSPORT;
  $("picker").hidden = true;
  $("whoami").hidden = false;
  $("chat").hidden = false;
  poll();
}

// --- polling --------------------------------------------------------------------------------

async function poll() {
  try {
    if (state.open) await fetchMessages(state.open);
    await refreshConversations();
    showMaintenance(null);
    setStatus(`Connected, checking every ${POLL_MS / 1000} s`);
  } catch (error) {
    const what = error.code === "ERR_MAINTENANCE" ? "Down for maintenance" : `Connection problem (${error.message})`;
    setStatus(`${what}, retrying…`);
  }
  setTimeout(poll, POLL_MS);
}

async function refreshConversations() {
  const { conversations } = await (await api("/v1/conversations")).json();
  for (const conversation of conversations) {
    if (conversation.member_ids.some((id) => !state.names.has(id))) {
      await loadNames(conversation.id);
    }
    state.conversations.set(conversation.id, conversation);
    const sent = state.readSent.get(conversation.id) ?? 0;
    state.readSent.set(conversation.id, Math.max(sent, conversation.read_seq));
    showConversation(conversation);
  }
  if (!state.open && conversations.length > 0) await openConversation(conversations[0].id);
}

async function loadNames(conversationId) {
  const { members } = await (await api(`/v1/conversations/${conversationId}/members`)).json();
  for (const member of members) state.names.set(member.user_id, member.display_name);
}

function conversationTitle(conversation) {
  if (conversation.title) return conversation.title;
  const others = conversation.member_ids.filter((id) => id !== state.session.user.id);
  return others.map(nameOf).join(", ") || "Just you";
}

function nameOf(userId) {
  return state.names.get(userId) ?? `user ${userId}`;
}

function showConversation(conversation) {
  let item = state.items.get(conversation.id);
  if (!item) {
    const button = el("button", { type: "button", className: "conversation-button" });
    button.addEventListener("click", () => openConversation(conversation.id));
    item = el("li", {}, button);
    state.items.set(conversation.id, item);
    $("conversations").append(item);
  }
  const button = item.firstElementChild;
  button.replaceChildren(
    el("span", { className: "name" }, conversationTitle(conversation)),
    el("span", { className: "kind muted" }, conversation.kind),
  );
  if (conversation.unread > 0) {
    button.append(el("span", { className: "unread", title: "unread" }, `${conversation.unread}`));
  }
  if (state.open?.id === conversation.id) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
}

// --- one conversation -----------------------------------------------------------------------

async function openConversation(id) {
  const conversation = state.conversations.get(id);
  const view = { id, cursor: Math.max(0, conversation.last_seq - HISTORY), seen: new Set() };
  state.open = view;
  $("title").textContent = conversationTitle(conversation);
  $("messages").replaceChildren();
  $("composer").hidden = false;
  for (const each of state.conversations.values()) showConversation(each);
  try {
    await fetchMessages(view);
  } catch (error) {
    setStatus(`Could not load messages (${error.message})`);
  }
}

async function fetchMessages(view) {
  const path = `/v1/conversations/${view.id}/messages?after=${view.cursor}&limit=200`;
  const { messages } = await (await api(path)).json();
  if (view !== state.open) return; // the person switched conversations meanwhile
  for (const message of messages) {
    view.cursor = Math.max(view.cursor, message.seq);
    showMessage(view, message);
  }
  await markRead(view);
}

async function markRead(view) {
  const sent = state.readSent.get(view.id) ?? 0;
  if (document.visibilityState !== "visible" || view.cursor <= sent) return;
  // Recorded before the request: a failed one may still have reached the server, and a
  // later, lower read_seq would look like a rollback. The next message sends a higher one.
  state.readSent.set(view.id, view.cursor);
  await api(`/v1/conversations/${view.id}/receipts`, {
    method: "POST",
    json: { read_seq: view.cursor },
  });
}

function showMessage(view, message) {
  // Our own sends show up twice (the send's answer, then the poll): seq decides.
  if (view.seen.has(message.seq)) return;
  view.seen.add(message.seq);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const mine = message.sender_id === state.session.user.id;
  const item = el(
    "li",
    { className: mine ? "message mine" : "message" },
    el(
      "div",
      { className: "meta" },
      el("span", { className: "sender" }, nameOf(message.sender_id)),
      el("time", { dateTime: message.created_at }, formatTime(message.created_at)),
    ),
  );
  item.dataset.seq = `${message.seq}`;
  if (message.body) item.append(el("p", { className: "body" }, message.body));
  if (message.attachments.length > 0) item.append(attachmentList(message.attachments));
  // Pending sends (no seq yet) stay at the end; stored messages go in seq order.
  const later = [...list.children].find(
    (li) => !li.dataset.seq || Number(li.dataset.seq) > message.seq,
  );
  list.insertBefore(item, later ?? null);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function attachmentList(attachments) {
  return el(
    "ul",
    { className: "attachments" },
    ...attachments.map((attachment) => {
      const link = el("a", { href: "#", className: "download" }, attachment.file_name);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        download(attachment).catch((error) => setStatus(`Download failed (${error.message})`));
      });
      const size = el("span", { className: "muted" }, ` ${formatSize(attachment.size)}`);
      return el("li", {}, link, size);
    }),
  );
}

async function download(attachment) {
  // A plain link cannot carry the bearer header, so fetch the bytes and save them from a blob.
  const blob = await (await api(`/v1/attachments/${encodeURIComponent(attachment.id)}`)).blob();
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: attachment.file_name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// --- sending --------------------------------------------------------------------------------

function newClientMsgId() {
  // randomUUID exists only in secure contexts; the demo may be opened over plain http.
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function onSubmit(event) {
  event.preventDefault();
  const body = $("body").value.trim();
  const file = $("file").files[0] ?? null;
  if (!state.open || (!body && !file)) return;
  $("composer").reset();
  $("file-name").textContent = "";
  const outgoing = { conversationId: state.open.id, clientMsgId: newClientMsgId(), body, file };
  const item = el("li", { className: "message mine pending" });
  $("messages").append(item);
  await deliver(outgoing, item);
}

async function deliver(outgoing, item) {
  const what = outgoing.body || outgoing.file.name;
  item.replaceChildren(
    el("p", { className: "body" }, what),
    el("div", { className: "note" }, "sending…"),
  );
  try {
    if (outgoing.file && !outgoing.attachmentId) {
      const form = new FormData();
      form.append("file", outgoing.file);
      const path = `/v1/conversations/${outgoing.conversationId}/attachments`;
      outgoing.attachmentId = (await (await api(path, { method: "POST", form })).json()).id;
    }
    const message = await withRetries(() =>
      api(`/v1/conversations/${outgoing.conversationId}/messages`, {
        method: "POST",
        json: {
          client_msg_id: outgoing.clientMsgId,
          body: outgoing.body,
          attachments: outgoing.attachmentId ? [outgoing.attachmentId] : [],
        },
      }),
    );
    item.remove();
    if (state.open?.id === outgoing.conversationId) showMessage(state.open, await message.json());
  } catch (error) {
    const retry = el("button", { type: "button", className: "link" }, "Retry");
    retry.addEventListener("click", () => deliver(outgoing, item));
    item.replaceChildren(
      el("p", { className: "body" }, what),
      el("div", { className: "note failed" }, `Not sent (${error.message}). `, retry),
    );
  }
}

async function withRetries(attempt) {
  // Retrying is safe because every try carries the same client_msg_id: the server stores one.
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      const transient = !(error instanceof HttpError) || error.status >= 500;
      if (!transient || n >= SEND_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** n));
    }
  }
}

// --- formatting -----------------------------------------------------------------------------

function formatTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// --- wiring ---------------------------------------------------------------------------------

for (const button of document.querySelectorAll("#picker button[data-name]")) {
  button.addEventListener("click", () =>
    signIn(button.dataset.name).catch((error) => setStatus(`Sign-in failed (${error.message})`)),
  );
}
$("sign-out").addEventListener("click", signOut);
$("composer").addEventListener("submit", onSubmit);
$("file").addEventListener("change", () => {
  $("file-name").textContent = $("file").files[0]?.name ?? "";
});
document.addEventListener("visibilitychange", () => {
  if (state.open) markRead(state.open).catch(() => null);
});
if (state.session) start();
checkMaintenance();
