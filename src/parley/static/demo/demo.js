// The chat app at `/` (the demo's people are its seeded data): sign in as alice or bob and chat
// through the JS client (static/client.js): live over WebSocket, SSE or long-poll with resume;
// edit, unsend, reply, threads, reactions, mentions, search, unread counts, read receipts,
// typing, initials avatars, a connection banner, a title counter and desktop notifications.
// Below 720 px the list and the open conversation are two stacked views (CSS, `data-view`).
// `?transport=sse` (or ws, poll) forces one transport.
// Text from users reaches the page only as text nodes (append/textContent), never as HTML.

import { ParleyClient } from "/static/client.js";
import {
  el,
  excerpt,
  historyList,
  quoteNode,
  reactionBar,
  reactionPicker,
  snippetNode,
  tombstoneText,
} from "/static/shared/rich.js";

const SESSION_KEY = "parley.demo.session";
const HISTORY = 50; // messages shown when a conversation opens
const LIST_REFRESH_MS = 250; // unread counts are re-read this long after a burst of events
const APP_TITLE = "Parley";
// Image types shown inline (not SVG: it can carry script, so it stays a download).
const PREVIEWED = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
// Initials sit on these backgrounds in white: each passes WCAG AA contrast (axe-core checks it).
const AVATAR_COLOURS = ["#0550ae", "#8250df", "#1a7f37", "#bc4c00", "#cf222e", "#6e7781", "#953800"];

const $ = (id) => document.getElementById(id);

const state = {
  // sessionStorage, not localStorage: each tab signs in on its own, so two tabs can be two people.
  session: JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null"),
  client: null,
  conversations: new Map(), // id -> the list item from GET /v1/conversations
  items: new Map(), // id -> its sidebar <li>
  names: new Map(), // user id -> display name
  open: null, // the conversation id on screen
  maintenance: false, // the API said it is down for maintenance (until a stream opens again)
  thread: null, // the root id of the thread on screen
  replyTo: null, // the message the composer quotes
  quoted: new Map(), // message id -> message, for quotes of messages not in the timeline
  listTimer: null,
  readBy: new Map(), // conversation id -> Map(user id -> read_seq) of the other members
  typing: new Map(), // user id -> timer that clears their "is typing" line
  everOpen: false, // the stream has been open once: a later drop shows the banner
  previews: new Map(), // attachment id -> Promise of its image's blob URL
};

function setStatus(text) {
  $("status").textContent = text;
}

function me() {
  return state.session.user.id;
}

function nameOf(userId) {
  return state.names.get(userId) ?? `user ${userId}`;
}

/** A round badge with a person's (or conversation's) initials, the same colour every time. */
function avatar(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const initials = (words.length > 1 ? words[0][0] + words[1][0] : (words[0] ?? "?").slice(0, 2)).toUpperCase();
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  const badge = el("span", { className: "avatar", "aria-hidden": "true" }, initials);
  badge.style.background = AVATAR_COLOURS[hash % AVATAR_COLOURS.length];
  return badge;
}

function fail(what) {
  return (error) => setStatus(`${what} failed (${error.message})`);
}

// --- signing in -----------------------------------------------------------------------------

