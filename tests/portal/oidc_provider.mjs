#!/usr/bin/env node
// A real OpenID provider for the portal's tests: the certified npm package `oidc-provider`
// (pinned in node/package.json), with a minimal login page of our own.
//
// Usage:
//     node tests/portal/oidc_provider.mjs CONFIG.json [PORT]
//
// PORT (else env ROLEGATE_OIDC_PORT, else 0 = a free one) is bound on 127.0.0.1. When it
// listens, the script prints exactly one line on stdout, `READY http://127.0.0.1:PORT`
// (the issuer; discovery at ISSUER/.well-known/openid-configuration); everything else goes
// to stderr. It exits when its stdin closes, so give it a pipe and keep the write end open
// for as long as the provider is needed: when the test process dies, the provider goes too.
// (Env ROLEGATE_OIDC_IGNORE_STDIN=1 turns that off, for running it by hand.)
//
// CONFIG:
//   {
//     "clients": [{ "client_id": "rolegate",
//                   "client_secret": "s3cret",          // absent => public client (auth method none)
//                   "redirect_uris": ["http://127.0.0.1:8080/ui/auth/callback"],
//                   "post_logout_redirect_uris": ["http://127.0.0.1:8080/ui/"],
//                   "grant_types": ["authorization_code", "refresh_token"] }],  // optional
//     "accounts": [{ "sub": "alice", "name": "Alice", "email": "alice@example.com",
//                    "preferred_username": "alice",    // optional, defaults to sub
//                    "oid": "..." }],                  // any other key: an extra ID token claim
//     "access_token_ttl": 3600, "id_token_ttl": 3600,  // seconds, optional
//     "host": "127.0.0.1",     // optional: the issuer's host name ("localhost" keeps the
//                              // provider's cookies apart from a server on 127.0.0.1)
//     "logout_prompt": false,  // optional: true shows the "Yes, sign me out" page without
//                              // submitting it by itself
//     "resource": { "audience": "rolegate-api", "scope": "rolegate" }  // optional, see below
//   }
//
// The login page (/interaction/:uid) has a text field "Username" (matched against an
// account's sub, preferred_username or email), a checkbox "Use MFA" and a button "Sign in".
// Signing in sets amr ["pwd"] or ["pwd","mfa"] and acr "urn:rolegate:pwd" or
// "urn:rolegate:mfa"; both are in the ID token. Consent is granted without asking.
//
// Without "resource", access tokens are opaque (usable at the userinfo endpoint only), as
// the portal's tests expect. With "resource" (features.resourceIndicators), every access
// token the authorization_code, device_code and refresh_token grants issue is for that one
// resource server, also when the client sends no `resource` parameter (defaultResource and
// useGrantedResource): a JWT (header typ "at+jwt", RS256, signed with the key published at
// jwks_uri) with iss = the issuer, aud = "audience", sub = the account's sub, iat, exp
// (access_token_ttl), jti, client_id, scope (only the resource's scopes granted, e.g.
// "rolegate"; the token response's `scope` says the same), and amr and acr of the sign-in
// that produced the grant (kept across refreshes), plus name and oid when the account has
// them. "scope" (default "rolegate") is the resource's space-separated scope list; ask for
// it next to openid, e.g. `openid profile email offline_access rolegate`. "indicator" (
// optional) is the resource indicator (RFC 8707, must be an absolute URI): default the
// audience when it is an absolute URI, else "urn:rolegate:resource:" + audience; a client
// that sends `resource` must send exactly that. The ID token is unchanged. Such access
// tokens do not work at the userinfo endpoint (they are not for this provider).
//
// A public native client (a CLI), RFC 8252 and RFC 8628:
//     { "client_id": "rolegate-cli", "application_type": "native",
//       "redirect_uris": ["http://127.0.0.1/callback"],
//       "grant_types": ["authorization_code", "refresh_token",
//                       "urn:ietf:params:oauth:grant-type:device_code"] }
// No client_secret => token_endpoint_auth_method none, PKCE (S256) required. For a native
// client oidc-provider accepts a loopback redirect_uri (http, host 127.0.0.1, [::1] or
// localhost) with any port, or none, in place of a registered one that differs only in the
// port (RFC 8252 §7.3); path and query must match exactly. The host must match too:
// register 127.0.0.1 and redirect to 127.0.0.1, not localhost. Refresh tokens: issued for
// every client with the refresh_token grant (offline_access or not); for a public client
// each refresh rotates it (the response carries a new refresh_token, and reusing a spent
// one revokes the whole grant). In the authorization code flow oidc-provider drops
// offline_access unless prompt=consent, so there the refresh token lasts as long as the
// provider's browser session (14 days; ends on sign-out); the device flow keeps it.
// The device flow: POST ISSUER/device/auth (client_id, scope) gives verification_uri
// (ISSUER/device: a "Code" field and a "Continue" button) and verification_uri_complete
// (the code already in it); then come the "Confirm device" page ("Continue" or "Abort"),
// the login page unless the browser is already signed in, and "Sign-in successful". Abort
// shows "The sign-in request was interrupted." and the polling client gets access_denied.
// The device authorization response has no `interval` (RFC 8628: then 5 s); the provider
// neither enforces one nor answers slow_down, so a test may poll faster.

