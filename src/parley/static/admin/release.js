// The release control page: rollout state, gates (green/red with values), the decision log, and
// promote / hold / resume / kill, all through /v1/admin/release; and the feature-flags screen:
// each flag's rules, edited through PUT /v1/admin/flags/{key}, and who changed what when (the
// audit log, `flag.` actions). Served with a strict CSP: no inline script or style, and text
// reaches the page only through textContent.

const TOKEN_KEY = "parley.admin.token";
const REFRESH_MS = 5000;

const $ = (id) => document.getElementById(id);

const GATE_NAMES = { p0: "P0", p1: "P1", rollout: "Rollout" };
const STICKINESS = ["user", "contract", "inbox", "room"];

const page = {
  token: sessionStorage.getItem(TOKEN_KEY),
  timer: null,
  gates: null, // the newest gate report, to explain a refusal
  editing: null, // the key of the flag whose form is open (a refresh leaves it alone)
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
  if (!$("flags-screen").hidden) {
    await refreshFlags();
    return;
  }
  const [state, gates, history] = await Promise.all([
    api("/v1/admin/release"),
    api("/v1/admin/release/gates"),
    api("/v1/admin/release/history?limit=50"),
  ]);
  page.gates = gates;
  renderState(state);
  renderGates(gates);
  renderHistory(history);
}

function showScreen(name) {
  for (const screen of ["rollout", "flags"]) {
    $(`${screen}-screen`).hidden = screen !== name;
    $(`tab-${screen}`).setAttribute("aria-pressed", String(screen === name));
  }
  refresh().catch((error) => say(error.message, { error: true }));
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
        el("td", { text: entry.refused ? `${entry.action} refused` : entry.action }),
        el("td", { text: `${entry.from_stage} → ${entry.to_stage}${entry.refused ? " refused" : ""}` }),
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
  $("refusal").hidden = true;
  try {
    const answer = await api(`/v1/admin/release/${action}`, { method: "POST", json: body });
    say(`${action}: now ${answer.state.stage}${answer.state.killed ? " (kill switch ON)" : ""}`);
    $("override").checked = false;
  } catch (error) {
    await refresh().catch(() => null);
    if (error.code === "ERR_GATES_NOT_PASSED") explainRefusal(action, error.message);
    else say(`${action} refused: ${error.message}`, { error: true });
    return;
  }
  await refresh();
}

/** "promote refused" in a sentence, then each gate that said no and what to do about it. */
function explainRefusal(action, message) {
  const moved = /^promotion (\S+) → (\S+) refused: the decision is (\w+)/.exec(message);
  const head = moved ? `${moved[1]} → ${moved[2]}, decision ${moved[3]}` : message;
  say(`${action} refused (${head}). Nothing changed.`, { error: true });
  const checks = page.gates?.checks ?? [];
  const reasons = page.gates?.reasons ?? [];
  $("refusal").replaceChildren(
    ...reasons.map((reason) => {
      const name = reason.split(/[ :]/, 1)[0];
      const check = checks.find((each) => each.name === name);
      const gate = check ? `${GATE_NAMES[check.gate] ?? check.gate} gate` : "Data";
      const detail = check ? `${name.replaceAll("_", " ")}: ${check.detail}` : reason;
      return el("li", { text: `${gate} — ${detail}` });
    }),
  );
  $("refusal").hidden = reasons.length === 0;
}

// --- feature flags ----------------------------------------------------------------------------

async function refreshFlags() {
  const [flags, changes] = await Promise.all([
    api("/v1/admin/flags"),
    api("/v1/admin/audit?action=flag.&limit=50"),
  ]);
  if (page.editing === null) renderFlags(flags);
  renderFlagChanges(changes.entries);
}

function rulesOf(flag) {
  const rules = [flag.enabled ? "on" : "off for everyone"];
  if (flag.allow_users.length) rules.push(`users ${flag.allow_users.join(", ")} always on`);
  if (flag.allow_keys.length) rules.push(`keys ${flag.allow_keys.join(", ")} always on`);
  if (flag.internal_only) rules.push("internal users only");
  if (flag.roles.length) rules.push(`roles: ${flag.roles.join(", ")}`);
  if (flag.percentage !== null) rules.push(`${flag.percentage} % by ${flag.stickiness}`);
  return rules.join(" · ");
}

