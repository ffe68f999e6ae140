/**
 * The calls of the rich timeline (docs/timeline.md): edit, unsend, react, a message's history,
 * threads, unread counts, "mark all read" and search. They go over REST on every transport —
 * each is idempotent, so retrying is safe — and only for signed-in users (not widget mode).
 */

import { ParleyError } from "./rest.js";

const messagePath = (conversationId, messageId, tail = "") =>
  `/v1/conversations/${conversationId}/messages/${messageId}${tail}`;

function newOpId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class RichTimeline {
  /** `request(method, path, options)` is the client's authenticated REST call. */
  constructor(request, { widget = false } = {}) {
    this.request = request;
    this.widget = widget;
  }

  #call(method, path, options) {
    if (this.widget) {
      return Promise.reject(new ParleyError("ERR_FORBIDDEN", "not available to website visitors"));
    }
    return this.request(method, path, options);
  }

  edit(conversationId, messageId, body, { clientOpId = newOpId() } = {}) {
    const json = { body, client_op_id: clientOpId };
    return this.#call("PATCH", messagePath(conversationId, messageId), { json });
  }

  unsend(conversationId, messageId, { reason } = {}) {
    return this.#call("DELETE", messagePath(conversationId, messageId), { params: { reason } });
  }

  react(conversationId, messageId, emoji, { remove = false } = {}) {
    const path = messagePath(conversationId, messageId, `/reactions/${encodeURIComponent(emoji)}`);
    return this.#call(remove ? "DELETE" : "PUT", path);
  }

  message(conversationId, messageId) {
    return this.#call("GET", messagePath(conversationId, messageId));
  }

  async history(conversationId, messageId) {
    return (await this.#call("GET", messagePath(conversationId, messageId, "/history"))).versions;
  }

  async reactions(conversationId, messageId) {
    return (await this.#call("GET", messagePath(conversationId, messageId, "/reactions"))).reactions;
  }

  thread(conversationId, rootId, { after = 0, limit = 50 } = {}) {
    const path = `/v1/conversations/${conversationId}/threads/${rootId}`;
    return this.#call("GET", path, { params: { after, limit } });
  }

  async threads(conversationId, { beforeSeq, limit = 50 } = {}) {
    const path = `/v1/conversations/${conversationId}/threads`;
    return (await this.#call("GET", path, { params: { before_seq: beforeSeq, limit } })).threads;
  }

  markThreadRead(conversationId, rootId, seq) {
    const path = `/v1/conversations/${conversationId}/threads/${rootId}/read`;
    return this.#call("POST", path, { json: { read_seq: seq } });
  }

  unread(conversationId) {
    return this.#call("GET", "/v1/unread", { params: { conversation_id: conversationId } });
  }

  markAllRead(conversationId) {
    const json = conversationId === undefined ? {} : { conversation_id: conversationId };
    return this.#call("POST", "/v1/unread/read-all", { json });
  }

  search(query, { conversationId, from, after, before, has, cursor, limit } = {}) {
    const params = { q: query, conversation_id: conversationId, from, after, before, has, cursor, limit };
    return this.#call("GET", "/v1/search", { params });
  }
}
