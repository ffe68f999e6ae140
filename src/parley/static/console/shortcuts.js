// Keyboard shortcuts for the console; `?` shows them. Single keys act only when no text field
// has the focus, so typing a reply never triggers one.

import { $, el } from "./dom.js";

export const SHORTCUTS = [
  ["j / k", "Next / previous conversation"],
  ["r", "Write a reply"],
  ["n", "Write an internal note"],
  ["a", "Assign the conversation to me"],
  ["s", "Search messages"],
  ["Esc", "Back to the list (phone), close this help"],
  ["Ctrl+Enter", "Send (in the message box)"],
  ["/", "Canned replies (at the start of the message box)"],
  ["?", "Show these shortcuts"],
];

function typingInto(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

/** `actions`: {next, previous, reply, note, assignMe, search, back}; each may do nothing. */
export function installShortcuts(actions) {
  const dialog = $("shortcuts");
  $("shortcuts-list").replaceChildren(
    ...SHORTCUTS.flatMap(([keys, what]) => [el("dt", {}, el("kbd", {}, keys)), el("dd", {}, what)]),
  );
  $("shortcuts-open").addEventListener("click", () => dialog.showModal());
  $("shortcuts-close").addEventListener("click", () => dialog.close());
  const keys = {
    j: actions.next,
    k: actions.previous,
    r: actions.reply,
    n: actions.note,
    a: actions.assignMe,
    s: actions.search,
    "?": () => dialog.showModal(),
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || dialog.open) return;
    if (event.key === "Escape") {
      if (!typingInto(event.target)) actions.back();
      return;
    }
    if (typingInto(event.target)) return;
    const action = keys[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });
}
