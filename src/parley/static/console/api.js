// REST calls for the console: sign-in, the /v1/livechat endpoints, messages and downloads.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  const problem = await response.json().catch(() => null);
  const error = problem?.error ?? {};
  return new ApiError(response.status, error.code ?? "", error.message ?? response.statusText);
}

/** Exchange a name and password for `{token, user}` (POST /v1/auth/login). */
export async function login(name, password) {
  const response = await fetch("/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, password }),
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export class Api {
  /** `onUnauthorized` runs when the token is refused (expired, or signed out elsewhere). */
  constructor(token, { onUnauthorized = () => {} } = {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async fetch(path, { method = "GET", json, params } = {}) {
    const url = new URL(path, location.href);
    for (const [key, value] of Object.entries(params ?? {})) {
      if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, value);
    }
    const headers = { Authorization: `Bearer ${this.token}` };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const response = await fetch(url, { method, headers, body });
    if (response.status === 401) this.onUnauthorized();
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async json(path, options) {
    const response = await this.fetch(path, options);
    return response.status === 204 ? null : response.json();
  }

  inboxes() {
    return this.json("/v1/livechat/inboxes");
  }

  conversations(filters) {
    return this.json("/v1/livechat/conversations", { params: { ...filters, limit: 100 } });
  }

  conversation(id) {
    return this.json(`/v1/livechat/conversations/${id}`);
  }

  change(id, fields) {
    return this.json(`/v1/livechat/conversations/${id}`, { method: "PATCH", json: fields });
  }

  assignMe(id) {
    return this.json(`/v1/livechat/conversations/${id}/assign-me`, { method: "POST" });
  }

  cannedReplies(inboxId) {
    return this.json(`/v1/livechat/inboxes/${inboxId}/canned-replies`);
  }

  activity(id) {
    return this.json(`/v1/livechat/conversations/${id}/activity`);
  }

  addNote(id, body) {
    return this.json(`/v1/livechat/conversations/${id}/notes`, { method: "POST", json: { body } });
  }

  staff(inboxId) {
    return this.json("/v1/livechat/staff", { params: { inbox_id: inboxId } });
  }

  members(id) {
    return this.json(`/v1/conversations/${id}/members`);
  }

  logout() {
    return this.fetch("/v1/auth/logout", { method: "POST" });
  }

  requestExport(id) {
    return this.json(`/v1/conversations/${id}/exports`, { method: "POST" });
  }

  exportJob(exportId) {
    return this.json(`/v1/exports/${encodeURIComponent(exportId)}`);
  }

  /** Save an attachment: a link cannot carry the bearer header, so fetch it and save a blob. */
  async download(attachment) {
    await this.save(`/v1/attachments/${encodeURIComponent(attachment.id)}`, attachment.file_name);
  }

  async save(path, fileName) {
    const response = await this.fetch(path);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = fileName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}
