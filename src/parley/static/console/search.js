// Searching the messages of the conversations this operator is in (GET /v1/search through the
// JS client): results with highlighted hits; one click opens its conversation. Hits are <mark>
// elements made here around plain text, never markup from the server.

import { snippetNode } from "/static/shared/rich.js";
import { $, el, formatTime } from "./dom.js";

export class Search {
  constructor({ client, list, onOpen, onError }) {
    this.client = client;
    this.list = list;
    this.onOpen = onOpen;
    this.onError = onError;
    $("search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.run($("search-query").value.trim()).catch(onError);
    });
    $("search-close").addEventListener("click", () => ($("search-results").hidden = true));
  }

  async run(query) {
    if (!query) return;
    const page = await this.client.search(query, { limit: 30 });
    $("search-results").hidden = false;
    const items = page.results.map(({ message, snippet }) => {
      const item = this.list.get(message.conversation_id);
      const where = item ? item.visitor.name : `Conversation ${message.conversation_id}`;
      const button = el(
        "button",
        { type: "button", className: "result" },
        el("span", { className: "where muted" }, `${where} · ${formatTime(message.created_at)}`),
        snippetNode(snippet),
      );
      button.addEventListener("click", () => this.onOpen(message.conversation_id));
      return el("li", {}, button);
    });
    $("results").replaceChildren(...items);
    if (items.length === 0) $("results").append(el("li", { className: "muted" }, "No messages match."));
  }
}