import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// oidc-provider prints notices with console.info/console.log: keep stdout for READY alone.
console.log = console.error;
console.info = console.error;

const here = dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.ROLEGATE_PORTAL_NODE || join(here, 'node');
const require = createRequire(join(nodeDir, 'package.json'));
const { default: Provider, errors } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const [configPath, portArg] = process.argv.slice(2);
if (!configPath) {
  console.error('usage: oidc_provider.mjs CONFIG.json [PORT]');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const port = Number(portArg ?? process.env.ROLEGATE_OIDC_PORT ?? 0);
const host = config.host || '127.0.0.1';

const ACR_PWD = 'urn:rolegate:pwd';
const ACR_MFA = 'urn:rolegate:mfa';
const STANDARD_KEYS = new Set(['sub', 'name', 'email', 'email_verified', 'preferred_username']);

const accounts = (config.accounts || []).map((a) => {
  if (!a.sub) throw new Error('every account needs a "sub"');
  return { preferred_username: a.sub, ...(a.email ? { email_verified: true } : {}), ...a };
});
const extraClaims = [...new Set(accounts.flatMap((a) => Object.keys(a)).filter((k) => !STANDARD_KEYS.has(k)))];

function lookup(login) {
  const l = String(login || '').trim().toLowerCase();
  if (!l) return undefined;
  return accounts.find((a) => [a.sub, a.preferred_username, a.email]
    .some((v) => typeof v === 'string' && v.toLowerCase() === l));
}

const clients = (config.clients || []).map((c) => {
  const client = {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    ...c,
  };
  if (!c.client_secret) {
    delete client.client_secret;
    client.token_endpoint_auth_method = 'none';
  }
  return client;
});

// A fresh RS256 signing key at every start (the provider publishes it at /jwks). Generated
// as PEM and re-imported before the JWK export: on Node 20, exporting the KeyObject that
// generateKeyPairSync returns can deadlock when a GC runs during the export (seen here,
// about one start in ten under load: the key job's destructor waits on the key's mutex).
const { privateKey: pem } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const jwk = {
  ...createPrivateKey(pem).export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

// ---- HTML ----------------------------------------------------------------------------------

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

const STYLE = 'body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#111;background:#fff}'
  + 'label{display:block;margin:.75rem 0 .25rem}input[type=text]{width:100%;padding:.4rem;font-size:1rem;box-sizing:border-box}'
  + 'button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}.error{color:#a00000;font-weight:bold}'
  + ':focus-visible{outline:3px solid #1a4fd0;outline-offset:2px}';

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} - Test OpenID provider</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${esc(title)}</h1>
${body}
</main>
</body>
</html>`;
}

function loginPage(uid, { login = '', mfa = false, error, clientId } = {}) {
  return page('Sign in', `<p>Test OpenID provider${clientId ? `, for <strong>${esc(clientId)}</strong>` : ''}.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="login">Username</label>
<input type="text" id="login" name="login" value="${esc(login)}" autofocus required>
<label><input type="checkbox" name="mfa" value="1"${mfa ? ' checked' : ''}> Use MFA</label>
<button type="submit">Sign in</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 65536) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---- The provider ----------------------------------------------------------------------------

