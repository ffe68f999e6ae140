// The moderation page: the queue (reports and held messages, oldest first), one item with its
// text, files and reports, and the decisions: approve, remove, warn, mute, ban, escalate. Live
// from the stream's `moderation.item` events; every decision lands in the audit log.

import { ParleyClient } from "/static/client.js";
import { $, capitalize, el, formatSize, formatTime, say } from "./dom.js";
import { showConnection, startStaffPage } from "./staff.js";

const SANCTIONS = new Set(["warn", "mute", "ban"]);
const DONE = {
  approve: "Approved",
  remove: "Removed",
  warn: "Warned",
  mute: "Muted",
  ban: "Banned",
  escalate: "Escalated to an admin",
};

class Queue {
  #items = new Map(); // item id -> item, those matching the filters
  #loading = 0;

  constructor({ api, me }) {
    this.api = api;
    this.me = me;
    this.selected = null;
    for (const id of ["filter-status", "filter-kind"]) {
      $(id).addEventListener("change", () => this.load().catch(showError));
    }
    for (const button of $("decide").querySelectorAll("button[data-action]")) {
      button.addEventListener("click", () => this.decide(button.dataset.action).catch(showError));
    }
  }

  async load() {
    const ticket = ++this.#loading;
    const params = { status: $("filter-status").value, kind: $("filter-kind").value, limit: 200 };
    const { items } = await this.api.json("/v1/moderation/queue", { params });
    if (ticket !== this.#loading) return;
    this.#items = new Map(items.map((item) => [item.id, item]));
    this.render();
    await this.refreshBacklog();
  }

  async refreshBacklog() {
    const { open } = await this.api.json("/v1/moderation/backlog");
    $("backlog").textContent = `${open} open`;
  }

  matches(item) {
    const kind = $("filter-kind").value;
    return item.status === $("filter-status").value && (!kind || item.kind === kind);
  }

  /** A `moderation.item` event, or our own decision's answer. */
  apply(item) {
    if (this.matches(item)) this.#items.set(item.id, item);
    else this.#items.delete(item.id);
    this.render();
    if (item.id === this.selected) this.show(item);
    this.refreshBacklog().catch(showError);
  }

  render() {
    const open = $("filter-status").value === "open";
    const items = [...this.#items.values()].sort((a, b) => (open ? a.id - b.id : b.id - a.id));
    $("queue-list").replaceChildren(...items.map((item) => this.#row(item)));
    $("queue-empty").hidden = items.length > 0;
  }

  #row(item) {
    const button = el(
      "button",
      { type: "button", className: "conversation-button" },
      el(
        "span",
        { className: "line" },
        el("strong", {}, item.sender.name || `user ${item.sender.id}`),
        el("span", { className: `badge kind-${item.kind}` }, item.kind === "held" ? "Held" : "Report"),
        item.reports > 1 ? el("span", { className: "badge" }, `${item.reports} reports`) : null,
        item.escalated ? el("span", { className: "badge escalated" }, "Escalated") : null,
        el("time", { className: "when muted", dateTime: item.created_at }, formatTime(item.created_at)),
      ),
      el("span", { className: "preview" }, item.body || "(attachment)"),
    );
    button.setAttribute("aria-current", String(item.id === this.selected));
    button.addEventListener("click", () => this.open(item.id).catch(showError));
    return el("li", { className: "queue-item", dataset: { itemId: item.id } }, button);
  }

  async open(id) {
    if (id !== this.selected) $("decide-reason").value = ""; // a reason is for one item
    this.selected = id;
    this.render();
    this.show(await this.api.json(`/v1/moderation/queue/${id}`));
    say("");
  }

  show(item) {
    $("item-placeholder").hidden = true;
    $("item-view").hidden = false;
    const what = item.kind === "held" ? "Held message" : "Reported message";
    $("item-title").textContent = `${what} #${item.id}`;
    $("item-sender").textContent = item.sender.name || `user ${item.sender.id}`;
    $("item-conversation").textContent = `#${item.conversation_id}`;
    $("item-why").textContent =
      item.kind === "held" ? `rule “${item.rule}”: ${item.reason}` : `reported: ${item.reason || "—"}`;
    $("item-when").textContent = formatTime(item.created_at);
    $("item-status").textContent = item.status === "open"
      ? `Open${item.escalated ? ", escalated to an admin" : ""}`
      : `${capitalize(item.resolution ?? "")} by ${item.resolved_by ?? "?"}${item.note ? `: ${item.note}` : ""}`;
    $("item-body").textContent = item.body;
    $("item-files").replaceChildren(
      ...item.attachments.map((file) =>
        el("li", {}, `${file.file_name} (${file.content_type}, ${formatSize(file.size)})`),
      ),
    );
    $("item-reports-title").hidden = item.report_details.length === 0;
    $("item-reports").replaceChildren(
      ...item.report_details.map((report) =>
        el(
          "li",
          {},
          el("strong", {}, report.reason),
          ` by user ${report.reporter_id}, ${formatTime(report.at)}`,
          report.note ? el("span", { className: "muted" }, ` — “${report.note}”`) : null,
        ),
      ),
    );
    const decidable = item.status === "open" && (!item.escalated || this.me.role === "admin");
    for (const button of $("decide").querySelectorAll("button")) button.disabled = !decidable;
    $("decide").querySelector('[data-action="escalate"]').disabled = !decidable || item.escalated;
    $("decide-hint").textContent =
      item.status !== "open"
        ? "Already decided."
        : item.escalated && this.me.role !== "admin"
          ? "Escalated: an admin decides this one."
          : "Warn, mute and ban apply to the sender.";
  }

  async decide(action) {
    const id = this.selected;
    if (id === null) return;
    const body = { action, reason: $("decide-reason").value };
    if (SANCTIONS.has(action)) {
      const duration = $("decide-duration").value;
      body.scope = $("decide-scope").value;
      body.duration_seconds = duration ? Number(duration) : null;
      body.remove_content = $("decide-remove").checked;
    }
    const item = await this.api.json(`/v1/moderation/queue/${id}/actions`, {
      method: "POST",
      json: body,
    });
    this.apply(item);
    say(`${DONE[action]}: #${id}`);
  }
}

function showError(error) {
  say(error?.message ? `Failed: ${error.message}` : "Something went wrong", { error: true });
}

startStaffPage(async (api, me, token) => {
  if (me.role !== "moderator" && me.role !== "admin") {
    throw new Error(`${me.name} is not a moderator`);
  }
  const queue = new Queue({ api, me });
  await queue.load();
  const client = new ParleyClient({ token });
  showConnection(client);
  client.on("moderation.item", (event) => queue.apply(event.item));
  client.on("state", (state) => {
    if (state === "open") queue.load().catch(showError); // caught up after a reconnect
  });
  client.on("error", showError);
  client.connect().catch(showError);
  return () => client.close().catch(() => null);
});