async function signIn(name) {
  const response = await fetch("/demo/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(response.statusText);
  state.session = await response.json();
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  start();
}

function forgetSession() {
  sessionStorage.removeItem(SESSION_KEY);
  location.reload();
}

async function signOut() {
  await state.client?.request("POST", "/v1/auth/logout").catch(() => null);
  await state.client?.close().catch(() => null);
  forgetSession();
}

function start() {
  const user = state.session.user;
  state.names.set(user.id, user.display_name);
  $("me-name").textContent = user.display_name;
  $("me-avatar").replaceWith(Object.assign(avatar(user.display_name), { id: "me-avatar" }));
  offerNotifications();
  $("picker").hidden = true;
  $("whoami").hidden = false;
  $("chat").hidden = false;
  const forced = new URLSearchParams(location.search).get("transport");
  const options = forced ? { transports: [forced] } : {};
  const client = new ParleyClient({ token: state.session.token, ...options });
  state.client = client;
  client.on("transport", (name) => ($("transport").textContent = name));
  client.on("state", (connection) => {
    if (connection === "open") setStatus("Connected");
    else setStatus(state.maintenance ? "Down for maintenance, retrying…" : `${connection}…`);
    showConnection(connection);
    if (connection === "open") {
      state.maintenance = false;
      showMaintenance(null);
      refreshConversations().catch(fail("Loading conversations"));
    }
  });
  client.on("error", (error) => {
    if (error.status === 401) forgetSession();
    else setStatus(error.message);
  });
  client.on("conversations", (list) => list.forEach(showConversation));
  client.on("message", onMessage);
  client.on("message.updated", onMessageUpdated);
  client.on("resync", () => state.open && openConversation(state.open));
  client.on("maintenance", ({ active, message }) => {
    state.maintenance = active;
    if (active) $("connection").hidden = true;
    showMaintenance(active ? message : null);
    if (active) setStatus("Down for maintenance, retrying…");
  });
  client.on("thread.receipt", () => scheduleListRefresh());
  client.on("receipt", onReceipt);
  client.on("typing", onTyping);
  client.connect().then(
    async () => {
      $("transport").textContent = client.transport;
      await refreshConversations();
      // On a phone the list comes first; a wider screen has room to open the first one too.
      const wide = window.matchMedia("(min-width: 721px)").matches;
      if (wide && !state.open && state.conversations.size > 0) {
        await openConversation([...state.conversations.keys()][0]);
      }
    },
    (error) => setStatus(`Could not connect (${error.message})`),
  );
}

// --- the conversation list ------------------------------------------------------------------

async function refreshConversations() {
  const { conversations } = await state.client.request("GET", "/v1/conversations");
  // An operator's live-chat conversations belong to the console, not to their chat list.
  for (const conversation of conversations.filter((each) => !each.live_chat)) {
    if (conversation.member_ids.some((id) => !state.names.has(id))) {
      await loadNames(conversation.id);
    }
    state.conversations.set(conversation.id, conversation);
    showConversation(conversation);
  }
  showTitleCounter();
}

/** "(N) Parley": unread messages in the conversations not on screen (all of them when hidden). */
function showTitleCounter() {
  let unread = 0;
  for (const conversation of state.conversations.values()) {
    if (conversation.id !== state.open || document.visibilityState !== "visible") unread += conversation.unread;
  }
  document.title = unread > 0 ? `(${unread}) ${APP_TITLE}` : APP_TITLE;
}

function scheduleListRefresh() {
  clearTimeout(state.listTimer);
  state.listTimer = setTimeout(() => refreshConversations().catch(() => null), LIST_REFRESH_MS);
}

async function loadNames(conversationId) {
  const { members } = await state.client.request("GET", `/v1/conversations/${conversationId}/members`);
  const readBy = new Map();
  for (const member of members) {
    state.names.set(member.user_id, member.display_name);
    if (member.user_id !== me()) readBy.set(member.user_id, member.read_seq);
  }
  state.readBy.set(conversationId, readBy);
}

function conversationTitle(conversation) {
  if (conversation.title) return conversation.title;
  const others = conversation.member_ids.filter((id) => id !== me());
  return others.map(nameOf).join(", ") || "Just you";
}

function showConversation(conversation) {
  if (!state.conversations.has(conversation.id)) return;
  conversation = state.conversations.get(conversation.id);
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
    avatar(conversationTitle(conversation)),
    el("span", { className: "name" }, conversationTitle(conversation)),
    el("span", { className: "kind muted" }, conversation.kind),
  );
  if (conversation.mentions > 0) {
    button.append(el("span", { className: "mentions", title: "mentions of you" }, `@${conversation.mentions}`));
  }
  if (conversation.unread > 0) {
    button.append(el("span", { className: "unread", title: "unread" }, `${conversation.unread}`));
  }
  if (state.open === conversation.id) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
}

async function markAllRead() {
  await state.client.markAllRead();
  await refreshConversations();
}

