/*
 * Parley Messenger loader: the one classic script a website embeds.
 *
 *   <script src="https://chat.example.com/static/messenger/widget.js"
 *           data-widget-token="..." async></script>
 *
 * It stays tiny and plain (no module syntax, so any <script src> can run it): it puts
 * `window.ParleyMessenger` on the page at once, queueing calls made before the widget is
 * ready, and then import()s the widget's ES modules from the same Parley origin (Parley serves
 * them with `Access-Control-Allow-Origin: *`). Settings come from the tag's data-* attributes,
 * or from `window.ParleyMessengerSettings = {widgetToken, identity}` set before the tag.
 */
(() => {
  const script = document.currentScript;
  const existing = window.ParleyMessenger;
  if (!script || (existing && existing.loader)) return; // embedded twice: the first one wins

  const settings = window.ParleyMessengerSettings || {};
  const queue = [];
  const later = (name) => (...args) => {
    queue.push([name, args]);
  };
  const api = {
    loader: true,
    open: later("open"),
    close: later("close"),
    toggle: later("toggle"),
    showLauncher: later("showLauncher"),
    hideLauncher: later("hideLauncher"),
    isOpen: () => false,
  };
  window.ParleyMessenger = api;

  // widget.js lives at <parley>/static/messenger/widget.js; Parley itself is two folders up.
  const parleyRoot = new URL("../../", script.src).href.replace(/\/$/, "");
  const config = {
    baseUrl: parleyRoot,
    widgetToken: script.dataset.widgetToken || settings.widgetToken || "",
    identity: script.dataset.identity || settings.identity || null,
    api,
    queue,
  };
  import(new URL("messenger.js", script.src).href)
    .then((messenger) => messenger.start(config))
    .catch((error) => console.error("Parley Messenger could not load", error));
})();
