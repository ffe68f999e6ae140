// Signing in and out of the staff pages (moderation, disputes). The token is kept in this tab's
// sessionStorage under the same key as the operator console's, so moving between the pages
// keeps the session; signing out of one signs out of all of them in this tab.

import { Api, login } from "./api.js";
import { $ } from "./dom.js";

const TOKEN_KEY = "parley.console.token";
const CONNECTION_TEXT = {
  idle: "",
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

function show(signedIn) {
  $("sign-in").hidden = signedIn;
  $("workspace").hidden = !signedIn;
  $("whoami").hidden = !signedIn;
}

/** Show the stream's state ("Live (ws)") in the header's `connection` element. */
export function showConnection(client) {
  const update = () => {
    const { state, transport } = client;
    const via = state === "open" && transport ? ` (${transport})` : "";
    $("connection").textContent = `${CONNECTION_TEXT[state] ?? state}${via}`;
  };
  client.on("transport", update);
  client.on("state", update);
}

/**
 * Wire the sign-in form and sign-out button; `onStart(api, me, token)` builds the page once
 * signed in and throws (e.g. a 403 for the wrong role) to refuse the account.
 */
export function startStaffPage(onStart) {
  const state = { api: null, stop: null };

  async function start(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    const api = new Api(token, { onUnauthorized: () => signOut("Your session ended.") });
    const me = await api.json("/v1/me");
    state.api = api;
    state.stop = await onStart(api, me, token);
    $("me-name").textContent = me.display_name || me.name;
    show(true);
  }

  function signOut(reason = "") {
    const { api, stop } = state;
    sessionStorage.removeItem(TOKEN_KEY);
    if (stop) stop();
    const done = () => {
      if (reason) sessionStorage.setItem(`${TOKEN_KEY}.reason`, reason);
      location.replace(location.pathname);
    };
    if (api && !reason) api.logout().catch(() => null).finally(done);
    else done();
  }

  function refuse(error) {
    sessionStorage.removeItem(TOKEN_KEY);
    show(false);
    $("sign-in-error").textContent = `Sign-in failed: ${error.message}`;
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      const { token } = await login($("login-name").value, $("login-password").value);
      await start(token);
    } catch (error) {
      refuse(error);
    }
  });
  $("sign-out").addEventListener("click", () => signOut());

  const saved = sessionStorage.getItem(TOKEN_KEY);
  const reason = sessionStorage.getItem(`${TOKEN_KEY}.reason`);
  sessionStorage.removeItem(`${TOKEN_KEY}.reason`);
  if (reason) $("sign-in-error").textContent = reason;
  if (saved) start(saved).catch(refuse);
  else show(false);
}
