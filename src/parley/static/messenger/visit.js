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

/**
 * Bootstrap and answer the server's bootstrap JSON (session, conversation_id, visitor_id,
 * inbox_name, privacy, online, offline_message, allow_attachments, ...). Throws a ParleyError.
 */
export async function bootstrap({ baseUrl, widgetToken, identity, store }) {
  const rest = new Rest({ baseUrl, token: null, timeoutMs: 15_000 });
  const request = {
    widget_token: widgetToken,
    page_url: globalThis.location?.href ?? null,
    language: globalThis.navigator?.language ?? null,
  };
  if (identity) request.identity = identity;
  let session = store.get();
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