function renderFlags(flags) {
  $("flags").replaceChildren(
    ...flags.map((flag) => {
      const item = el("li", { className: "flag" });
      item.dataset.flag = flag.key;
      const head = el("div", { className: "flag-head" });
      const state = el("span", { className: `pill ${flag.enabled ? "ok" : "wait"}`, text: flag.enabled ? "on" : "off" });
      const edit = el("button", { text: "Edit" });
      edit.type = "button";
      edit.setAttribute("aria-label", `Edit ${flag.key}`);
      edit.addEventListener("click", () => openFlagForm(item, flag));
      head.append(el("strong", { className: "key", text: flag.key }), state, edit);
      const changed = flag.updated_at ? `changed ${utc(flag.updated_at)} by ${flag.updated_by || "?"}` : "never changed";
      item.append(
        head,
        el("p", { className: "muted", text: flag.description }),
        el("p", { className: "rules", text: rulesOf(flag) }),
        el("p", { className: "muted small", text: changed }),
      );
      return item;
    }),
  );
}

function field(labelText, input) {
  const label = el("label", { text: labelText });
  label.append(input);
  return label;
}

function input(type, value, name) {
  const node = el("input");
  node.type = type;
  node.name = name;
  if (type === "checkbox") node.checked = Boolean(value);
  else node.value = value ?? "";
  node.autocomplete = "off";
  return node;
}

function openFlagForm(item, flag) {
  page.editing = flag.key;
  const form = el("form", { className: "flag-form" });
  const enabled = input("checkbox", flag.enabled, "enabled");
  const internal = input("checkbox", flag.internal_only, "internal_only");
  const percentage = input("number", flag.percentage, "percentage");
  percentage.min = "0";
  percentage.max = "100";
  const stickiness = el("select");
  stickiness.name = "stickiness";
  for (const option of STICKINESS) {
    const node = el("option", { text: option });
    node.value = option;
    node.selected = option === flag.stickiness;
    stickiness.append(node);
  }
  const users = input("text", flag.allow_users.join(", "), "allow_users");
  const keys = input("text", flag.allow_keys.join(", "), "allow_keys");
  const roles = input("text", flag.roles.join(", "), "roles");
  const save = el("button", { text: "Save flag" });
  save.type = "submit";
  const cancel = el("button", { text: "Cancel" });
  cancel.type = "button";
  const buttons = el("div", { className: "buttons" });
  buttons.append(save, cancel);
  const checks = el("div", { className: "checks" });
  const on = field(" On", enabled);
  on.prepend(enabled);
  const inside = field(" Internal users only", internal);
  inside.prepend(internal);
  checks.append(on, inside);
  form.append(
    checks,
    field("Percentage (0–100, empty: no percentage rule)", percentage),
    field("Bucket by", stickiness),
    field("Always on for user ids (comma-separated)", users),
    field("Always on for keys (comma-separated)", keys),
    field("Only for roles (comma-separated, empty: any)", roles),
    buttons,
  );
  const list = (text) => text.split(",").map((part) => part.trim()).filter(Boolean);
  cancel.addEventListener("click", () => {
    page.editing = null;
    refreshFlags().catch(() => null);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      enabled: enabled.checked,
      internal_only: internal.checked,
      stickiness: stickiness.value,
      allow_users: list(users.value).map(Number),
      allow_keys: list(keys.value),
      roles: list(roles.value),
    };
    // Only what changed: the release flag refuses `enabled` and `percentage` (its stage sizes it).
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    for (const key of Object.keys(body)) {
      if (same(body[key], flag[key])) delete body[key];
    }
    if (percentage.value === "" && flag.percentage !== null) body.clear_percentage = true;
    else if (percentage.value !== "" && Number(percentage.value) !== flag.percentage) body.percentage = Number(percentage.value);
    try {
      await api(`/v1/admin/flags/${encodeURIComponent(flag.key)}`, { method: "PUT", json: body });
      $("flag-message").textContent = `${flag.key} saved.`;
      $("flag-message").classList.remove("error");
      page.editing = null;
    } catch (error) {
      $("flag-message").textContent = `${flag.key} not saved: ${error.message}`;
      $("flag-message").classList.add("error");
      return;
    }
    await refreshFlags();
  });
  item.querySelector(".rules").replaceWith(form);
  enabled.focus();
}

function describeChange(entry) {
  const before = entry.before ?? {};
  const after = entry.after ?? {};
  const keys = Object.keys(after);
  if (keys.length === 0) return entry.reason || entry.action;
  const show = (value) => (Array.isArray(value) ? `[${value.join(", ")}]` : String(value));
  return keys.map((key) => `${key}: ${show(before[key])} → ${show(after[key])}`).join("; ");
}

function renderFlagChanges(entries) {
  $("flag-changes").tBodies[0].replaceChildren(
    ...entries.map((entry) => {
      const row = el("tr");
      row.append(
        el("td", { text: utc(entry.at) }),
        el("td", { text: entry.actor }),
        el("td", { text: entry.target_id }),
        el("td", { text: describeChange(entry) }),
        el("td", { text: entry.source }),
      );
      return row;
    }),
  );
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
  $("tab-rollout").addEventListener("click", () => showScreen("rollout"));
  $("tab-flags").addEventListener("click", () => showScreen("flags"));
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
