// A real OpenID provider for Parley's SSO tests: panva's certified `oidc-provider`, configured
// from the environment by tests/support/oidc.py. Its sign-in page is one form (a user name from
// OP_ACCOUNTS, no password); consent is granted without asking (a first-party client).
//
//   OP_PORT        the loopback port to listen on (the issuer is http://127.0.0.1:OP_PORT)
//   OP_CLIENTS     JSON list of client metadata (client_id, client_secret, redirect_uris, ...)
//   OP_ACCOUNTS    JSON object: login name -> claims ({sub, email, email_verified, name, groups})
//   OP_TOKEN_CLOCK_BEHIND_SECONDS   the token endpoint runs this far in the past, so the ID
//                  tokens it issues are already expired (a provider with a wrong clock)
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";

import Provider from "oidc-provider";

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.OP_ACCOUNTS ?? "{}");
const clockBehindMs = Number(process.env.OP_TOKEN_CLOCK_BEHIND_SECONDS ?? 0) * 1000;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "test-key", use: "sig", alg: "RS256" };

const clients = JSON.parse(process.env.OP_CLIENTS ?? "[]").map((client) => ({
  grant_types: ["authorization_code"],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
  ...client,
}));

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: ["parley-test-op-cookies"] },
  scopes: ["openid", "email", "profile", "groups"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  // Conforming (the default): with a code flow, e-mail, profile and groups are not in the ID
  // token but at the UserInfo endpoint, which Parley then reads.
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    const claims = Object.values(accounts).find((account) => account.sub === sub);
    return claims && { accountId: sub, claims: async () => ({ ...claims }) };
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, body) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><title>Test OP</title><h1>Test OpenID provider</h1>${body}`);
}

async function readForm(req) {
  let raw = "";
  for await (const chunk of req) raw += chunk;
  return new URLSearchParams(raw);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (req.method === "POST" && req.url.endsWith("/login")) {
    const login = (await readForm(req)).get("login") ?? "";
    const account = accounts[login];
    if (!account) {
      return page(res, 200, `<p id="error">unknown user ${escape(login)}</p>${loginForm(uid)}`);
    }
    return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === "login") return page(res, 200, loginForm(uid));
  // Consent: a first-party client gets what it asked for.
  const grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function loginForm(uid) {
  return `<form method="post" action="/interaction/${uid}/login">
    <label>User name <input name="login" autofocus></label>
    <button type="submit">Sign in</button></form>`;
}

const handle = provider.callback();
createServer(async (req, res) => {
  try {
    if (req.url.startsWith("/interaction/")) return await interaction(req, res);
    if (clockBehindMs && req.url.startsWith("/token")) {
      const realNow = Date.now;
      Date.now = () => realNow() - clockBehindMs;
      res.on("close", () => {
        Date.now = realNow;
      });
    }
    return handle(req, res);
  } catch (error) {
    console.error(error);
    if (!res.headersSent) page(res, 500, `<p>${escape(error.message)}</p>`);
  }
}).listen(port, "127.0.0.1", () => console.log(`listening on ${issuer}`));
