/**
 * Parley's browser client: one event stream over WebSocket, SSE or long-poll (docs/realtime.md),
 * with fallback, resume from a cursor, retried sends, de-duplicated timelines and the client-side
 * P0 counters. Plain ES modules, no build step, no dependencies: this file (the client and its
 * API) imports client/links.js (one connection attempt per transport), client/timeline.js,
 * client/counters.js and client/rest.js.
 *
 *   import { ParleyClient } from "/static/client.js";
 *   const client = new ParleyClient({ token });
 *   client.on("message", (message, { source }) => render(message));
 *   await client.connect();                       // resolves on the first `hello`
 *   const ack = await client.send(conversationId, "hi", { attachments: [], metadata: {} });
 *   client.markRead(conversationId, ack.seq);
 *   await client.send(conversationId, "me too", { replyTo: messageId });   // quote a message
 *   await client.send(conversationId, "in thread", { threadRoot: rootId }); // reply in a thread
 *   await client.edit(conversationId, ack.id, "hi!");   // also unsend(), react(), unreact()
 *   const { results } = await client.search("invoice from:bob");
 *   client.timeline(conversationId);              // messages it has seen, by seq, no repeats
 *   await client.close();                         // also sends the last counter report
 *
 * Widget mode (a website visitor, no bearer token): pass `widget` instead of `token`, with the
 * session and visitor id from `POST /api/widget/bootstrap`. The stream then comes from
 * /api/widget/ws|sse|poll, sends, receipts and typing go to /api/widget/messages|read|typing,
 * history and gap fills to GET /api/widget/messages; there is no conversation list, no ticket
 * and no counter report (counters stay in stats()). Fallback and resume work the same.
 *
 *   const client = new ParleyClient({ baseUrl, widget: { session, visitorId } });
 *   await client.connect();
 *   await client.loadHistory(conversationId);
 *   const attachment = await client.upload(conversationId, file);   // then send(..., {attachments: [attachment.id]})
 *
 * Options (all optional but `token` or `widget`):
 *   widget              {session, visitorId}: talk to the Widget API as that visitor
 *   baseUrl             "" (this page's origin) or "https://chat.example.com"
 *   transports          ["ws", "sse", "poll"]: the order to try; leave some out to force others
 *   fallbackTimeoutMs   3000: the budget for reaching a transport that works. A transport that
 *                       has not said `hello` within `handshakeTimeoutMs` (default two thirds of
 *                       the budget) is abandoned; a later one in the same round gets only what is
 *                       left, less 500 ms for each still to try, so even if every transport hangs
 *                       the last one is tried within the budget.
 *   cursor              a cursor saved earlier (`client.cursor`) to resume from across page loads
 *   reconnectBaseMs / reconnectMaxMs   300 / 10000: backoff with jitter between reconnects
 *   sendTimeoutMs       8000: a send not acked by then is retried with the same client_msg_id
 *   reportIntervalMs    10000: how often counter deltas go to POST /v1/stream/report
 *   pollTimeoutS        25: how long one long-poll may wait on the server
 *   pollMinIntervalMs   0 (1000 in widget mode): the least time between the starts of two polls
 *   loadConversations   true: fetch GET /v1/conversations after connecting (for gap detection);
 *                       always off in widget mode
 *   streamEvents        []: more named SSE events to listen for (the ones below are built in)
 *   receiptDeadlineMs   10000: the P0 "ack without receipt" window; change it only in tests
 *   deviceId            a random id: the device this client is in calls (keep it per tab)
 *
 * Events (`client.on(type, fn)` returns a function that unsubscribes):
 *   "message" (message, {source})  a message new to its timeline; source is "stream", "ack",
 *                                  "history" or "fill" (a gap filled over REST). One built from
 *                                  a WebSocket ack has `local: true` until the stream's copy
 *                                  replaces it in the timeline.
 *   "message.updated" (message, {source, change})   a held (or unknown) message changed:
 *                                  edited, deleted (a tombstone: `deleted_at` set, body and
 *                                  attachments empty) or its reactions; `change` is "edited" |
 *                                  "deleted" | "reactions" from the stream, null for one's own
 *                                  change (source "update"), shown once, whichever came first
 *   "thread.receipt" (event)       this user's read cursor in a thread moved (another tab)
 *   "receipt" (receipt)            {conversation_id, user_id, delivered_seq, read_seq}, only
 *                                  forward: the maximum seen so far
 *   "typing", "presence", "conversation.updated" (event)   as the server sent them
 *   "flags.updated" (event)        {revision, keys}: feature flags changed; GET /v1/flags again
 *   "transport" (name, switch)     the stream is now over "ws" | "sse" | "poll"
 *   "state" (state)                "idle" | "connecting" | "open" | "reconnecting" | "closed"
 *   "resync" ()                    the server could not resume: full state is being reloaded
 *   "conversations" (list)         the conversation list was (re)loaded
 *   "maintenance" ({active, message, retryAfter})   maintenance mode went on (streams of
 *                                  non-staff users are closed and retried until it ends) or off
 *   "error" (ParleyError)          a failure the client cannot fix by itself (bad token)
 *   "call.offer", "call.answer", "call.ice", "call.reject", "call.busy", "call.hangup",
 *   "call.missed", "call.sync" (event)   call signals for this user's calls (docs/calls.md);
 *                                  `signal()` sends them, static/calls/call.js is a WebRTC call
 *   any other type (event)         an event the client does not know is emitted by its `type`,
 *                                  e.g. "livechat.conversation" and "livechat.note" (staff)
 *
 * Guarantees: a send is retried with the same client_msg_id until acked (or rejected by the
 * server for good), so it is stored once; timelines hold each (conversation, seq) once, and a
 * gap in seq is filled over REST; read receipts never go backwards.
 */

