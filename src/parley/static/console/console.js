// The operator console: sign in, then a live conversation list (filters) and one conversation
// (reply / internal note, status, priority, assignee, visitor details). Live updates come from
// ParleyClient's stream: `livechat.conversation`, `livechat.note`, `message`,
// `message.updated`, `receipt`, `typing`. A search box finds messages across the operator's
// conversations. Served with a strict CSP (no inline script or style); data is rendered as text.

import { ParleyClient } from "/static/client.js";
import { Alerts } from "./alerts.js";
import { Api, login } from "./api.js";
import { $, say } from "./dom.js";
import { ConversationList } from "./list.js";
import { Search } from "./search.js";
import { installShortcuts } from "./shortcuts.js";
import { ConversationView } from "./view.js";

const TOKEN_KEY = "parley.console.token";
const HASH_PREFIX = "#conversation-";
const CONNECTION_TEXT = {
  idle: "",
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

const page = { api: null, client: null, list: null, view: null };

function showError(error) {
  say(error?.message ? `Failed: ${error.message}` : "Something went wrong", { error: true });
}

function show(signedIn) {
  $("sign-in").hidden = signedIn;
  $("workspace").hidden = !signedIn;
  $("whoami").hidden = !signedIn;
}

// -- signing in and out ------------------------------------------------------------------------

async function start(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  const api = new Api(token, { onUnauthorized: () => signOut({ reason: "Your session ended." }) });
  page.api = api;
  const me = await api.json("/v1/me");
  const { inboxes } = await api.inboxes();
  if (inboxes.length === 0) throw new Error(`${me.name} is not staff of any inbox`);
  $("me-name").textContent = me.display_name || me.name;
  show(true);

  const client = new ParleyClient({ token });
  page.client = client;
  const alerts = new Alerts();
  const list = new ConversationList({
    api,
    me,
    onSelect: openConversation,
    onError: showError,
    onUnread: (count) => alerts.setListed(count),
  });
  const view = new ConversationView({
    api,
    client,
    me,
    onChanged: (item) => list.apply(item),
    onError: showError,
  });
  page.list = list;
  page.view = view;
  new Search({ client, list, onOpen: openConversation, onError: showError });
  installShortcuts({
    next: () => goTo(list.neighbour(1)),
    previous: () => goTo(list.neighbour(-1)),
    reply: () => view.compose("reply"),
    note: () => view.compose("note"),
    assignMe: () => view.assignMe(),
    search: () => $("search-query").focus(),
    back: closeConversation,
  });
  $("back-to-list").addEventListener("click", closeConversation);
  list.setInboxes(inboxes);
  loadStaff(api, inboxes).then((staff) => list.setStaff(staff), showError);
  listen(client, list, view, alerts, me);
  fetch("/v1/maintenance")
    .then((response) => response.json())
    .then((status) => showMaintenance(status.active ? status.message : null))
    .catch(() => null);
  await list.load();
  const wanted = Number(location.hash.slice(HASH_PREFIX.length));
  if (location.hash.startsWith(HASH_PREFIX) && Number.isInteger(wanted) && wanted > 0) {
    await openConversation(wanted);
  }
  client.connect().catch(showError);
}

/** Everyone who works on any of these inboxes, each once (the assignee filter's choices). */
async function loadStaff(api, inboxes) {
  const answers = await Promise.all(inboxes.map((inbox) => api.staff(inbox.id)));
  const byId = new Map(answers.flatMap(({ staff }) => staff.map((person) => [person.id, person])));
  return [...byId.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function goTo(id) {
  if (id !== null && id !== page.view.id) openConversation(id);
}

/** Back to the list (on a phone the list and the conversation take turns on the screen). */
function closeConversation() {
  if (page.view.id === null) return;
  page.list.select(null);
  page.view.close();
  history.replaceState(null, "", location.pathname);
}

function listen(client, list, view, alerts, me) {
  const showConnection = () => {
    const { state, transport } = client;
    const via = state === "open" && transport ? ` (${transport})` : "";
    $("connection").textContent = `${CONNECTION_TEXT[state] ?? state}${via}`;
  };
  client.on("transport", showConnection);
  client.on("state", (state) => {
    showConnection();
    // (Re)connected: whatever changed while the stream was down is in a fresh list.
    if (state === "open") {
      list.load().catch(showError);
      view.refresh().catch(showError);
    }
  });
  client.on("resync", () => list.load().catch(showError));
  client.on("livechat.conversation", (event) => {
    list.apply(event.conversation);
    view.update(event.conversation);
  });
  client.on("livechat.note", (event) => view.addNote(event.note));
  client.on("message", (message, { source }) => {
    const item = list.get(message.conversation_id);
    if (!item && source === "stream" && message.sender_id !== me.id) {
      // A visitor's message reaches member staff as the message alone (no livechat.conversation):
      // a conversation the list does not hold yet (past its first page) is fetched and shown.
      list.fetch(message.conversation_id).catch(() => {});
    }
    if (source === "stream" && item && message.sender_id === item.visitor.id) {
      alerts.onVisitorMessage({
        title: item.visitor.name,
        body: message.body || "(attachment)",
        open: message.conversation_id === view.id,
      });
    }
    list.touch(message);
    if (message.conversation_id === view.id) {
      view.addMessage(message, { source });
      view.markRead();
    }
  });
  client.on("message.updated", (message) => {
    list.retouch(message);
    view.updateMessage(message);
  });
  client.on("receipt", (receipt) => view.onReceipt(receipt));
  client.on("typing", (event) => view.onTyping(event));
  client.on("maintenance", ({ active, message }) => showMaintenance(active ? message : null));
  client.on("error", showError);
}

/** Maintenance mode is on: staff keep working, and see what everyone else is being told. */
function showMaintenance(message) {
  const banner = $("maintenance");
  banner.hidden = !message;
  banner.textContent = message ? `Maintenance mode is on. Visitors and users see: “${message}”` : "";
}

async function openConversation(id) {
  try {
    page.list.select(id);
    history.replaceState(null, "", `${HASH_PREFIX}${id}`);
    await page.view.open(id);
    say("");
  } catch (error) {
    page.list.select(null);
    page.view.close();
    history.replaceState(null, "", location.pathname);
    showError(error);
  }
}

function signOut({ reason = "" } = {}) {
  const { api, client } = page;
  page.api = page.client = null;
  sessionStorage.removeItem(TOKEN_KEY);
  client?.close().catch(() => null);
  // Reload for a clean page: no listener, timer or rendered conversation survives a sign-out.
  const done = () => {
    if (reason) sessionStorage.setItem(`${TOKEN_KEY}.reason`, reason);
    location.replace(location.pathname);
  };
  if (api && !reason) api.logout().catch(() => null).finally(done);
  else done();
}

async function onLogin(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    const { token } = await login($("login-name").value, $("login-password").value);
    await start(token);
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    show(false);
    $("sign-in-error").textContent = `Sign-in failed: ${error.message}`;
  }
}

$("login-form").addEventListener("submit", onLogin);
$("sign-out").addEventListener("click", () => signOut());

const saved = sessionStorage.getItem(TOKEN_KEY);
const reason = sessionStorage.getItem(`${TOKEN_KEY}.reason`);
sessionStorage.removeItem(`${TOKEN_KEY}.reason`);
if (reason) $("sign-in-error").textContent = reason;
if (saved) {
  start(saved).catch((error) => {
    sessionStorage.removeItem(TOKEN_KEY);
    show(false);
    $("sign-in-error").textContent = `Sign-in needed: ${error.message}`;
  });
} else {
  show(false);
}
