/**
 * Links: one attempt at the event stream over one transport (WebSocket, EventSource, long-poll),
 * and the failures that end one. Used by ../client.js; a link knows its wire, not what to do next.
 */

const WS_OPEN = 1;
const PING_INTERVAL_MS = 20_000;
const STREAM_EVENTS = [
  "hello",
  "message",
  "message.updated",
  "thread.receipt",
  "receipt",
  "typing",
  "presence",
  "conversation.updated",
  "control",
  "flags.updated",
  "livechat.conversation",
  "livechat.note",
  "call.offer",
  "call.answer",
  "call.ice",
  "call.reject",
  "call.busy",
  "call.hangup",
  "call.missed",
  "call.sync",
];

/**
 * What ended a connection attempt or a connection, and so what the client does next. `kind` is
 * dropped | restart | resync | throttled | maintenance | sse_only | unauthenticated | timeout |
 * cancelled.
 */
export function failure(kind, detail = {}) {
  return { kind, ...detail };
}

const THROTTLE_CODES = new Set(["ERR_RESYNC_THROTTLED", "ERR_TOO_MANY_CONNECTIONS"]);

/** The failure an error event (or a ParleyError) stands for, or null if it ends nothing. */
export function failureFromError(event) {
  if (event.code === "ERR_RESYNC_RANGE_UNAVAILABLE") return failure("resync");
  if (event.code === "ERR_MAINTENANCE") {
    const retryAfter = event.retry_after ?? event.retryAfter ?? null;
    return failure("maintenance", { retryAfter, message: event.message ?? "" });
  }
  if (event.code === "ERR_TRANSPORT_DISABLED") return failure("sse_only");
  if (event.code === "ERR_TOO_SLOW") return failure("dropped", { code: 4008 }); // resume from the cursor
  if (THROTTLE_CODES.has(event.code) || event.status === 429) {
    return failure("throttled", { retryAfter: event.retry_after ?? event.retryAfter });
  }
  if (event.code === "ERR_UNAUTHENTICATED" || event.status === 401) return failure("unauthenticated");
  return null;
}

/** The failure a WebSocket close code stands for (an error frame just before it wins). */
export function failureFromClose(code, reason, lastError) {
  const fromError = lastError && failureFromError(lastError);
  if (fromError) return fromError;
  if (code === 4009) return failure("resync");
  if (code === 4001) return failure("unauthenticated"); // the token was revoked or expired
  if (code === 4029) return failure("throttled", { retryAfter: lastError?.retry_after ?? null });
  if (code === 4003) return failure("sse_only");
  return failure("dropped", { code, reason });
}

/**
 * One attempt at a stream over one transport. `ready` settles on `hello` (or the failure that
 * came instead); after that, failures go to `host.linkDown`. Subclasses open and tear down.
 */
class Link {
  constructor(host, name) {
    this.host = host;
    this.name = name;
    this.opened = false;
    this.done = false;
    this.lastError = null;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // a rejection nobody awaits any more is not an error
  }

  /** Handle one server event; errors and control events may end the link. */
  receive(event) {
    if (this.done) return;
    if (event.type === "error") {
      if (!event.ref) this.lastError = event; // a send's error says nothing about the connection
      const ending = failureFromError(event) ?? this.sessionGone(event);
      if (ending) this.fail(ending);
      else this.host.linkEvent(this, event);
      return;
    }
    if (event.type === "control" && event.op === "transport" && event.mode === "sse_only") {
      this.host.blockWebSocket();
      if (this.name === "ws") this.fail(failure("sse_only"));
      return;
    }
    this.host.linkEvent(this, event);
    if (event.type === "hello" && !this.opened) {
      this.opened = true;
      this.resolveReady(event);
    }
  }

  /** A widget stream refused with ERR_NOT_FOUND: the visitor's session is gone (expired). */
  sessionGone(event) {
    const gone = this.host.isWidget && !event.ref && event.code === "ERR_NOT_FOUND";
    return gone ? failure("unauthenticated") : null;
  }

  fail(reason) {
    if (this.done) return;
    this.done = true;
    this.teardown();
    if (this.opened) this.host.linkDown(this, reason);
    else this.rejectReady(reason);
  }

  /** Stop without reporting anything: the client chose to let this link go. */
  stop() {
    if (this.done) return;
    this.done = true;
    this.teardown();
    if (!this.opened) this.rejectReady(failure("cancelled"));
  }

  parse(text) {
    try {
      this.receive(JSON.parse(text));
    } catch (error) {
      console.error("parley: bad event from the server", error);
    }
  }
}

