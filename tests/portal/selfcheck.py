#!/usr/bin/env python3
"""Proves the portal's browser-test harness works end to end, without Rolegate:

* tests/portal/oidc_provider.mjs starts (a real `oidc-provider`) with a temporary config;
* Playwright drives Debian's Chromium through its login page: authorization code + PKCE,
  "Username" = alice, "Use MFA", "Sign in", back on a local redirect URI with a `code`;
* the code is exchanged at the token endpoint; the ID token's signature (RS256, from the
  JWKS), aud, nonce, amr and acr are checked; the refresh token is used;
* single sign-on, `prompt=login`/`max_age=0` (the login form again), RP-initiated logout and
  the device flow (user code page, same login) behave as the portal and the CLI expect;
* check_axe passes on a trivial page served with a strict CSP, in light and dark, and fails
  with a readable list on a page with known violations.

Usage (the venv of .ci/run, with tests/portal/requirements.txt installed):
    /var/tmp/rolegate-venv/bin/python tests/portal/selfcheck.py [--screenshots DIR] [--issuer-host localhost]

--issuer-host localhost names the provider http://localhost:PORT, another site than the
relying party on 127.0.0.1 (as in production, where they are on different hosts).

Prints one line per check and ends with `selfcheck: N passed, 0 failed`; exits 1 on the
first failure.
"""

import base64
import hashlib
import http.server
import json
import os
import secrets
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import browser  # noqa: E402

CLIENT_ID = "rolegate"
CLIENT_SECRET = "selfcheck-secret"
CLI_CLIENT_ID = "rolegate-cli"
PUBLIC_CLIENT_ID = "rolegate-public"

passed = 0


def ok(name):
    global passed
    passed += 1
    print(f"ok   {name}", flush=True)


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}" if detail else name)
    ok(name)


# ---- a local "relying party": the redirect URI and two pages for axe ---------------------------

