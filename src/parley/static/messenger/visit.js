/**
 * Starting a visit: `POST /api/widget/bootstrap` with the session kept in localStorage (one per
 * widget token), solving the proof-of-work challenge when the server asks for one.
 */

import { ParleyError, Rest } from "../client/rest.js";
import { solveChallenge } from "./pow.js";

const CHALLENGE_ATTEMPTS = 3;

/** The visitor's session token, kept on the host page's origin so a reload restores the chat. */
export class SessionStore {
  constructor(widgetToken) {
    this.key = `parley-messenger:${widgetToken}`;
  }

  get() {
    try {
      return globalThis.localStorage?.getItem(this.key) ?? null;
    } catch {
      return null; // storage blocked (privacy settings, sandboxed frame): a new visit per load
    }
  }

  set(session) {
    try {
      globalThis.localStorage?.setItem(this.key, session);
    } catch {
      // as above
    }
  }

  clear() {
    try {
      globalThis.localStorage?.removeItem(this.key);
    } catch {
      // as above
    }
  }
}

/** The visitor's offline-form message: their address for the reply, and what they wrote. */
export async function leaveOffline({ baseUrl, session, email, body }) {
  const rest = new Rest({ baseUrl, token: null, timeoutMs: 15_000 });
  const clientMsgId = `offline-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  return rest.request("POST", "/api/widget/offline", { json: { session, email, client_msg_id: clientMsgId, body } });
}

/** Who answers in the visitor's conversation: `{staff: [{id, name}]}` (display names). */
export async function fetchStaff({ baseUrl, session }) {
  const rest = new Rest({ baseUrl, token: null, timeoutMs: 15_000 });
  return rest.request("GET", "/api/widget/staff", { params: { session } });
}

/** The token of a reply e-mail's link (`#parley-resume=...`), taken off the address bar. */
export function takeResumeToken() {
  const match = /(?:^#|&)parley-resume=([A-Za-z0-9_.-]+)/.exec(globalThis.location?.hash ?? "");
  if (!match) return null;
  try {
    globalThis.history?.replaceState(null, "", globalThis.location.pathname + globalThis.location.search);
  } catch {
    // a sandboxed page: the token stays in the address bar, which is harmless
  }
  return match[1];
}

/**
 * Bootstrap and answer the server's bootstrap JSON (session, conversation_id, visitor_id,
 * inbox_name, privacy, online, offline_message, allow_attachments, ...). Throws a ParleyError.
 */
export async function bootstrap({ baseUrl, widgetToken, identity, store, resume = null }) {
  const rest = new Rest({ baseUrl, token: null, timeoutMs: 15_000 });
  const request = {
    widget_token: widgetToken,
    page_url: globalThis.location?.href ?? null,
    language: globalThis.navigator?.language ?? null,
  };
  if (identity) request.identity = identity;
  // A reply e-mail's link back into the conversation (#parley-resume=...) wins over storage.
  if (resume) request.resume = resume;
  let session = resume ? null : store.get();
  for (let attempt = 0; ; attempt += 1) {
    const json = session ? { ...request, session } : request;
    try {
      const answer = await rest.request("POST", "/api/widget/bootstrap", { json });
      store.set(answer.session);
      return answer;
    } catch (error) {
      if (!(error instanceof ParleyError) || attempt >= CHALLENGE_ATTEMPTS) throw error;
      const challenge = error.details?.challenge;
      if (challenge && ["ERR_CHALLENGE_REQUIRED", "ERR_CHALLENGE_FAILED"].includes(error.code)) {
        request.challenge = { id: challenge.id, nonce: await solveChallenge(challenge) };
      } else if (session && error.status === 403 && error.code !== "ERR_ORIGIN_NOT_ALLOWED") {
        // A stored session this inbox refuses (another inbox's, a revoked one): start afresh.
        store.clear();
        session = null;
      } else {
        throw error;
      }
    }
  }
}