const listener = createServer();
await new Promise((resolve, reject) => {
  listener.once('error', reject);
  listener.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://${host}:${listener.address().port}`;

const ttl = (v, d) => (Number.isFinite(v) && v > 0 ? v : d);

// config.resource: JWT access tokens for one resource server (see the header).
const resource = config.resource ? (() => {
  const { audience, scope = 'rolegate' } = config.resource;
  if (typeof audience !== 'string' || !audience) throw new Error('"resource" needs an "audience"');
  const absolute = (u) => { const p = URL.parse(u); return !!p && !p.href.includes('#'); };
  const indicator = config.resource.indicator
    || (absolute(audience) ? audience : `urn:rolegate:resource:${audience}`);
  if (!absolute(indicator)) throw new Error('"resource.indicator" must be an absolute URI');
  return { audience, scope, indicator };
})() : undefined;

const resourceConfig = resource ? {
  extraTokenClaims: async (ctx, token) => {
    if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
    // The grant's source, with the sign-in's amr and acr: at the token endpoint the code
    // exchanged, or the refresh token used (its rotated successor copies them).
    const entities = ctx?.oidc?.entities || {};
    const source = entities.RefreshToken || entities.AuthorizationCode || entities.DeviceCode;
    const account = accounts.find((a) => a.sub === token.accountId);
    const extra = {};
    if (source?.amr) extra.amr = source.amr;
    if (source?.acr) extra.acr = source.acr;
    if (account?.name) extra.name = account.name;
    if (account?.oid) extra.oid = account.oid;
    return extra;
  },
  resourceIndicators: {
    enabled: true,
    // No `resource` parameter: the one resource server (at the authorization and device
    // authorization endpoints, where the code remembers it)...
    defaultResource: async (ctx, client, oneOf) => oneOf || resource.indicator,
    // ...and at the token endpoint, where without this an `openid` request would get an
    // opaque access token for the userinfo endpoint instead.
    useGrantedResource: async () => true,
    getResourceServerInfo: async (ctx, indicator) => {
      if (indicator !== resource.indicator) throw new errors.InvalidTarget();
      return {
        audience: resource.audience,
        scope: resource.scope,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttl(config.access_token_ttl, 3600),
        jwt: { sign: { alg: 'RS256' } },
      };
    },
  },
} : undefined;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  acrValues: [ACR_PWD, ACR_MFA],
  // acr, amr and auth_time in every ID token (not only when requested with acr_values,
  // max_age or the claims parameter), and any extra account keys (oid, ...) too.
  claims: {
    acr: null,
    amr: null,
    auth_time: null,
    sid: null,
    iss: null,
    openid: ['sub', 'acr', 'amr', 'auth_time', ...extraClaims],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  // The scopes' claims go into the ID token too, not only to the userinfo endpoint.
  conformIdTokenClaims: false,
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  pkce: { required: () => true },
  // A refresh token for every client allowed the refresh_token grant (offline_access alone
  // counts only with prompt=consent, per OIDC Core §11).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, sub) => {
    const account = accounts.find((a) => a.sub === sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { ...account };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true,
      async userCodeInputSource(ctx, form, out, err) {
        let msg = 'Enter the code displayed on your device.';
        if (err && (err.userCode || err.name === 'NoCodeError')) msg = 'The code you entered is incorrect. Try again.';
        else if (err && err.name === 'AbortedError') msg = 'The sign-in request was interrupted.';
        else if (err) msg = 'There was an error processing your request.';
        const labelled = form.replace('name="user_code"', 'id="user_code" name="user_code"');
        ctx.body = page('Device sign-in', `<p${err ? ' class="error" role="alert"' : ''}>${esc(msg)}</p>
<label for="user_code">Code</label>
${labelled}
<button type="submit" form="op.deviceInputForm">Continue</button>`);
      },
      async userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
        ctx.body = page('Confirm device', `<p><strong>${esc(client.clientName || client.clientId)}</strong> asks to sign in.
The code on your device should be <code>${esc(userCode)}</code>.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">Abort</button>`);
      },
      async successSource(ctx) {
        ctx.body = page('Device signed in', '<p>Sign-in successful. You can close this page.</p>');
      },
    },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        const auto = config.logout_prompt ? '' : `<script>document.getElementById('logout-yes').click()</script>`;
        ctx.body = page('Sign out', `<p>Sign out from the test OpenID provider?</p>
${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>
${auto}`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p>You are signed out.</p>');
      },
    },
    revocation: { enabled: true },
    introspection: { enabled: true },
    ...(resourceConfig ? { resourceIndicators: resourceConfig.resourceIndicators } : {}),
  },
  ...(resourceConfig ? { extraTokenClaims: resourceConfig.extraTokenClaims } : {}),
  ttl: {
    AccessToken: ttl(config.access_token_ttl, 3600),
    IdToken: ttl(config.id_token_ttl, 3600),
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    Interaction: 3600,
    RefreshToken: ttl(config.refresh_token_ttl, 14 * 24 * 3600),
    Session: 14 * 24 * 3600,
    ClientCredentials: 600,
    BackchannelAuthenticationRequest: 600,
    PreAuthorizedCode: 600,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', Object.entries(out)
      .map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join('\n'));
  },
});

