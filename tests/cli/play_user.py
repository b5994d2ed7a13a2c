#!/usr/bin/env python3
"""The person at the browser for `rolegate login`: opens the URL the CLI printed in a real
browser (Debian's Chromium through Playwright, tests/portal/browser.py) and signs in at the
test OpenID provider (tests/portal/oidc_provider.mjs, the npm package oidc-provider). Run by
the CLI's Rust tests, which start `rolegate login` as a subprocess and hand this script the
URL it printed:

    python tests/cli/play_user.py device URL USER [--mfa] [--abort] [--code CODE]
    python tests/cli/play_user.py browser URL USER [--mfa]

device: the Device Authorization Grant (RFC 8628). URL is the verification_uri_complete
(the user code already in it) or the verification_uri (then --code CODE is typed into the
"Code" field). Confirms the device with "Continue" (--abort: "Abort", after which the CLI's
polling gets access_denied) and signs in as USER ("Username", "Use MFA" with --mfa,
"Sign in"), in whichever order the provider asks; ends on its "Sign-in successful" page
(--abort: "The sign-in request was interrupted.").

browser: the authorization code flow with PKCE and a loopback redirect (RFC 8252). URL is
the authorization URL; signs in as USER and waits until the browser lands on the CLI's
listener, http://127.0.0.1:PORT/callback?code=... (or localhost / [::1]), showing
"Signed in to Rolegate".

Each step waits at most 30 s. Prints one line per step (`ok   ...` or `FAIL ...: detail`);
exits 0 when all passed, 1 on the first failure, 2 on bad arguments.
"""

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "portal"))
import browser  # noqa: E402
from playwright.sync_api import Error as PlaywrightError, sync_playwright  # noqa: E402