// --- one conversation -----------------------------------------------------------------------

async function openConversation(id, { focusSeq } = {}) {
  const conversation = state.conversations.get(id);
  if (!conversation) return;
  state.open = id;
  $("chat").dataset.view = "room";
  showTyping();
  closeThread();
  setReplyTo(null);
  $("title").textContent = conversationTitle(conversation);
  $("messages").replaceChildren();
  $("composer").hidden = false;
  for (const each of state.conversations.values()) showConversation(each);
  try {
    await Promise.all([state.client.loadHistory(id, { limit: HISTORY }), loadNames(id)]);
  } catch (error) {
    setStatus(`Could not load messages (${error.message})`);
  }
  if (state.open !== id) return;
  for (const message of state.client.timeline(id)) showMessage(message);
  showSeen();
  showTitleCounter();
  if (focusSeq) highlight(focusSeq);
  markRead();
}

function onMessage(message, { source }) {
  if (source === "stream" && message.sender_id !== me()) {
    notify(message);
    stopTyping(message.sender_id);
  }
  if (message.conversation_id !== state.open) {
    if (source === "stream") scheduleListRefresh();
    return;
  }
  // Unread while the tab is hidden: the title counter counts the open conversation too.
  if (source === "stream" && document.visibilityState !== "visible") scheduleListRefresh();
  showMessage(message);
  if (message.thread_root_id) countReply(message);
  showSeen();
  markRead();
}

// --- receipts, typing, the connection, notifications ----------------------------------------

function onReceipt(receipt) {
  if (receipt.user_id === me()) {
    scheduleListRefresh(); // another tab of mine read: the counts drop
    return;
  }
  const readBy = state.readBy.get(receipt.conversation_id) ?? new Map();
  readBy.set(receipt.user_id, Math.max(readBy.get(receipt.user_id) ?? 0, receipt.read_seq));
  state.readBy.set(receipt.conversation_id, readBy);
  if (receipt.conversation_id === state.open) showSeen();
}

/** "Seen" (or "Seen by Bob, Carol") under my newest message that the others have read. */
function showSeen() {
  for (const old of $("messages").querySelectorAll(".seen")) old.remove();
  const readBy = state.readBy.get(state.open);
  if (!readBy) return;
  const mine = [...$("messages").querySelectorAll(":scope > li.mine[data-seq]")];
  for (const item of mine.reverse()) {
    const seq = Number(item.dataset.seq);
    const readers = [...readBy].filter(([, readSeq]) => readSeq >= seq).map(([id]) => id);
    if (readers.length === 0) continue;
    const text = readBy.size === 1 ? "Seen" : `Seen by ${readers.map(nameOf).join(", ")}`;
    item.append(el("div", { className: "seen" }, text));
    return;
  }
}

function onTyping(event) {
  if (event.user_id === me()) return;
  clearTimeout(state.typing.get(event.user_id)?.timer);
  const timer = setTimeout(() => stopTyping(event.user_id), event.expires_in_ms ?? 5000);
  state.typing.set(event.user_id, { conversationId: event.conversation_id, timer });
  showTyping();
}

function stopTyping(userId) {
  clearTimeout(state.typing.get(userId)?.timer);
  if (state.typing.delete(userId)) showTyping();
}

function showTyping() {
  const names = [...state.typing]
    .filter(([, typing]) => typing.conversationId === state.open)
    .map(([userId]) => nameOf(userId));
  const verb = names.length === 1 ? "is" : "are";
  $("typing").textContent = names.length ? `${names.join(", ")} ${verb} typing…` : "";
}

function showConnection(connection) {
  if (connection === "open") state.everOpen = true;
  const banner = $("connection");
  const text =
    connection === "idle" || connection === "closed" || state.maintenance // its own banner says why
      ? ""
      : !navigator.onLine
        ? "You are offline. Messages will be sent when the connection is back."
        : connection === "open"
          ? ""
          : state.everOpen
            ? "Connection lost. Reconnecting…"
            : "Connecting…";
  banner.hidden = !text;
  banner.textContent = text;
}

