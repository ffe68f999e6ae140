// Canned replies in the message box: typing `/` at its start lists the inbox's saved answers
// (GET /v1/livechat/inboxes/{id}/canned-replies), narrowed by what follows the slash; Enter,
// Tab or a click puts the answer in the box, Escape closes the list. Arrow keys move in it.

import { $, el } from "./dom.js";

export class CannedReplies {
  #byInbox = new Map(); // inbox id -> Promise of its replies
  #inboxId = null;
  #shown = [];
  #active = 0;

  constructor({ api, onError }) {
    this.api = api;
    this.onError = onError;
    const input = $("composer-body");
    input.addEventListener("input", () => this.#update());
    input.addEventListener("keydown", (event) => this.#onKey(event));
    input.addEventListener("blur", () => setTimeout(() => this.#close(), 150));
  }

  /** The open conversation's inbox: its replies are the ones offered. */
  setInbox(inboxId) {
    this.#inboxId = inboxId;
    this.#close();
    if (!this.#byInbox.has(inboxId)) {
      const loading = this.api.cannedReplies(inboxId).then(
        (answer) => answer.canned_replies,
        (error) => {
          this.#byInbox.delete(inboxId);
          this.onError(error);
          return [];
        },
      );
      this.#byInbox.set(inboxId, loading);
    }
  }

  get open() {
    return !$("canned").hidden;
  }

  async #update() {
    const text = $("composer-body").value;
    if (!text.startsWith("/") || text.includes("\n") || this.#inboxId === null) {
      this.#close();
      return;
    }
    const wanted = text.slice(1).toLowerCase();
    const replies = await this.#byInbox.get(this.#inboxId);
    this.#shown = replies.filter(
      (reply) => reply.shortcut.startsWith(wanted) || reply.body.toLowerCase().includes(wanted),
    );
    this.#active = 0;
    this.#render();
  }

  #render() {
    const list = $("canned");
    const input = $("composer-body");
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    if (this.#shown.length === 0) {
      list.replaceChildren(el("li", { className: "muted empty-choice" }, "No canned reply matches."));
      input.removeAttribute("aria-activedescendant");
      return;
    }
    list.replaceChildren(
      ...this.#shown.map((reply, index) => {
        const option = el(
          "li",
          { id: `canned-${reply.id}`, className: "choice", role: "option" },
          el("strong", {}, `/${reply.shortcut}`),
          " ",
          el("span", { className: "muted" }, reply.body),
        );
        option.setAttribute("aria-selected", String(index === this.#active));
        option.addEventListener("mousedown", (event) => {
          event.preventDefault(); // keep the focus in the message box
          this.#pick(reply);
        });
        return option;
      }),
    );
    input.setAttribute("aria-activedescendant", `canned-${this.#shown[this.#active].id}`);
  }

  #onKey(event) {
    if (!this.open) return;
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.#close();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      const count = this.#shown.length || 1;
      this.#active = (this.#active + step + count) % count;
      this.#render();
    } else if ((event.key === "Enter" || event.key === "Tab") && !event.ctrlKey && !event.metaKey) {
      const reply = this.#shown[this.#active];
      if (!reply) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      this.#pick(reply);
    }
  }

  #pick(reply) {
    const input = $("composer-body");
    input.value = reply.body;
    this.#close();
    input.focus();
    input.setSelectionRange(reply.body.length, reply.body.length);
  }

  #close() {
    $("canned").hidden = true;
    $("composer-body").setAttribute("aria-expanded", "false");
    $("composer-body").removeAttribute("aria-activedescendant");
  }
}