STEP_TIMEOUT_MS = 30_000
CALLBACK = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\]):\d+/callback([?#]|$)")

# The provider's pages, by their <h1> (tests/portal/oidc_provider.mjs).
LOGIN = "Sign in"
CODE_INPUT = "Device sign-in"
CONFIRM = "Confirm device"
DEVICE_DONE = "Device signed in"
ERROR = "Error"
STATES = (LOGIN, CODE_INPUT, CONFIRM, DEVICE_DONE, ERROR)


class Failure(Exception):
    pass


def ok(what):
    print(f"ok   {what}", flush=True)


def fail(what, detail=""):
    raise Failure(f"{what}: {detail}" if detail else what)


def one_line(text, limit=300):
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def body_text(page):
    try:
        return one_line(page.locator("body").inner_text(timeout=2000))
    except PlaywrightError:
        return "(no page text)"


def alert_text(page):
    alerts = page.get_by_role("alert")
    try:
        if alerts.count():
            return one_line(alerts.first.inner_text(timeout=2000))
    except PlaywrightError:
        pass
    return ""


def wait_state(page, what, seen=None):
    """Waits for one of the provider's pages (by its <h1>), else a loopback callback; a page
    already handled (`seen`: (state, url, alert)) counts only once it has changed. Returns the state
    name, "callback", or fails after STEP_TIMEOUT_MS."""
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    while True:
        url = page.url
        if CALLBACK.match(url):
            try:
                page.wait_for_load_state("domcontentloaded", timeout=STEP_TIMEOUT_MS)
            except PlaywrightError:
                pass
            return "callback"
        if url.startswith("chrome-error://"):
            fail(what, f"the browser could not load the page: {body_text(page)}")
        try:
            h1 = page.evaluate("() => { const h = document.querySelector('h1');"
                               " return document.readyState !== 'loading' && h ? h.textContent.trim() : null; }")
        except PlaywrightError:
            h1 = None  # navigating: the old page's context is gone
        if h1 in STATES and (h1, url, alert_text(page)) != seen:
            return h1
        if time.monotonic() > deadline:
            fail(what, f"timed out after {STEP_TIMEOUT_MS // 1000} s at {page.url} ({body_text(page)})")
        page.wait_for_timeout(100)


def snapshot(page, state):
    return (state, page.url, alert_text(page))


def sign_in(page, user, mfa):
    page.get_by_label("Username").fill(user)
    if mfa:
        page.get_by_label("Use MFA").check()
    page.get_by_role("button", name="Sign in").click()
    ok(f"sent the provider's login form as {user}" + (", Use MFA ticked" if mfa else ""))


def check_login_error(page, state, user):
    if state == LOGIN:
        err = alert_text(page)
        if err:
            fail(f"sign in as {user}", err)


def play_device(page, args):
    try:
        page.goto(args.url, timeout=STEP_TIMEOUT_MS)
    except PlaywrightError as e:
        fail(f"open {args.url}", one_line(str(e)))
    ok(f"opened {args.url}")

    typed_code = confirmed = signed_in = False
    seen = None
    while True:
        state = wait_state(page, "the next page of the device sign-in", seen)
        seen = snapshot(page, state)  # before acting: the next page may come at once
        if state == ERROR:
            fail("device sign-in", f"the provider shows an error at {page.url}: {body_text(page)}")
        if state == "callback":
            fail("device sign-in", f"unexpected redirect to {page.url}")
        if state == CODE_INPUT:
            err = alert_text(page)
            if args.abort and confirmed:
                if "interrupted" not in err:
                    fail("the provider's page after Abort", body_text(page))
                ok(f"the provider says: {err}")
                return
            if err:
                fail("device code", err)
            if typed_code:
                fail("device code", f"asked for the code again: {body_text(page)}")
            if not args.code:
                fail("device code", "the provider asks for the code: pass --code CODE (or the verification_uri_complete)")
            page.get_by_label("Code").fill(args.code)
            page.get_by_role("button", name="Continue").click()
            typed_code = True
            ok(f"typed the code {args.code}")
        elif state == CONFIRM:
            if confirmed:
                fail("confirm the device", "the confirm page came twice")
            if args.code:
                shown = page.locator("code").first.inner_text(timeout=STEP_TIMEOUT_MS).strip()
                if re.sub(r"[^A-Za-z0-9]", "", shown).upper() != re.sub(r"[^A-Za-z0-9]", "", args.code).upper():
                    fail("confirm the device", f"the page shows the code {shown!r}, not {args.code!r}")
            if args.abort:
                page.get_by_role("button", name="Abort").click()
                ok("aborted the device sign-in")
            else:
                page.get_by_role("button", name="Continue").click()
                ok("confirmed the device")
            confirmed = True
        elif state == LOGIN:
            check_login_error(page, state, args.user)
            if signed_in:
                fail("sign in", "the login page came twice")
            sign_in(page, args.user, args.mfa)
            signed_in = True
        elif state == DEVICE_DONE:
            if args.abort:
                fail("abort the device sign-in", f"the provider signed the device in: {body_text(page)}")
            if page.get_by_text("Sign-in successful").count() == 0:
                fail("the provider's final page", body_text(page))
            if not signed_in:
                ok("no login page (the browser was signed in already)")
            ok("the provider says: Sign-in successful")
            return


def play_browser(page, args):
    try:
        page.goto(args.url, timeout=STEP_TIMEOUT_MS)
    except PlaywrightError as e:
        fail(f"open {args.url}", one_line(str(e)))
    ok("opened the authorization URL")

    signed_in = False
    seen = None
    while True:
        state = wait_state(page, "the next page of the sign-in", seen)
        seen = snapshot(page, state)
        if state == ERROR:
            fail("sign-in", f"the provider shows an error at {page.url}: {body_text(page)}")
        if state in (CODE_INPUT, CONFIRM, DEVICE_DONE):
            fail("sign-in", f"a device flow page at {page.url}: {body_text(page)}")
        if state == LOGIN:
            check_login_error(page, state, args.user)
            if signed_in:
                fail("sign in", "the login page came twice")
            sign_in(page, args.user, args.mfa)
            signed_in = True
        elif state == "callback":
            break

    url = page.url
    query = url.split("?", 1)[1] if "?" in url else ""
    if re.search(r"(^|&)error=", query):
        fail("redirect to the CLI", f"the provider returned an error: {url}")
    if not re.search(r"(^|&)code=", query):
        fail("redirect to the CLI", f"no code in {url}")
    ok(f"redirected to the CLI's listener {url.split('?', 1)[0]}")
    try:
        page.get_by_text("Signed in to Rolegate").first.wait_for(timeout=STEP_TIMEOUT_MS)
    except PlaywrightError:
        fail("the CLI's page", f"no \"Signed in to Rolegate\" at {url.split('?', 1)[0]}: {body_text(page)}")
    ok("the CLI's page says: Signed in to Rolegate")


def parse_args(argv):
    p = argparse.ArgumentParser(description="Plays the user in the browser for `rolegate login`.")
    p.add_argument("mode", choices=["device", "browser"])
    p.add_argument("url")
    p.add_argument("user")
    p.add_argument("--mfa", action="store_true", help="tick \"Use MFA\" at the login page")
    p.add_argument("--abort", action="store_true", help="device: press \"Abort\" instead of \"Continue\"")
    p.add_argument("--code", help="device: the user code, when URL is the verification_uri")
    args = p.parse_args(argv)
    if args.mode == "browser" and (args.abort or args.code):
        p.error("--abort and --code are for the device mode")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    exe = browser.chromium_path()
    if not os.access(exe, os.X_OK):  # (browser.available() also wants axe-core: not needed here)
        print(f"FAIL browser: no Chromium at {exe} (install Debian's chromium, or set ROLEGATE_CHROMIUM)", flush=True)
        return 1
    try:
        with sync_playwright() as pw:
            b = browser.launch(pw)
            try:
                ctx = browser.new_context(b)
                page = ctx.new_page()
                page.set_default_timeout(STEP_TIMEOUT_MS)
                page.set_default_navigation_timeout(STEP_TIMEOUT_MS)
                if args.mode == "device":
                    play_device(page, args)
                else:
                    play_browser(page, args)
            finally:
                b.close()
    except Failure as f:
        print(f"FAIL {f}", flush=True)
        return 1
    except PlaywrightError as e:
        print(f"FAIL browser: {one_line(str(e), 600)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