/** The button that asks for desktop notifications: only where the browser has not been asked. */
function offerNotifications() {
  $("notify-ask").hidden = !("Notification" in window) || Notification.permission !== "default";
}

async function askForNotifications() {
  await Notification.requestPermission();
  offerNotifications();
}

function notify(message) {
  const visible = document.visibilityState === "visible";
  if (visible && message.conversation_id === state.open) return;
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const conversation = state.conversations.get(message.conversation_id);
  if (!conversation) return;
  const shown = new Notification(`${nameOf(message.sender_id)} · ${conversationTitle(conversation)}`, {
    body: message.deleted_at ? "" : excerpt(message.body || "sent a file", 120),
    tag: `parley-${message.conversation_id}`,
  });
  shown.addEventListener("click", () => {
    window.focus();
    openConversation(message.conversation_id);
  });
}

/** A new reply in a thread: its root (as the client holds it) counts one more, once. */
function countReply(reply) {
  const root = state.client.timeline(reply.conversation_id).find((m) => m.id === reply.thread_root_id);
  if (!root || (root.last_reply_seq ?? 0) >= reply.seq) return;
  root.reply_count = (root.reply_count ?? 0) + 1;
  root.last_reply_seq = reply.seq;
  showMessage(root);
}

function onMessageUpdated(message) {
  state.quoted.set(message.id, message);
  if (message.conversation_id !== state.open) {
    scheduleListRefresh();
    return;
  }
  showMessage(message);
  // Replies quoting it show the new text (or that it is gone).
  for (const other of state.client.timeline(state.open)) {
    if (other.reply_to_id === message.id) showMessage(other);
  }
}

function markRead() {
  if (state.open === null || document.visibilityState !== "visible") return;
  const messages = state.client.timeline(state.open).filter((m) => !m.local);
  if (messages.length === 0) return;
  const seq = messages[messages.length - 1].seq;
  state.client.markRead(state.open, seq).then(
    (sent) => sent && scheduleListRefresh(),
    () => null,
  );
}

// --- one message ----------------------------------------------------------------------------

/** Put a message on screen (or replace it): in the timeline, or in the open thread. */
function showMessage(message) {
  const inThread = state.thread !== null && (message.thread_root_id === state.thread || message.id === state.thread);
  if (message.thread_root_id === null || message.thread_root_id === undefined) {
    place($("messages"), message);
  }
  if (inThread) place($("thread-messages"), message);
}