// Consent without asking: grant what the request is missing (the oidc-provider docs' way of
// skipping the consent prompt for first-party clients).
async function grantConsent(details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

const INTERACTION = /^\/interaction\/([^/]+)(\/login)?$/;

provider.use(async (ctx, next) => {
  const m = INTERACTION.exec(ctx.path);
  if (!m) return next();
  ctx.set('cache-control', 'no-store');
  const [, uid, login] = m;
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
    const clientId = details.params.client_id;

    if (!login && ctx.method === 'GET') {
      if (details.prompt.name === 'login') {
        ctx.type = 'html';
        ctx.body = loginPage(uid, { clientId });
        return undefined;
      }
      const result = await grantConsent(details);
      ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true }));
      return undefined;
    }

    if (login && ctx.method === 'POST') {
      const form = await readForm(ctx.req);
      const mfa = form.has('mfa');
      const account = lookup(form.get('login'));
      if (!account) {
        ctx.status = 200;
        ctx.type = 'html';
        ctx.body = loginPage(uid, {
          login: form.get('login') || '', mfa, clientId, error: 'Unknown username.',
        });
        return undefined;
      }
      const result = {
        login: {
          accountId: account.sub,
          amr: mfa ? ['pwd', 'mfa'] : ['pwd'],
          acr: mfa ? ACR_MFA : ACR_PWD,
        },
      };
      ctx.status = 303;
      ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
      return undefined;
    }
    ctx.status = 405;
    ctx.body = 'method not allowed';
    return undefined;
  } catch (err) {
    console.error(`interaction ${uid}: ${err.name}: ${err.message}`);
    ctx.status = err.statusCode || 400;
    ctx.type = 'html';
    ctx.body = page('Error', `<p class="error" role="alert">${esc(err.error || err.name)}: ${esc(err.error_description || err.message)}</p>`);
    return undefined;
  }
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

listener.on('request', provider.callback());

process.stdout.write(`READY ${issuer}\n`);

function shutdown() {
  listener.close();
  listener.closeAllConnections?.();
  process.exit(0);
}
if (process.env.ROLEGATE_OIDC_IGNORE_STDIN !== '1') {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
