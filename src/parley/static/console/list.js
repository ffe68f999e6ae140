// The conversation list: filters (inbox, status, assignee, priority), loaded over REST and kept
// live from `livechat.conversation` and `message` events. Newest activity first. The status
// filter starts at "open + pending": a resolved chat leaves the list until the visitor writes.

import { $, capitalize, el, formatTime, setOptions } from "./dom.js";

const FILTERS = {
  inbox_id: "filter-inbox",
  status: "filter-status",
  assignee: "filter-assignee",
  priority: "filter-priority",
};

function activityOf(item) {
  return Date.parse(item.last_message_at ?? item.updated_at ?? item.created_at) || 0;
}

export class ConversationList {
  #items = new Map(); // conversation id -> ConversationItem, only those matching the filters
  #nodes = new Map(); // conversation id -> its <li>, kept so a refresh never swaps a button mid-click
  #unread = new Set();
  #loading = 0; // bumped per load: an older answer arriving late is dropped
  #fetching = new Set(); // conversation ids being fetched after a message (one request each)
  #notLiveChats = new Set(); // conversation ids the console API answered 404 for

  constructor({ api, me, onSelect, onError, onUnread = () => {} }) {
    this.api = api;
    this.onUnread = onUnread;
    this.me = me;
    this.onSelect = onSelect;
    this.onError = onError;
    this.selected = null;
    for (const id of Object.values(FILTERS)) {
      $(id).addEventListener("change", () => this.load().catch(onError));
    }
  }

  /** The filters as query parameters; empty strings mean "any". */
  filters() {
    return Object.fromEntries(Object.entries(FILTERS).map(([key, id]) => [key, $(id).value]));
  }

  setInboxes(inboxes) {
    setOptions($("filter-inbox"), inboxes.map((inbox) => ({ value: inbox.id, label: inbox.name })), {
      keep: 1,
    });
  }

  /** Offer each staff member as an assignee filter, after Anyone / Me / Unassigned. */
  setStaff(staff) {
    const others = staff.filter((person) => person.id !== this.me.id);
    const options = others.map((person) => ({ value: person.id, label: person.display_name || person.name }));
    setOptions($("filter-assignee"), options, { keep: 3 });
  }

