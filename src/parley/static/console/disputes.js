// The disputes page (dispute_ops): the list (active first, overdue marked), one dispute with
// its parties, amount, SLA deadline, history and evidence; moves along the status machine and a
// resolution whose amounts must add up before it can be sent. Amounts are integer minor units.

import { ParleyClient } from "/static/client.js";
import { $, el, formatTime, say } from "./dom.js";
import { showConnection, startStaffPage } from "./staff.js";

// The moves the server allows from each status (it enforces them; this only picks buttons).
const MOVES = {
  open: [["evidence", "Collect evidence"], ["cancelled", "Cancel dispute"]],
  evidence: [["review", "Start review"], ["cancelled", "Cancel dispute"]],
  review: [["evidence", "Ask for more evidence"], ["cancelled", "Cancel dispute"]],
  resolved: [],
  cancelled: [],
};

/** `minor` units of `currency` as money ("€123.45"); the integer itself if the code is odd. */
export function money(minor, currency) {
  try {
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(minor / 10 ** digits);
  } catch {
    return `${minor} ${currency}`;
  }
}

function person(who) {
  return who ? who.name || `user ${who.id}` : "—";
}

function wholeNumber(text) {
  return /^[0-9]+$/.test(text.trim()) ? Number(text.trim()) : null;
}

class DisputesPage {
  #items = new Map();
  #loading = 0;

