/**
 * Parley Messenger: the website chat widget, started by widget.js (the loader a page embeds).
 *
 * The visit starts when the visitor first opens the chat, or at once when this browser already
 * has a session for the widget (then the history comes back after a reload). The conversation
 * runs on ParleyClient in widget mode: WebSocket, else SSE, else long-poll, with resume and
 * gap filling; sends are retried with the same client_msg_id until stored.
 */

import { ParleyClient } from "../client.js";
import { MessengerView } from "./view.js";
import { SessionStore, bootstrap, fetchStaff, leaveOffline, takeResumeToken } from "./visit.js";

const UNAVAILABLE = "Chat is not available on this page right now.";
const MAINTENANCE_RETRY_MAX_MS = 30_000;

class Messenger {
  #config;
  #view = null;
  #store;
  #open = false;
  #visit = null; // the bootstrap answer, once there is one
  #client = null;
  #starting = null;
  #othersRead = 0; // the highest read_seq / delivered_seq of anyone but the visitor
  #othersDelivered = 0;
  #unread = 0;
  #resume = null; // a reply e-mail's link token, used by the first bootstrap
  #emailGiven = false;
  #maintenanceTimer = null;
  #staff = new Map(); // user id -> display name of who answers (GET /api/widget/staff)
  #asking = null; // the staff request under way
  #sending = new Set(); // bubbles of messages not stored yet

  constructor(config) {
    this.#config = config;
    this.#store = new SessionStore(config.widgetToken);
  }

