// DOM pieces of the rich timeline shared by the demo page and the operator console: reaction
// buttons, quotes, search snippets, edit history. Everything from users is put in as text nodes
// (append / textContent); a search hit becomes a <mark> made here, never markup from the server.

export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉"];

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("aria-")) node.setAttribute(name, value);
    else if (value !== undefined && value !== null) node[name] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function excerpt(text, length = 80) {
  const flat = (text ?? "").replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

/** A search result's snippet: plain text, hits wrapped in <mark>. */
export function snippetNode(fragments) {
  return el(
    "span",
    { className: "snippet" },
    ...fragments.map((fragment) => (fragment.hit ? el("mark", {}, fragment.text) : fragment.text)),
  );
}

/**
 * A message's reactions as toggle buttons ("👍 2"), pressed when `me` reacted; the title says
 * who. `onToggle(emoji, mine)` adds or removes the user's own.
 */
export function reactionBar(message, { me, nameOf, onToggle }) {
  const bar = el("div", { className: "reactions" });
  for (const reaction of message.reactions ?? []) {
    const mine = reaction.user_ids.includes(me);
    const who = reaction.user_ids.map(nameOf).join(", ");
    const more = reaction.count > reaction.user_ids.length ? ` and ${reaction.count - reaction.user_ids.length} more` : "";
    const button = el(
      "button",
      {
        type: "button",
        className: mine ? "reaction mine" : "reaction",
        title: `${who}${more}`,
        "aria-pressed": String(mine),
        "aria-label": `${reaction.emoji} ${reaction.count}`,
      },
      `${reaction.emoji} ${reaction.count}`,
    );
    button.addEventListener("click", () => onToggle(reaction.emoji, mine));
    bar.append(button);
  }
  return bar;
}

/** A small picker of quick reactions; `onPick(emoji)`. */
export function reactionPicker({ onPick }) {
  const picker = el("span", { className: "picker-row" });
  for (const emoji of QUICK_REACTIONS) {
    const button = el("button", { type: "button", className: "quick", "aria-label": `React ${emoji}` }, emoji);
    button.addEventListener("click", () => onPick(emoji));
    picker.append(button);
  }
  return picker;
}

/** The quote of a reply: who wrote the quoted message and the start of it (or that it is gone). */
export function quoteNode(quoted, nameOf) {
  if (!quoted) return el("blockquote", { className: "quote muted" }, "A message you cannot see here");
  if (quoted.deleted_at) return el("blockquote", { className: "quote muted" }, "Deleted message");
  return el(
    "blockquote",
    { className: "quote" },
    el("span", { className: "sender" }, nameOf(quoted.sender_id)),
    " ",
    excerpt(quoted.body || "(attachment)"),
  );
}

/** A message's earlier versions, oldest first, as a list (from client.history()). */
export function historyList(versions, formatTime) {
  return el(
    "ol",
    { className: "history" },
    ...versions.map((version) =>
      el(
        "li",
        { className: version.current ? "current" : "" },
        el("time", { dateTime: version.written_at }, formatTime(version.written_at)),
        " ",
        version.body,
      ),
    ),
  );
}

/** The words of a tombstone, so no one mistakes it for an empty message. */
export function tombstoneText(message) {
  return message.deleted_by === "author" ? "This message was unsent" : "This message was removed";
}