function place(list, message) {
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  // The stream's copy of a message still "sending…" here (it can come before the ack) takes
  // the pending bubble's place: the message is never shown twice.
  for (const pending of list.querySelectorAll(":scope > li.pending")) {
    if (message.client_msg_id && pending.dataset.clientMsgId === message.client_msg_id) pending.remove();
  }
  const item = renderMessage(message, { inThread: list.id === "thread-messages" });
  const old = list.querySelector(`:scope > li[data-seq="${message.seq}"]`);
  if (old) {
    old.replaceWith(item);
    return;
  }
  const later = [...list.children].find((li) => !li.dataset.seq || Number(li.dataset.seq) > message.seq);
  list.insertBefore(item, later ?? null);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderMessage(message, { inThread }) {
  const mine = message.sender_id === me();
  const mentionsMe = (message.mentions ?? []).includes(me()) || (message.mentions_here && !mine);
  const classes = ["message", mine ? "mine" : "", message.deleted_at ? "deleted" : "", mentionsMe ? "mentioned" : ""];
  const item = el("li", { className: classes.filter(Boolean).join(" "), dataset: { seq: message.seq, id: message.id } });
  const meta = el(
    "div",
    { className: "meta" },
    avatar(nameOf(message.sender_id)),
    el("span", { className: "sender" }, nameOf(message.sender_id)),
    el("time", { dateTime: message.created_at }, formatTime(message.created_at)),
  );
  item.append(meta);
  if (message.deleted_at) {
    item.append(el("p", { className: "body tombstone" }, tombstoneText(message)));
    return item;
  }
  if (message.reply_to_id) item.append(quoteFor(message));
  if (message.body) item.append(el("p", { className: "body" }, message.body));
  if (message.edited_at) {
    const edited = el("button", { type: "button", className: "link edited" }, "edited");
    edited.addEventListener("click", () => toggleHistory(item, message));
    meta.append(edited);
  }
  if ((message.attachments ?? []).some((a) => a.file_name)) item.append(attachmentList(message.attachments));
  item.append(
    reactionBar(message, {
      me: me(),
      nameOf,
      onToggle: (emoji, mine) => toggleReaction(message, emoji, mine),
    }),
  );
  if (!inThread && message.reply_count > 0) {
    const replies = el("button", { type: "button", className: "link replies" }, `${message.reply_count} ${message.reply_count === 1 ? "reply" : "replies"}`);
    replies.addEventListener("click", () => openThread(message.id).catch(fail("Opening the thread")));
    item.append(replies);
  }
  item.append(actionsFor(message, { mine, inThread }));
  return item;
}

function actionsFor(message, { mine, inThread }) {
  const actions = el("div", { className: "actions" });
  const add = (label, handler) => {
    const button = el("button", { type: "button", className: "link" }, label);
    button.addEventListener("click", handler);
    actions.append(button);
  };
  if (!inThread) {
    add("Reply", () => setReplyTo(message));
    add("Reply in thread", () => openThread(message.id).catch(fail("Opening the thread")));
  }
  if (mine) {
    add("Edit", () => startEdit(message));
    add("Delete", () => state.client.unsend(message.conversation_id, message.id).catch(fail("Deleting")));
  }
  actions.append(
    reactionPicker({ onPick: (emoji) => state.client.react(message.conversation_id, message.id, emoji).catch(fail("Reacting")) }),
  );
  return actions;
}

function quoteFor(message) {
  const held = state.client.timeline(message.conversation_id).find((m) => m.id === message.reply_to_id);
  const quoted = held ?? state.quoted.get(message.reply_to_id);
  if (!quoted) {
    state.client.message(message.conversation_id, message.reply_to_id).then(
      (found) => {
        state.quoted.set(found.id, found);
        showMessage(message);
      },
      () => null,
    );
  }
  return quoteNode(quoted, nameOf);
}

function toggleReaction(message, emoji, mine) {
  const call = mine ? state.client.unreact : state.client.react;
  call.call(state.client, message.conversation_id, message.id, emoji).catch(fail("Reacting"));
}

async function toggleHistory(item, message) {
  const shown = item.querySelector(".history");
  if (shown) {
    shown.remove();
    return;
  }
  const versions = await state.client.history(message.conversation_id, message.id);
  item.append(historyList(versions, formatTime));
}

function startEdit(message) {
  const item = document.querySelector(`#messages li[data-id="${message.id}"], #thread-messages li[data-id="${message.id}"]`);
  if (!item) return;
  const input = el("input", { type: "text", value: message.body, className: "edit-body", "aria-label": "Edit message" });
  const save = el("button", { type: "submit" }, "Save");
  const cancel = el("button", { type: "button", className: "link" }, "Cancel");
  const form = el("form", { className: "edit" }, input, save, cancel);
  cancel.addEventListener("click", () => showMessage(message));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = input.value.trim();
    if (!body || body === message.body) return showMessage(message);
    state.client.edit(message.conversation_id, message.id, body).catch((error) => {
      setStatus(`Edit failed (${error.message})`);
      showMessage(message);
    });
  });
  item.querySelector(".body")?.replaceWith(form);
  input.focus();
}

function highlight(seq) {
  const item = document.querySelector(`#messages li[data-seq="${seq}"]`);
  if (!item) return;
  item.classList.add("found");
  item.scrollIntoView({ block: "center" });
  setTimeout(() => item.classList.remove("found"), 3000);
}

// --- replies and threads --------------------------------------------------------------------

