// Small DOM helpers for the console. Data reaches the page only as text nodes (append and
// textContent); nothing here parses HTML, so a visitor's `<script>` stays a string.

export const $ = (id) => document.getElementById(id);

/** A new element: `props` are DOM properties (never innerHTML), children are nodes or text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (value !== undefined && value !== null) node[name] = value;
  }
  // append() turns strings (and numbers) into text nodes and keeps nodes as they are.
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/**
 * A link to a page a visitor reported, or plain text when it is not http(s): a `javascript:`
 * or `data:` URL from a visitor must never become clickable in a staff member's session.
 */
export function safeLink(address) {
  if (!address) return el("span", { className: "muted" }, "—");
  let url = null;
  try {
    url = new URL(address);
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return el("span", {}, address);
  }
  return el("a", { href: url.href, target: "_blank", rel: "noopener noreferrer" }, address);
}

/** Replace a <select>'s options after the first `keep` ones; keeps the value if still offered. */
export function setOptions(select, options, { keep = 0 } = {}) {
  const value = select.value;
  while (select.options.length > keep) select.remove(keep);
  for (const { value: optionValue, label } of options) {
    select.add(el("option", { value: String(optionValue) }, label));
  }
  if ([...select.options].some((option) => option.value === value)) select.value = value;
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString()} ${time}`;
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function capitalize(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

/** The status line at the bottom of the page. */
export function say(text, { error = false } = {}) {
  const line = $("status-line");
  line.textContent = text;
  line.classList.toggle("error", error);
}
