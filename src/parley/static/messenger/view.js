/**
 * The widget's DOM: a launcher button and a chat window inside one shadow root, so the host
 * page's CSS does not reach in and ours does not leak out. No inline styles or scripts (pages
 * with a strict CSP keep working): the stylesheet is fetched from Parley and adopted as a
 * constructed sheet, or linked if that fails. Every piece of data goes in as text.
 */

const HOST_TAG = "parley-messenger";

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("aria-") || key.startsWith("data-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

async function styleSheet(href) {
  try {
    const response = await fetch(href, { mode: "cors", credentials: "omit" });
    if (!response.ok) throw new Error(`${response.status}`);
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(await response.text());
    return sheet;
  } catch {
    return null;
  }
}

/** "Ana Lima" -> "AL", "ben" -> "B": the avatar of an operator without a picture. */
export function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  return words.slice(0, 2).map((word) => [...word][0].toUpperCase()).join("") || "?";
}

function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return date.toDateString() === new Date().toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

/** The mounted widget. Callbacks: onToggle(), onClose(), onSend(text), onFile(file), onTyping(), onRetry(). */
export class MessengerView {
  static async mount(baseUrl, handlers) {
    const host = el(HOST_TAG, { hidden: true });
    const root = host.attachShadow({ mode: "open" });
    const href = `${baseUrl}/static/messenger/widget.css`;
    const sheet = await styleSheet(href);
    if (sheet) {
      root.adoptedStyleSheets = [sheet];
    } else {
      const link = el("link", { rel: "stylesheet", href });
      link.addEventListener("load", () => host.removeAttribute("hidden"), { once: true });
      root.append(link);
    }
    const view = new MessengerView(root, handlers);
    if (!document.body) await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
    document.body.append(host);
    if (sheet) host.removeAttribute("hidden");
    return view;
  }