  constructor({ api, me }) {
    this.api = api;
    this.me = me;
    this.current = null;
    $("filter-status").addEventListener("change", () => this.load().catch(showError));
    $("filter-overdue").addEventListener("change", () => this.load().catch(showError));
    $("new-dispute").addEventListener("click", () => this.#showForm());
    $("open-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.#open().catch(showError);
    });
    $("assign-me").addEventListener("click", () => this.#assignMe().catch(showError));
    $("resolve-outcome").addEventListener("change", () => this.#checkSplit());
    $("resolve-seller").addEventListener("input", () => this.#checkSplit());
    $("resolve-buyer").addEventListener("input", () => this.#checkSplit());
    $("resolve").addEventListener("submit", (event) => {
      event.preventDefault();
      this.#resolve().catch(showError);
    });
  }

  async load() {
    const ticket = ++this.#loading;
    const params = { status: $("filter-status").value, overdue: $("filter-overdue").checked };
    const { disputes } = await this.api.json("/v1/disputes", { params: { ...params, limit: 200 } });
    if (ticket !== this.#loading) return;
    this.#items = new Map(disputes.map((d) => [d.id, d]));
    this.render();
  }

  matches(dispute) {
    const wanted = $("filter-status").value;
    const active = ["open", "evidence", "review"].includes(dispute.status);
    const status = !wanted || wanted === dispute.status || (wanted === "active" && active);
    return status && (!$("filter-overdue").checked || dispute.overdue);
  }

  /** A `dispute.updated` event, or our own change's answer. */
  apply(dispute) {
    if (this.matches(dispute)) this.#items.set(dispute.id, dispute);
    else this.#items.delete(dispute.id);
    this.render();
    if (this.current?.id === dispute.id) this.open(dispute.id).catch(showError);
  }

  render() {
    const rows = [...this.#items.values()].sort((a, b) => b.id - a.id).map((d) => this.#row(d));
    $("dispute-list").replaceChildren(...rows);
    $("list-empty").hidden = rows.length > 0;
  }

  #row(dispute) {
    const button = el(
      "button",
      { type: "button", className: "conversation-button" },
      el(
        "span",
        { className: "line" },
        el("strong", {}, `#${dispute.id} ${dispute.reference}`),
        el("span", { className: `badge status-${dispute.status}` }, dispute.status),
        dispute.overdue ? el("span", { className: "badge overdue" }, "Overdue") : null,
      ),
      el(
        "span",
        { className: "preview" },
        `${money(dispute.amount, dispute.currency)} · ${person(dispute.buyer)} vs ${person(dispute.seller)}`,
      ),
    );
    button.setAttribute("aria-current", String(dispute.id === this.current?.id));
    button.addEventListener("click", () => this.open(dispute.id).catch(showError));
    return el("li", { className: "dispute-item", dataset: { disputeId: dispute.id } }, button);
  }

  #showForm() {
    this.current = null;
    this.render();
    $("placeholder").hidden = true;
    $("dispute-view").hidden = true;
    $("open-form").hidden = false;
    $("open-conversation").focus();
  }

  async #open() {
    const amount = wholeNumber($("open-amount").value);
    const conversation = wholeNumber($("open-conversation").value);
    if (amount === null || conversation === null) {
      throw new Error("the conversation id and the amount are whole numbers");
    }
    const dispute = await this.api.json("/v1/disputes", {
      method: "POST",
      json: {
        conversation_id: conversation,
        buyer: $("open-buyer").value.trim(),
        seller: $("open-seller").value.trim(),
        amount,
        currency: $("open-currency").value.trim().toUpperCase(),
        reference: $("open-reference").value.trim(),
        reason: $("open-reason").value,
      },
    });
    $("open-form").reset();
    $("open-form").hidden = true;
    this.apply(dispute);
    this.show(dispute);
    say(`Opened dispute #${dispute.id}`);
  }

  async open(id) {
    const dispute = await this.api.json(`/v1/disputes/${id}`);
    this.show(dispute);
  }

  show(dispute) {
    const changed = this.current?.id !== dispute.id;
    this.current = dispute;
    this.render();
    $("placeholder").hidden = true;
    $("open-form").hidden = true;
    $("dispute-view").hidden = false;
    $("dispute-title").textContent = `Dispute #${dispute.id}: ${dispute.reference}`;
    $("d-status").textContent = dispute.status;
    $("d-amount").textContent = `${money(dispute.amount, dispute.currency)} (${dispute.amount} minor units)`;
    $("d-buyer").textContent = person(dispute.buyer);
    $("d-seller").textContent = person(dispute.seller);
    $("d-conversation").textContent = `#${dispute.conversation_id}`;
    $("d-deadline").replaceChildren(
      dispute.deadline_at ? formatTime(dispute.deadline_at) : "—",
      dispute.overdue ? el("span", { className: "badge overdue" }, " Overdue") : "",
    );
    $("d-assignee").textContent = person(dispute.assignee);
    $("d-outcome").textContent = dispute.outcome
      ? `${dispute.outcome.kind}: seller ${money(dispute.outcome.seller_amount, dispute.currency)}, ` +
        `buyer ${money(dispute.outcome.buyer_amount, dispute.currency)}`
      : "—";
    $("d-reason").textContent = dispute.reason || "—";
    this.#moves(dispute);
    $("resolve").hidden = dispute.status !== "review";
    if (changed) {
      $("move-reason").value = "";
      $("resolve").reset();
    }
    this.#checkSplit();
    $("d-history").replaceChildren(
      ...(dispute.events ?? []).map((event) =>
        el(
          "li",
          {},
          el("time", { dateTime: event.at }, formatTime(event.at)),
          ` ${event.actor}: ${event.kind}`,
          event.to_status ? ` → ${event.to_status}` : "",
          event.reason ? el("span", { className: "muted" }, ` — ${event.reason}`) : null,
        ),
      ),
    );
    const evidence = dispute.evidence ?? [];
    $("d-evidence").replaceChildren(
      ...evidence.map((item) =>
        el(
          "li",
          {},
          el("span", { className: "quoted" }, item.body || "(file)"),
          ...item.attachments.map((file) => el("span", { className: "muted" }, ` 📎 ${file.file_name}`)),
          el("span", { className: "muted" }, ` pinned by ${item.pinned_by}`),
        ),
      ),
    );
    $("d-evidence-empty").hidden = evidence.length > 0;
  }

  #moves(dispute) {
    const buttons = (MOVES[dispute.status] ?? []).map(([to, label]) => {
      const button = el("button", { type: "button", className: to === "cancelled" ? "danger" : "" }, label);
      button.addEventListener("click", () => this.#move(to).catch(showError));
      return button;
    });
    $("assign-me").disabled =
      ["resolved", "cancelled"].includes(dispute.status) || dispute.assignee?.id === this.me.id;
    $("move-actions").replaceChildren($("assign-me"), ...buttons);
  }

  async #move(to) {
    const { id, version } = this.current;
    const dispute = await this.api.json(`/v1/disputes/${id}/transition`, {
      method: "POST",
      json: { to, reason: $("move-reason").value, version },
    });
    $("move-reason").value = "";
    this.apply(dispute);
    this.show(dispute);
    say(`Dispute #${id} is now ${dispute.status}`);
  }

  async #assignMe() {
    const { id } = this.current;
    await this.api.json(`/v1/disputes/${id}/assign`, { method: "POST", json: { assignee_id: this.me.id } });
    await this.open(id);
    say(`Dispute #${id} assigned to you`);
  }

  /** Whether the resolution can be sent: a partial release's shares must add up exactly. */
  #checkSplit() {
    const dispute = this.current;
    const partial = $("resolve-outcome").value === "partial_release";
    $("resolve-split").hidden = !partial;
    if (!dispute || !partial) {
      $("resolve-sum").textContent = "";
      $("resolve-submit").disabled = false;
      return;
    }
    const seller = wholeNumber($("resolve-seller").value);
    const buyer = wholeNumber($("resolve-buyer").value);
    const total = (seller ?? 0) + (buyer ?? 0);
    const ok = seller > 0 && buyer > 0 && total === dispute.amount;
    $("resolve-sum").textContent = ok
      ? `Adds up to ${money(dispute.amount, dispute.currency)}`
      : `${total} of ${dispute.amount} — the two shares must add up to the amount in escrow`;
    $("resolve-sum").className = `hint ${ok ? "sum-ok" : "sum-bad"}`;
    $("resolve-submit").disabled = !ok;
  }

  async #resolve() {
    const { id, version } = this.current;
    const outcome = $("resolve-outcome").value;
    const json = { outcome, reason: $("move-reason").value, version };
    if (outcome === "partial_release") {
      json.seller_amount = wholeNumber($("resolve-seller").value);
      json.buyer_amount = wholeNumber($("resolve-buyer").value);
    }
    const dispute = await this.api.json(`/v1/disputes/${id}/resolve`, { method: "POST", json });
    this.apply(dispute);
    this.show(dispute);
    say(`Dispute #${id} resolved`);
  }
}

function showError(error) {
  say(error?.message ? `Failed: ${error.message}` : "Something went wrong", { error: true });
}

startStaffPage(async (api, me, token) => {
  if (me.role !== "dispute_ops") throw new Error(`${me.name} is not in dispute_ops`);
  const page = new DisputesPage({ api, me });
  await page.load(); // a 403 here (flag off) refuses the sign-in with the server's reason
  const client = new ParleyClient({ token });
  showConnection(client);
  client.on("dispute.updated", (event) => page.apply(event.dispute));
  client.on("state", (state) => {
    if (state === "open") page.load().catch(showError);
  });
  client.on("error", showError);
  client.connect().catch(showError);
  return () => client.close().catch(() => null);
});
