// One conversation on screen: its timeline (visitor and operator messages, internal notes),
// the visitor's details, status / priority / assignee, read marks, typing, and the composer
// with its two modes. Notes go to /v1/livechat/.../notes, never into the message timeline the
// visitor reads; replies go through the JS client like any message. Messages can be quoted,
// reacted to, edited (one's own) and deleted (one's own; anyone's for admins and moderators).

import {
  historyList,
  quoteNode,
  reactionBar,
  reactionPicker,
  tombstoneText,
  excerpt,
} from "/static/shared/rich.js";
import { CannedReplies } from "./canned.js";
import { $, el, formatSize, formatTime, safeLink, setOptions } from "./dom.js";

const STAFF_ROLES = new Set(["admin", "moderator"]);
// A change in one of these (by anyone) leaves an activity entry in the timeline.
const ACTIVITY_FIELDS = [(item) => item.status, (item) => item.priority, (item) => item.assignee?.id ?? null];

const MODES = {
  reply: { button: "Send reply", hint: "The visitor sees replies.", placeholder: "Write a reply" },
  note: {
    button: "Add note",
    hint: "Internal note: only staff see it, never the visitor.",
    placeholder: "Write an internal note",
  },
};

export class ConversationView {
  #id = null;
  #item = null;
  #names = new Map(); // user id -> display name
  #nodes = new Map(); // "m:<seq>" | "n:<id>" -> <li>
  #visitorReceipt = { delivered_seq: 0, read_seq: 0 };
  #typingTimer = null;
  #typing = new Map(); // "conversation:user" -> when their typing indicator expires (ms)
  #mode = "reply";
  #opening = 0;
  #replyTo = null;
  #quoted = new Map(); // message id -> a quoted message fetched because it was not held

  constructor({ api, client, me, onChanged, onError }) {
    this.api = api;
    this.client = client;
    this.me = me;
    this.onChanged = onChanged;
    this.onError = onError;
    this.#names.set(me.id, me.display_name || me.name);
    // Before #wire: its keydown handler must see Enter first while the list is open.
    this.canned = new CannedReplies({ api, onError });
    this.#wire();
  }

  get id() {
    return this.#id;
  }

  async open(id) {
    const ticket = ++this.#opening;
    const detail = await this.api.conversation(id);
    // Not a member yet (an admin, before "Assign to me"): no receipts to show, which is fine.
    const [members, staff] = await Promise.all([
      this.api.members(id).catch(() => ({ members: [] })),
      this.api.staff(detail.inbox_id).catch(() => ({ staff: [] })),
    ]);
    if (ticket !== this.#opening) return;
    this.#id = id;
    this.#item = null;
    this.#nodes.clear();
    $("timeline").replaceChildren();
    $("not-member").hidden = true;
    $("composer-body").value = "";
    this.#setReplyTo(null);
    this.#setMode("reply");
    this.#stopTyping();
    $("placeholder").hidden = true;
    $("conversation-view").hidden = false;
    $("details").hidden = false;
    $("workspace").classList.add("has-conversation");
    for (const person of staff.staff) this.#names.set(person.id, person.display_name || person.name);
    for (const member of members.members) this.#names.set(member.user_id, member.display_name);
    const visitor = members.members.find((member) => member.user_id === detail.visitor.id);
    this.#visitorReceipt = {
      delivered_seq: visitor?.delivered_seq ?? 0,
      read_seq: visitor?.read_seq ?? 0,
    };
    this.update(detail, { staff: staff.staff });
    this.canned.setInbox(detail.inbox_id);
    for (const note of detail.notes ?? []) this.addNote(note);
    for (const entry of detail.activity ?? []) this.addActivity(entry);
    for (const message of this.client.timeline(id)) this.addMessage(message);
    this.#showTyping();
    await this.#loadHistory();
  }

  close() {
    this.#id = null;
    this.#item = null;
    this.#stopTyping();
    $("conversation-view").hidden = true;
    $("details").hidden = true;
    $("placeholder").hidden = false;
    $("workspace").classList.remove("has-conversation");
  }

