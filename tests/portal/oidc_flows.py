#!/usr/bin/env python3
"""The portal's OpenID sign-in in a real browser, against a real OpenID provider
(tests/portal/oidc_provider.mjs, the npm package oidc-provider) and a Rolegate server
configured with --oidc-client-id: the authorization code flow with PKCE, state bound to
the browser, MFA step-up with the activation form's inputs kept, RP-initiated sign-out,
and a forged callback. Run by crates/rolegate/tests/it/portal_oidc.rs:

    python tests/portal/oidc_flows.py ORIGIN FIXTURE.json

FIXTURE: {"issuer": ..., "user": "alice-oidc", "display_name": "Alice Oidc",
          "role": "Contributor", "resource": "...", "eligible_id": ...}
Prints one line per check; exits 1 on the first failure.
"""

import json
import re
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
from playwright.sync_api import sync_playwright, expect  # noqa: E402


def check(what, ok, detail=""):
    if not ok:
        print(f"FAIL {what}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {what}", flush=True)


def provider_login(page, issuer, user, mfa):
    page.wait_for_url(re.compile("^" + re.escape(issuer) + "/interaction/"))
    page.get_by_label("Username").fill(user)
    if mfa:
        page.get_by_label("Use MFA").check()
    page.get_by_role("button", name="Sign in").click()


def main():
    origin, fixture_path = sys.argv[1], sys.argv[2]
    fx = json.load(open(fixture_path))
    issuer = fx["issuer"]
    with sync_playwright() as pw:
        b = browser.launch(pw)
        ctx = browser.new_context(b)
        page = ctx.new_page()

        # An anonymous visit goes to the issuer and comes back to the page asked for.
        page.goto(origin + "/ui/requests")
        check("an anonymous visit is sent to the provider", page.url.startswith(issuer), page.url)
        provider_login(page, issuer, fx["user"], mfa=False)
        page.wait_for_url(origin + "/ui/requests")
        check("signed in, back on the page asked for", page.url == origin + "/ui/requests", page.url)
        expect(page.get_by_role("heading", name="My requests", level=1)).to_be_visible()
        check("the header names the signed-in person", page.get_by_text(fx["display_name"]).count() > 0)
        browser.check_axe(page, "my requests after OIDC sign-in")

        # The session cookie is the contract's.
        cookie = next(c for c in ctx.cookies() if c["name"] == "rolegate_session")
        check("session cookie HttpOnly, SameSite=Lax, Path=/ui",
              cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui", cookie)

        # Activation needs MFA; the sign-in had none: step up, inputs kept.
        page.goto(origin + "/ui/activate/" + fx["eligible_id"])
        expect(page.get_by_role("heading", name="Activate " + fx["role"])).to_be_visible()
        check("the form says MFA is required", page.get_by_text("Multi-factor authentication is required").count() == 1)
        page.get_by_label("Hours").fill("3")
        page.get_by_label("Minutes").fill("15")
        page.get_by_label("Reason").fill("Rotate the storage keys")
        page.get_by_role("button", name="Sign in again with multi-factor authentication").click()
        provider_login(page, issuer, fx["user"], mfa=True)
        page.wait_for_url(re.compile(re.escape(origin + "/ui/activate/" + fx["eligible_id"])))
        check("back on the activation form", True)
        check("hours kept", page.get_by_label("Hours").input_value() == "3", page.get_by_label("Hours").input_value())
        check("minutes kept", page.get_by_label("Minutes").input_value() == "15")
        check("reason kept", page.get_by_label("Reason").input_value() == "Rotate the storage keys")
        check("MFA now satisfied", page.get_by_text("your sign-in used it").count() == 1, page.content()[:2000])
        page.get_by_role("button", name="Activate", exact=True).click()
        page.wait_for_url(re.compile(re.escape(origin) + "/ui/requests/[^?]+\\?done=submitted"))
        expect(page.get_by_role("status")).to_have_text("Request submitted.")
        check("activation submitted after step-up", True)
        request_id = page.url.split("/ui/requests/")[1].split("?")[0]

        # A forged callback: the state is not this browser's.
        page.goto(origin + "/ui/auth/callback?code=forged&state=forged")
        expect(page.get_by_role("alert")).to_contain_text("Sign-in failed: ")
        check("a forged state ends on the sign-in page with an alert", True)
        browser.check_axe(page, "sign-in failure")
        # Sign out: the session ends here and at the provider.
        page.goto(origin + "/ui/")
        old = next(c for c in ctx.cookies() if c["name"] == "rolegate_session")
        page.get_by_role("button", name="Sign out").click()
        # The provider ends its session and returns to {public-url}/ui/, which, signed out
        # everywhere, asks the provider again: its login form, not a silent sign-in.
        page.wait_for_url(re.compile("^" + re.escape(issuer) + "/interaction/"))
        check("signed out here and at the provider: the login form again", True)
        ctx2 = browser.new_context(b)
        ctx2.add_cookies([old])
        p2 = ctx2.new_page()
        p2.goto(origin + "/ui/")
        check("the old session cookie is refused", p2.url.startswith(issuer), p2.url)
        ctx2.close()
        ctx.close()
        b.close()
    print(json.dumps({"request_id": request_id}))


if __name__ == "__main__":
    main()