import { Counters } from "./client/counters.js";
import { BearerEndpoints, WidgetEndpoints } from "./client/endpoints.js";
import { LINKS, failure, failureFromError } from "./client/links.js";
import { ParleyError, Rest } from "./client/rest.js";
import { RichTimeline } from "./client/rich.js";
import { Timeline } from "./client/timeline.js";

export { ParleyError };

const NEWEST_PAGE = 50;
const FILL_PAGE = 500; // the server's maximum page
const FILL_PAGES_MAX = 20; // past this a hole is left to the app's own history loading
const SEQ_MAX = 2 ** 53 - 1;
const TYPING_THROTTLE_MS = 3_000;
const FALLBACK_RESERVE_MS = 500; // kept back for each transport still to try in a round
const HISTORY_KEPT = 100; // connection attempts and switches kept for stats()
const MAINTENANCE_RETRY_MAX_MS = 30_000; // a maintenance refusal's Retry-After, capped: come back soon

export const ConnectionState = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newClientMsgId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; getRandomValues does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class ParleyClient {
  #listeners = new Map();
  #state = ConnectionState.IDLE;
  #link = null; // the link events are taken from
  #candidate = null; // the link being tried
  #lastTransport = null;
  #epoch = 0; // bumped whenever an attempt in flight must be abandoned
  #reconnectTimer = null;
  #reconnectAttempt = 0;
  #reportTimer = null;
  #blockedWs = false;
  #maintenanceSaid = "off"; // what the app was last told: "off" or "on:<message>"
  #needFullState = false;
  #connected = null; // {promise, resolve, reject} for connect()
  #timelines = new Map();
  #floors = new Map(); // conversation id -> last_seq when the list was loaded
  #conversations = new Map();
  #receipts = new Map(); // "conversation:user" -> {delivered_seq, read_seq}, the maximum seen
  #readSent = new Map(); // conversation id -> highest read_seq this client sent
  #typingSent = new Map();
  #ackWaiters = new Map(); // client_msg_id -> {resolve, reject} for WebSocket sends
  #replyWaiters = new Map(); // ref -> {resolve, reject} for call signals sent as frames
  #awaitingEcho = new Map(); // "conversation:seq" -> {ackedAt, transport, timer, late}
  #counters = new Counters();
  #rest;
  #rich;
  #endpoints;
  #switches = [];
  #attempts = [];
  #onPageHide;

  constructor(options = {}) {
    if (!options.token && !options.widget) throw new TypeError("ParleyClient needs a token (or widget)");
    const fallbackTimeoutMs = options.fallbackTimeoutMs ?? 3000;
    this.options = {
      baseUrl: "",
      transports: ["ws", "sse", "poll"],
      handshakeTimeoutMs: Math.round((fallbackTimeoutMs * 2) / 3),
      reconnectBaseMs: 300,
      reconnectMaxMs: 10_000,
      sendTimeoutMs: 8000,
      requestTimeoutMs: 15_000,
      reportIntervalMs: 10_000,
      pollTimeoutS: 25,
      loadConversations: true,
      receiptDeadlineMs: 10_000,
      ...options,
      fallbackTimeoutMs,
    };
    if (options.widget) this.options.loadConversations = false;
    // The Widget API allows one poll a second per session (PARLEY_WIDGET_POLL_MIN_INTERVAL_SECONDS).
    this.options.pollMinIntervalMs ??= options.widget ? 1000 : 0;
    for (const name of this.options.transports) {
      if (!LINKS[name]) throw new TypeError(`unknown transport ${name}`);
    }
    const { baseUrl, token, requestTimeoutMs } = this.options;
    this.#rest = new Rest({ baseUrl, token: options.widget ? null : token, timeoutMs: requestTimeoutMs });
    this.#endpoints = options.widget ? new WidgetEndpoints(options.widget.session) : new BearerEndpoints();
    this.#rich = new RichTimeline((...args) => this.request(...args), { widget: Boolean(options.widget) });
    this.cursor = options.cursor ?? null;
    // The device this client is (a tab, an app install) for calls: keep it across reloads.
    this.deviceId = options.deviceId ?? newClientMsgId().replaceAll("-", "");
    const visitorId = options.widget?.visitorId;
    this.user = visitorId === undefined ? null : { id: visitorId };
    // The last seconds of counters would be lost with the page; keepalive lets them leave.
    this.#onPageHide = () => this.#report({ final: true });
  }

  // -- public API ------------------------------------------------------------------------------

  /** Subscribe to an event type; returns the unsubscribe function. */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  get state() {
    return this.#state;
  }

  /** True in widget mode (a website visitor on the Widget API). */
  get isWidget() {
    return this.#endpoints.widget;
  }

  /** The transport the stream is on (or was last on): "ws" | "sse" | "poll" | null. */
  get transport() {
    return this.#lastTransport;
  }

  /**
   * Open the stream. Resolves on the first `hello`; keeps trying (fallback, then backoff) until
   * then. Rejects only if the token is refused or close() is called first.
   */
  connect() {
    if (this.#state === ConnectionState.CLOSED) return Promise.reject(this.#closedError());
    if (this.#connected) return this.#connected.promise;
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#connected = { promise, resolve, reject, settled: false };
    this.#setState(ConnectionState.CONNECTING);
    this.#start();
    return promise;
  }

  /**
   * Send a message; resolves with the ack `{conversation_id, id, seq, pos, duplicate,
   * client_msg_id, message}` once it is durable. Retried with the same client_msg_id until acked
   * (pass `clientMsgId` to retry one from before a page reload); rejects only on an error that
   * retrying cannot fix (ERR_VALIDATION, ERR_NOT_FOUND, ...) or on close().
   */
  send(conversationId, body = "", { attachments = [], metadata = {}, clientMsgId, replyTo, threadRoot } = {}) {
    clientMsgId ??= newClientMsgId();
    return this.#deliver({ conversationId, body, attachments, metadata, clientMsgId, replyTo, threadRoot });
  }

  // -- the rich timeline (client/rich.js): over REST, answers applied to held timelines ------

  /** Edit your message (within the server's window); resolves with the message as it is now. */
  async edit(conversationId, messageId, body, options) {
    return this.#applied(await this.#rich.edit(conversationId, messageId, body, options));
  }

  /** Delete a message for everyone (yours; anyone's for staff): a tombstone keeps its seq. */
  async unsend(conversationId, messageId, options) {
    return this.#applied(await this.#rich.unsend(conversationId, messageId, options));
  }

  async react(conversationId, messageId, emoji) {
    return this.#applied(await this.#rich.react(conversationId, messageId, emoji));
  }

  async unreact(conversationId, messageId, emoji) {
    return this.#applied(await this.#rich.react(conversationId, messageId, emoji, { remove: true }));
  }

  /** One message (e.g. the one a reply quotes, when the timeline does not hold it). */
  message(conversationId, messageId) {
    return this.#rich.message(conversationId, messageId);
  }

  /** Every version of a message's text, oldest first: [{version, body, written_at, ...}]. */
  history(conversationId, messageId) {
    return this.#rich.history(conversationId, messageId);
  }

  reactions(conversationId, messageId) {
    return this.#rich.reactions(conversationId, messageId);
  }

  /** A thread: {root, replies, following, read_seq, unread}. */
  thread(conversationId, rootId, options) {
    return this.#rich.thread(conversationId, rootId, options);
  }

  /** The conversation's threads, newest reply first: [{root, following, read_seq, unread}]. */
  threads(conversationId, options) {
    return this.#rich.threads(conversationId, options);
  }

  /** Mark a thread read up to `seq` (the cursor never moves back). */
  markThreadRead(conversationId, rootId, seq) {
    return this.#rich.markThreadRead(conversationId, rootId, seq);
  }

  /** Unread and mention counts per conversation and followed thread. */
  unread(conversationId) {
    return this.#rich.unread(conversationId);
  }

  /** Mark everything (or one conversation, with its threads) read; resolves with the counts. */
  markAllRead(conversationId) {
    return this.#rich.markAllRead(conversationId);
  }

  /**
   * Search the messages this user can read: {results: [{message, snippet}], next_cursor}.
   * `snippet` is [{text, hit}]: render it as text (e.g. <mark> built with the DOM for hits).
   */
  search(query, options) {
    return this.#rich.search(query, options);
  }

  /**
   * Mark a conversation read up to `seq` (delivered too). Never sends a lower read_seq than
   * before: a lower or equal one is a no-op (an app may call this for whatever is on screen, so
   * it is not a rollback; `read_rollback_detected` counts receipts that move backwards on the
   * stream). Resolves true if a receipt was sent.
   */
  async markRead(conversationId, seq) {
    const sent = this.#readSent.get(conversationId) ?? 0;
    if (seq < sent) return false;
    const own = this.user ? this.#receipts.get(`${conversationId}:${this.user.id}`) : null;
    if (seq === sent || (own && seq <= own.read_seq)) return false;
    this.#readSent.set(conversationId, seq);
    const receipt = { delivered_seq: Math.max(seq, own?.delivered_seq ?? 0), read_seq: seq };
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const superseded = this.#readSent.get(conversationId) !== seq;
      if (superseded || this.#state === ConnectionState.CLOSED) return false;
      const frame = { type: "receipt", conversation_id: conversationId, ...receipt };
      if (this.#canWriteOnStream() && this.#link.send(frame)) return true;
      try {
        const { path, json } = this.#endpoints.receipt(conversationId, receipt);
        await this.request("POST", path, { json });
        return true;
      } catch (error) {
        if (!error.retryable) throw error;
        await sleep(this.#backoffMs(attempt));
      }
    }
    return false;
  }

  /** Tell the conversation this user is typing (at most once per 3 s per conversation). */
  async typing(conversationId) {
    const last = this.#typingSent.get(conversationId) ?? -Infinity;
    if (now() - last < TYPING_THROTTLE_MS) return;
    this.#typingSent.set(conversationId, now());
    if (this.#canWriteOnStream() && this.#link.send({ type: "typing", conversation_id: conversationId })) return;
    const { path, json } = this.#endpoints.typing(conversationId);
    await this.request("POST", path, { json }).catch(() => null);
  }

  /**
   * Send a call signal (docs/calls.md) from this client's device: "call.offer" (with
   * conversation_id, call_id, sdp, media, to_user_id), "call.answer" (call_id, sdp), "call.ice"
   * (call_id, candidate), "call.reject" | "call.busy" | "call.hangup" (call_id). Resolves with the
   * call after it. Goes over the WebSocket when one is open, else over REST; an offer retried
   * with its call_id is the same call.
   */
  async signal(type, fields) {
    const frame = { type, device_id: this.deviceId, ...fields };
    if (this.#canWriteOnStream()) {
      const ref = newClientMsgId();
      const reply = this.#awaitReply(ref);
      if (this.#link.send({ ...frame, ref })) {
        try {
          return (await reply).call;
        } catch (error) {
          if (error.code !== "ERR_NETWORK" && error.code !== "ERR_TIMEOUT") throw error;
          // The socket went away before the answer: say it again over REST.
        }
      }
      this.#replyWaiters.delete(ref);
    }
    const { path, json } = this.#endpoints.signal(frame);
    return (await this.request("POST", path, { json })).call;
  }

  #awaitReply(ref) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#replyWaiters.delete(ref);
        reject(new ParleyError("ERR_TIMEOUT", `no answer in ${this.options.sendTimeoutMs} ms`));
      }, this.options.sendTimeoutMs);
      const settle = (fn) => (value) => {
        clearTimeout(timer);
        this.#replyWaiters.delete(ref);
        fn(value);
      };
      this.#replyWaiters.set(ref, { resolve: settle(resolve), reject: settle(reject) });
    });
  }

  /** The messages seen for a conversation, ordered by seq, each once. */
  timeline(conversationId) {
    return [...(this.#timelines.get(conversationId)?.messages() ?? [])];
  }

  /** Load the newest page of a conversation over REST into its timeline. */
  async loadHistory(conversationId, { limit = NEWEST_PAGE } = {}) {
    const lastSeq = this.#conversations.get(conversationId)?.last_seq;
    const before = lastSeq === undefined ? SEQ_MAX : lastSeq + 1;
    const { path, params } = this.#endpoints.history(conversationId, { before, limit });
    const page = await this.request("GET", path, { params });
    this.#mergeNewestPage(conversationId, page.messages);
    for (const receipt of page.receipts ?? []) this.#onReceipt(receipt, null); // widget history
    return this.timeline(conversationId);
  }

  /** Upload a file (a File or Blob) for a later send; answers `{id, file_name, content_type, size}`. */
  async upload(conversationId, file, fileName = file.name ?? "file") {
    const form = new FormData();
    form.append("file", file, fileName);
    const { path, params } = this.#endpoints.upload(conversationId);
    return this.request("POST", path, { params, form, timeoutMs: Math.max(this.options.requestTimeoutMs, 60_000) });
  }

  /**
   * The URL an attachment downloads from. In widget mode it carries the session, so a link
   * works as is; a signed-in app must fetch it with the bearer token instead.
   */
  attachmentUrl(attachmentId) {
    const { path, params } = this.#endpoints.attachment(attachmentId);
    return this.#rest.url(path, params).toString();
  }

  /** The conversation list as last loaded (GET /v1/conversations). */
  conversations() {
    return [...this.#conversations.values()];
  }

  /** Counters (totals, and per transport), write-receipt samples, and the transport history. */
  stats() {
    return {
      ...this.#counters.snapshot(),
      transport: this.#lastTransport,
      state: this.#state,
      cursor: this.cursor,
      switches: this.#switches.map((entry) => ({ ...entry })),
      attempts: this.#attempts.map((entry) => ({ ...entry })),
      pending_receipts: this.#awaitingEcho.size,
    };
  }

  /** Stop streaming, give up pending sends, and send the last counter report. */
  async close() {
    if (this.#state === ConnectionState.CLOSED) return;
    this.#setState(ConnectionState.CLOSED);
    this.#epoch += 1;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#reportTimer);
    globalThis.removeEventListener?.("pagehide", this.#onPageHide);
    this.#candidate?.stop();
    this.#link?.stop();
    this.#link = this.#candidate = null;
    for (const entry of this.#awaitingEcho.values()) clearTimeout(entry.timer);
    this.#awaitingEcho.clear();
    this.#failAckWaiters(this.#closedError());
    this.#settleConnect(this.#closedError());
    await this.#report({ final: true });
  }

  // -- connecting ------------------------------------------------------------------------------

  async #start() {
    try {
      if (this.#endpoints.mePath) this.user = await this.request("GET", this.#endpoints.mePath);
    } catch (error) {
      if (error.status === 401) return this.#giveUp(error);
      // The stream attempts below retry on their own; `user` is filled in later.
    }
    this.#reportTimer ??= setInterval(() => this.#report({ final: false }), this.options.reportIntervalMs);
    globalThis.addEventListener?.("pagehide", this.#onPageHide);
    this.#establish("connect", this.#order(), now());
  }

  /** Transports to try, in order, leaving out the WebSocket while the server says sse_only. */
  #order(first = null) {
    let names = this.options.transports.filter((name) => !(name === "ws" && this.#blockedWs));
    if (names.length === 0) names = [...this.options.transports];
    if (first && names.includes(first)) names = [first, ...names.filter((name) => name !== first)];
    return names;
  }

  /** Try each transport in turn until one says hello; if none does, back off and start over. */
  async #establish(reason, candidates, since) {
    const epoch = ++this.#epoch;
    this.#candidate?.stop();
    const from = this.#lastTransport;
    const deadline = now() + this.options.fallbackTimeoutMs;
    for (const [index, name] of candidates.entries()) {
      if (epoch !== this.#epoch) return;
      const link = new LINKS[name](this);
      this.#candidate = link;
      const started = now();
      const budgetMs = this.#attemptMs(deadline, candidates.length - index - 1);
      const timer = setTimeout(() => link.fail(failure("timeout")), budgetMs);
      link.open().catch((error) => {
        link.fail(failureFromError(error) ?? failure("dropped", { reason: error.message }));
      });
      try {
        await link.ready;
      } catch (ending) {
        if (epoch !== this.#epoch) return;
        const attempt = { transport: name, ok: false, kind: ending.kind, ms: now() - started };
        this.#remember(this.#attempts, attempt);
        if (ending.kind === "unauthenticated") {
          const refused = new ParleyError("ERR_UNAUTHENTICATED", "the token was refused", { status: 401 });
          return this.#giveUp(refused);
        }
        if (ending.kind === "resync") return this.#resync(name);
        if (ending.kind === "maintenance") {
          this.#maintenance(true, ending.message, ending.retryAfter);
          const delayMs = Math.min(this.#retryAfterMs(ending), MAINTENANCE_RETRY_MAX_MS);
          return this.#scheduleReconnect(reason, this.#order(name), delayMs);
        }
        if (ending.kind === "throttled") {
          return this.#scheduleReconnect(reason, this.#order(name), this.#retryAfterMs(ending));
        }
        if (ending.kind === "sse_only") this.blockWebSocket();
        continue;
      } finally {
        clearTimeout(timer);
      }
      if (epoch !== this.#epoch) return link.stop();
      this.#remember(this.#attempts, { transport: name, ok: true, kind: "hello", ms: now() - started });
      this.#install(link, { from, reason, ms: now() - since });
      return;
    }
    this.#candidate = null;
    this.#scheduleReconnect(reason, this.#order(), this.#backoffMs(this.#reconnectAttempt++));
  }

  #install(link, change) {
    this.#link = link;
    this.#candidate = null;
    this.#reconnectAttempt = 0;
    this.#lastTransport = link.name;
    this.#setState(ConnectionState.OPEN);
    this.#maintenance(false);
    if (change.from !== link.name) {
      const entry = { from: change.from, to: link.name, reason: change.reason, ms: change.ms };
      this.#emit("transport", link.name, this.#remember(this.#switches, entry));
    }
    this.#settleConnect(null);
    this.#afterHello();
  }

  async #afterHello() {
    const { mePath } = this.#endpoints;
    if (!this.user && mePath) this.user = await this.request("GET", mePath).catch(() => null);
    // Full state is loaded only once the new stream is up: anything committed meanwhile then
    // arrives on the stream, where loading first and connecting after could miss it.
    if (this.#needFullState) {
      this.#needFullState = false;
      try {
        await this.#loadFullState();
      } catch {
        this.#needFullState = true;
        setTimeout(() => this.#link && this.#needFullState && this.#afterHello(), this.#backoffMs(1));
      }
    } else if (this.options.loadConversations && this.#conversations.size === 0) {
      await this.#loadConversations().catch(() => null);
    }
  }

  #scheduleReconnect(reason, candidates, delayMs) {
    if (this.#state === ConnectionState.CLOSED) return;
    this.#epoch += 1;
    this.#candidate?.stop();
    this.#candidate = null;
    clearTimeout(this.#reconnectTimer);
    if (this.#state !== ConnectionState.CONNECTING) this.#setState(ConnectionState.RECONNECTING);
    const since = now();
    this.#reconnectTimer = setTimeout(() => this.#establish(reason, candidates, since), delayMs);
  }

  /** The cursor is too old (or from the future): count it, reconnect without it, reload state. */
  #resync(transport) {
    // Without a cursor there is nothing to resync from: a server saying so again gets backoff.
    const delayMs = this.cursor === null ? this.#backoffMs(this.#reconnectAttempt++) : 0;
    this.#counters.count(transport, "forced_resyncs");
    this.cursor = null;
    this.#needFullState = true;
    this.#emit("resync");
    this.#scheduleReconnect("resync", this.#order(transport), delayMs);
  }

  #giveUp(error) {
    this.#setState(ConnectionState.CLOSED);
    this.#epoch += 1;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#reportTimer);
    globalThis.removeEventListener?.("pagehide", this.#onPageHide);
    this.#candidate?.stop();
    this.#link?.stop();
    this.#link = this.#candidate = null;
    this.#failAckWaiters(error);
    this.#emit("error", error);
    this.#settleConnect(error);
  }

  /** Keep the last HISTORY_KEPT entries of a diagnostic list; times in whole ms. */
  #remember(list, entry) {
    const kept = { ...entry, ms: Math.round(entry.ms) };
    list.push(kept);
    if (list.length > HISTORY_KEPT) list.shift();
    return kept;
  }

  #settleConnect(error) {
    const waiter = this.#connected;
    if (!waiter || waiter.settled) return;
    waiter.settled = true;
    if (error) waiter.reject(error);
    else waiter.resolve();
  }

  /** How long one attempt may take to say hello, so that the round stays within its budget. */
  #attemptMs(deadline, stillToTry) {
    const { handshakeTimeoutMs } = this.options;
    if (stillToTry === 0) return handshakeTimeoutMs;
    const left = deadline - now() - stillToTry * FALLBACK_RESERVE_MS;
    return Math.max(Math.min(handshakeTimeoutMs, left), FALLBACK_RESERVE_MS);
  }

  #backoffMs(attempt) {
    const { reconnectBaseMs, reconnectMaxMs } = this.options;
    const cap = Math.min(reconnectMaxMs, reconnectBaseMs * 2 ** Math.min(attempt, 16));
    return cap / 2 + Math.random() * (cap / 2);
  }

  /** Tell the app maintenance mode went on or off (once per change). */
  #maintenance(active, message = "", retryAfter = null) {
    const said = active ? `on:${message}` : "off";
    if (said === this.#maintenanceSaid) return;
    this.#maintenanceSaid = said;
    this.#emit("maintenance", { active, message, retryAfter });
  }

  #retryAfterMs(ending) {
    const seconds = Number(ending.retryAfter);
    const base = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 5000;
    return base + Math.random() * 500;
  }

  // -- stream events ---------------------------------------------------------------------------

  #onStreamMessage(event, transport) {
    const conversationId = event.conversation_id;
    const seq = event.seq;
    if (Number.isInteger(event.pos)) this.cursor = String(event.pos);
    const timeline = this.#timeline(conversationId);
    if (timeline.fromStream.has(seq)) {
      this.#counters.count(transport, "timeline_duplicate_detected");
      return;
    }
    timeline.fromStream.add(seq);
    this.#confirmEcho(conversationId, seq);
    const message = { ...event.message, conversation_id: conversationId, seq };
    if (timeline.insert(message)) this.#emit("message", message, { source: "stream" });
    // The stream is in order, so a hole below this seq will not be filled by it.
    if (timeline.contiguous < seq - 1) this.#fillGap(conversationId, seq - 1);
  }

  /**
   * A message's new state: replace it where held and emit "message.updated" if it is news (a
   * change to what is held, or a message not held at all). Resolves callers with the message.
   */
  #applied(message, { source = "update", change = null } = {}) {
    const timeline = this.#timeline(message.conversation_id);
    const held = timeline.bySeq.has(message.seq);
    if (timeline.update(message) || !held) this.#emit("message.updated", message, { source, change });
    return message;
  }

  /**
   * Apply a receipt as the maximum seen. One from the stream that is lower than what the stream
   * said before is a rollback; a REST snapshot (`transport` null) may just be older, so it is not.
   */
  #onReceipt(event, transport) {
    const key = `${event.conversation_id}:${event.user_id}`;
    const known = this.#receipts.get(key) ?? { delivered_seq: 0, read_seq: 0 };
    if (transport && event.read_seq < known.read_seq) {
      this.#counters.count(transport, "read_rollback_detected");
    }
    const merged = {
      conversation_id: event.conversation_id,
      user_id: event.user_id,
      delivered_seq: Math.max(known.delivered_seq, event.delivered_seq ?? 0),
      read_seq: Math.max(known.read_seq, event.read_seq ?? 0),
    };
    this.#receipts.set(key, merged);
    if (merged.read_seq !== known.read_seq || merged.delivered_seq !== known.delivered_seq) {
      this.#emit("receipt", merged);
    }
  }

  // -- called by the links (client/links.js), not by apps ----------------------------------

  /** A link that said hello has ended; decide how to come back. */
  linkDown(link, ending) {
    if (link !== this.#link || this.#state === ConnectionState.CLOSED) return;
    this.#link = null;
    this.#failAckWaiters(new ParleyError("ERR_NETWORK", "the connection closed before the ack"));
    this.#setState(ConnectionState.RECONNECTING);
    if (ending.kind === "unauthenticated") {
      // Signed out, disabled or expired: reconnecting with the same token cannot work.
      return this.#giveUp(new ParleyError("ERR_UNAUTHENTICATED", "the token was revoked", { status: 401 }));
    }
    if (ending.kind === "resync") return this.#resync(link.name);
    if (ending.kind === "sse_only") {
      this.blockWebSocket();
      return this.#scheduleReconnect("sse_only", this.#order(), 0);
    }
    if (ending.kind === "maintenance") {
      this.#maintenance(true, ending.message, ending.retryAfter);
      const delayMs = Math.min(this.#retryAfterMs(ending), MAINTENANCE_RETRY_MAX_MS);
      return this.#scheduleReconnect("maintenance", this.#order(link.name), delayMs);
    }
    if (ending.kind === "throttled") {
      return this.#scheduleReconnect("throttled", this.#order(link.name), this.#retryAfterMs(ending));
    }
    const reason = ending.kind === "restart" ? "server asked" : `dropped (${ending.code ?? ending.kind})`;
    this.#scheduleReconnect(reason, this.#order(link.name), this.#backoffMs(this.#reconnectAttempt++));
  }

  /** The server is in `sse_only` mode: leave the WebSocket out until it says `auto` again. */
  blockWebSocket() {
    this.#blockedWs = true;
  }

  /** An event from the current link (or the one saying hello). */
  linkEvent(link, event) {
    if (link !== this.#link && link !== this.#candidate) return;
    switch (event.type) {
      case "hello":
        // Resuming keeps our own cursor: hello's is the head, and the backlog is still to come.
        if (this.cursor === null && (event.cursor ?? null) !== null) this.cursor = String(event.cursor);
        if (event.mode === "sse_only") this.blockWebSocket();
        else if (event.mode === "auto") this.#blockedWs = false;
        break;
      case "message":
        this.#onStreamMessage(event, link.name);
        break;
      case "message.updated":
        if (Number.isInteger(event.pos)) this.cursor = String(event.pos);
        this.#applied(event.message, { source: "stream", change: event.change });
        break;
      case "receipt":
        this.#onReceipt(event, link.name);
        break;
      case "ack":
        this.#ackWaiters.get(event.ref)?.resolve(event);
        break;
      case "call.ack":
        this.#replyWaiters.get(event.ref)?.resolve(event);
        break;
      case "error":
        if (event.ref) {
          this.#ackWaiters.get(event.ref)?.reject(this.#errorOf(event));
          this.#replyWaiters.get(event.ref)?.reject(this.#errorOf(event));
        } else this.#emit("error", this.#errorOf(event));
        break;
      case "control":
        if (event.op === "reconnect") link.fail(failure("restart", { reason: event.reason }));
        else if (event.op === "revoked") link.fail(failure("unauthenticated")); // signed out elsewhere
        else if (event.op === "transport" && event.mode === "auto") this.#blockedWs = false;
        else if (event.op === "maintenance") this.#maintenance(event.mode === "on", event.reason ?? "");
        break;
      case "pong":
        break;
      default:
        this.#emit(event.type, event);
    }
  }

  advanceCursor(link, cursor) {
    if (link === this.#link || link === this.#candidate) this.cursor = cursor;
  }

  streamUrl(transport, params) {
    const url = this.#rest.url(this.#endpoints.streamPath(transport), params);
    if (transport === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  streamPath(transport) {
    return this.#endpoints.streamPath(transport);
  }

  /** What identifies this client in a stream request, besides the header (none in widget mode). */
  streamQuery() {
    return this.#endpoints.streamQuery();
  }

  /**
   * The query that authenticates a WebSocket or EventSource (browsers cannot send the header):
   * a fresh single-use ticket, or the widget session; null if the link ended meanwhile.
   */
  async streamAuth(link) {
    if (!this.#endpoints.needsTicket) return this.streamQuery();
    const answer = await this.request("POST", "/v1/stream/ticket");
    return link.done ? null : { ticket: answer.ticket };
  }

  /** Why a stream endpoint refuses this client, as a failure (for links that cannot see it). */
  async explainRefusal(transport, params) {
    const path = this.#endpoints.streamPath(transport);
    const query = { ...this.streamQuery(), ...params };
    const answer = await this.#rest.probe(path, query, this.options.handshakeTimeoutMs);
    if (answer === null) return failure("dropped", { reason: "unreachable" });
    return failureFromError(answer) ?? failure("dropped", { code: answer.status });
  }

  // -- timelines -------------------------------------------------------------------------------

  #timeline(conversationId) {
    let timeline = this.#timelines.get(conversationId);
    if (!timeline) {
      timeline = new Timeline(this.#floors.get(conversationId));
      this.#timelines.set(conversationId, timeline);
    }
    return timeline;
  }

  #insertFromRest(conversationId, messages, source) {
    const timeline = this.#timeline(conversationId);
    for (const message of messages) {
      if (timeline.insert(message)) this.#emit("message", message, { source });
    }
  }

  /** Merge the newest page; a hole between it and what we had is filled, or left if too big. */
  #mergeNewestPage(conversationId, messages) {
    if (messages.length === 0) return;
    const timeline = this.#timeline(conversationId);
    const hadAny = timeline.bySeq.size > 0;
    this.#insertFromRest(conversationId, messages, "history");
    const lowest = messages[0].seq;
    if (!hadAny || timeline.contiguous >= lowest - 1) {
      timeline.rebase(Math.max(lowest - 1, 0));
      return;
    }
    this.#fillGap(conversationId, lowest - 1);
  }

  /** Fetch missing messages over REST, up to `target`. One fill per conversation at a time. */
  #fillGap(conversationId, target) {
    const timeline = this.#timeline(conversationId);
    timeline.fillTarget = Math.max(timeline.fillTarget, target);
    timeline.filling ??= (async () => {
      let pages = 0;
      try {
        while (timeline.contiguous < timeline.fillTarget && this.#state !== ConnectionState.CLOSED) {
          if (pages++ >= FILL_PAGES_MAX) {
            timeline.rebase(timeline.fillTarget); // leave older history to loadHistory()
            break;
          }
          const after = timeline.contiguous;
          const { path, params } = this.#endpoints.history(conversationId, { after, limit: FILL_PAGE });
          const page = await this.request("GET", path, { params });
          const before = timeline.contiguous;
          this.#insertFromRest(conversationId, page.messages, "fill");
          if (timeline.contiguous === before) break; // the server has nothing there
        }
      } catch (error) {
        if (error.retryable) {
          setTimeout(() => this.#fillGap(conversationId, timeline.fillTarget), this.#backoffMs(2));
        }
      } finally {
        timeline.filling = null;
      }
    })();
  }

  async #loadConversations() {
    if (!this.#endpoints.conversationsPath) return []; // widget mode: one conversation, no list
    const answer = await this.request("GET", this.#endpoints.conversationsPath);
    this.#conversations = new Map(answer.conversations.map((c) => [c.id, c]));
    for (const conversation of answer.conversations) {
      this.#floors.set(conversation.id, conversation.last_seq);
      // A timeline made before the list knew nothing below it: from here on, holes are gaps.
      const timeline = this.#timelines.get(conversation.id);
      if (timeline && timeline.bySeq.size === 0) timeline.rebase(conversation.last_seq);
      if (this.user) {
        const { delivered_seq, read_seq } = conversation;
        const own = { conversation_id: conversation.id, user_id: this.user.id, delivered_seq, read_seq };
        this.#onReceipt(own, null);
      }
    }
    this.#emit("conversations", this.conversations());
    return answer.conversations;
  }

  async #loadFullState() {
    this.#counters.count(this.#currentTransport(), "full_state_loads");
    await this.#loadConversations();
    await Promise.all(
      [...this.#timelines.keys()]
        .filter((id) => this.#conversations.has(id) || !this.#endpoints.conversationsPath)
        .map((id) => this.loadHistory(id)),
    );
  }

  // -- sending ---------------------------------------------------------------------------------

  async #deliver(job) {
    for (let attempt = 0; ; attempt += 1) {
      if (this.#state === ConnectionState.CLOSED) throw this.#closedError();
      try {
        return this.#canWriteOnStream() ? await this.#sendOverWebSocket(job) : await this.#sendOverRest(job);
      } catch (error) {
        if (!(error instanceof ParleyError) || !error.retryable) throw error;
        const wait = error.retryAfter ? error.retryAfter * 1000 : this.#backoffMs(attempt);
        await sleep(Math.min(wait, this.options.reconnectMaxMs));
      }
    }
  }

  #sendOverWebSocket(job) {
    const link = this.#link;
    const ref = job.clientMsgId;
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#ackWaiters.get(ref) === waiter) this.#ackWaiters.delete(ref);
      };
      const waiter = {
        resolve: (ack) => {
          done();
          resolve(ack);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
      const timer = setTimeout(
        () => waiter.reject(new ParleyError("ERR_TIMEOUT", `no ack in ${this.options.sendTimeoutMs} ms`)),
        this.options.sendTimeoutMs,
      );
      this.#ackWaiters.get(ref)?.reject(new ParleyError("ERR_TIMEOUT", "superseded by a retry"));
      this.#ackWaiters.set(ref, waiter);
      const frame = {
        type: "send",
        conversation_id: job.conversationId,
        client_msg_id: ref,
        body: job.body,
        attachments: job.attachments,
        metadata: job.metadata,
      };
      if (job.replyTo) frame.reply_to_id = job.replyTo;
      if (job.threadRoot) frame.thread_root_id = job.threadRoot;
      if (!link.send(frame)) waiter.reject(new ParleyError("ERR_NETWORK", "the WebSocket is not open"));
    }).then((ack) => {
      const message = {
        id: ack.id,
        conversation_id: ack.conversation_id,
        seq: ack.seq,
        pos: ack.pos,
        sender_id: this.user?.id ?? null,
        client_msg_id: ref,
        body: job.body,
        attachments: job.attachments.map((id) => ({ id })),
        metadata: job.metadata,
        created_at: new Date().toISOString(),
        reply_to_id: job.replyTo ?? null,
        thread_root_id: job.threadRoot ?? null,
        reactions: [],
        local: true, // built from the ack; the stream's copy replaces it
      };
      return this.#accept(ack, message, link.name);
    });
  }

  async #sendOverRest(job) {
    const { clientMsgId } = job;
    const { path, json } = this.#endpoints.send(job.conversationId, job);
    const { status, data } = await this.#rest.fetchJson("POST", path, {
      json,
      timeoutMs: this.options.sendTimeoutMs,
    });
    const ack = {
      ref: clientMsgId,
      conversation_id: data.conversation_id,
      id: data.id,
      seq: data.seq,
      pos: data.pos ?? null,
      duplicate: status === 200, // 201 stored it now; 200 is the original answer to a retry
    };
    return this.#accept(ack, data, this.#currentTransport());
  }

  /** The message is durable: put it in the timeline and start the write-receipt clock. */
  #accept(ack, message, transport) {
    const conversationId = ack.conversation_id;
    const timeline = this.#timeline(conversationId);
    if (timeline.insert(message)) this.#emit("message", timeline.bySeq.get(ack.seq), { source: "ack" });
    const key = `${conversationId}:${ack.seq}`;
    if (timeline.fromStream.has(ack.seq)) {
      // The stream was first: the receipt came no later than the ack.
      this.#counters.recordReceiptMs(transport, 0);
    } else if (!this.#awaitingEcho.has(key)) {
      const entry = { ackedAt: now(), transport, late: false, timer: null };
      entry.timer = setTimeout(() => {
        entry.late = true;
        this.#counters.count(transport, "ack_without_receipt_10s");
      }, this.options.receiptDeadlineMs);
      this.#awaitingEcho.set(key, entry);
    }
    return { ...ack, client_msg_id: ack.ref, message: timeline.bySeq.get(ack.seq) };
  }

  #confirmEcho(conversationId, seq) {
    const key = `${conversationId}:${seq}`;
    const entry = this.#awaitingEcho.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#awaitingEcho.delete(key);
    this.#counters.recordReceiptMs(entry.transport, Math.round(now() - entry.ackedAt));
  }

  #failAckWaiters(error) {
    for (const waiter of [...this.#ackWaiters.values(), ...this.#replyWaiters.values()]) waiter.reject(error);
  }

  // -- counters and reports --------------------------------------------------------------------

  /** Writes go over the WebSocket only while one is open and the endpoint takes them there. */
  #canWriteOnStream() {
    return this.#endpoints.canWriteOnStream && Boolean(this.#link?.isOpen);
  }

  #currentTransport() {
    return this.#link?.name ?? this.#lastTransport ?? this.options.transports[0];
  }

  #report({ final }) {
    const { reportPath } = this.#endpoints;
    if (!reportPath) return Promise.resolve(); // widget mode: no report endpoint for visitors
    const post = (json) => this.#rest.request("POST", reportPath, { json, keepalive: final });
    return this.#counters.report(post, { final });
  }

  // -- HTTP ------------------------------------------------------------------------------------

  /** An authenticated REST call (`/v1/...`); answers the JSON body or throws a ParleyError. */
  request(method, path, options = {}) {
    return this.#rest.request(method, path, options);
  }

  // -- small things ----------------------------------------------------------------------------

  #errorOf(event) {
    const retryAfter = event.retry_after ?? null;
    return new ParleyError(event.code, event.message ?? event.code, { retryAfter });
  }

  #closedError() {
    return new ParleyError("ERR_CLOSED", "the client was closed");
  }

  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  #emit(type, ...args) {
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`parley: a "${type}" listener failed`, error);
      }
    }
  }
}