  /** Show a conversation's current state (after open, an event, or our own change). */
  update(item, { staff } = {}) {
    if (item.conversation_id !== this.#id) return;
    const before = this.#item;
    this.#item = item;
    if (before && ACTIVITY_FIELDS.some((field) => String(field(before)) !== String(field(item)))) {
      this.#loadActivity();
    }
    this.#names.set(item.visitor.id, item.visitor.name);
    if (item.assignee) this.#names.set(item.assignee.id, item.assignee.name);
    $("conversation-title").textContent = item.visitor.name;
    $("status").value = item.status;
    $("priority").value = item.priority;
    if (staff) {
      const options = staff.map((person) => ({
        value: person.id,
        label: `${person.display_name || person.name}${person.online ? " (online)" : ""}`,
      }));
      setOptions($("assignee"), options, { keep: 1 });
    }
    const assignee = $("assignee");
    const assigneeId = item.assignee ? String(item.assignee.id) : "";
    if (assigneeId && ![...assignee.options].some((option) => option.value === assigneeId)) {
      assignee.add(el("option", { value: assigneeId }, item.assignee.name));
    }
    assignee.value = assigneeId;
    $("assign-me").disabled = item.assignee?.id === this.me.id;
    this.#showDetails(item);
  }

  #showDetails(item) {
    $("visitor-name").textContent = item.visitor.name;
    $("visitor-page").replaceChildren(safeLink(item.page_url));
    $("visitor-language").textContent = item.language || "—";
    $("visitor-country").textContent = item.country || "—";
    $("visitor-inbox").textContent = item.inbox_name;
    $("visitor-branch").textContent = item.branch?.name ?? "—";
    $("visitor-started").textContent = formatTime(item.created_at);
    const attributes = Object.entries(item.attributes ?? {});
    $("visitor-attributes").replaceChildren(
      ...attributes.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, String(value))]),
    );
    if (attributes.length === 0) {
      // A <dl> holds dt+dd pairs only (axe): "none" is a term with nothing to describe.
      $("visitor-attributes").append(el("dt", { className: "muted" }, "none"), el("dd"));
    }
  }

  // -- timeline --------------------------------------------------------------------------------

  async #loadHistory() {
    const id = this.#id;
    try {
      await this.client.loadHistory(id, { limit: 100 });
      if (id === this.#id) $("not-member").hidden = true;
    } catch (error) {
      // Messages are for members; staff who are not one yet (admins) see 404 until assigned.
      if (error.status === 404 && id === this.#id) $("not-member").hidden = false;
      else this.onError(error);
    }
    if (id === this.#id) this.markRead();
  }

  /** Catch up after the stream was down: the conversation's state and any missed notes. */
  async refresh() {
    const id = this.#id;
    if (id === null) return;
    const detail = await this.api.conversation(id);
    if (id !== this.#id) return;
    this.update(detail);
    for (const note of detail.notes ?? []) this.addNote(note);
    for (const entry of detail.activity ?? []) this.addActivity(entry);
  }

  /** Show a message; `source` is the client's ("stream" for one that just arrived live). */
  addMessage(message, { source = "history" } = {}) {
    if (message.conversation_id !== this.#id) return;
    const fromVisitor = message.sender_id === this.#item?.visitor.id;
    const classes = ["entry", "message", fromVisitor ? "visitor" : "operator"];
    if (message.deleted_at) classes.push("deleted");
    const meta = el(
      "div",
      { className: "meta" },
      el("span", { className: "sender" }, this.#nameOf(message.sender_id)),
      el("time", { dateTime: message.created_at }, formatTime(message.created_at)),
      fromVisitor ? null : el("span", { className: "receipt muted" }),
    );
    const node = el(
      "li",
      {
        className: classes.join(" "),
        dataset: { seq: message.seq, id: message.id, at: Date.parse(message.created_at) || Date.now(), kind: "m" },
      },
      meta,
    );
    if (message.deleted_at) {
      node.append(el("p", { className: "body tombstone" }, tombstoneText(message)));
    } else {
      if (message.reply_to_id) node.append(this.#quote(message));
      if (message.body) node.append(el("p", { className: "body" }, message.body));
      if (message.edited_at) {
        const edited = el("button", { type: "button", className: "link edited" }, "edited");
        edited.addEventListener("click", () => this.#toggleHistory(node, message));
        meta.append(edited);
      }
      const files = (message.attachments ?? []).filter((attachment) => attachment.file_name);
      if (files.length > 0) node.append(this.#attachmentList(files));
      node.append(
        reactionBar(message, {
          me: this.me.id,
          nameOf: (id) => this.#nameOf(id),
          onToggle: (emoji, mine) => this.#react(message, emoji, mine),
        }),
      );
      node.append(this.#actions(message));
    }
    this.#place(`m:${message.seq}`, node);
    if (!fromVisitor) this.#markReceipt(node);
    else if (source === "stream") this.#stopTyping(); // they sent what they were typing
  }

  /** A message changed (edited, deleted, reactions): redraw it, and the replies quoting it. */
  updateMessage(message) {
    this.#quoted.set(message.id, message);
    if (message.conversation_id !== this.#id || !this.#nodes.has(`m:${message.seq}`)) return;
    this.addMessage(message);
    for (const other of this.client.timeline(this.#id)) {
      if (other.reply_to_id === message.id) this.addMessage(other);
    }
  }

  #actions(message) {
    const actions = el("div", { className: "actions" });
    const add = (label, handler) => {
      const button = el("button", { type: "button", className: "link" }, label);
      button.addEventListener("click", handler);
      actions.append(button);
    };
    const mine = message.sender_id === this.me.id;
    add("Quote", () => this.#setReplyTo(message));
    if (mine) add("Edit", () => this.#startEdit(message));
    if (mine || STAFF_ROLES.has(this.me.role)) {
      add("Delete", () => this.client.unsend(message.conversation_id, message.id).catch(this.onError));
    }
    actions.append(reactionPicker({ onPick: (emoji) => this.#react(message, emoji, false) }));
    return actions;
  }

  #react(message, emoji, mine) {
    const call = mine ? this.client.unreact : this.client.react;
    call.call(this.client, message.conversation_id, message.id, emoji).catch(this.onError);
  }

  #quote(message) {
    const held = this.client.timeline(message.conversation_id).find((m) => m.id === message.reply_to_id);
    const quoted = held ?? this.#quoted.get(message.reply_to_id);
    if (!quoted) {
      this.client.message(message.conversation_id, message.reply_to_id).then(
        (found) => {
          this.#quoted.set(found.id, found);
          if (message.conversation_id === this.#id) this.addMessage(message);
        },
        () => null,
      );
    }
    return quoteNode(quoted, (id) => this.#nameOf(id));
  }

  async #toggleHistory(node, message) {
    const shown = node.querySelector(".history");
    if (shown) {
      shown.remove();
      return;
    }
    try {
      node.append(historyList(await this.client.history(message.conversation_id, message.id), formatTime));
    } catch (error) {
      this.onError(error);
    }
  }

  #startEdit(message) {
    const node = this.#nodes.get(`m:${message.seq}`);
    if (!node) return;
    const input = el("input", { type: "text", value: message.body, className: "edit-body" });
    input.setAttribute("aria-label", "Edit message");
    const cancel = el("button", { type: "button", className: "link" }, "Cancel");
    const form = el("form", { className: "edit" }, input, el("button", { type: "submit" }, "Save"), cancel);
    cancel.addEventListener("click", () => this.addMessage(message));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = input.value.trim();
      if (!body || body === message.body) return this.addMessage(message);
      this.client.edit(message.conversation_id, message.id, body).catch((error) => {
        this.addMessage(message);
        this.onError(error);
      });
    });
    node.querySelector(".body")?.replaceWith(form);
    input.focus();
  }

  #setReplyTo(message) {
    this.#replyTo = message;
    $("replying").hidden = message === null;
    if (message) {
      $("replying-to").textContent = `${this.#nameOf(message.sender_id)}: ${excerpt(message.body, 60)}`;
      this.#setMode("reply");
      $("composer-body").focus();
    }
  }

  /** An internal note: staff only, styled apart from messages, labelled so no one mistakes it. */
  addNote(note) {
    if (note.conversation_id !== this.#id || this.#nodes.has(`n:${note.id}`)) return;
    const node = el(
      "li",
      {
        className: "entry note",
        dataset: { noteId: note.id, at: Date.parse(note.created_at) || Date.now(), kind: "n" },
      },
      el(
        "div",
        { className: "meta" },
        el("span", { className: "note-label" }, "Internal note"),
        el("span", { className: "sender" }, note.author?.name ?? ""),
        el("time", { dateTime: note.created_at }, formatTime(note.created_at)),
      ),
      el("p", { className: "body" }, note.body),
    );
    this.#place(`n:${note.id}`, node);
  }

  /** Who assigned it or changed its status or priority, and when: a quiet line between messages. */
  addActivity(entry) {
    if (this.#id === null || this.#nodes.has(`a:${entry.id}`)) return;
    const node = el(
      "li",
      {
        className: "entry activity",
        dataset: {
          activityId: entry.id,
          at: Date.parse(entry.created_at) || Date.now(),
          kind: "a",
          order: Number.parseInt(entry.id, 10),
        },
      },
      el("span", { className: "activity-text" }, entry.text),
      " · ",
      el("time", { dateTime: entry.created_at }, formatTime(entry.created_at)),
    );
    this.#place(`a:${entry.id}`, node);
  }

  async #loadActivity() {
    const id = this.#id;
    try {
      const { activity } = await this.api.activity(id);
      if (id === this.#id) for (const entry of activity) this.addActivity(entry);
    } catch (error) {
      this.onError(error);
    }
  }

  /** Insert in time order (messages by seq among themselves); a repeat replaces the old node. */
  #place(key, node) {
    const list = $("timeline");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
    const old = this.#nodes.get(key);
    this.#nodes.set(key, node);
    if (old) {
      old.replaceWith(node);
      return;
    }
    const at = Number(node.dataset.at);
    const seq = Number(node.dataset.seq ?? 0);
    const later = [...list.children].find((other) => {
      if (node.dataset.kind === "m" && other.dataset.kind === "m") return Number(other.dataset.seq) > seq;
      // Activity among itself by audit id: it grows with time, and no clock tick hides the order.
      if (node.dataset.kind === "a" && other.dataset.kind === "a") {
        return Number(other.dataset.order) > Number(node.dataset.order);
      }
      return Number(other.dataset.at) > at;
    });
    list.insertBefore(node, later ?? null);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  #attachmentList(attachments) {
    return el(
      "ul",
      { className: "attachments" },
      ...attachments.map((attachment) => {
        const link = el("a", { href: "#", className: "download" }, attachment.file_name);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          this.api.download(attachment).catch(this.onError);
        });
        return el("li", {}, link, el("span", { className: "muted" }, ` ${formatSize(attachment.size ?? 0)}`));
      }),
    );
  }

  #nameOf(userId) {
    return this.#names.get(userId) ?? `user ${userId}`;
  }

  // -- receipts, typing, read ------------------------------------------------------------------

  onReceipt(receipt) {
    if (receipt.conversation_id !== this.#id || receipt.user_id !== this.#item?.visitor.id) return;
    this.#visitorReceipt = {
      delivered_seq: Math.max(this.#visitorReceipt.delivered_seq, receipt.delivered_seq ?? 0),
      read_seq: Math.max(this.#visitorReceipt.read_seq, receipt.read_seq ?? 0),
    };
    for (const node of $("timeline").querySelectorAll(".message.operator")) this.#markReceipt(node);
  }

  #markReceipt(node) {
    const seq = Number(node.dataset.seq);
    const { delivered_seq: delivered, read_seq: read } = this.#visitorReceipt;
    const [state, text] = seq <= read ? ["read", "✓✓ Read"] : seq <= delivered ? ["delivered", "✓ Delivered"] : ["sent", "Sent"];
    const mark = node.querySelector(".receipt");
    mark.textContent = text;
    mark.dataset.state = state;
  }

  /** Remembered for every conversation, so opening one while its visitor types shows it. */
  onTyping(event) {
    const until = Date.now() + (event.expires_in_ms ?? 5000);
    this.#typing.set(`${event.conversation_id}:${event.user_id}`, until);
    if (event.conversation_id === this.#id) this.#showTyping();
  }

  #showTyping() {
    const until = this.#typing.get(`${this.#id}:${this.#item?.visitor.id}`) ?? 0;
    const left = until - Date.now();
    if (left <= 0) return;
    $("typing").hidden = false;
    clearTimeout(this.#typingTimer);
    this.#typingTimer = setTimeout(() => this.#stopTyping(), left);
  }

  #stopTyping() {
    clearTimeout(this.#typingTimer);
    $("typing").hidden = true;
    if (this.#item) this.#typing.delete(`${this.#id}:${this.#item.visitor.id}`);
  }

  /** Mark what is on screen read, while the page is visible. */
  markRead() {
    if (this.#id === null || document.visibilityState !== "visible") return;
    const messages = this.client.timeline(this.#id);
    if (messages.length === 0) return;
    const seq = messages[messages.length - 1].seq;
    this.client.markRead(this.#id, seq).catch(() => null);
  }

  // -- controls and composer -------------------------------------------------------------------

  #wire() {
    $("status").addEventListener("change", () => this.#change({ status: $("status").value }));
    $("priority").addEventListener("change", () => this.#change({ priority: $("priority").value }));
    $("assignee").addEventListener("change", () => {
      const value = $("assignee").value;
      this.#change({ assignee_id: value ? Number(value) : null });
    });
    $("assign-me").addEventListener("click", () => this.#run((id) => this.api.assignMe(id)));
    $("export").addEventListener("click", () => this.#export());
    $("mode-reply").addEventListener("click", () => this.#setMode("reply"));
    $("mode-note").addEventListener("click", () => this.#setMode("note"));
    $("replying-cancel").addEventListener("click", () => this.#setReplyTo(null));
    $("composer-file").addEventListener("change", () => this.#attach());
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
    $("composer-body").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.#submit();
      }
    });
    $("composer-body").addEventListener("input", () => {
      // Typing goes to the visitor, so never while writing a note.
      if (this.#mode === "reply" && this.#id !== null && $("composer-body").value) {
        this.client.typing(this.#id).catch(() => null);
      }
    });
    document.addEventListener("visibilitychange", () => this.markRead());
  }

  /** Put the cursor in the composer, in reply or note mode (the `r` and `n` shortcuts). */
  compose(mode) {
    if (this.#id === null) return;
    this.#setMode(mode);
    $("composer-body").focus();
  }

  assignMe() {
    if (this.#id !== null && this.#item?.assignee?.id !== this.me.id) {
      this.#run((id) => this.api.assignMe(id));
    }
  }

  #change(fields) {
    return this.#run((id) => this.api.change(id, fields));
  }

  /** Ask for the conversation's export package, follow its progress, then save the ZIP. */
  async #export() {
    const status = $("export-status");
    const button = $("export");
    button.disabled = true;
    try {
      let job = await this.api.requestExport(this.#id);
      while (job.status === "queued" || job.status === "running") {
        status.textContent = `Exporting… ${job.done}/${job.total || "?"}`;
        await new Promise((resolve) => setTimeout(resolve, 500));
        job = await this.api.exportJob(job.id);
      }
      if (job.status !== "done") throw new Error(job.error || "the export failed");
      status.textContent = `Export ready (${job.done} messages)`;
      await this.api.save(job.download_url, `conversation-${job.subject_id}.zip`);
    } catch (error) {
      status.textContent = "";
      this.onError(error);
    } finally {
      button.disabled = false;
    }
  }

  /** Apply a change; on failure put the controls back to what the server last said. */
  async #run(action) {
    const id = this.#id;
    try {
      const item = await action(id);
      this.update(item);
      this.onChanged(item);
      // Assignment makes us a member: the history we could not read before is readable now.
      if (item.assignee?.id === this.me.id) await this.#loadHistory();
    } catch (error) {
      if (this.#item) this.update(this.#item);
      this.onError(error);
    }
  }

  /** Send the chosen file to the visitor (the same upload API as every client uses). */
  async #attach() {
    const input = $("composer-file");
    const file = input.files?.[0];
    const id = this.#id;
    input.value = "";
    if (!file || id === null) return;
    const status = $("composer-hint");
    status.textContent = `Uploading ${file.name}…`;
    try {
      const attachment = await this.client.upload(id, file);
      await this.client.send(id, "", { attachments: [attachment.id] });
    } catch (error) {
      this.onError(error);
    } finally {
      this.#setMode(this.#mode);
    }
  }

  #setMode(mode) {
    this.#mode = mode;
    $("attach-label").hidden = mode !== "reply"; // files go to the visitor, never into notes
    const copy = MODES[mode];
    $("mode-reply").setAttribute("aria-pressed", String(mode === "reply"));
    $("mode-note").setAttribute("aria-pressed", String(mode === "note"));
    $("composer").classList.toggle("mode-note", mode === "note");
    $("composer").classList.toggle("mode-reply", mode === "reply");
    $("composer-send").textContent = copy.button;
    $("composer-hint").textContent = copy.hint;
    $("composer-body").placeholder = copy.placeholder;
  }

  async #submit() {
    const id = this.#id;
    const input = $("composer-body");
    const body = input.value.trim();
    if (id === null || !body) return;
    const send = $("composer-send");
    send.disabled = true;
    // Cleared as the send starts, not when it ends: what the operator types meanwhile stays.
    input.value = "";
    try {
      if (this.#mode === "note") {
        this.addNote(await this.api.addNote(id, body));
      } else {
        const replyTo = this.#replyTo?.id;
        this.#setReplyTo(null);
        await this.client.send(id, body, { replyTo });
      }
    } catch (error) {
      if (id === this.#id && !input.value) input.value = body; // not sent: give it back
      this.onError(error);
    } finally {
      send.disabled = false;
      input.focus();
    }
  }
}