class WebSocketLink extends Link {
  constructor(host) {
    super(host, "ws");
    this.socket = null;
    this.pinger = null;
    this.heard = true;
  }

  async open() {
    const auth = await this.host.streamAuth(this);
    if (this.done || auth === null) return;
    const socket = new WebSocket(this.host.streamUrl("ws", { ...auth, cursor: this.host.cursor }));
    this.socket = socket;
    socket.onmessage = (event) => {
      this.heard = true;
      if (typeof event.data === "string") this.parse(event.data);
    };
    socket.onclose = (event) => this.fail(failureFromClose(event.code, event.reason, this.lastError));
    // Browsers follow `error` with `close`; a socket that only errors still ends here.
    socket.onerror = () => this.fail(failureFromClose(1006, "error", this.lastError));
    // A half-open socket says nothing; two silent ping intervals end it.
    this.pinger = setInterval(() => {
      if (!this.heard) this.fail(failure("dropped", { code: 1006, reason: "no pong" }));
      else if (this.isOpen) {
        this.heard = false;
        this.send({ type: "ping" });
      }
    }, PING_INTERVAL_MS);
  }

  get isOpen() {
    return this.opened && !this.done && this.socket?.readyState === WS_OPEN;
  }

  send(frame) {
    if (this.socket?.readyState !== WS_OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  teardown() {
    clearInterval(this.pinger);
    const socket = this.socket;
    if (!socket) return;
    socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(1000);
    } catch {
      // already closing
    }
  }
}

class EventSourceLink extends Link {
  constructor(host) {
    super(host, "sse");
    this.source = null;
  }

  async open() {
    const auth = await this.host.streamAuth(this);
    if (this.done || auth === null) return;
    // Tickets are single-use, so the browser's own reconnect (same URL) cannot work: on any
    // error the source is closed and the client reconnects with a new ticket and its cursor.
    const cursor = this.host.cursor;
    const source = new EventSource(this.host.streamUrl("sse", { ...auth, cursor }));
    this.source = source;
    // EventSource only hands over named events it was asked for; apps may name more.
    const types = new Set([...STREAM_EVENTS, ...(this.host.options.streamEvents ?? [])]);
    for (const type of types) source.addEventListener(type, (event) => this.parse(event.data));
    // `error` is both the server's error event (it has data) and the connection failing.
    source.addEventListener("error", (event) => {
      if (typeof event.data === "string" && event.data) this.parse(event.data);
      else if (this.opened) this.fail(failureFromClose(1006, "sse error", this.lastError));
      else this.explain(cursor);
    });
  }

  /**
   * An EventSource that was refused does not say why (a stale cursor, a throttle, a revoked
   * token all look like a network error), so ask again with fetch, which can read the answer.
   */
  async explain(cursor) {
    this.source.close();
    this.fail(await this.host.explainRefusal("sse", { cursor }));
  }

  teardown() {
    this.source?.close();
  }
}

class PollLink extends Link {
  constructor(host) {
    super(host, "poll");
    this.abort = new AbortController();
  }

  async open() {
    // The first poll does not wait, so the switch to long-poll completes at once.
    let timeout = 0;
    let lastStart = -Infinity;
    while (!this.done) {
      // The Widget API refuses polls that come sooner than its minimum interval (429).
      const wait = lastStart + this.host.options.pollMinIntervalMs - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (this.done) return;
      lastStart = performance.now();
      let answer;
      try {
        answer = await this.host.request("GET", this.host.streamPath("poll"), {
          params: { ...this.host.streamQuery(), cursor: this.host.cursor, timeout },
          timeoutMs: (timeout + 15) * 1000,
          signal: this.abort.signal,
        });
      } catch (error) {
        this.fail(failureFromError(error) ?? failure("dropped", { code: error.status, reason: error.code }));
        return;
      }
      if (this.done) return;
      const events = answer?.events ?? [];
      if (!this.opened && !events.some((event) => event.type === "hello")) {
        this.receive({ type: "hello", cursor: answer.cursor, transport: "poll", mode: null });
      }
      for (const event of events) this.receive(event);
      const cursor = answer?.cursor ?? null;
      if (!this.done && cursor !== null) this.host.advanceCursor(this, String(cursor));
      timeout = this.host.options.pollTimeoutS;
    }
  }

  teardown() {
    this.abort.abort();
  }
}

export const LINKS = { ws: WebSocketLink, sse: EventSourceLink, poll: PollLink };