function setReplyTo(message) {
  state.replyTo = message;
  $("replying").hidden = message === null;
  if (message) {
    $("replying-to").textContent = `${nameOf(message.sender_id)}: ${excerpt(message.body, 60)}`;
    $("body").focus();
  }
}

async function openThread(rootId) {
  const conversationId = state.open;
  const thread = await state.client.thread(conversationId, rootId, { limit: 200 });
  if (state.open !== conversationId) return;
  state.thread = rootId;
  $("thread").hidden = false;
  $("thread-messages").replaceChildren();
  place($("thread-messages"), thread.root);
  for (const reply of thread.replies) place($("thread-messages"), reply);
  for (const message of state.client.timeline(conversationId)) {
    if (message.thread_root_id === rootId) place($("thread-messages"), message);
  }
  $("thread-body").focus();
  markThreadRead();
}

function closeThread() {
  state.thread = null;
  $("thread").hidden = true;
}

function markThreadRead() {
  if (state.thread === null) return;
  const replies = [...$("thread-messages").children].map((li) => Number(li.dataset.seq));
  const seq = Math.max(...replies);
  state.client.markThreadRead(state.open, state.thread, seq).then(() => scheduleListRefresh(), () => null);
}

// --- search ---------------------------------------------------------------------------------

async function onSearch(event) {
  event.preventDefault();
  const query = $("search-query").value.trim();
  if (!query) return;
  let page;
  try {
    page = await state.client.search(query, { limit: 20 });
  } catch (error) {
    setStatus(`Search failed: ${error.message}`);
    return;
  }
  $("search-results").hidden = false;
  const items = page.results.map(({ message, snippet }) => {
    const conversation = state.conversations.get(message.conversation_id);
    const button = el(
      "button",
      { type: "button", className: "result" },
      el("span", { className: "where muted" }, `${conversation ? conversationTitle(conversation) : "?"} · ${nameOf(message.sender_id)}`),
      snippetNode(snippet),
    );
    button.addEventListener("click", () => openConversation(message.conversation_id, { focusSeq: message.seq }));
    return el("li", {}, button);
  });
  $("results").replaceChildren(...items);
  if (items.length === 0) $("results").append(el("li", { className: "muted" }, "No messages match."));
}

// --- sending --------------------------------------------------------------------------------

async function onSubmit(event) {
  event.preventDefault();
  const body = $("body").value.trim();
  const file = $("file").files[0] ?? null;
  if (!state.open || (!body && !file)) return;
  $("composer").reset();
  $("file-name").textContent = "";
  const replyTo = state.replyTo?.id;
  setReplyTo(null);
  const clientMsgId = crypto.randomUUID?.();
  const item = el("li", { className: "message mine pending", dataset: clientMsgId ? { clientMsgId } : {} });
  $("messages").append(item);
  await deliver({ conversationId: state.open, body, file, replyTo, clientMsgId }, item);
}

/** Send through the client (it retries with the same client_msg_id until stored). */
async function deliver(outgoing, item) {
  const what = outgoing.body || outgoing.file.name;
  item.replaceChildren(el("p", { className: "body" }, what), el("div", { className: "note" }, "sending…"));
  try {
    if (outgoing.file && !outgoing.attachmentId) {
      outgoing.attachmentId = (await state.client.upload(outgoing.conversationId, outgoing.file)).id;
    }
    const ack = await state.client.send(outgoing.conversationId, outgoing.body, {
      attachments: outgoing.attachmentId ? [outgoing.attachmentId] : [],
      clientMsgId: outgoing.clientMsgId,
      replyTo: outgoing.replyTo,
    });
    outgoing.clientMsgId = ack.client_msg_id;
    item.remove();
    if (state.open === outgoing.conversationId) showMessage(ack.message);
  } catch (error) {
    const retry = el("button", { type: "button", className: "link" }, "Retry");
    retry.addEventListener("click", () => deliver(outgoing, item));
    item.replaceChildren(
      el("p", { className: "body" }, what),
      el("div", { className: "note failed" }, `Not sent (${error.message}). `, retry),
    );
  }
}