  async load() {
    const ticket = ++this.#loading;
    const { conversations } = await this.api.conversations(this.filters());
    if (ticket !== this.#loading) return;
    this.#items = new Map(conversations.map((item) => [item.conversation_id, item]));
    this.render();
  }

  get(id) {
    return this.#items.get(id) ?? null;
  }

  /** A conversation changed (`livechat.conversation`, or our own PATCH): show, move or drop it. */
  apply(item) {
    const id = item.conversation_id;
    const known = this.#items.get(id);
    if (!this.matches(item)) {
      if (known) {
        this.#items.delete(id);
        this.render();
      }
      return;
    }
    const fresh = !known || (item.last_message_at && item.last_message_at !== known.last_message_at);
    const fromOthers = item.last_message ? item.last_message.sender_id !== this.me.id : !known;
    if (fresh && fromOthers && id !== this.selected) this.#unread.add(id);
    this.#items.set(id, item);
    this.render();
  }

  /** A conversation the list does not hold had news: fetch it (staff only) and apply it. */
  async fetch(id) {
    if (this.#fetching.has(id) || this.#notLiveChats.has(id)) return;
    this.#fetching.add(id);
    try {
      const item = { ...(await this.api.conversation(id)) };
      delete item.notes;
      delete item.activity;
      if (!this.#items.has(id)) this.apply(item);
    } catch (error) {
      this.#notLiveChats.add(id); // 404: a plain conversation, or one this user is not staff of
      throw error;
    } finally {
      this.#fetching.delete(id);
    }
  }

  /** A message changed (edited, unsent): if it is the one the list shows, show it as it is. */
  retouch(message) {
    const item = this.#items.get(message.conversation_id);
    if (!item?.last_message || item.last_message.seq !== message.seq) return;
    item.last_message = { ...item.last_message, body: message.body, deleted: Boolean(message.deleted_at) };
    this.render();
  }

  /** A message arrived on the stream: move its conversation up and show its text. */
  touch(message) {
    const item = this.#items.get(message.conversation_id);
    if (!item || (item.last_message && item.last_message.seq >= message.seq)) return;
    item.last_message = { body: message.body, sender_id: message.sender_id, seq: message.seq };
    item.last_message_at = message.created_at;
    if (message.sender_id !== this.me.id && message.conversation_id !== this.selected) {
      this.#unread.add(message.conversation_id);
    }
    this.render();
  }

  select(id) {
    this.selected = id;
    this.#unread.delete(id);
    this.render();
  }

  matches(item) {
    const filters = this.filters();
    if (filters.inbox_id && String(item.inbox_id) !== filters.inbox_id) return false;
    if (filters.status && !filters.status.split(",").includes(item.status)) return false;
    if (filters.priority && item.priority !== filters.priority) return false;
    const assignee = item.assignee?.id ?? null;
    if (filters.assignee === "me") return assignee === this.me.id;
    if (filters.assignee === "none") return assignee === null;
    if (filters.assignee) return String(assignee) === filters.assignee;
    return true;
  }

  render() {
    const list = $("conversation-list");
    const ordered = [...this.#items.values()].sort(
      (a, b) => activityOf(b) - activityOf(a) || b.conversation_id - a.conversation_id,
    );
    for (const [id, node] of this.#nodes) {
      if (!this.#items.has(id)) {
        node.remove();
        this.#nodes.delete(id);
      }
    }
    ordered.forEach((item, index) => {
      const node = this.#node(item.conversation_id);
      this.#fill(node, item);
      if (list.children[index] !== node) list.insertBefore(node, list.children[index] ?? null);
    });
    $("list-empty").hidden = ordered.length > 0;
    this.onUnread(this.#unread.size);
  }

  /** The conversation `offset` places below (above, if negative) the selected one, as shown. */
  neighbour(offset) {
    const ids = [...$("conversation-list").children].map((node) => Number(node.dataset.conversationId));
    if (ids.length === 0) return null;
    const at = ids.indexOf(this.selected);
    if (at === -1) return ids[offset > 0 ? 0 : ids.length - 1];
    return ids[Math.min(Math.max(at + offset, 0), ids.length - 1)];
  }

  #node(id) {
    let node = this.#nodes.get(id);
    if (!node) {
      const button = el("button", { type: "button", className: "conversation-button" });
      button.addEventListener("click", () => this.onSelect(id));
      node = el("li", { className: "conversation-item", dataset: { conversationId: id } }, button);
      this.#nodes.set(id, node);
    }
    return node;
  }

  #fill(node, item) {
    const id = item.conversation_id;
    const unread = this.#unread.has(id);
    node.classList.toggle("unread", unread);
    node.dataset.status = item.status;
    const button = node.firstElementChild;
    if (id === this.selected) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    const last = item.last_message;
    const preview = last ? (last.deleted ? "(deleted)" : last.body || "(attachment)") : "No messages yet";
    button.replaceChildren(
      el(
        "span",
        { className: "line" },
        el("strong", { className: "visitor" }, item.visitor.name),
        unread ? el("span", { className: "new-dot", title: "new" }, "new") : null,
        el("time", { className: "muted when", dateTime: item.last_message_at ?? "" }, formatTime(item.last_message_at)),
      ),
      el("span", { className: "preview muted" }, preview),
      el(
        "span",
        { className: "line tags" },
        el("span", { className: `badge status-${item.status}` }, capitalize(item.status)),
        el("span", { className: `badge priority-${item.priority}` }, capitalize(item.priority)),
        el("span", { className: "muted" }, item.inbox_name),
        el("span", { className: "muted assignee" }, item.assignee ? `→ ${item.assignee.name}` : "Unassigned"),
      ),
    );
  }
}
