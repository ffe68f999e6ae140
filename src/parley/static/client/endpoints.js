/**
 * Where the client's calls go: the signed-in API (`/v1/...`, bearer token, stream tickets) or
 * the Widget API (`/api/widget/...`, a visitor `session` in every call, receive-only streams).
 * The client asks these for a path and a body; it never builds a URL itself.
 */

/** A signed-in user: `/v1` with the bearer token; WebSocket and EventSource need a ticket. */
export class BearerEndpoints {
  widget = false;
  needsTicket = true;
  canWriteOnStream = true; // sends, receipts and typing may go over an open WebSocket
  mePath = "/v1/me";
  reportPath = "/v1/stream/report";
  conversationsPath = "/v1/conversations";

  streamPath(transport) {
    return `/v1/stream/${transport}`;
  }

  streamQuery() {
    return {};
  }

  history(conversationId, { before, after, limit }) {
    return { path: `/v1/conversations/${conversationId}/messages`, params: { before, after, limit } };
  }

  send(conversationId, { clientMsgId, body, attachments, metadata, replyTo, threadRoot }) {
    const json = { client_msg_id: clientMsgId, body, attachments, metadata };
    if (replyTo) json.reply_to_id = replyTo;
    if (threadRoot) json.thread_root_id = threadRoot;
    return { path: `/v1/conversations/${conversationId}/messages`, json };
  }

  receipt(conversationId, receipt) {
    return { path: `/v1/conversations/${conversationId}/receipts`, json: receipt };
  }

  typing(conversationId) {
    return { path: `/v1/conversations/${conversationId}/typing`, json: undefined };
  }

  upload(conversationId) {
    return { path: `/v1/conversations/${conversationId}/attachments`, params: {} };
  }

  attachment(attachmentId) {
    return { path: `/v1/attachments/${encodeURIComponent(attachmentId)}`, params: {} };
  }

  /** A call signal over REST: what the `call.*` WebSocket frame says, as a request. */
  signal({ type, call_id, conversation_id, ...body }) {
    if (type === "call.offer") {
      return { path: `/v1/conversations/${conversation_id}/calls`, json: { call_id, ...body } };
    }
    const action = type.replace(/^call\./, "");
    return { path: `/v1/calls/${encodeURIComponent(call_id)}/${action}`, json: body };
  }
}

/**
 * A website visitor (widget mode): the session from `POST /api/widget/bootstrap` names the
 * visitor and their one conversation. There is no ticket, no conversation list and no counter
 * report; writes always go over REST because visitor streams are receive-only.
 */
export class WidgetEndpoints {
  widget = true;
  needsTicket = false;
  canWriteOnStream = false;
  mePath = null;
  reportPath = null;
  conversationsPath = null;

  constructor(session) {
    if (!session) throw new TypeError("widget mode needs a session");
    this.session = session;
  }

  streamPath(transport) {
    return `/api/widget/${transport}`;
  }

  streamQuery() {
    return { session: this.session };
  }

  history(_conversationId, { before, after, limit }) {
    const params = { session: this.session, before_seq: before, after_seq: after, limit };
    return { path: "/api/widget/messages", params };
  }

  send(_conversationId, { clientMsgId, body, attachments }) {
    const json = { session: this.session, client_msg_id: clientMsgId, body };
    if (attachments.length > 0) json.attachment_ids = attachments;
    return { path: "/api/widget/messages", json };
  }

  receipt(_conversationId, receipt) {
    return { path: "/api/widget/read", json: { session: this.session, ...receipt } };
  }

  typing() {
    return { path: "/api/widget/typing", json: { session: this.session } };
  }

  upload() {
    return { path: "/api/widget/attachments", params: { session: this.session } };
  }

  attachment(attachmentId) {
    const path = `/api/widget/attachments/${encodeURIComponent(attachmentId)}`;
    return { path, params: { session: this.session } };
  }

  signal() {
    throw new TypeError("website visitors cannot place calls");
  }
}