async function onThreadSubmit(event) {
  event.preventDefault();
  const body = $("thread-body").value.trim();
  if (!body || state.thread === null) return;
  $("thread-composer").reset();
  try {
    const ack = await state.client.send(state.open, body, { threadRoot: state.thread });
    showMessage(ack.message);
    markThreadRead();
  } catch (error) {
    setStatus(`Reply failed (${error.message})`);
  }
}

// --- files and formatting -------------------------------------------------------------------

function attachmentList(attachments) {
  return el(
    "ul",
    { className: "attachments" },
    ...attachments.map((attachment) => {
      const link = el("a", { href: "#", className: "download" }, attachment.file_name);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        download(attachment).catch(fail("Download"));
      });
      const item = el("li", {}, link, el("span", { className: "muted" }, ` ${formatSize(attachment.size)}`));
      if (PREVIEWED.has(attachment.content_type)) item.prepend(previewOf(attachment));
      return item;
    }),
  );
}

/** An image attachment shown in the timeline (its bytes need the bearer header: a blob URL). */
function previewOf(attachment) {
  const image = el("img", { className: "preview", alt: attachment.file_name });
  let url = state.previews.get(attachment.id);
  if (!url) {
    url = fetchBlob(attachment).then((blob) => URL.createObjectURL(blob));
    state.previews.set(attachment.id, url);
  }
  url.then(
    (src) => (image.src = src),
    () => image.remove(),
  );
  return image;
}

async function fetchBlob(attachment) {
  const response = await fetch(`/v1/attachments/${encodeURIComponent(attachment.id)}`, {
    headers: { Authorization: `Bearer ${state.session.token}` },
  });
  if (!response.ok) throw new Error(response.statusText);
  return response.blob();
}

async function download(attachment) {
  // A plain link cannot carry the bearer header, so fetch the bytes and save them from a blob.
  const url = URL.createObjectURL(await fetchBlob(attachment));
  const link = el("a", { href: url, download: attachment.file_name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function formatTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// --- maintenance mode: a banner with the operators' message while the API refuses us ----------

function showMaintenance(message) {
  const banner = $("maintenance");
  banner.hidden = !message;
  banner.textContent = message ?? "";
}

/** Before signing in there is no stream to hear it on: ask the public status once. */
async function checkMaintenance() {
  try {
    const status = await (await fetch("/v1/maintenance")).json();
    showMaintenance(status.active ? status.message : null);
  } catch {
    // the server is unreachable: the status line says so
  }
}

// --- wiring ---------------------------------------------------------------------------------

for (const button of document.querySelectorAll("#picker button[data-name]")) {
  button.addEventListener("click", () =>
    signIn(button.dataset.name).catch((error) => setStatus(`Sign-in failed (${error.message})`)),
  );
}
$("sign-out").addEventListener("click", signOut);
$("composer").addEventListener("submit", onSubmit);
$("thread-composer").addEventListener("submit", onThreadSubmit);
$("thread-close").addEventListener("click", closeThread);
$("replying-cancel").addEventListener("click", () => setReplyTo(null));
$("search").addEventListener("submit", onSearch);
$("search-close").addEventListener("click", () => ($("search-results").hidden = true));
$("read-all").addEventListener("click", () => markAllRead().catch(fail("Mark all read")));
$("file").addEventListener("change", () => {
  $("file-name").textContent = $("file").files[0]?.name ?? "";
});
document.addEventListener("visibilitychange", () => {
  markRead();
  showTitleCounter();
});
$("back").addEventListener("click", () => ($("chat").dataset.view = "list"));
// Escape closes the thread panel (on a phone it covers the conversation).
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.thread !== null) closeThread();
});
$("notify-ask").addEventListener("click", () => askForNotifications().catch(fail("Notifications")));
$("body").addEventListener("input", () => {
  if (state.open !== null && $("body").value.trim()) state.client.typing(state.open).catch(() => null);
});
for (const change of ["online", "offline"]) {
  window.addEventListener(change, () => state.client && showConnection(state.client.state));
}
checkMaintenance();
if (state.session) start();
