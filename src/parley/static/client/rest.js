/**
 * REST calls (with the bearer token when there is one: Widget API calls carry a session in the
 * query or body instead), and the one error type the client throws (ParleyError).
 */

const RETRYABLE_CODES = new Set([
  "ERR_NETWORK",
  "ERR_TIMEOUT",
  "ERR_UNAVAILABLE",
  "ERR_INTERNAL",
  "ERR_RATE_LIMITED",
  "ERR_RESYNC_THROTTLED",
]);

/** An error with Parley's stable code (`ERR_...`); `retryable` says whether trying again can help. */
export class ParleyError extends Error {
  constructor(code, message, { status = null, retryAfter = null, details = null } = {}) {
    super(message);
    this.details = details; // the error's `details` object, e.g. a proof-of-work challenge
    this.name = "ParleyError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
    this.retryable = RETRYABLE_CODES.has(code) || status === 429 || status >= 500;
  }
}

function retryAfterOf(problem, response) {
  return problem.retry_after ?? (Number(response.headers.get("Retry-After")) || null);
}

export class Rest {
  constructor({ baseUrl, token, timeoutMs }) {
    this.baseUrl = baseUrl;
    this.token = token;
    this.timeoutMs = timeoutMs;
  }

  url(path, params = {}) {
    const url = new URL(this.baseUrl + path, globalThis.location?.href);
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) url.searchParams.set(key, String(value));
    }
    return url;
  }

  /** One call; answers `{status, data}` or throws a ParleyError (ERR_NETWORK, ERR_TIMEOUT too). */
  #headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  /** The body and its headers: `json` (an object) or `form` (a FormData, e.g. a file upload). */
  #payload(json, form) {
    if (form !== undefined) return { body: form, headers: this.#headers() };
    if (json === undefined) return { body: undefined, headers: this.#headers() };
    return { body: JSON.stringify(json), headers: { ...this.#headers(), "Content-Type": "application/json" } };
  }

  async fetchJson(method, path, { params, json, form, timeoutMs, signal, keepalive = false } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs ?? this.timeoutMs);
    const onAbort = () => controller.abort();
    signal?.addEventListener("abort", onAbort);
    const { body, headers } = this.#payload(json, form);
    try {
      const response = await fetch(this.url(path, params), {
        method,
        headers,
        body,
        signal: controller.signal,
        keepalive,
      });
      const data = response.status === 204 ? null : await response.json().catch(() => null);
      if (!response.ok) {
        const problem = data?.error ?? {};
        const code = problem.code ?? `HTTP_${response.status}`;
        const message = problem.message ?? response.statusText;
        const retryAfter = retryAfterOf(problem, response);
        const details = problem.details ?? null;
        throw new ParleyError(code, message, { status: response.status, retryAfter, details });
      }
      return { status: response.status, data };
    } catch (error) {
      if (error instanceof ParleyError) throw error;
      const timedOut = controller.signal.aborted && !signal?.aborted;
      throw new ParleyError(timedOut ? "ERR_TIMEOUT" : "ERR_NETWORK", `${method} ${path}: ${error.message}`);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async request(method, path, options = {}) {
    return (await this.fetchJson(method, path, options)).data;
  }

  /**
   * GET a streaming endpoint only to learn why it refuses: `{status, code, retry_after}` for an
   * error, `{status: 200}` if it would stream (the stream is let go at once), null if unreachable.
   */
  async probe(path, params, timeoutMs) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const response = await fetch(this.url(path, params), {
        headers: this.#headers(),
        signal: controller.signal,
      });
      if (response.ok) return { status: response.status };
      const problem = (await response.json().catch(() => null))?.error ?? {};
      const retryAfter = retryAfterOf(problem, response);
      return { status: response.status, code: problem.code, message: problem.message, retry_after: retryAfter };
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  }
}
