"""Helpers for the portal's browser tests: Playwright (Python, sync API, pinned in
requirements.txt) driving Debian's Chromium, and axe-core (npm, pinned in node/package.json).

    from playwright.sync_api import sync_playwright
    import browser

    with sync_playwright() as pw:
        b = browser.launch(pw)
        ctx = browser.new_context(b, dark=True)
        page = ctx.new_page()
        page.goto(origin + "/ui/")
        browser.check_axe(page, "my roles, dark")
        browser.screenshot(page, "docs/img/my-roles-dark.png")

Never downloads a browser: the executable is /usr/bin/chromium (env ROLEGATE_CHROMIUM
overrides); .ci/run installs Debian's `chromium`. axe-core comes from
tests/portal/node/node_modules (env ROLEGATE_PORTAL_NODE overrides the node/ folder).
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.environ.get("ROLEGATE_PORTAL_NODE") or os.path.join(HERE, "node")
AXE_JS = os.path.join(NODE_DIR, "node_modules", "axe-core", "axe.min.js")

# As root in a container Chromium's sandbox cannot start (--no-sandbox); the machine has no
# network but the loopback, so every background connection of Chromium's own is turned off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
]

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

VIEWPORT = {"width": 1280, "height": 800}


def chromium_path():
    """The Chromium executable: $ROLEGATE_CHROMIUM, else /usr/bin/chromium."""
    return os.environ.get("ROLEGATE_CHROMIUM") or "/usr/bin/chromium"


def available():
    """None when a browser test can run here, else a reason to skip it."""
    exe = chromium_path()
    if not os.access(exe, os.X_OK):
        return f"no Chromium at {exe} (install Debian's chromium, or set ROLEGATE_CHROMIUM)"
    if not os.path.isfile(AXE_JS):
        return f"no {AXE_JS} (run npm ci in {NODE_DIR})"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (tests/portal/requirements.txt)"
    return None


def launch(playwright, **kwargs):
    """A headless Chromium (Debian's, never a downloaded one), usable as root."""
    args = CHROMIUM_ARGS + list(kwargs.pop("args", []))
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=kwargs.pop("headless", True),
        args=args,
        **kwargs,
    )


def new_context(browser, dark=False, viewport=None, **kwargs):
    """A fresh context (its own cookies): light or dark colour scheme, a fixed viewport, and
    bypass_csp so that check_axe can inject axe-core despite the page's strict CSP."""
    return browser.new_context(
        bypass_csp=True,
        color_scheme="dark" if dark else "light",
        viewport=viewport or VIEWPORT,
        locale=kwargs.pop("locale", "en-US"),
        timezone_id=kwargs.pop("timezone_id", "UTC"),
        **kwargs,
    )


def axe_results(page, tags=None, disable_rules=None):
    """Runs axe-core on the page as it is now; returns its results object."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # An inline <script>: allowed under the page's CSP only thanks to bypass_csp=True.
        page.add_script_tag(path=AXE_JS)
    options = {"runOnly": {"type": "tag", "values": list(tags or AXE_TAGS)}, "resultTypes": ["violations"]}
    if disable_rules:
        options["rules"] = {rule: {"enabled": False} for rule in disable_rules}
    return page.evaluate(
        "async (options) => await window.axe.run(document, options)",
        options,
    )


def format_violations(violations):
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v.get('impact') or 'n/a'}): {v['help']}  <{v.get('helpUrl', '')}>")
        for node in v.get("nodes", []):
            target = " ".join(json.dumps(t) if not isinstance(t, str) else t for t in node.get("target", []))
            lines.append(f"    at {target}")
            summary = (node.get("failureSummary") or "").strip().replace("\n", "\n       ")
            if summary:
                lines.append(f"       {summary}")
            html = (node.get("html") or "").strip()
            if html:
                lines.append(f"       {html[:200]}")
    return "\n".join(lines)


def check_axe(page, label, tags=None, disable_rules=None):
    """Raises AssertionError listing every WCAG 2.1 A/AA violation axe-core finds on the page
    (rule id, help text, target nodes); returns the results when there is none."""
    results = axe_results(page, tags=tags, disable_rules=disable_rules)
    violations = results.get("violations", [])
    if violations:
        raise AssertionError(
            f"axe-core: {len(violations)} WCAG violation(s) on {label} ({page.url}):\n"
            + format_violations(violations)
        )
    return results


def screenshot(page, path, full_page=True):
    """A PNG of the page at path (folders made as needed)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    page.screenshot(path=path, full_page=full_page, animations="disabled")
    return path