GOOD_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Harness check</title>
<link rel="stylesheet" href="/style.css"></head>
<body><header><a href="#main">Skip to content</a></header>
<main id="main"><h1>Harness check</h1>
<form method="post" action="/cb"><label for="why">Justification</label>
<input id="why" name="why" type="text"><button type="submit">Activate</button></form>
<table><caption>Eligible roles</caption><thead><tr><th scope="col">Role</th></tr></thead>
<tbody><tr><td>Contributor</td></tr></tbody></table></main></body></html>"""

STYLE = """body{font-family:sans-serif;color:#111;background:#fff}
@media (prefers-color-scheme: dark){body{color:#eee;background:#111}a{color:#9cf}}"""

BAD_PAGE = """<!DOCTYPE html><html><head><title>Bad</title></head><body>
<img src="/x.png"><input type="text"><p style="color:#777;background:#888">low contrast</p>
</body></html>"""

# As strict as the portal's: no inline script, no eval; axe gets in through bypass_csp.
CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"


class RP(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="text/html; charset=utf-8"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/good":
            self.send(200, GOOD_PAGE)
        elif path == "/style.css":
            self.send(200, STYLE, "text/css")
        elif path == "/bad":
            self.send(200, BAD_PAGE)
        elif path in ("/cb", "/"):
            self.send(200, '<!DOCTYPE html><html lang="en"><head><title>RP</title></head>'
                      '<body><main><h1>Relying party</h1></main></body></html>')
        else:
            self.send(404, "not found", "text/plain")


def start_rp():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ---- the OpenID provider --------------------------------------------------------------------


def start_provider(config, workdir):
    path = os.path.join(workdir, "oidc.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(workdir, "oidc.log"), "w")
    proc = subprocess.Popen(
        ["node", os.path.join(HERE, "oidc_provider.mjs"), path, "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    # READY comes within about a second; never wait for ever on a provider that hangs.
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("READY "):
        proc.kill()
        log.close()
        raise AssertionError(f"oidc_provider.mjs did not start: {line!r}\n" + open(log.name).read())
    return proc, line.split(" ", 1)[1]


# ---- small OAuth helpers --------------------------------------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    header, payload, sig = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), f"{header}.{payload}", b64url_decode(sig)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def post_form(url, fields, basic=None):
    req = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if basic:
        cred = base64.b64encode(f"{urllib.parse.quote(basic[0])}:{urllib.parse.quote(basic[1])}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def verify_rs256(signing_input, sig, jwks, kid):
    """Checks the signature with `cryptography` when the venv has it (azure-identity brings it)."""
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        return None
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    n = int.from_bytes(b64url_decode(key["n"]), "big")
    e = int.from_bytes(b64url_decode(key["e"]), "big")
    rsa.RSAPublicNumbers(e, n).public_key().verify(sig, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return True


def authorize_url(disc, redirect_uri, extra=None):
    verifier = b64url(secrets.token_bytes(32))
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": "openid profile email",
        "state": state,
        "nonce": nonce,
        "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    for k, v in (extra or {}).items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return disc["authorization_endpoint"] + "?" + urllib.parse.urlencode(params), verifier, state, nonce


def code_from(url, state):
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    if q.get("state") != state:
        raise AssertionError(f"state mismatch in {url}")
    if "code" not in q:
        raise AssertionError(f"no code in {url}")
    return q


def exchange(disc, code, verifier, redirect_uri):
    return post_form(disc["token_endpoint"], {
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
        "redirect_uri": redirect_uri,
    }, basic=(CLIENT_ID, CLIENT_SECRET))


def sign_in(page, username, mfa):
    page.get_by_label("Username").fill(username)
    if mfa:
        page.get_by_label("Use MFA").check()
    page.get_by_role("button", name="Sign in").click()


# ---- the checks --------------------------------------------------------------------------------


def main():
    shots, host = None, "127.0.0.1"
    args = sys.argv[1:]
    while args:
        opt = args.pop(0)
        if opt == "--screenshots" and args:
            shots = args.pop(0)
        elif opt == "--issuer-host" and args:
            host = args.pop(0)
        else:
            raise AssertionError(f"usage: selfcheck.py [--screenshots DIR] [--issuer-host localhost]; got {opt!r}")
    reason = browser.available()
    if reason:
        raise AssertionError(reason)

    from playwright.sync_api import sync_playwright

    workdir = tempfile.mkdtemp(prefix="rolegate-portal-selfcheck-")
    rp, rp_origin = start_rp()
    redirect_uri = rp_origin + "/cb"
    config = {
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [rp_origin + "/"],
                "grant_types": ["authorization_code", "refresh_token"],
            },
            {
                "client_id": PUBLIC_CLIENT_ID,
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [rp_origin + "/"],
            },
            {
                "client_id": CLI_CLIENT_ID,
                "redirect_uris": ["http://127.0.0.1/cb"],
                "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            },
        ],
        "accounts": [
            {"sub": "alice", "name": "Alice Example", "email": "alice@example.com",
             "oid": "11111111-1111-4111-8111-111111111111"},
        ],
        "access_token_ttl": 600,
        "id_token_ttl": 600,
        "host": host,
    }
    t0 = time.monotonic()
    provider, issuer = start_provider(config, workdir)
    try:
        ok(f"provider ready at {issuer} in {time.monotonic() - t0:.1f}s")
        disc = get_json(issuer + "/.well-known/openid-configuration")
        check("discovery: issuer", disc["issuer"] == issuer, disc["issuer"])
        check("discovery: end_session_endpoint", disc.get("end_session_endpoint") == issuer + "/session/end")
        check("discovery: S256 only", disc.get("code_challenge_methods_supported") == ["S256"])
        check("discovery: device flow", disc.get("device_authorization_endpoint") == issuer + "/device/auth")
        check("discovery: acr values", disc.get("acr_values_supported") == ["urn:rolegate:pwd", "urn:rolegate:mfa"])
        jwks = get_json(disc["jwks_uri"])

        # PKCE is required, even for the confidential client.
        status, err = post_form(disc["token_endpoint"], {"grant_type": "authorization_code", "code": "x",
                                                         "redirect_uri": redirect_uri},
                                basic=(CLIENT_ID, CLIENT_SECRET))
        check("token endpoint refuses a bogus code", status == 400 and err.get("error") == "invalid_grant", err)

        with sync_playwright() as pw:
            b = browser.launch(pw)
            ctx = browser.new_context(b)
            ctx.set_default_timeout(15000)
            page = ctx.new_page()

            url, _, _, _ = authorize_url(disc, redirect_uri, {"code_challenge": None, "code_challenge_method": None})
            page.goto(url)
            err = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))
            check("authorize without code_challenge is refused",
                  err.get("error") == "invalid_request" and "PKCE" in err.get("error_description", ""), page.url)

            # 1. Authorization code + PKCE, an unknown user first, then alice with MFA.
            url, verifier, state, nonce = authorize_url(disc, redirect_uri, {"acr_values": "urn:rolegate:mfa"})
            page.goto(url)
            page.get_by_label("Username").wait_for()
            ok("login page shown")
            browser.check_axe(page, "provider login page")
            ok("axe: provider login page")
            if shots:
                browser.screenshot(page, os.path.join(shots, "oidc-login.png"))
            sign_in(page, "mallory", mfa=False)
            alert = page.get_by_role("alert")
            check("unknown username: the form again, with an error",
                  alert.inner_text().strip() == "Unknown username." and page.get_by_label("Username").is_visible())
            sign_in(page, "alice", mfa=True)
            page.wait_for_url(redirect_uri + "?*")
            q = code_from(page.url, state)
            check("redirected back with code and iss", q.get("iss") == issuer, q)

            status, tokens = exchange(disc, q["code"], verifier, redirect_uri)
            check("code exchanged", status == 200 and "id_token" in tokens, tokens)
            header, claims, signing_input, sig = jwt_parts(tokens["id_token"])
            check("ID token RS256", header["alg"] == "RS256" and header.get("kid"), header)
            verified = verify_rs256(signing_input, sig, jwks, header["kid"])
            check("ID token signature", verified is not False, "bad signature")
            print(f"     id_token: {json.dumps(claims, sort_keys=True)}", flush=True)
            check("aud is the client id", claims["aud"] == CLIENT_ID, claims["aud"])
            check("iss, sub, nonce", (claims["iss"], claims["sub"], claims["nonce"]) == (issuer, "alice", nonce))
            check("amr contains mfa", "mfa" in claims.get("amr", []), claims.get("amr"))
            check("acr is urn:rolegate:mfa", claims.get("acr") == "urn:rolegate:mfa", claims.get("acr"))
            check("profile/email/extra claims",
                  (claims.get("name"), claims.get("email"), claims.get("preferred_username"), claims.get("oid"))
                  == ("Alice Example", "alice@example.com", "alice", "11111111-1111-4111-8111-111111111111"), claims)
            check("refresh token issued", "refresh_token" in tokens, sorted(tokens))
            status, refreshed = post_form(disc["token_endpoint"], {
                "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, basic=(CLIENT_ID, CLIENT_SECRET))
            check("refresh_token grant", status == 200 and "access_token" in refreshed, refreshed)
            status, replay = exchange(disc, q["code"], verifier, redirect_uri)
            check("a code is single-use", status == 400, replay)

            # 2. Single sign-on: a second authorization request goes straight back.
            url, verifier2, state2, _ = authorize_url(disc, redirect_uri)
            page.goto(url)
            page.wait_for_url(redirect_uri + "?*")
            q2 = code_from(page.url, state2)
            ok("existing session: no login form")
            _, t2 = exchange(disc, q2["code"], verifier2, redirect_uri)
            c2 = jwt_parts(t2["id_token"])[1]
            check("SSO keeps amr/acr of the session", c2.get("amr") == ["pwd", "mfa"], c2.get("amr"))

            # A public client (no secret: token_endpoint_auth_method none) in the same session.
            url, verifier_p, state_p, _ = authorize_url(disc, redirect_uri, {"client_id": PUBLIC_CLIENT_ID})
            page.goto(url)
            page.wait_for_url(redirect_uri + "?*")
            status, tp = post_form(disc["token_endpoint"], {
                "grant_type": "authorization_code", "code": code_from(page.url, state_p)["code"],
                "code_verifier": verifier_p, "redirect_uri": redirect_uri, "client_id": PUBLIC_CLIENT_ID})
            check("public client: code + PKCE exchanged without a secret, aud = its id",
                  status == 200 and jwt_parts(tp["id_token"])[1]["aud"] == PUBLIC_CLIENT_ID, tp)

            # 3. Step-up: prompt=login and max_age=0 show the login form again.
            url, verifier3, state3, _ = authorize_url(disc, redirect_uri, {"prompt": "login", "max_age": "0"})
            page.goto(url)
            page.get_by_label("Username").wait_for()
            ok("prompt=login, max_age=0: login form again")
            sign_in(page, "alice", mfa=False)
            page.wait_for_url(redirect_uri + "?*")
            _, t3 = exchange(disc, code_from(page.url, state3)["code"], verifier3, redirect_uri)
            c3 = jwt_parts(t3["id_token"])[1]
            check("without MFA: amr [pwd], acr urn:rolegate:pwd",
                  (c3.get("amr"), c3.get("acr")) == (["pwd"], "urn:rolegate:pwd"), c3)
            check("auth_time is fresh", c3["auth_time"] >= claims["auth_time"], c3)

            # 4. RP-initiated logout: back to post_logout_redirect_uri, the OP session gone.
            page.goto(disc["end_session_endpoint"] + "?" + urllib.parse.urlencode({
                "id_token_hint": t3["id_token"], "post_logout_redirect_uri": rp_origin + "/",
                "state": "bye"}))
            page.wait_for_url(rp_origin + "/?*")
            check("logout: back at post_logout_redirect_uri with state",
                  dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query)).get("state") == "bye", page.url)
            url, _, _, _ = authorize_url(disc, redirect_uri)
            page.goto(url)
            page.get_by_label("Username").wait_for()
            ok("after logout: login form again")

            # 5. Device flow (for the CLI): user code page, then the same login.
            status, dev = post_form(disc["device_authorization_endpoint"], {
                "client_id": CLI_CLIENT_ID, "scope": "openid profile offline_access"})
            check("device authorization", status == 200 and "user_code" in dev, dev)
            status, pending = post_form(disc["token_endpoint"], {
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": dev["device_code"], "client_id": CLI_CLIENT_ID})
            check("device token: authorization_pending", pending.get("error") == "authorization_pending", pending)
            dpage = ctx.new_page()
            dpage.goto(dev["verification_uri"])
            dpage.get_by_label("Code").fill(dev["user_code"])
            dpage.get_by_role("button", name="Continue").click()
            dpage.get_by_role("heading", name="Confirm device").wait_for()
            dpage.get_by_role("button", name="Continue").click()
            dpage.get_by_label("Username").wait_for()
            sign_in(dpage, "alice", mfa=True)
            dpage.get_by_role("heading", name="Device signed in").wait_for()
            ok("device flow: user code, login, success page")
            status, dtok = post_form(disc["token_endpoint"], {
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": dev["device_code"], "client_id": CLI_CLIENT_ID})
            dclaims = jwt_parts(dtok["id_token"])[1] if status == 200 else {}
            check("device token issued with amr mfa and a refresh token",
                  status == 200 and "mfa" in dclaims.get("amr", []) and "refresh_token" in dtok, dtok)

            # 6. axe-core on a trivial page under a strict CSP, light and dark; and on a bad one.
            for dark in (False, True):
                c = browser.new_context(b, dark=dark)
                p = c.new_page()
                p.goto(rp_origin + "/good")
                scheme = "dark" if dark else "light"
                check(f"page is {scheme}",
                      p.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == dark)
                browser.check_axe(p, f"trivial page, {scheme}")
                ok(f"axe: trivial page with strict CSP, {scheme}: no violation")
                if shots:
                    browser.screenshot(p, os.path.join(shots, f"trivial-{scheme}.png"))
                c.close()
            c = browser.new_context(b)
            p = c.new_page()
            p.goto(rp_origin + "/bad")
            try:
                browser.check_axe(p, "bad page")
                raise AssertionError("check_axe passed a page with known violations")
            except AssertionError as e:
                msg = str(e)
                if "image-alt" not in msg or "color-contrast" not in msg:
                    raise
                print("     " + msg.replace("\n", "\n     ")[:1500], flush=True)
                ok("axe: violations on the bad page reported (image-alt, color-contrast, ...)")
            c.close()
            b.close()
    finally:
        provider.stdin.close()  # the provider exits when its stdin closes
        try:
            provider.wait(timeout=10)
        except subprocess.TimeoutExpired:
            provider.kill()
            raise AssertionError("the provider did not exit when its stdin closed")
        rp.shutdown()
    ok("provider exited when its stdin closed")
    print(f"selfcheck: {passed} passed, 0 failed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL {e}", flush=True)
        print(f"selfcheck: {passed} passed, 1 failed", flush=True)
        sys.exit(1)
