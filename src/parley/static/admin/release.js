// The release control page: rollout state, gates (green/red with values), the decision log, and
// promote / hold / resume / kill, all through /v1/admin/release. Served with a strict CSP: no
// inline script or style, and text reaches the page only through textContent.

const TOKEN_KEY = "parley.admin.token";
const REFRESH_MS = 5000;

const $ = (id) => document.getElementById(id);

const page = {
  token: sessionStorage.getItem(TOKEN_KEY),
  timer: null,
};

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", json } = {}) {
  const headers = {};
  if (page.token) headers.Authorization = `Bearer ${page.token}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body });
  if (response.status === 401) signOut();
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer?.error ?? {};
    throw new HttpError(response.status, error.code ?? "", error.message ?? response.statusText);
  }
  return answer;
}

function el(tag, { className, text } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function say(text, { error = false } = {}) {
  const message = $("message");
  message.textContent = text;
  message.classList.toggle("error", error);
}

// --- signing in -----------------------------------------------------------------------------

function show(signedIn) {
  $("sign-in").hidden = signedIn;
  $("console").hidden = !signedIn;
  $("whoami").hidden = !signedIn;
}

async function start(token) {
  page.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    const me = await api("/v1/me");
    if (me.role !== "admin") throw new Error(`${me.name} is not an admin`);
    $("me-name").textContent = me.name;
    show(true);
    await refresh();
    clearInterval(page.timer);
    page.timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  } catch (error) {
    signOut();
    $("sign-in").querySelector("h2").textContent = `Sign in as an admin (${error.message})`;
  }
}

function signOut() {
  clearInterval(page.timer);
  page.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  show(false);
}

// --- rendering --------------------------------------------------------------------------------

async function refresh() {
  const [state, gates, history] = await Promise.all([
    api("/v1/admin/release"),
    api("/v1/admin/release/gates"),
    api("/v1/admin/release/history?limit=50"),
  ]);
  renderState(state);
  renderGates(gates);
  renderHistory(history);
}

function renderState(state) {
  $("stage").textContent = state.stage;
  $("percentage").textContent = `${state.percentage} % of users`;
  const kill = $("kill-state");
  kill.textContent = state.killed ? "ON" : "off";
  kill.className = state.killed ? "pill bad" : "pill ok";
  $("state-reason").textContent = state.reason;
  $("state-actor").textContent = state.actor;
  $("state-changed").textContent = utc(state.changed_at);
  $("resume").disabled = !state.killed;
  $("promote").disabled = state.stage === "full";
}

const OK_CLASS = (ok) => (ok === true ? "ok" : ok === false ? "bad" : "wait");
const OK_TEXT = (ok) => (ok === true ? "yes" : ok === false ? "no" : "waiting for data");

function renderGates(gates) {
  const decision = $("decision");
  decision.textContent = gates.rollout_decision;
  decision.className = `pill ${{ PROCEED: "ok", HOLD: "wait", ROLLBACK: "bad" }[gates.rollout_decision]}`;
  $("window").textContent = `metrics since ${utc(gates.window_start)}`;

  const badges = $("gate-badges");
  badges.replaceChildren(
    ...["gate_p0_ok", "gate_p1_ok", "gate_rollout_ok"].map((name) => {
      const item = el("li", { className: `badge ${OK_CLASS(gates[name])}` });
      item.dataset.gate = name;
      item.textContent = `${name}: ${OK_TEXT(gates[name])}`;
      return item;
    }),
  );
  $("reasons").replaceChildren(...gates.reasons.map((reason) => el("li", { text: reason })));

  $("checks").tBodies[0].replaceChildren(
    ...gates.checks.map((check) => {
      const row = el("tr");
      row.dataset.check = check.name;
      const status = el("td");
      status.append(el("span", { className: `pill ${OK_CLASS(check.ok)}`, text: OK_TEXT(check.ok) }));
      row.append(
        el("td", { text: check.gate }),
        el("td", { text: check.name }),
        status,
        el("td", { text: number(check.value) }),
        el("td", { text: number(check.baseline) }),
        el("td", { text: number(check.threshold) }),
        el("td", { text: check.detail }),
      );
      return row;
    }),
  );
}

function renderHistory(entries) {
  $("history").tBodies[0].replaceChildren(
    ...entries.map((entry) => {
      const row = el("tr");
      row.append(
        el("td", { text: entry.id }),
        el("td", { text: utc(entry.at) }),
        el("td", { text: entry.action }),
        el("td", { text: `${entry.from_stage} → ${entry.to_stage}` }),
        el("td", { text: entry.killed ? "ON" : "" }),
        el("td", { text: entry.override ? `${entry.decision} (override)` : entry.decision }),
        el("td", { text: entry.owner }),
        el("td", { text: entry.actor }),
        el("td", { text: entry.reason }),
      );
      return row;
    }),
  );
}

function number(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "number" ? String(Number(value.toPrecision(4))) : String(value);
}

function utc(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "";
}

// --- acting -----------------------------------------------------------------------------------

async function act(action) {
  const body = { reason: $("reason").value.trim(), owner: $("owner").value.trim() };
  if (action === "promote") body.override = $("override").checked;
  if (action === "hold" || action === "kill") delete body.owner;
  try {
    const answer = await api(`/v1/admin/release/${action}`, { method: "POST", json: body });
    say(`${action}: now ${answer.state.stage}${answer.state.killed ? " (kill switch ON)" : ""}`);
    $("override").checked = false;
  } catch (error) {
    say(`${action} refused: ${error.message}`, { error: true });
  }
  await refresh();
}

function wire() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await api("/v1/auth/login", {
        method: "POST",
        json: { name: $("login-name").value.trim(), password: $("login-password").value },
      });
      await start(answer.token);
    } catch (error) {
      $("sign-in").querySelector("h2").textContent = `Sign in as an admin (${error.message})`;
    }
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("token").value.trim());
  });
  $("sign-out").addEventListener("click", signOut);
  $("promote").addEventListener("click", () => act("promote"));
  $("hold").addEventListener("click", () => act("hold"));
  $("resume").addEventListener("click", () => act("resume"));
  $("kill").addEventListener("click", () => {
    $("kill-confirm").hidden = false;
  });
  $("kill-no").addEventListener("click", () => {
    $("kill-confirm").hidden = true;
  });
  $("kill-yes").addEventListener("click", async () => {
    $("kill-confirm").hidden = true;
    await act("kill");
  });
}

wire();
if (page.token) start(page.token);
else show(false);