  constructor(root, handlers) {
    this.handlers = handlers;
    this.items = new Map(); // seq -> {item, status} for messages on screen
    this.typingTimer = null;

    this.badge = el("span", { class: "badge", hidden: true, "aria-hidden": "true" });
    this.launcher = el("button", { type: "button", class: "launcher", "aria-label": "Open chat", "aria-expanded": "false" });
    this.launcher.append(el("span", { class: "launcher-icon", "aria-hidden": "true" }), this.badge);
    this.launcher.addEventListener("click", () => handlers.onToggle());

    this.title = el("h2", { class: "title", text: "Chat" });
    const close = el("button", { type: "button", class: "close", "aria-label": "Close chat", text: "×" });
    close.addEventListener("click", () => handlers.onClose());

    this.notice = el("p", { class: "notice offline", role: "status", hidden: true });
    this.maintenance = el("p", { class: "notice maintenance", role: "alert", hidden: true });
    this.error = el("div", { class: "notice error", role: "alert", hidden: true });
    this.errorText = el("p");
    this.retry = el("button", { type: "button", class: "retry", text: "Try again" });
    this.retry.addEventListener("click", () => handlers.onRetry());
    this.error.append(this.errorText, this.retry);
    this.loading = el("p", { class: "loading", text: "Connecting…" });

    this.list = el("ol", { class: "messages", "aria-live": "polite", "aria-label": "Messages" });
    this.typing = el("p", { class: "typing", role: "status", hidden: true, text: "An operator is typing…" });

    this.fileInput = el("input", { type: "file", class: "file", "aria-label": "Attach a file" });
    this.fileInput.addEventListener("change", () => {
      const [file] = this.fileInput.files;
      this.fileInput.value = "";
      if (file) handlers.onFile(file);
    });
    this.attach = el("label", { class: "attach", title: "Attach a file", hidden: true });
    this.attach.append(this.fileInput, el("span", { class: "attach-icon", "aria-hidden": "true", text: "+" }));
    this.input = el("textarea", { class: "input", rows: 1, maxLength: 16000, placeholder: "Write a message…", "aria-label": "Message" });
    this.input.addEventListener("input", () => handlers.onTyping());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    // The offline form: nobody can answer now, so the visitor leaves an address for the reply.
    this.email = el("input", {
      type: "email",
      class: "email",
      required: false,
      maxLength: 254,
      autocomplete: "email",
      placeholder: "Your e-mail (optional), for our reply",
      "aria-label": "Your e-mail address",
    });
    this.emailRow = el("div", { class: "offline-form", hidden: true }, this.email);
    this.offline = false;
    this.form = el("form", { class: "composer", hidden: true });
    this.form.append(this.attach, this.input, el("button", { type: "submit", class: "send", text: "Send" }));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      // Offline, the e-mail is optional: with one the answer also comes by e-mail; without
      // one the message waits in the conversation like any other.
      if (this.offline && !this.emailRow.hidden && this.email.value.trim()) {
        if (!this.email.checkValidity()) {
          this.email.setCustomValidity("That does not look like an e-mail address.");
          this.email.reportValidity();
          this.email.setCustomValidity("");
          return;
        }
        this.input.value = "";
        handlers.onOffline(this.email.value.trim(), text);
        return;
      }
      this.input.value = "";
      handlers.onSend(text);
    });

    this.privacy = el("p", { class: "privacy", hidden: true });
    this.greeting = el("div", { class: "greeting", hidden: true });

    this.panel = el("section", { class: "panel", role: "dialog", "aria-label": "Chat", hidden: true });
    this.panel.append(
      el("header", { class: "header" }, this.title, close),
      this.maintenance,
      this.notice,
      this.error,
      this.loading,
      this.greeting,
      this.list,
      this.typing,
      this.emailRow,
      this.form,
      this.privacy,
    );
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") handlers.onClose();
    });
    root.append(el("div", { class: "messenger" }, this.panel, this.launcher));
  }

  // -- open / closed ---------------------------------------------------------------------------

  setOpen(open) {
    // Closing from inside the window (Esc, the close button) gives the focus back to the launcher.
    const focusWasInside = this.panel.contains(this.panel.getRootNode().activeElement);
    this.panel.hidden = !open;
    if (!open && focusWasInside && !this.launcher.hidden) this.launcher.focus();
    this.launcher.setAttribute("aria-expanded", String(open));
    this.launcher.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    if (open) this.badge.hidden = true;
    if (open && !this.form.hidden) this.input.focus();
  }

  setLauncherShown(shown) {
    this.launcher.hidden = !shown;
  }

  setUnread(count) {
    this.badge.hidden = count === 0;
    this.badge.textContent = count > 9 ? "9+" : String(count);
  }

  // -- the visit ---------------------------------------------------------------------------------

  /** Maintenance mode's message while it is on (sends wait for it to end); null hides it. */
  setMaintenance(text) {
    this.maintenance.hidden = !text;
    this.maintenance.textContent = text ?? "";
  }

  showLoading() {
    this.loading.hidden = false;
    this.error.hidden = true;
  }

  showError(text) {
    this.loading.hidden = true;
    this.form.hidden = true;
    this.errorText.textContent = text;
    this.error.hidden = false;
  }

  showVisit(visit) {
    this.loading.hidden = true;
    this.error.hidden = true;
    this.title.textContent = visit.inbox_name;
    this.panel.setAttribute("aria-label", visit.inbox_name);
    this.notice.hidden = visit.online;
    this.notice.textContent = visit.online ? "" : visit.offline_message || "We are offline right now. Leave a message and your e-mail: we will answer there.";
    this.offline = !visit.online;
    this.emailRow.hidden = visit.online;
    this.attach.hidden = !visit.allow_attachments;
    this.showGreeting(visit);
    const privacy = visit.privacy ?? {};
    this.privacy.replaceChildren();
    if (privacy.text) this.privacy.append(privacy.text);
    if (privacy.url && /^https?:/i.test(privacy.url)) {
      const link = el("a", { href: privacy.url, target: "_blank", rel: "noopener noreferrer", text: "Privacy policy" });
      this.privacy.append(privacy.text ? " " : "", link);
    }
    this.privacy.hidden = this.privacy.childNodes.length === 0;
    this.form.hidden = false;
    if (!this.panel.hidden) this.input.focus();
  }

  /** The inbox's welcome and how soon it usually answers, above the conversation. */
  showGreeting(visit) {
    const lines = [];
    if (visit.greeting) lines.push(el("p", { class: "greeting-text", text: visit.greeting }));
    if (visit.reply_time) lines.push(el("p", { class: "reply-time", text: visit.reply_time }));
    this.greeting.replaceChildren(...lines);
    this.greeting.hidden = lines.length === 0;
  }

  /** The offline message went in: say where the answer will come. */
  offlineSent(email) {
    this.emailRow.hidden = true;
    this.notice.textContent = `Thanks! We will answer at ${email}.`;
  }

  // -- messages ----------------------------------------------------------------------------------

  /**
   * Put a message in its place by seq (each seq once). Every message shows its time; `mine`
   * ones a status mark, the operators' their name and initials (`sender`).
   */
  showMessage(message, { mine, attachmentUrl, sender = "" }) {
    const known = this.items.get(message.seq);
    if (known) known.item.remove();
    const classes = `${mine ? "message mine" : "message theirs"}${message.deleted_at ? " deleted" : ""}`;
    const item = el("li", { class: classes, "data-seq": String(message.seq) });
    if (!mine) {
      item.append(
        el(
          "div",
          { class: "from" },
          el("span", { class: "avatar", "aria-hidden": "true", text: initials(sender || "Support") }),
          el("span", { class: "sender", text: sender || "Support" }),
        ),
      );
    }
    if (message.deleted_at) item.append(el("div", { class: "body tombstone", text: "This message was removed" }));
    if (message.body) item.append(el("div", { class: "body", text: message.body }));
    if (message.edited_at && !message.deleted_at) item.append(el("div", { class: "edited", text: "edited" }));
    for (const attachment of message.attachments ?? []) {
      const name = attachment.file_name ?? "attachment";
      const link = el("a", { class: "file-link", href: attachmentUrl(attachment.id), target: "_blank", rel: "noopener", text: name });
      item.append(el("div", { class: "attachment" }, link));
    }
    const status = el("span", { class: "status" });
    const time = el("time", { class: "time", dateTime: message.created_at, text: clock(message.created_at) });
    item.append(el("div", { class: "meta" }, time, mine ? status : ""));
    this.items.set(message.seq, { item, status });
    const after = [...this.items.keys()].filter((seq) => seq > message.seq).sort((a, b) => a - b)[0];
    const next = after === undefined ? null : this.items.get(after).item;
    this.list.insertBefore(item, next);
    if (next === null) this.list.scrollTop = this.list.scrollHeight;
  }

  shows(seq) {
    return this.items.has(seq);
  }

  /** A visitor's message mark: "Sent", "Delivered" or "Read" (what operators have seen). */
  setStatus(seq, text) {
    const entry = this.items.get(seq);
    if (entry && entry.status.textContent !== text) entry.status.textContent = text;
  }

  /** A short-lived line under the messages ("Uploading report.pdf…", "Could not send"). */
  showPending(text) {
    const item = el("li", { class: "message mine pending" }, el("div", { class: "body", text }));
    this.list.append(item);
    this.list.scrollTop = this.list.scrollHeight;
    return item;
  }

  /**
   * The visitor's message on its way: shown at once, and kept (with "Waiting for connection…")
   * until the server has it. `retry` runs when the visitor presses Retry after a failure.
   */
  showSending(text, { retry }) {
    const state = el("span", { class: "state", text: "Sending…" });
    const again = el("button", { type: "button", class: "retry-send", text: "Retry", hidden: true });
    again.addEventListener("click", () => {
      again.hidden = true;
      state.textContent = "Sending…";
      retry();
    });
    const item = el(
      "li",
      { class: "sending mine", "aria-label": `Sending: ${text}` },
      el("div", { class: "body", text }),
      el("div", { class: "meta" }, state, again),
    );
    this.list.append(item);
    this.list.scrollTop = this.list.scrollHeight;
    return {
      waiting: (offline) => {
        if (again.hidden) state.textContent = offline ? "Waiting for connection…" : "Sending…";
      },
      failed: (reason) => {
        state.textContent = `Not sent: ${reason}`;
        again.hidden = false;
      },
      done: () => item.remove(),
    };
  }

  showTyping(ms) {
    this.typing.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.hideTyping(), ms);
  }

  hideTyping() {
    clearTimeout(this.typingTimer);
    this.typing.hidden = true;
  }
}