  async mount() {
    this.#view = await MessengerView.mount(this.#config.baseUrl, {
      onToggle: () => this.toggle(),
      onClose: () => this.close(),
      onSend: (text) => this.#send(text),
      onOffline: (email, text) => this.#sendOffline(email, text),
      onFile: (file) => this.#sendFile(file),
      onTyping: () => this.#client?.typing(this.#visit.conversation_id),
      onRetry: () => this.#start(),
    });
    this.#resume = takeResumeToken();
    if (this.#resume) this.open(); // back from a reply e-mail: straight into the conversation
    else if (this.#store.get()) this.#start(); // a returning visitor: bring the conversation back
  }

  // -- public API (window.ParleyMessenger) -----------------------------------------------------

  open() {
    this.#open = true;
    this.#view.setOpen(true);
    this.#unread = 0;
    if (!this.#visit) this.#start();
    this.#markRead();
  }

  close() {
    this.#open = false;
    this.#view.setOpen(false);
  }

  toggle() {
    if (this.#open) this.close();
    else this.open();
  }

  isOpen() {
    return this.#open;
  }

  showLauncher() {
    this.#view.setLauncherShown(true);
  }

  hideLauncher() {
    this.#view.setLauncherShown(false);
  }

  // -- the visit -------------------------------------------------------------------------------

  #start() {
    this.#starting ??= this.#begin().finally(() => {
      this.#starting = null;
    });
    return this.#starting;
  }

  async #begin() {
    if (!this.#config.widgetToken) return this.#view.showError(UNAVAILABLE);
    this.#view.showLoading();
    const { baseUrl, widgetToken, identity } = this.#config;
    let visit;
    try {
      visit = await bootstrap({ baseUrl, widgetToken, identity, store: this.#store, resume: this.#resume });
      this.#resume = null;
    } catch (error) {
      if (error.code === "ERR_MAINTENANCE") return this.#waitOutMaintenance(error);
      // A page whose origin is not allowed gets no CORS header, so it looks like a network
      // error from here: one message for every refusal, the details are in the server's log.
      console.warn("Parley Messenger: the chat could not start", error.code ?? error);
      return this.#view.showError(UNAVAILABLE);
    }
    this.#visit = visit;
    this.#view.showVisit(visit);
    this.#connect(visit);
  }

  /** Maintenance mode: show the operators' message and try again by ourselves, soon. */
  #waitOutMaintenance(error) {
    this.#view.showError(error.message || "We are down for maintenance.");
    const seconds = Number(error.retryAfter) || 30;
    clearTimeout(this.#maintenanceTimer);
    this.#maintenanceTimer = setTimeout(() => this.#start(), Math.min(seconds * 1000, MAINTENANCE_RETRY_MAX_MS));
  }

  #connect(visit) {
    this.#client?.close();
    const client = new ParleyClient({
      baseUrl: this.#config.baseUrl,
      widget: { session: visit.session, visitorId: visit.visitor_id },
    });
    this.#client = client;
    client.on("message", (message, { source }) => this.#onMessage(message, source));
    client.on("message.updated", (message) => this.#onUpdated(message));
    client.on("receipt", (receipt) => this.#onReceipt(receipt));
    client.on("typing", (event) => {
      if (event.user_id !== visit.visitor_id) this.#view.showTyping(event.expires_in_ms ?? 5000);
    });
    client.on("state", () => this.#showConnection());
    window.addEventListener("online", () => this.#showConnection());
    window.addEventListener("offline", () => this.#showConnection());
    client.on("maintenance", ({ active, message }) => this.#view.setMaintenance(active ? message : null));
    client.on("error", () => this.#expired());
    client.connect().catch(() => null);
    client.loadHistory(visit.conversation_id).catch(() => null);
  }

  /** The session was refused mid-visit (expired, cleaned up): start a new one. */
  #expired() {
    this.#store.clear();
    this.#visit = null;
    this.#client = null;
    this.#start();
  }

  #offline() {
    return !navigator.onLine || (this.#client !== null && this.#client.state !== "open");
  }

  #showConnection() {
    for (const bubble of this.#sending) bubble.waiting(this.#offline());
  }

  /** The name to show on an operator's message; a new name is asked for once, then redrawn. */
  #senderOf(message) {
    const known = this.#staff.get(message.sender_id);
    if (known || message.sender_id === this.#visit.visitor_id) return known ?? "";
    this.#asking ??= fetchStaff({ baseUrl: this.#config.baseUrl, session: this.#visit.session })
      .then((answer) => {
        for (const person of answer.staff ?? []) this.#staff.set(person.id, person.name);
        for (const shown of this.#client.timeline(this.#visit.conversation_id)) {
          if (this.#staff.has(shown.sender_id) && this.#view.shows(shown.seq)) this.#draw(shown);
        }
      })
      .catch(() => null)
      .finally(() => {
        this.#asking = null;
      });
    return "";
  }

  #draw(message) {
    const mine = message.sender_id === this.#visit.visitor_id;
    const sender = mine ? "" : this.#senderOf(message);
    this.#view.showMessage(message, { mine, sender, attachmentUrl: (id) => this.#client.attachmentUrl(id) });
    if (mine) this.#view.setStatus(message.seq, this.#statusOf(message.seq));
  }

  #onMessage(message, source) {
    const mine = message.sender_id === this.#visit.visitor_id;
    this.#draw(message);
    if (!mine) {
      this.#view.hideTyping();
      if (!this.#open && source !== "history") this.#view.setUnread(++this.#unread);
    }
    this.#markRead();
  }

  /** An operator edited or removed a message (or the visitor's own was removed): redraw it. */
  #onUpdated(message) {
    if (message.conversation_id !== this.#visit?.conversation_id || !this.#view.shows(message.seq)) return;
    this.#draw(message);
  }

  #onReceipt(receipt) {
    if (receipt.user_id === this.#visit.visitor_id) return;
    this.#othersRead = Math.max(this.#othersRead, receipt.read_seq);
    this.#othersDelivered = Math.max(this.#othersDelivered, receipt.delivered_seq);
    for (const message of this.#client.timeline(this.#visit.conversation_id)) {
      if (message.sender_id === this.#visit.visitor_id) this.#view.setStatus(message.seq, this.#statusOf(message.seq));
    }
  }

  #statusOf(seq) {
    if (this.#othersRead >= seq) return "Read";
    if (this.#othersDelivered >= seq) return "Delivered";
    return "Sent";
  }

  /** The tab came back into view: what is on screen is read now. */
  seen() {
    this.#markRead();
  }

  /** What the visitor has on screen is read: only while the chat is open and the tab visible. */
  #markRead() {
    if (!this.#open || !this.#client || document.visibilityState === "hidden") return;
    const messages = this.#client.timeline(this.#visit.conversation_id);
    const last = messages[messages.length - 1];
    if (last) this.#client.markRead(this.#visit.conversation_id, last.seq).catch(() => null);
  }

  /** Shown at once as "Sending…"; it stays until stored (retried with the same id) or failed. */
  #send(text) {
    if (!this.#client) return;
    const clientMsgId = crypto.randomUUID();
    const bubble = this.#view.showSending(text, { retry: () => attempt() });
    const attempt = async () => {
      this.#sending.add(bubble);
      bubble.waiting(this.#offline());
      try {
        await this.#client.send(this.#visit.conversation_id, text, { clientMsgId });
        bubble.done();
      } catch (error) {
        bubble.failed(error.message || "no connection");
      } finally {
        this.#sending.delete(bubble);
      }
    };
    return attempt();
  }

  /** Nobody is there to answer: leave an address for the reply with the message. */
  async #sendOffline(email, text) {
    if (!this.#visit) return;
    if (this.#emailGiven) return this.#send(text);
    try {
      await leaveOffline({ baseUrl: this.#config.baseUrl, session: this.#visit.session, email, body: text });
      this.#emailGiven = true;
      this.#view.offlineSent(email);
    } catch (error) {
      this.#view.showPending(`Not sent: ${error.message}`);
    }
  }

  async #sendFile(file) {
    if (!this.#client) return;
    const pending = this.#view.showPending(`Uploading ${file.name}…`);
    try {
      const attachment = await this.#client.upload(this.#visit.conversation_id, file);
      await this.#client.send(this.#visit.conversation_id, "", { attachments: [attachment.id] });
      pending.remove();
    } catch (error) {
      pending.textContent = `Could not send ${file.name}: ${error.message}`;
    }
  }
}

/** Called by widget.js: mount the widget, take over `window.ParleyMessenger`, replay the queue. */
export async function start({ api, queue, ...config }) {
  const messenger = new Messenger(config);
  await messenger.mount();
  for (const name of ["open", "close", "toggle", "showLauncher", "hideLauncher"]) {
    api[name] = () => messenger[name]();
  }
  api.isOpen = () => messenger.isOpen();
  for (const [name] of queue.splice(0)) api[name]();
  document.addEventListener("visibilitychange", () => messenger.seen());
}
