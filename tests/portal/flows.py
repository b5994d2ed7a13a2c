#!/usr/bin/env python3
"""The portal's main flows in a real browser (Debian's Chromium through Playwright, see
browser.py), each checked through the Graph API for exactly the effect expected.

    python tests/portal/flows.py ORIGIN FIXTURE.json [--screenshots DIR | --all-screenshots DIR]

ORIGIN is a running `rolegate serve --demo` on a fresh database (tests/portal/screenshots.sh
starts one); FIXTURE.json is {"tokens": {"alice", "bob", "dave", "carol", "admin"}}: API bearer
tokens of the demo's people (subjects alice, bob, dave, carol) and of its administrator.

Flows:
  a. Alice activates Contributor on Contoso Production with the keyboard only: an 8 h 30 min
     try refused by ExpirationRule (inputs kept, nothing created), then 2 hours; deactivates.
  b. Dave (one browser context) activates Owner on Contoso Development; Bob (another context,
     at the same time) approves it, refusing an empty justification first; Dave asks again
     and Bob denies.
  c. Dave cancels a pending request from My requests, after forged POSTs (a foreign Origin,
     a cross-site Sec-Fetch-Site, a wrong or missing CSRF token, a real form on another
     origin's page) were refused with 403 and changed nothing.
  d. Signing out: Back and reload land on sign-in, the old cookie is dead, signing in again
     returns to the page asked for; a failed sign-in shows its alert.
  e. axe-core (WCAG 2.1 A/AA) on every page visited, light and dark (the page is re-rendered
     in the other colour scheme in place), error pages included; a 375 px wide pass over My
     roles, Activate and Approvals with no horizontal scrolling of the page.
  f. Carol extends an eligibility that ends within 14 days and renews one that just expired;
     the administrator and Bob decide them.
  g. The administrator: the Resources tree and its search; registers a resource group under
     Contoso Development (a malformed ARM id refused in place first); on Contoso Production
     adds an eligible Reader for Carol found with "Find member", filters by member, downloads
     the CSV (the API's export, byte for byte), extends and removes the assignment; edits
     Contributor's role settings by keyboard only (every rule it does not show kept), a
     refused value shown next to its field; the audit log filtered, a record's page, Verify
     integrity, and both downloads against the API's records.
  h. Bob (R3 on Contoso Production only): the audit log of his resources without Verify
     integrity; on Contoso Development (readable once he is made eligible Reader) no change
     links, and its Add assignment and role settings pages answer "Access denied".
  i. Carol (no R3): no "Audit log" link; the audit log, registration, role settings and Add
     assignment answer "Access denied" (forged POSTs too, and change nothing).
  j. Every other flow by keyboard only (portal.md §6), in one browser context, each person
     signing in with a demo button and out with "Sign out" by Tab and Enter: Bob approves
     then (dark scheme) denies a request of Dave's made through the API; Dave deactivates
     through the confirmation page and cancels a pending request from My requests (Space);
     the administrator registers a resource group, adds an eligible Reader for Dave on
     Contoso Production (role chosen by typing, "Find member", the radio chosen with Space),
     removes it through its confirmation, filters the audit log (Result by ArrowDown) and
     verifies its integrity (Space); Carol asks to extend an eligibility ending within 14
     days (the date typed). After every key the focus must be on screen with its outline.

The flows run a, b, c, d, e (error pages), f, g, h, i, j, then e's 375 px pass. g restores
Contributor's rules on Contoso Production and removes what it assigned; h removes Bob's
Reader on Contoso Development again; j makes the requests it needs through the API and
withdraws or removes what it added (the resource group it registers stays).

With --screenshots DIR, full-page PNGs `{page}-{light|dark}.png` of the main pages (DOC_SHOTS)
are saved there; --all-screenshots DIR saves every page checked. Screenshots of failures go to
a temporary folder, named in the failure message.

Prints one line per check ("ok", "note" for what a person would notice but the contract does
not forbid, "FAIL"); exits 1 at the first failure, saying which page, what was expected and
what was found. A few checks whose failure leaves the flows able to go on (the 375 px layout,
the refusal page of a POST without a CSRF field, how a status or a name reads) print FAIL and
let the flows continue; the script then exits 1 at the end, listing them again.

Needs a fresh demo database (it checks that first). Takes about 70 s.
"""

import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import browser  # noqa: E402

PIM = "/beta/privilegedAccess/azureResources"
AUDIT = "/beta/auditLogs/directoryAudits"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
SCHEDULER = "rolegate-scheduler"  # initiatedBy.user.id of the scheduler's audit records
TIMEOUT_MS = 10_000
NARROW = {"width": 375, "height": 812}

# The pages docs/portal shows (--screenshots); --all-screenshots saves every page checked.
DOC_SHOTS = {
    "signin", "signin-failed", "my-roles", "my-roles-active", "my-roles-expiring", "activate",
    "activate-error", "activate-approval", "deactivate", "request", "request-approved", "my-requests",
    "approvals", "approve", "extend", "renew", "not-found", "access-denied", "my-roles-375",
    "activate-375", "approvals-375",
    "resources", "register", "register-error", "resource", "assign", "role-settings", "role-settings-error",
    "audit", "audit-record",
}

passed = 0
notes = []
deferred = []


# ---- reporting ---------------------------------------------------------------------------------


class Failure(AssertionError):
    pass


def ok(name):
    global passed
    passed += 1
    print(f"ok   {name}", flush=True)


def note(text):
    """Something a person would notice that the contract does not forbid: printed, counted,
    never a failure."""
    notes.append(text)
    print(f"note {text}", flush=True)


def check(name, cond, detail=""):
    if not cond:
        raise Failure(f"{name}: {detail}" if detail else name)
    ok(name)


def check_later(name, cond, detail=""):
    """A check whose failure does not stop the flows (the page still works, e.g. a layout
    defect or the wrong refusal page): printed now, and the script fails at the end."""
    if not cond:
        deferred.append(f"{name}: {detail}" if detail else name)
        print(f"FAIL {deferred[-1]} (continuing; the script fails at the end)", flush=True)
        return
    ok(name)


def page_text(page, limit=400):
    try:
        text = page.locator("body").inner_text(timeout=2000)
    except Exception:  # noqa: BLE001 - only for a failure message
        return "(page text unavailable)"
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def fail_on(page, what, expected, found=None):
    found = found if found is not None else f"the page says: {page_text(page)}"
    raise Failure(f"{what} — at {page.url}: expected {expected}; found {found}")


# ---- the Graph API -----------------------------------------------------------------------------


class Api:
    """GETs and POSTs to the API with the fixture's tokens."""

    def __init__(self, origin, tokens):
        self.origin = origin
        self.tokens = tokens

    def call(self, who, method, path, query=None, body=None):
        url = self.origin + path
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.tokens[who]}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def raw(self, who, path, query=None, accept="*/*"):
        """A GET whose body is kept as bytes: (status, headers, body)."""
        url = self.origin + path
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        req = urllib.request.Request(url, method="GET")
        req.add_header("Authorization", f"Bearer {self.tokens[who]}")
        req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, who, path, query=None):
        status, body = self.call(who, "GET", path, query)
        if status != 200:
            raise Failure(f"API GET {path} {query or ''} as {who}: expected 200, got {status} {body}")
        return body

    def list(self, who, path, query=None):
        """Every item of a collection, following @odata.nextLink."""
        query = dict(query or {})
        query.setdefault("$top", "999")
        body = self.get(who, path, query)
        items = list(body["value"])
        while body.get("@odata.nextLink"):
            nxt = urllib.parse.urlsplit(body["@odata.nextLink"])
            body = self.get(who, nxt.path, dict(urllib.parse.parse_qsl(nxt.query)))
            items.extend(body["value"])
        return items

    def request(self, who, request_id):
        return self.get(who, f"{PIM}/roleAssignmentRequests/{request_id}")

    def submit(self, who, body):
        status, out = self.call(who, "POST", f"{PIM}/roleAssignmentRequests", body=body)
        if status != 201:
            raise Failure(f"API POST roleAssignmentRequests as {who}: expected 201, got {status} {out}")
        return out


class Demo:
    """The ids of the demo tenant's people, resources and roles."""

    def __init__(self, api):
        def user(name):
            found = api.get("admin", "/scim/v2/Users", {"filter": f'userName eq "{name}@contoso.example"'})
            if found.get("totalResults") != 1:
                raise Failure(f"the demo user {name}@contoso.example is not in the directory: {found}")
            return found["Resources"][0]["id"]

        def resource(name):
            found = api.list("admin", f"{PIM}/resources", {"$filter": f"displayName eq '{name}'"})
            if len(found) != 1:
                raise Failure(f"the demo resource {name!r} is not registered once: {found}")
            return found[0]["id"]

        def role(resource_id, template):
            found = api.list("admin", f"{PIM}/roleDefinitions",
                             {"$filter": f"resourceId eq '{resource_id}' and templateId eq '{template}'"})
            return found[0]["id"]

        self.alice, self.bob, self.carol, self.dave = (user(n) for n in ("alice", "bob", "carol", "dave"))
        self.prod = resource("Contoso Production")
        self.dev = resource("Contoso Development")
        self.prod_contributor = role(self.prod, CONTRIBUTOR)
        self.dev_owner = role(self.dev, OWNER)
        self.dev_contributor = role(self.dev, CONTRIBUTOR)
        group = api.list("admin", f"{PIM}/roleAssignments",
                         {"$filter": f"resourceId eq '{self.dev}' and roleDefinitionId eq '{self.dev_owner}' "
                                     "and assignmentState eq 'Eligible'"})
        if len(group) != 1:
            raise Failure(f"Platform Engineers' eligible Owner on Contoso Development not found once: {group}")
        self.platform_dev_owner = group[0]["id"]
        self.contoso = resource("Contoso")
        self.prod_reader = role(self.prod, READER)
        self.dev_reader = role(self.dev, READER)
        self.dev_arm = api.get("admin", f"{PIM}/resources/{self.dev}")["externalId"]
        self.prod_arm = api.get("admin", f"{PIM}/resources/{self.prod}")["externalId"]


# ---- "exactly the effect expected": what changed in the tenant between two moments ------------


class World:
    """Every request, every current assignment, and the audit records from a moment on, as
    the administrator reads them."""

    def __init__(self, api):
        self.api = api
        self.requests = {r["id"]: r for r in api.list("admin", f"{PIM}/roleAssignmentRequests")}
        self.assignments = {a["id"]: a for a in api.list("admin", f"{PIM}/roleAssignments")}
        newest = api.get("admin", AUDIT, {"$top": "1"})["value"]
        self.since = newest[0]["activityDateTime"] if newest else "2000-01-01T00:00:00Z"
        self.audits = {a["id"] for a in self.audit_records()}

    def audit_records(self):
        return self.api.list("admin", AUDIT, {"$filter": f"activityDateTime ge {self.since}"})

    def changes(self):
        """What happened since this snapshot. Assignments that reached their scheduled end
        meanwhile, and the records the scheduler wrote about them, are the clock's doing, not
        the portal's, and are left out."""
        now = datetime.now(timezone.utc)
        later = World.__new__(World)
        later.requests = {r["id"]: r for r in self.api.list("admin", f"{PIM}/roleAssignmentRequests")}
        later.assignments = {a["id"]: a for a in self.api.list("admin", f"{PIM}/roleAssignments")}

        def ended(a):
            end = a.get("endDateTime")
            return end is not None and parse_time(end) <= now

        return Changes(
            new_requests=[r for i, r in later.requests.items() if i not in self.requests],
            changed_requests=[
                (self.requests[i], r) for i, r in later.requests.items()
                if i in self.requests and r["status"] != self.requests[i]["status"]
            ],
            new_assignments=[a for i, a in later.assignments.items() if i not in self.assignments],
            gone_assignments=[
                a for i, a in self.assignments.items() if i not in later.assignments and not ended(a)
            ],
            changed_assignments=[
                (a, later.assignments[i]) for i, a in self.assignments.items()
                if i in later.assignments and any(a.get(k) != later.assignments[i].get(k)
                                                  for k in ("startDateTime", "endDateTime", "status"))
            ],
            audits=[a for a in self.audit_records() if a["id"] not in self.audits
                    and ((a.get("initiatedBy") or {}).get("user") or {}).get("id") != SCHEDULER],
        )


class Changes:
    def __init__(self, new_requests, changed_requests, new_assignments, gone_assignments, changed_assignments,
                 audits):
        self.new_requests = new_requests
        self.changed_requests = changed_requests
        self.new_assignments = new_assignments
        self.gone_assignments = gone_assignments
        self.changed_assignments = changed_assignments
        self.audits = audits

    def summary(self):
        def req(r):
            return f"{r['type']}/{r['assignmentState']} {r['status']['subStatus']} ({r['id']})"

        def asg(a):
            return f"{a['assignmentState']} of {a['subjectId']} on {a['resourceId']} ({a['id']})"

        return (
            f"new requests {[req(r) for r in self.new_requests]}; "
            f"changed requests {[req(o) + ' -> ' + n['status']['subStatus'] for o, n in self.changed_requests]}; "
            f"new assignments {[asg(a) for a in self.new_assignments]}; "
            f"gone assignments {[asg(a) for a in self.gone_assignments]}; "
            f"changed assignments {[asg(a) + ' ends ' + str(n.get('endDateTime')) for a, n in self.changed_assignments]}; "
            f"audit records {[(a['activityDisplayName'], a['result']) for a in self.audits]}"
        )

    def expect(self, label, new_requests=0, changed_requests=0, new_assignments=0, gone_assignments=0,
               changed_assignments=0, audits=0):
        want = (new_requests, changed_requests, new_assignments, gone_assignments, changed_assignments, audits)
        got = (len(self.new_requests), len(self.changed_requests), len(self.new_assignments),
               len(self.gone_assignments), len(self.changed_assignments), len(self.audits))
        check(f"API: {label}", want == got,
              f"expected (new requests, changed requests, new assignments, gone assignments, changed "
              f"assignments, audit records) = {want}, found {got}: {self.summary()}")
        return self


def parse_time(s):
    s = s.replace("Z", "+00:00")
    # Python before 3.11 reads at most 6 fractional digits.
    s = re.sub(r"\.(\d{6})\d+", r".\1", s)
    return datetime.fromisoformat(s)


def detail(record, key):
    for d in record.get("additionalDetails", []):
        if d["key"] == key:
            return d["value"]
    return None


# ---- pages -------------------------------------------------------------------------------------


class Shots:
    """axe-core on every page shown, in both colour schemes, and the screenshots."""

    def __init__(self, folder, keys=None):
        self.folder = folder
        self.keys = keys
        self.saved = set()
        self.pages = []
        self.failures = None

    def save_failure(self, page, name):
        """A screenshot of a failed check, in a temporary folder (never among the docs')."""
        if self.failures is None:
            self.failures = tempfile.mkdtemp(prefix="rolegate-flows-failed-")
        return browser.screenshot(page, os.path.join(self.failures, name))

    def look(self, page, key, what, soft=False):
        """Checks the page as it is now: one <h1>, the title "… · Rolegate", and no axe-core
        violation in its own colour scheme and, re-rendered in place, in the other one.
        Saves `{key}-{scheme}.png` the first time `key` is seen. With `soft`, a violation
        is a check_later failure (the flows go on)."""
        title = page.title()
        check(f"{what}: title ends with ' · Rolegate'", title.endswith(" · Rolegate"), f"title {title!r} at {page.url}")
        h1 = page.locator("h1").count()
        check(f"{what}: one <h1>", h1 == 1, f"{h1} h1 elements at {page.url}")
        first = "dark" if page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") else "light"
        other = "light" if first == "dark" else "dark"
        for scheme in (first, other):
            page.emulate_media(color_scheme=scheme)
            try:
                browser.check_axe(page, f"{what} ({scheme})")
            except AssertionError as e:
                shot = self.save_failure(page, f"{key}-{scheme}.png")
                if not soft:
                    raise Failure(f"{e}\n(screenshot: {shot})") from None
                check_later(f"axe: {what}, {scheme}", False, f"{e}\n(screenshot: {shot})")
            else:
                ok(f"axe: {what}, {scheme}")
            if self.keys is None or key in self.keys:
                self.save(page, f"{key}-{scheme}.png")
        page.emulate_media(color_scheme=first)
        self.pages.append(what)

    def save(self, page, name):
        if not self.folder or name in self.saved:
            return None
        self.saved.add(name)
        # Long pages (the audit log's 50 rows) are pictured to a screen and a half.
        height = page.evaluate("document.documentElement.scrollHeight")
        if height > 1200:
            path = os.path.join(self.folder, name)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            width = page.viewport_size["width"] if page.viewport_size else 1280
            page.screenshot(path=path, clip={"x": 0, "y": 0, "width": width, "height": 1200},
                            full_page=True, animations="disabled")
            return path
        return browser.screenshot(page, os.path.join(self.folder, name))


def goto(page, url, what, status=200):
    resp = page.goto(url)
    if resp is None or resp.status != status:
        fail_on(page, f"GET {url} ({what})", f"status {status}",
                f"status {resp.status if resp else 'none'}; the page says: {page_text(page)}")
    return resp


def wait_url(page, pattern, what):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_url(pattern, timeout=TIMEOUT_MS)
    except PlaywrightTimeout:
        fail_on(page, what, f"to arrive at {pattern}")


def heading(page, name, what):
    h = page.get_by_role("heading", level=1)
    text = h.inner_text().strip() if h.count() == 1 else None
    if text != name:
        fail_on(page, what, f"the heading {name!r}", f"heading {text!r}; the page says: {page_text(page)}")


def message(page, role):
    """The text of the page's role=status or role=alert message, or None."""
    loc = page.locator(f'main [role="{role}"]')
    return loc.inner_text().strip() if loc.count() == 1 else None


def expect_message(page, role, text, what):
    found = message(page, role)
    if found != text:
        fail_on(page, what, f'role="{role}" saying {text!r}', f"{found!r}; the page says: {page_text(page)}")
    ok(f"{what}: {role} {text!r}")


def nav_link(page, name):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def table(page, caption):
    """The rows of the table captioned `caption`, as {column header: cell text} (the actions
    column is "Actions"); [] for a table with only its empty-state row."""
    t = page.get_by_role("table", name=caption, exact=True)
    if t.count() != 1:
        fail_on(page, "reading a table", f"one table captioned {caption!r}", f"{t.count()}")
    return t.evaluate(
        """t => {
            const heads = [...t.tHead.rows[0].cells].map(c => c.innerText.trim());
            return [...t.tBodies[0].rows]
              .filter(r => r.cells.length === heads.length)
              .map(r => Object.fromEntries([...r.cells].map((c, i) => [heads[i], c.innerText.replace(/\\s+/g, ' ').trim()])));
        }"""
    )


def row_where(rows, **want):
    return [r for r in rows if all(r.get(k, "").startswith(v) for k, v in want.items())]


def sign_in(page, origin, display_name, landing="/ui/"):
    """Signs in with the demo button "Sign in as {display_name}"."""
    goto(page, origin + landing, f"{landing} before signing in")
    wait_url(page, re.compile(r".*/ui/signin\?return=.*"), "an anonymous visit goes to sign-in")
    page.get_by_role("button", name=f"Sign in as {display_name}", exact=True).click()
    wait_url(page, origin + landing, f"signed in as {display_name}, back at {landing}")
    who = page.locator("header .user").inner_text().strip()
    check_later(f"signed in as {display_name}: the header shows the display name", who == display_name,
                f"the header names {who!r} at {page.url}")


def csrf_of(page):
    return page.locator('input[name="csrf"]').first.get_attribute("value")


def submit(page, act, fragment):
    """Does `act` (a key press or a click that submits a form) and waits for the page it
    leads to; returns the response to the POST whose URL contains `fragment` (its status,
    its request-id header)."""
    with page.expect_navigation(wait_until="load"):
        with page.expect_response(lambda r: r.request.method == "POST" and fragment in r.url) as posted:
            act()
    return posted.value


# ---- keyboard ----------------------------------------------------------------------------------

FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return {tag: 'body', name: '', id: ''};
  const s = getComputedStyle(el), r = el.getBoundingClientRect();
  const label = el.getAttribute('aria-label')
    || (el.labels && el.labels.length ? el.labels[0].innerText : '')
    || el.innerText || el.value || '';
  let bg = 'rgba(0, 0, 0, 0)';
  for (let n = el.parentElement; n; n = n.parentElement) {
    const c = getComputedStyle(n).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') { bg = c; break; }
  }
  return {
    tag: el.tagName.toLowerCase(), id: el.id, type: el.type || '', name: label.trim(),
    focusMatch: el.matches(':focus'), focusVisible: el.matches(':focus-visible'), outlineStyle: s.outlineStyle,
    outlineWidth: parseFloat(s.outlineWidth) || 0, outlineColor: s.outlineColor, background: bg,
    onScreen: r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth,
    checked: !!el.checked, value: el.value === undefined ? null : el.value,
  };
}"""


def describe(f):
    return f"<{f['tag']}{' #' + f['id'] if f.get('id') else ''}> {f.get('name', '')[:50]!r}"


def luminance(css):
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])

    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(a, b):
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


LOW_CONTRAST_SEEN = set()
PICKERS_SEEN = set()


class Keyboard:
    """Tab, Shift+Tab, arrows, Enter and typing only; after every key the focused element
    must show a focus indicator (an outline, from :focus-visible) on screen."""

    def __init__(self, page, where):
        self.page = page
        self.where = where
        self.trail = []

    def focus(self):
        return self.page.evaluate(FOCUS_JS)

    def press(self, key):
        self.page.keyboard.press(key)
        f = self.focus()
        self.trail.append(describe(f))
        if f["tag"] == "body":
            return f
        if f["tag"] == "input" and f["type"] in ("date", "datetime-local") and not f["focusMatch"]:
            # Chromium's own calendar button inside the field: it draws its own thin ring.
            if f["id"] not in PICKERS_SEEN:
                PICKERS_SEEN.add(f["id"])
                note(f"{self.where}: Tab stops on Chromium's calendar button inside <input #{f['id']}>, where "
                     "the portal's focus outline is not drawn (only the browser's thin default ring)")
            return f
        if not (f["focusVisible"] and f["outlineStyle"] != "none" and f["outlineWidth"] >= 2 and f["onScreen"]):
            fail_on(self.page, f"{self.where}: focus indicator after {key}",
                    f"{describe(f)} with a visible outline (:focus-visible) on screen",
                    f"focusVisible={f['focusVisible']} outline={f['outlineStyle']} {f['outlineWidth']}px "
                    f"onScreen={f['onScreen']}")
        ratio = contrast(f["outlineColor"], f["background"])
        if ratio < 3 and (f["outlineColor"], f["background"]) not in LOW_CONTRAST_SEEN:
            LOW_CONTRAST_SEEN.add((f["outlineColor"], f["background"]))
            note(f"{self.where}: the focus outline {f['outlineColor']} on {f['background']} has a contrast of "
                 f"{ratio:.1f}:1 (WCAG 1.4.11 asks 3:1), first seen on {describe(f)}")
        return f

    def tab_to(self, want, what, key="Tab", limit=60):
        """Presses `key` until `want(focus)`; returns that focus."""
        start = len(self.trail)
        for _ in range(limit):
            f = self.press(key)
            if want(f):
                ok(f"{self.where}: {what} reached with {key} ({len(self.trail) - start} presses), focus visible")
                return f
        fail_on(self.page, f"{self.where}: reaching {what} with {key}", f"{what} within {limit} presses",
                f"focus went through {self.trail[start:]}")

    def type(self, text):
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(text)


def by_id(i):
    return lambda f: f["id"] == i


def by_name(tag, name):
    return lambda f: f["tag"] == tag and f["name"] == name


# ---- flow a: Alice, keyboard only ----------------------------------------------------------------


def alice_sees_her_eligibilities(page, shots):
    heading(page, "My roles", "Alice's My roles")
    rows = table(page, "Eligible roles")
    contributor = row_where(rows, Role="Contributor", Resource="Contoso Production")
    owner = row_where(rows, Role="Owner", Resource="Contoso Development")
    check("My roles (Alice): Contributor on Contoso Production, Direct",
          len(contributor) == 1 and contributor[0]["Membership"] == "Direct", rows)
    check("My roles (Alice): Owner on Contoso Development, Group: Platform Engineers",
          len(owner) == 1 and owner[0]["Membership"] == "Group: Platform Engineers", rows)
    check("My roles (Alice): no active role yet", table(page, "Active roles") == [], table(page, "Active roles"))
    for link in ("Activate Contributor on Contoso Production", "Activate Owner on Contoso Development"):
        check(f"My roles (Alice): link {link!r}", page.get_by_role("link", name=link, exact=True).count() == 1)
    shots.look(page, "my-roles", "My roles (Alice, two eligible roles)")


def fill_activation_by_keyboard(kb, hours, minutes, reason=None):
    """From the top of the Activate page: every control in order, by Tab, with the duration
    (and reason) typed; ends on the "Activate" button."""
    kb.tab_to(by_id("scope"), "the Scope select")
    f = kb.tab_to(by_id("start-now"), 'the Start radio "Now"')
    check(f"{kb.where}: 'Now' is chosen", f["checked"])
    f = kb.press("ArrowDown")
    check(f"{kb.where}: ArrowDown chooses 'Later'", f["id"] == "start-later" and f["checked"], describe(f))
    f = kb.press("ArrowUp")
    check(f"{kb.where}: ArrowUp chooses 'Now' again", f["id"] == "start-now" and f["checked"], describe(f))
    kb.tab_to(by_id("start_time"), "the Start time field")
    kb.tab_to(by_id("hours"), "the Hours field")
    kb.type(str(hours))
    kb.tab_to(by_id("minutes"), "the Minutes field")
    kb.type(str(minutes))
    kb.tab_to(by_id("reason"), "the Reason field")
    if reason is not None:
        kb.type(reason)
    kb.tab_to(by_name("button", "Activate"), 'the button "Activate"')
    kb.tab_to(by_name("a", "Cancel"), 'the link "Cancel"')
    kb.tab_to(by_name("button", "Activate"), 'the button "Activate" again', key="Shift+Tab")


def alice_activates_by_keyboard(page, api, demo, shots):
    """Alice activates Contributor on Contoso Production for 2 hours with a reason, using the
    keyboard only; first she overshoots with 8 h 30 min and is refused."""
    page.reload()
    kb = Keyboard(page, "My roles (keyboard)")
    f = kb.press("Tab")
    check("My roles (keyboard): the first Tab shows 'Skip to content'",
          f["tag"] == "a" and f["name"] == "Skip to content", describe(f))
    kb.tab_to(by_name("a", "Activate Contributor on Contoso Production"),
              'the link "Activate Contributor on Contoso Production"')
    page.keyboard.press("Enter")
    wait_url(page, re.compile(r".*/ui/activate/[^/?]+$"), "Enter on the Activate link opens the Activate page")
    eligible_id = page.url.rsplit("/", 1)[1]
    heading(page, "Activate Contributor", "the Activate page")
    hint = page.locator("#duration-hint").inner_text().strip()
    check("Activate: the Duration hint says 'Up to 8 hours'", hint == "Up to 8 hours", hint)
    check("Activate: 'Multi-factor authentication is required' is noted",
          "Multi-factor authentication is required" in page_text(page, 5000))
    shots.look(page, "activate", "Activate Contributor")

    reason = "Hotfix for INC-2041 (keyboard)"
    before = World(api)
    kb = Keyboard(page, "Activate (keyboard)")
    fill_activation_by_keyboard(kb, 8, 30, reason)
    resp = submit(page, lambda: page.keyboard.press("Enter"), f"/ui/activate/{eligible_id}")
    check("Activate 8 h 30 min: answered 400 with the form again", resp.status == 400, f"status {resp.status}")
    alert = message(page, "alert") or ""
    check("Activate 8 h 30 min: the alert is the core's ExpirationRule message",
          alert.startswith("ExpirationRule") and "PT8H30M" in alert, f"alert {alert!r} at {page.url}")
    described = page.locator("fieldset", has=page.locator("legend", has_text="Duration")).get_attribute("aria-describedby")
    beside = page.locator(f"#{described}").inner_text().strip() if described else None
    check("Activate 8 h 30 min: the same message next to the Duration fieldset (aria-describedby)",
          beside == alert, f"aria-describedby={described!r} → {beside!r}")
    kept = (page.locator("#hours").input_value(), page.locator("#minutes").input_value(),
            page.locator("#reason").input_value())
    check("Activate 8 h 30 min: inputs kept", kept == ("8", "30", reason), kept)
    check("Activate 8 h 30 min: Hours and Minutes marked aria-invalid",
          page.locator("#hours").get_attribute("aria-invalid") == "true"
          and page.locator("#minutes").get_attribute("aria-invalid") == "true")
    refused = before.changes().expect("the 8 h 30 min try created nothing, one failure audited", audits=1)
    record = refused.audits[0]
    check("API: the refusal's audit record (failure, by Alice, ExpirationRule, this POST's request id)",
          record["result"] == "failure" and record["initiatedBy"]["user"]["id"] == demo.alice
          and "ExpirationRule" in (record.get("resultReason") or "")
          and record["correlationId"] == resp.headers.get("request-id"), record)
    shots.look(page, "activate-error", "Activate refused by ExpirationRule")

    kb = Keyboard(page, "Activate again (keyboard)")
    kb.tab_to(by_id("hours"), "the Hours field")
    kb.type("2")
    kb.tab_to(by_id("minutes"), "the Minutes field")
    kb.type("0")
    kb.tab_to(by_name("button", "Activate"), 'the button "Activate"')
    before = World(api)
    posted = submit(page, lambda: page.keyboard.press("Enter"), f"/ui/activate/{eligible_id}")
    wait_url(page, re.compile(r".*/ui/requests/[^/?]+\?done=submitted$"), "a granted activation opens the request")
    request_id = urllib.parse.urlsplit(page.url).path.rsplit("/", 1)[1]
    heading(page, "Request for Contributor", "the request page after activating")
    expect_message(page, "status", "Request submitted.", "request page")
    check("request page: a list 'History' with entries",
          page.get_by_role("list", name="History").locator("li").count() >= 1)
    granted = before.changes().expect("the activation", new_requests=1, new_assignments=1, audits=1)
    r = granted.new_requests[0]
    check("API: a UserAdd of Alice, Provisioned, with her reason and PT2H, linked to her eligibility",
          r["id"] == request_id and r["type"] == "UserAdd" and r["assignmentState"] == "Active"
          and r["subjectId"] == demo.alice and r["status"]["subStatus"] == "Provisioned"
          and r["reason"] == reason and r["schedule"]["duration"] == "PT2H"
          and r["linkedEligibleRoleAssignmentId"] == eligible_id
          and r["resourceId"] == demo.prod and r["roleDefinitionId"] == demo.prod_contributor, r)
    a = granted.new_assignments[0]
    span = parse_time(a["endDateTime"]) - parse_time(a["startDateTime"])
    check("API: Alice's active Contributor on Contoso Production, 2 hours",
          a["assignmentState"] == "Active" and a["subjectId"] == demo.alice and a["resourceId"] == demo.prod
          and span == timedelta(hours=2), a)
    record = granted.audits[0]
    check("API: the activation's audit record (success, by Alice, with the reason, this POST's request id)",
          record["result"] == "success" and record["initiatedBy"]["user"]["id"] == demo.alice
          and detail(record, "reason") == reason and detail(record, "requestId") == request_id
          and record["correlationId"] == posted.headers.get("request-id"), record)
    shots.look(page, "request", "Request for Contributor (provisioned)")
    return a


def alice_deactivates(page, origin, api, activation, shots):
    goto(page, origin + "/ui/", "My roles with an active role")
    active = table(page, "Active roles")
    check("My roles (Alice): Contributor on Contoso Production is active",
          len(row_where(active, Role="Contributor", Resource="Contoso Production")) == 1, active)
    link = page.get_by_role("link", name="Deactivate Contributor on Contoso Production", exact=True)
    check("My roles (Alice): link 'Deactivate Contributor on Contoso Production'", link.count() == 1)
    shots.look(page, "my-roles-active", "My roles (Alice, one active role)")
    link.click()
    wait_url(page, re.compile(r".*/ui/deactivate/[^/?]+$"), "the deactivation confirmation page")
    heading(page, "Deactivate Contributor", "the deactivation confirmation page")
    shots.look(page, "deactivate", "Deactivate Contributor (confirmation)")
    before = World(api)
    posted = submit(page, page.get_by_role("button", name="Deactivate", exact=True).click, "/ui/deactivate/")
    wait_url(page, origin + "/ui/?done=deactivated", "back on My roles after deactivating")
    expect_message(page, "status", "Deactivated.", "My roles after deactivating")
    check("My roles (Alice): no active role any more", table(page, "Active roles") == [], table(page, "Active roles"))
    done = before.changes().expect("the deactivation", new_requests=1, gone_assignments=1, audits=1)
    r = done.new_requests[0]
    check("API: a UserRemove of Alice's Contributor, Revoked",
          r["type"] == "UserRemove" and r["subjectId"] == activation["subjectId"]
          and r["resourceId"] == activation["resourceId"] and r["status"]["subStatus"] == "Revoked", r)
    check("API: the activation is gone", done.gone_assignments[0]["id"] == activation["id"], done.summary())
    check("API: the deactivation's audit record carries this POST's request id",
          done.audits[0]["correlationId"] == posted.headers.get("request-id"), done.audits[0])
    goto(page, origin + "/ui/requests", "Alice's My requests after deactivating")
    rows = table(page, "Requests")
    activation = row_where(rows, Type="Activation", Role="Contributor")[:1]  # the newest (the demo has older ones)
    check_later("My requests (Alice): the deactivated activation reads 'Ended', not 'Active until …'",
                len(activation) == 1 and activation[0]["Status"] == "Ended", f"rows {rows}")
    shots.look(page, "my-requests-alice", "My requests (Alice: activation and deactivation)")


def flow_a_alice(b, origin, api, demo, shots):
    print("# a. Alice: My roles, activation by keyboard only, deactivation", flush=True)
    ctx = browser.new_context(b)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    goto(page, origin + "/ui/signin", "the sign-in page")
    heading(page, "Sign in", "the sign-in page")
    shots.look(page, "signin", "Sign in (development)")
    sign_in(page, origin, "Alice Engineer")
    alice_sees_her_eligibilities(page, shots)
    activation = alice_activates_by_keyboard(page, api, demo, shots)
    alice_deactivates(page, origin, api, activation, shots)
    ctx.close()


# ---- flow b: Dave asks, Bob approves (two contexts at once), then denies ------------------------


def dave_requests_dev_owner(page, origin, api, demo, shots, reason, look=False):
    """Dave activates Owner on Contoso Development, which waits for Bob's approval; returns
    the request id."""
    goto(page, origin + "/ui/", "Dave's My roles")
    rows = table(page, "Eligible roles")
    check("My roles (Dave): Owner on Contoso Development through Platform Engineers",
          row_where(rows, Role="Owner", Resource="Contoso Development")[0]["Membership"] == "Group: Platform Engineers",
          rows)
    if look:
        shots.look(page, "my-roles-dave", "My roles (Dave)")
    page.get_by_role("link", name="Activate Owner on Contoso Development", exact=True).click()
    wait_url(page, re.compile(r".*/ui/activate/[^/?]+$"), "Dave's Activate page")
    heading(page, "Activate Owner", "Dave's Activate page")
    approval = page.get_by_role("note").filter(has_text="Approval required")
    text = approval.inner_text().strip() if approval.count() == 1 else ""
    check("Activate (Dave): 'Approval required' names Bob Approver before submitting",
          "Approval required" in text and "Bob Approver" in text and "1 approval" in text, repr(text))
    if look:
        shots.look(page, "activate-approval", "Activate Owner (approval required)")
    page.get_by_label("Hours").fill("1")
    page.get_by_label("Minutes").fill("0")
    page.get_by_label("Reason").fill(reason)
    before = World(api)
    page.get_by_role("button", name="Activate", exact=True).click()
    wait_url(page, re.compile(r".*/ui/requests/[^/?]+\?done=submitted$"), "Dave's request page")
    request_id = urllib.parse.urlsplit(page.url).path.rsplit("/", 1)[1]
    expect_message(page, "status", "Request submitted.", "Dave's request page")
    status = page.locator("dl.fields dt:text-is('Status') + dd").inner_text().strip()
    check("request page (Dave): Status 'Pending approval (0 of 1)'", status == "Pending approval (0 of 1)", status)
    pending = before.changes().expect("Dave's activation waits for approval", new_requests=1, audits=1)
    r = pending.new_requests[0]
    check("API: a UserAdd of Dave on Contoso Development, PendingApproval",
          r["id"] == request_id and r["type"] == "UserAdd" and r["subjectId"] == demo.dave
          and r["resourceId"] == demo.dev and r["roleDefinitionId"] == demo.dev_owner
          and r["status"]["subStatus"] == "PendingApproval" and r["reason"] == reason, r)
    goto(page, origin + "/ui/requests", "Dave's My requests")
    mine = [x for x in table(page, "Requests") if x["Status"].startswith("Pending approval")]
    check("My requests (Dave): one request 'Pending approval (0 of 1)' for Owner on Contoso Development",
          len(mine) == 1 and mine[0]["Status"] == "Pending approval (0 of 1)" and mine[0]["Role"] == "Owner"
          and mine[0]["Resource"] == "Contoso Development", mine)
    if look:
        shots.look(page, "my-requests", "My requests (Dave, one pending)")
    return request_id


def bob_opens_decision(page, origin, decision, shots, look=False):
    """Bob finds the pending request through "Approvals (1)" and opens its decision form."""
    goto(page, origin + "/ui/", "Bob's My roles")
    check("navigation (Bob): 'Approvals (1)'", nav_link(page, "Approvals (1)").count() == 1,
          [t.strip() for t in page.get_by_role("navigation", name="Main").locator("a").all_inner_texts()])
    if look:
        shots.look(page, "my-roles-bob", "My roles (Bob, an active Owner)")
    nav_link(page, "Approvals (1)").click()
    wait_url(page, origin + "/ui/approvals", "Bob's Approvals")
    heading(page, "Approvals", "Bob's Approvals")
    rows = table(page, "Pending approvals")
    check("Approvals (Bob): Dave Oncall's request for Owner on Contoso Development, 0 of 1",
          len(rows) == 1 and rows[0]["Requester"] == "Dave Oncall" and rows[0]["Role"] == "Owner"
          and rows[0]["Resource"].startswith("Contoso Development") and rows[0]["Approvals"] == "0 of 1"
          and rows[0]["Duration"] == "1 hour", rows)
    if look:
        shots.look(page, "approvals", "Approvals (Bob, one pending)")
    verb = "Approve" if decision == "approve" else "Deny"
    page.get_by_role("link", name=f"{verb} request from Dave Oncall for Owner on Contoso Development",
                     exact=True).click()
    wait_url(page, re.compile(rf".*/ui/approvals/[^/]+/{decision}$"), f"Bob's {verb} form")
    heading(page, f"{verb} request from Dave Oncall", f"Bob's {verb} form")
    return page.url.rsplit("/", 2)[1]


def bob_refuses_an_empty_justification(page, api, request_id, shots):
    before = World(api)
    url = page.url
    page.get_by_role("button", name="Approve", exact=True).click()
    missing = page.get_by_label("Justification").evaluate("e => e.validity.valueMissing")
    check("Approve with an empty justification: the browser keeps the form (required field)",
          missing and page.url == url, f"valueMissing={missing}, url {page.url}")
    page.get_by_label("Justification").fill("   ")
    posted = submit(page, page.get_by_role("button", name="Approve", exact=True).click, "/approve")
    check("Approve with a blank justification: answered 400", posted.status == 400, posted.status)
    expect_message(page, "alert", "Give a justification for your decision.", "Approve form (blank justification)")
    field = page.get_by_label("Justification")
    described = field.get_attribute("aria-describedby")
    check("Approve form: the message next to Justification (aria-invalid, aria-describedby)",
          field.get_attribute("aria-invalid") == "true" and described
          and page.locator(f"#{described}").inner_text().strip() == "Give a justification for your decision.")
    before.changes().expect("nothing decided on a blank justification")
    check("API: the request still PendingApproval",
          api.request("dave", request_id)["status"]["subStatus"] == "PendingApproval")
    shots.look(page, "approve-error", "Approve form (blank justification refused)")


def bob_decides(page, origin, api, demo, request_id, decision, justification, keyboard=False):
    verb = "Approve" if decision == "approve" else "Deny"
    if keyboard:
        kb = Keyboard(page, f"{verb} form (keyboard)")
        kb.tab_to(by_id("justification"), "the field 'Justification'")
        kb.type(justification)
        kb.tab_to(by_name("button", verb), f'the button "{verb}"')
    else:
        page.get_by_label("Justification").fill(justification)
    before = World(api)
    if keyboard:
        page.keyboard.press("Enter")
    else:
        page.get_by_role("button", name=verb, exact=True).click()
    past = "approved" if decision == "approve" else "denied"
    wait_url(page, origin + f"/ui/approvals?done={past}", f"Approvals after {verb}")
    expect_message(page, "status", f"{past.capitalize()}.", f"Approvals after {verb}")
    check(f"Approvals (Bob): nothing pending after {verb}, navigation says 'Approvals'",
          table(page, "Pending approvals") == [] and nav_link(page, "Approvals").count() == 1)
    if decision == "approve":
        changes = before.changes().expect("Bob's approval", changed_requests=1, new_assignments=1, audits=1)
        a = changes.new_assignments[0]
        check("API: Dave's Owner on Contoso Development is active",
              a["assignmentState"] == "Active" and a["subjectId"] == demo.dave and a["resourceId"] == demo.dev, a)
        want = "Provisioned"
    else:
        changes = before.changes().expect("Bob's denial", changed_requests=1, audits=1)
        want = "AdminDenied"
    old, new = changes.changed_requests[0]
    check(f"API: the request is {want}", new["id"] == request_id and new["status"]["subStatus"] == want, new)
    record = changes.audits[0]
    check(f"API: the decision's audit record (by Bob, with his justification)",
          record["initiatedBy"]["user"]["id"] == demo.bob
          and justification in json.dumps(record["additionalDetails"]), record)


def dave_sees_the_decision(page, origin, request_id, status_prefix, justification, shots, look=False):
    goto(page, origin + f"/ui/requests/{request_id}", "Dave's request page after the decision")
    status = page.locator("dl.fields dt:text-is('Status') + dd").inner_text().strip()
    check(f"request page (Dave): Status {status_prefix!r}…", status.startswith(status_prefix), status)
    items = page.get_by_role("list", name="History").locator("li").all_inner_texts()
    check("request page (Dave): History shows Bob Approver's justification",
          any("Bob Approver" in i and justification in i for i in items), items)
    if look:
        shots.look(page, "request-approved", "Request for Owner (approved, with history)")


def flow_b_approval(b, origin, api, demo, shots):
    print("# b. Dave asks, Bob approves (two contexts at once); Dave asks again, Bob denies", flush=True)
    dave_ctx = browser.new_context(b)
    bob_ctx = browser.new_context(b, dark=True)
    for c in (dave_ctx, bob_ctx):
        c.set_default_timeout(TIMEOUT_MS)
    dave, bob = dave_ctx.new_page(), bob_ctx.new_page()
    sign_in(dave, origin, "Dave Oncall")
    sign_in(bob, origin, "Bob Approver")

    first = dave_requests_dev_owner(dave, origin, api, demo, shots, "Deploy the on-call fix", look=True)
    bob_opens_decision(bob, origin, "approve", shots, look=True)
    shots.look(bob, "approve", "Approve request (form)")
    bob_refuses_an_empty_justification(bob, api, first, shots)
    approved_why = "On call this week; change CHG-77 approved"
    bob_decides(bob, origin, api, demo, first, "approve", approved_why)
    shots.look(bob, "approvals-empty", "Approvals (nothing pending)")
    dave_sees_the_decision(dave, origin, first, "Active until", approved_why, shots, look=True)

    # Dave ends it, asks again, and Bob denies.
    goto(dave, origin + "/ui/", "Dave's My roles")
    dave.get_by_role("link", name="Deactivate Owner on Contoso Development", exact=True).click()
    wait_url(dave, re.compile(r".*/ui/deactivate/[^/?]+$"), "Dave's deactivation page")
    before = World(api)
    dave.get_by_role("button", name="Deactivate", exact=True).click()
    wait_url(dave, origin + "/ui/?done=deactivated", "Dave back on My roles")
    ended = before.changes().expect("Dave's deactivation", new_requests=1, gone_assignments=1, audits=1)
    check("API: a UserRemove of Dave's Owner on Contoso Development",
          ended.new_requests[0]["type"] == "UserRemove" and ended.gone_assignments[0]["subjectId"] == demo.dave,
          ended.summary())
    second = dave_requests_dev_owner(dave, origin, api, demo, shots, "Rotate the storage keys")
    bob_opens_decision(bob, origin, "deny", shots)
    shots.look(bob, "deny", "Deny request (form)")
    denied_why = "Not during the change freeze"
    bob_decides(bob, origin, api, demo, second, "deny", denied_why)
    goto(dave, origin + "/ui/requests", "Dave's My requests after the denial")
    rows = table(dave, "Requests")
    newest = rows[0] if rows else {}
    check("My requests (Dave): the newest request says 'Denied'",
          newest.get("Status") == "Denied" and newest.get("Role") == "Owner", rows)
    shots.look(dave, "my-requests-history", "My requests (Dave: denied, ended, active…)")
    dave_sees_the_decision(dave, origin, second, "Denied", denied_why, shots)
    return dave_ctx, bob_ctx, dave, bob


# ---- flow c (and d's forged POSTs): Dave cancels ------------------------------------------------


def forged_posts_are_refused(ctx, page, origin, api, request_id, shots):
    """POSTs that do not come from the portal's own pages change nothing."""
    cancel = f"{origin}/ui/requests/{request_id}/cancel"
    token = csrf_of(page)
    before = World(api)
    cases = [
        ("a foreign Origin with the right CSRF token", {"Origin": "http://attacker.test"}, token),
        ("no Origin, Sec-Fetch-Site cross-site", {"Sec-Fetch-Site": "cross-site"}, token),
        ("the right Origin with a wrong CSRF token", {"Origin": origin}, "0" * 64),
        ("the right Origin without a CSRF token", {"Origin": origin}, None),
    ]
    for what, headers, csrf in cases:
        form = {"csrf": csrf} if csrf is not None else {}
        r = page.request.post(cancel, form=form, headers=headers, max_redirects=0)
        check(f"forged cancel POST ({what}): refused", 400 <= r.status < 500, f"status {r.status}: {r.text()[:200]}")
        check_later(f"forged cancel POST ({what}): the 403 'Access denied' page",
                    r.status == 403 and "<h1>Access denied</h1>" in r.text(),
                    f"POST {cancel} answered {r.status} {r.headers.get('content-type')!r}: {r.text()[:120]!r}")

    # A real cross-site form, auto-submitted from another origin's page.
    ctx.route("http://attacker.test/**", lambda route: route.fulfill(
        status=200, content_type="text/html",
        body=f"""<!doctype html><html lang="en"><head><title>Win a prize</title></head><body>
<form id="f" method="post" action="{cancel}"><input type="hidden" name="csrf" value="{token}"></form>
<script>document.getElementById('f').submit()</script></body></html>"""))
    attacker = ctx.new_page()
    with attacker.expect_response(lambda r: r.url == cancel) as answered:
        attacker.goto("http://attacker.test/prize")
    attacker.wait_for_load_state()
    check("cross-site form POST from http://attacker.test: 403 'Access denied' page",
          answered.value.status == 403 and attacker.get_by_role("heading", level=1).inner_text() == "Access denied",
          f"status {answered.value.status}: {page_text(attacker)}")
    shots.look(attacker, "access-denied", "Access denied (cross-site POST)")
    attacker.close()
    ctx.unroute("http://attacker.test/**")
    before.changes().expect("the forged POSTs changed nothing")
    check("API: the request is still PendingApproval",
          api.request("dave", request_id)["status"]["subStatus"] == "PendingApproval")


def flow_c_cancel(dave_ctx, dave, bob, origin, api, demo, shots):
    print("# c. Dave cancels a pending request (after forged POSTs were refused)", flush=True)
    third = dave_requests_dev_owner(dave, origin, api, demo, shots, "Check the backup job")
    goto(bob, origin + "/ui/", "Bob's My roles")
    check("navigation (Bob): 'Approvals (1)' for the new request", nav_link(bob, "Approvals (1)").count() == 1)
    goto(dave, origin + "/ui/requests", "Dave's My requests")
    forged_posts_are_refused(dave_ctx, dave, origin, api, third, shots)
    before = World(api)
    goto(dave, origin + "/ui/requests", "Dave's My requests")
    dave.get_by_role("button", name="Cancel request for Owner on Contoso Development", exact=True).click()
    wait_url(dave, origin + "/ui/requests?done=cancelled", "My requests after cancelling")
    expect_message(dave, "status", "Request cancelled.", "My requests after cancelling")
    rows = table(dave, "Requests")
    check("My requests (Dave): the newest request says 'Cancelled', no Cancel button left",
          rows[0]["Status"] == "Cancelled"
          and dave.get_by_role("button", name="Cancel request for Owner on Contoso Development").count() == 0, rows)
    changes = before.changes().expect("Dave's cancellation", changed_requests=1, audits=1)
    _, new = changes.changed_requests[0]
    check("API: the request is Canceled", new["id"] == third and new["status"]["subStatus"] == "Canceled", new)
    shots.look(dave, "my-requests-cancelled", "My requests (after cancelling)")
    goto(bob, origin + "/ui/", "Bob's My roles")
    check("navigation (Bob): back to 'Approvals'", nav_link(bob, "Approvals").count() == 1)


# ---- flow d: signing out, failed sign-in -------------------------------------------------------


def flow_d_sign_out(ctx, page, origin, shots):
    print("# d. Signing out; Back and reload; the old cookie; a failed sign-in", flush=True)
    goto(page, origin + "/ui/requests", "Dave's My requests")
    old = [c for c in ctx.cookies() if c["name"] == "rolegate_session"]
    check("the session cookie: HttpOnly, SameSite=Lax, Path=/ui",
          len(old) == 1 and old[0]["httpOnly"] and old[0]["sameSite"] == "Lax" and old[0]["path"] == "/ui", old)
    page.get_by_role("button", name="Sign out", exact=True).click()
    wait_url(page, origin + "/ui/signin", "the sign-in page after signing out")
    page.go_back()
    wait_url(page, re.compile(r".*/ui/signin\?return=%2Fui%2Frequests$"), "Back after signing out")
    ok("Back after signing out: the sign-in page (returning to My requests)")
    page.reload()
    wait_url(page, re.compile(r".*/ui/signin\?return=%2Fui%2Frequests$"), "reload after signing out")
    ok("reload after signing out: the sign-in page")
    ctx.add_cookies([{k: old[0][k] for k in ("name", "value", "domain", "path", "httpOnly", "sameSite")}])
    goto(page, origin + "/ui/approvals", "My approvals with the signed-out cookie")
    wait_url(page, re.compile(r".*/ui/signin\?return=%2Fui%2Fapprovals$"), "the old cookie after signing out")
    ok("the signed-out session's cookie opens nothing")

    page.get_by_label("User name").fill("nobody@contoso.example")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()
    expect_message(page, "alert", "Sign-in failed: no user is named “nobody@contoso.example”.", "failed sign-in")
    check("failed sign-in: the user name is kept", page.get_by_label("User name").input_value() == "nobody@contoso.example")
    shots.look(page, "signin-failed", "Sign in (failed)")
    page.get_by_label("User name").fill("dave@contoso.example")
    page.get_by_label("Signed in with MFA").check()
    page.get_by_role("button", name="Sign in", exact=True).click()
    wait_url(page, origin + "/ui/approvals", "signing in again returns to the page asked for")
    heading(page, "Approvals", "Approvals after signing in by user name")
    ok("signed in by user name; back at the page asked for")


# ---- flow f: Carol extends and renews; the administrator and Bob decide --------------------------


def grant_carol_contributor(api, demo, resource_id, role_id, duration):
    return api.submit("admin", {
        "type": "AdminAdd", "assignmentState": "Eligible", "subjectId": demo.carol,
        "resourceId": resource_id, "roleDefinitionId": role_id, "reason": "Portal flows: Carol's test eligibility",
        "schedule": {"type": "Once", "duration": duration},
    })


def carol_asks(page, origin, api, demo, verb, resource, resource_id, button, shots):
    link = page.get_by_role("link", name=f"{verb} Contributor on {resource}", exact=True)
    check(f"My roles (Carol): link '{verb} Contributor on {resource}'", link.count() == 1)
    link.click()
    wait_url(page, re.compile(rf".*/ui/{verb.lower()}/[^/?]+$"), f"Carol's {verb} form")
    heading(page, f"{verb} Contributor", f"Carol's {verb} form")
    shots.look(page, verb.lower(), f"{verb} Contributor (form)")
    end = (datetime.now(timezone.utc) + timedelta(days=60)).date().isoformat()
    page.get_by_label("New end date").fill(end)
    page.get_by_label("Reason").fill(f"{verb}: the migration runs until {end}")
    before = World(api)
    page.get_by_role("button", name=button, exact=True).click()
    wait_url(page, re.compile(r".*/ui/requests/[^/?]+\?done=submitted$"), f"Carol's {verb} request page")
    expect_message(page, "status", "Request submitted.", f"Carol's {verb} request page")
    status = page.locator("dl.fields dt:text-is('Status') + dd").inner_text().strip()
    check(f"request page (Carol): {verb} is 'Pending an administrator's decision'",
          status == "Pending an administrator's decision", status)
    r = before.changes().expect(f"Carol's {verb.lower()} request", new_requests=1, audits=1).new_requests[0]
    check(f"API: a User{verb} of Carol on {resource}, PendingAdminDecision, ending {end}T23:59:59Z",
          r["type"] == f"User{verb}" and r["subjectId"] == demo.carol and r["resourceId"] == resource_id
          and r["status"]["subStatus"] == "PendingAdminDecision"
          and r["schedule"]["endDateTime"].startswith(f"{end}T23:59:59"), r)
    goto(page, origin + "/ui/", "Carol's My roles")
    return r["id"], end


def approve_as(page, origin, api, requester, role, resource, request_id, effect, shots, key=None):
    """Approves a request waiting for an administrator's decision; `effect` is what the API
    must show afterwards besides the request and one audit record (Changes.expect keywords)."""
    goto(page, origin + "/ui/approvals", "Approvals")
    rows = row_where(table(page, "Pending approvals"), Requester=requester, Resource=resource)
    check(f"Approvals: {requester}'s request on {resource} waits for an administrator's decision",
          len(rows) == 1 and rows[0]["Approvals"] == "Administrator decision", rows)
    if key:
        shots.look(page, key, "Approvals (administrator decisions)")
    page.get_by_role("link", name=f"Approve request from {requester} for {role} on {resource}", exact=True).click()
    page.get_by_label("Justification").fill("Fine for the migration")
    before = World(api)
    page.get_by_role("button", name="Approve", exact=True).click()
    wait_url(page, origin + "/ui/approvals?done=approved", "Approvals after approving")
    expect_message(page, "status", "Approved.", "Approvals after approving")
    changes = before.changes().expect(f"{requester}'s request on {resource} approved", changed_requests=1,
                                      audits=1, **effect)
    _, new = changes.changed_requests[0]
    check(f"API: {requester}'s request on {resource} is Provisioned",
          new["id"] == request_id and new["status"]["subStatus"] == "Provisioned", new)
    return changes


def flow_f_extend_and_renew(b, origin, api, demo, shots):
    print("# f. Carol extends and renews; the administrator and Bob decide", flush=True)
    grant_carol_contributor(api, demo, demo.dev, demo.dev_contributor, "P7D")
    short = grant_carol_contributor(api, demo, demo.prod, demo.prod_contributor, "PT2S")
    ok("API: Carol made eligible for Contributor on Contoso Development (7 days) and Contoso Production (2 s)")
    ctx = browser.new_context(b)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    sign_in(page, origin, "Carol Auditor")
    ends = parse_time(short["schedule"]["endDateTime"])
    while datetime.now(timezone.utc) <= ends + timedelta(milliseconds=200):
        page.wait_for_timeout(200)
    page.reload()
    expired = table(page, "Expired roles")
    check("My roles (Carol): Contributor on Contoso Production in 'Expired roles'",
          len(row_where(expired, Role="Contributor", Resource="Contoso Production")) == 1, expired)
    shots.look(page, "my-roles-expiring", "My roles (Carol: ending soon, expired)")
    extension, extension_end = carol_asks(page, origin, api, demo, "Extend", "Contoso Development", demo.dev,
                           "Request extension", shots)
    renewal, _ = carol_asks(page, origin, api, demo, "Renew", "Contoso Production", demo.prod,
                         "Request renewal", shots)
    ctx.close()

    ctx = browser.new_context(b, dark=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    sign_in(page, origin, "Demo Administrator")
    empty = page.locator("main p.empty")
    check("My roles (administrator): says nothing is eligible and who to ask", empty.count() == 1, page_text(page))
    shots.look(page, "my-roles-empty", "My roles (nothing eligible)")
    extended = approve_as(page, origin, api, "Carol Auditor", "Contributor", "Contoso Development", extension,
                          {"changed_assignments": 1}, shots, key="approvals-admin")
    old, new = extended.changed_assignments[0]
    check("API: Carol's eligibility on Contoso Development now ends at the date she asked for",
          new["subjectId"] == demo.carol and new["endDateTime"].startswith(extension_end)
          and old["endDateTime"] != new["endDateTime"], new)
    page.get_by_role("button", name="Sign out", exact=True).click()
    wait_url(page, origin + "/ui/signin", "signed out")
    sign_in(page, origin, "Bob Approver", landing="/ui/approvals")
    renewed = approve_as(page, origin, api, "Carol Auditor", "Contributor", "Contoso Production", renewal,
                         {"new_assignments": 1}, shots)
    a = renewed.new_assignments[0]
    check("API: Carol is eligible again for Contributor on Contoso Production",
          a["subjectId"] == demo.carol and a["assignmentState"] == "Eligible" and a["resourceId"] == demo.prod, a)
    ctx.close()


# ---- flow g: the administrator: resources, assignments, role settings, audit log ------------------


TREE_JS = """ul => [...ul.querySelectorAll('li')].map(li => {
  const a = li.querySelector(':scope > a'), tag = li.querySelector(':scope > .tag');
  const up = li.parentElement.closest('li');
  return {name: a ? a.innerText.trim() : '', href: a ? a.getAttribute('href') : '',
          kind: tag ? tag.innerText.trim() : '',
          parent: up ? up.querySelector(':scope > a').innerText.trim() : null};
})"""


def type_tag(resource_type):
    return {"managementgroup": "Management group", "subscription": "Subscription",
            "resourcegroup": "Resource group"}.get(resource_type.lower(), "Resource")


def resource_tree(page):
    """The nested list ul.tree as [{name, href, kind, parent}] in document order."""
    tree = page.locator("main ul.tree")
    if tree.count() != 1:
        fail_on(page, "reading the resource tree", "one ul.tree", f"{tree.count()}")
    return tree.evaluate(TREE_JS)


def expected_tree(api, who, search=None):
    """What the tree must show: the resources `who` may see (R1), matching `search` like the
    page's search (display name or ARM id), each under its parent when the parent is shown."""
    query = {"$expand": "parent"}
    if search:
        t = search.replace("'", "''")
        query["$filter"] = f"contains(displayName,'{t}') or contains(externalId,'{t}')"
    found = api.list(who, f"{PIM}/resources", query)
    shown = {r["id"] for r in found}
    return sorted(
        (r["displayName"], f"/ui/resources/{r['id']}", type_tag(r["type"]),
         r["parent"]["displayName"] if r.get("parent") and r["parent"]["id"] in shown else None)
        for r in found)


def as_rows(tree):
    return sorted((n["name"], n["href"], n["kind"], n["parent"]) for n in tree)


def download(page, link_name, what):
    """Clicks the link `link_name` (a download) and returns the file's bytes."""
    link = page.get_by_role("link", name=link_name, exact=True)
    check(f"{what}: one link {link_name!r}", link.count() == 1, page_text(page))
    with page.expect_download() as d:
        link.click()
    path = d.value.path()
    with open(path, "rb") as f:
        return f.read(), d.value.suggested_filename


def first_difference(a, b):
    """Where two byte strings first differ, for a failure message."""
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return f"{len(a)} vs {len(b)} bytes, first difference at byte {n}: {a[max(0, n - 40):n + 40]!r} vs {b[max(0, n - 40):n + 40]!r}"


def admin_sees_the_tree(page, origin, api, shots):
    goto(page, origin + "/ui/resources", "Resources")
    heading(page, "Resources", "Resources (administrator)")
    check("navigation (administrator): 'Resources' and 'Audit log'",
          nav_link(page, "Resources").count() == 1 and nav_link(page, "Audit log").count() == 1)
    tree = resource_tree(page)
    want = expected_tree(api, "admin")
    check("Resources (administrator): the tree is every registered resource, each under its parent, "
          "with its type tag and link", as_rows(tree) == want, f"page {as_rows(tree)}\nAPI  {want}")
    nesting = {n["name"]: n["parent"] for n in tree}
    check("Resources: Contoso › Contoso Development › rg-sandbox › sandbox-vm nested",
          nesting.get("sandbox-vm") == "rg-sandbox" and nesting.get("rg-sandbox") == "Contoso Development"
          and nesting.get("Contoso Development") == "Contoso" and nesting.get("Contoso") is None, nesting)
    check("Resources (administrator): the link 'Register resource'",
          page.get_by_role("link", name="Register resource", exact=True).count() == 1)
    shots.look(page, "resources", "Resources (administrator, the whole tree)")

    page.get_by_label("Search resources").fill("rg-web")
    page.get_by_role("button", name="Search", exact=True).click()
    wait_url(page, origin + "/ui/resources?q=rg-web", "Resources searched for 'rg-web'")
    tree = resource_tree(page)
    want = expected_tree(api, "admin", "rg-web")
    check("Resources searched for 'rg-web': rg-web with web-vm-01 under it, as the API's filter finds them",
          as_rows(tree) == want and [n["name"] for n in tree] == ["rg-web", "web-vm-01"],
          f"page {as_rows(tree)}\nAPI  {want}")
    check("Resources searched: the search field keeps 'rg-web'", page.get_by_label("Search resources").input_value() == "rg-web")
    shots.look(page, "resources-search", "Resources (searched)")
    page.get_by_label("Search resources").fill("no-such-thing")
    page.get_by_role("button", name="Search", exact=True).click()
    wait_url(page, re.compile(r".*/ui/resources\?q=no-such-thing$"), "Resources searched for nothing")
    check("Resources searched for 'no-such-thing': no tree, and says so",
          page.locator("main ul.tree").count() == 0 and "No resource matches" in page_text(page), page_text(page))


def resources_now(api):
    return {r["id"]: r for r in api.list("admin", f"{PIM}/resources")}


def admin_registers_a_resource_group(page, origin, api, demo, shots):
    goto(page, origin + "/ui/resources", "Resources")
    page.get_by_role("link", name="Register resource", exact=True).click()
    wait_url(page, origin + "/ui/resources/register", "the registration form")
    heading(page, "Register resource", "the registration form")
    for label in ("ARM id", "Display name (optional)", "Parent management group (optional)"):
        check(f"Register resource: the field {label!r}", page.get_by_label(label, exact=True).count() == 1)
    shots.look(page, "register", "Register resource (form)")

    # A malformed ARM id: refused in place with the core's InvalidResourceId message.
    before, resources = World(api), resources_now(api)
    page.get_by_label("ARM id", exact=True).fill("resourceGroups/rg-portal-flows")
    page.get_by_label("Display name (optional)", exact=True).fill("Portal flows")
    posted = submit(page, page.get_by_role("button", name="Register", exact=True).click, "/ui/resources/register")
    check("Register a malformed ARM id: answered 400 with the form again", posted.status == 400, posted.status)
    alert = message(page, "alert") or ""
    check("Register a malformed ARM id: the alert is the core's message about the id",
          "is not a valid resource id" in alert and "resourceGroups/rg-portal-flows" in alert, repr(alert))
    field = page.get_by_label("ARM id", exact=True)
    described = field.get_attribute("aria-describedby")
    beside = page.locator(f"#{described}").inner_text().strip() if described else None
    check("Register a malformed ARM id: the same message next to 'ARM id' (aria-invalid, aria-describedby)",
          field.get_attribute("aria-invalid") == "true" and beside == alert, f"{described!r} → {beside!r}")
    kept = (field.input_value(), page.get_by_label("Display name (optional)", exact=True).input_value())
    check("Register a malformed ARM id: inputs kept", kept == ("resourceGroups/rg-portal-flows", "Portal flows"), kept)
    refused = before.changes().expect("the malformed ARM id registered nothing, one failure audited", audits=1)
    check("API: no resource registered", resources_now(api).keys() == resources.keys())
    record = refused.audits[0]
    check("API: the refusal's audit record (Register resource, failure, this POST's request id)",
          record["activityDisplayName"] == "Register resource" and record["result"] == "failure"
          and record["correlationId"] == posted.headers.get("request-id"), record)
    shots.look(page, "register-error", "Register resource (malformed ARM id refused)")

    arm = demo.dev_arm + "/resourceGroups/rg-portal-flows"
    field.fill(arm)
    before, resources = World(api), resources_now(api)
    page.get_by_role("button", name="Register", exact=True).click()
    wait_url(page, origin + "/ui/resources?done=registered", "Resources after registering")
    expect_message(page, "status", "Resource registered.", "Resources after registering")
    after = resources_now(api)
    new = [r for i, r in after.items() if i not in resources]
    check("API: one resource registered: resource group 'Portal flows' with that ARM id",
          len(new) == 1 and new[0]["externalId"] == arm and new[0]["displayName"] == "Portal flows"
          and new[0]["type"] == "resourcegroup", new)
    parent = api.get("admin", f"{PIM}/resources/{new[0]['id']}/parent")
    check("API: its parent is Contoso Development", parent["id"] == demo.dev, parent)
    roles = api.list("admin", f"{PIM}/roleDefinitions", {"$filter": f"resourceId eq '{new[0]['id']}'"})
    check("API: it has the built-in roles (Owner, Contributor, Reader, User Access Administrator)",
          {OWNER, CONTRIBUTOR, READER, "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"} <= {r["templateId"] for r in roles},
          [r["displayName"] for r in roles])
    done = before.changes().expect("the registration: one audit record", audits=1)
    check("API: its audit record (Register resource, success)",
          done.audits[0]["activityDisplayName"] == "Register resource" and done.audits[0]["result"] == "success",
          done.audits[0])
    tree = {n["name"]: n for n in resource_tree(page)}
    check("Resources: 'Portal flows' in the tree under Contoso Development, tagged Resource group",
          tree.get("Portal flows", {}).get("parent") == "Contoso Development"
          and tree["Portal flows"]["kind"] == "Resource group", tree.get("Portal flows"))
    return new[0]["id"]


def admin_opens_production(page, origin, demo):
    goto(page, origin + "/ui/resources", "Resources")
    page.locator("main ul.tree").get_by_role("link", name="Contoso Production", exact=True).click()
    wait_url(page, origin + f"/ui/resources/{demo.prod}", "Contoso Production's page")
    heading(page, "Contoso Production", "Contoso Production's page")


def admin_sees_production(page, demo, shots):
    arm = page.locator("main code.arm").inner_text().strip() if page.locator("main code.arm").count() == 1 else None
    path = page.locator("main h1 + p .muted").inner_text().strip() if page.locator("main h1 + p .muted").count() else ""
    check("Contoso Production: its ARM id and its ancestor Contoso shown", arm == demo.prod_arm and path == "Contoso", (arm, path, page_text(page, 300)))
    for h2 in ("Assignments", "Role settings", "Audit log"):
        check(f"Contoso Production: section {h2!r}", page.get_by_role("heading", name=h2, level=2, exact=True).count() == 1)
    for caption in ("Eligible assignments", "Active assignments", "Expired assignments"):
        check(f"Contoso Production: table {caption!r} with Member, Role, Membership, Starts, Ends",
              page.get_by_role("table", name=caption, exact=True).locator("thead th").all_inner_texts()[:5]
              == ["Member", "Role", "Membership", "Starts", "Ends"])
    active = table(page, "Active assignments")
    check("Contoso Production: Bob Approver's active Owner, Direct, with Remove/Extend/Update",
          len(row_where(active, Member="Bob Approver", Role="Owner", Membership="Direct")) == 1
          and page.get_by_role("link", name="Remove Owner from Bob Approver", exact=True).count() == 1
          and page.get_by_role("link", name="Extend Owner for Bob Approver", exact=True).count() == 1
          and page.get_by_role("link", name="Update Owner for Bob Approver", exact=True).count() == 1, active)
    eligible = table(page, "Eligible assignments")
    inherited = row_where(eligible, Member="Carol Auditor", Role="Reader", Membership="Inherited")
    check("Contoso Production: Carol's Reader inherited from Contoso, without Remove/Extend/Update",
          len(inherited) == 1 and page.get_by_role("link", name="Remove Reader from Carol Auditor").count() == 0,
          eligible)
    check("Contoso Production: 'Edit settings for Contributor' and 'Add assignment', 'Download CSV'",
          page.get_by_role("link", name="Edit settings for Contributor", exact=True).count() == 1
          and page.get_by_role("link", name="Add assignment", exact=True).count() == 1
          and page.get_by_role("link", name="Download CSV", exact=True).count() == 1)
    check("Contoso Production: the audit section's link 'All records for this resource'",
          page.get_by_role("link", name="All records for this resource", exact=True).count() == 1)
    shots.look(page, "resource", "Contoso Production (administrator)")


def admin_assigns_carol(page, origin, api, demo, shots):
    """Add assignment: Reader, eligible, 30 days, for Carol found with "Find member"."""
    page.get_by_role("link", name="Add assignment", exact=True).click()
    wait_url(page, origin + f"/ui/resources/{demo.prod}/assign", "the Add assignment form")
    heading(page, "Add assignment on Contoso Production", "the Add assignment form")
    page.get_by_label("Role", exact=True).select_option(label="Reader")
    member = page.get_by_role("group", name="Member", exact=True)
    member.get_by_label("Name, user name or e-mail").fill("carol")
    page.get_by_label("Reason").fill("Portal flows: Carol reviews production")
    before = World(api)
    posted = submit(page, member.get_by_role("button", name="Find member", exact=True).click,
                    f"/ui/resources/{demo.prod}/assign")
    check("Find member: answered 200 with the form again", posted.status == 200, posted.status)
    radio = page.get_by_role("radio", name="Carol Auditor (carol@contoso.example)", exact=True)
    check("Find member 'carol': the radio 'Carol Auditor (carol@contoso.example)'", radio.count() == 1,
          page.get_by_role("group", name="Member").inner_text())
    kept = (page.get_by_label("Role", exact=True).evaluate("s => s.selectedOptions[0].text"),
            page.get_by_label("Reason").input_value())
    check("Find member: the role and reason are kept", kept == ("Reader", "Portal flows: Carol reviews production"), kept)
    before.changes().expect("Find member changed nothing")
    page.get_by_label("Name, user name or e-mail").fill("Engineers")
    page.get_by_role("button", name="Find member", exact=True).click()
    page.wait_for_load_state()
    check("Find member 'Engineers': the group as 'Platform Engineers (Group)'",
          page.get_by_role("radio", name="Platform Engineers (Group)", exact=True).count() == 1,
          page.get_by_role("group", name="Member").inner_text())
    page.get_by_label("Name, user name or e-mail").fill("carol")
    page.get_by_role("button", name="Find member", exact=True).click()
    page.wait_for_load_state()
    page.get_by_role("radio", name="Carol Auditor (carol@contoso.example)", exact=True).check()
    check("Add assignment: 'Eligible' is chosen", page.get_by_role("radio", name="Eligible", exact=True).is_checked())
    check("Add assignment: 'Permanent' is not checked", not page.get_by_label("Permanent", exact=True).is_checked())
    for label in ("Start time", "End time", "Duration"):
        check(f"Add assignment: the field {label!r}", page.get_by_label(label, exact=True).count() == 1)
    page.get_by_label("Duration", exact=True).fill("30")
    page.get_by_label("Duration", exact=True).blur()
    shots.look(page, "assign", "Add assignment (Carol found)")

    before = World(api)
    posted = submit(page, page.get_by_role("button", name="Assign", exact=True).click,
                    f"/ui/resources/{demo.prod}/assign")
    wait_url(page, origin + f"/ui/resources/{demo.prod}?done=assigned", "Contoso Production after assigning")
    expect_message(page, "status", "Assignment added.", "Contoso Production after assigning")
    added = before.changes().expect("the assignment", new_requests=1, new_assignments=1, audits=1)
    r, a = added.new_requests[0], added.new_assignments[0]
    check("API: an AdminAdd, Eligible, for Carol, Reader on Contoso Production, 30 days, Provisioned, with the reason",
          r["type"] == "AdminAdd" and r["assignmentState"] == "Eligible" and r["subjectId"] == demo.carol
          and r["resourceId"] == demo.prod and r["roleDefinitionId"] == demo.prod_reader
          and r["status"]["subStatus"] == "Provisioned" and r["reason"] == "Portal flows: Carol reviews production", r)
    span = parse_time(a["endDateTime"]) - parse_time(a["startDateTime"])
    check("API: Carol eligible for Reader on Contoso Production, directly, for 30 days",
          a["assignmentState"] == "Eligible" and a["subjectId"] == demo.carol and a["resourceId"] == demo.prod
          and a["roleDefinitionId"] == demo.prod_reader and a.get("memberType") in (None, "Direct")
          and span == timedelta(days=30), a)
    check("API: the AdminAdd's audit record carries this POST's request id",
          added.audits[0]["correlationId"] == posted.headers.get("request-id"), added.audits[0])
    rows = row_where(table(page, "Eligible assignments"), Member="Carol Auditor", Role="Reader", Membership="Direct")
    check("Contoso Production: Carol's direct Reader listed with 'Remove/Extend/Update Reader … Carol Auditor'",
          len(rows) == 1 and page.get_by_role("link", name="Extend Reader for Carol Auditor", exact=True).count() == 1,
          rows)
    return a, added.audits[0]["activityDisplayName"]


def admin_filters_and_downloads(page, origin, api, demo, shots):
    page.get_by_label("Member", exact=True).fill("Carol")
    page.get_by_role("button", name="Filter", exact=True).click()
    wait_url(page, re.compile(rf".*/ui/resources/{demo.prod}\?.*member=Carol.*"), "Contoso Production filtered")
    rows = {c: table(page, c) for c in ("Eligible assignments", "Active assignments", "Expired assignments")}
    listed = [r for c in rows.values() for r in c]
    check("Contoso Production filtered by Member 'Carol': only Carol's rows, her direct and inherited Reader among them",
          listed and all(r["Member"].startswith("Carol Auditor") for r in listed)
          and len(row_where(rows["Eligible assignments"], Role="Reader")) == 2
          and rows["Active assignments"] == [], rows)
    check("Contoso Production filtered: the Member field keeps 'Carol'",
          page.get_by_label("Member", exact=True).input_value() == "Carol")
    shots.look(page, "resource-filtered", "Contoso Production (filtered by member)")
    body, name = download(page, "Download CSV", "Contoso Production")
    # The download follows the page's filters: the API's export with $filter on Carol.
    status, headers, want = api.raw(
        "admin", f"{PIM}/resources/{demo.prod}/roleAssignments/export",
        query={"$filter": f"subjectId in ('{demo.carol}')"}, accept="text/csv")
    check("API: the export answered 200", status == 200, status)
    check(f"Download CSV ({name}): byte for byte the API's export of Contoso Production filtered on Carol",
          body == want, first_difference(body, want))
    check("Download CSV holds Carol's rows only", b"Carol Auditor" in body and b"Bob Approver" not in body,
          body[:300])


def change_assignment(page, origin, api, demo, verb, link, button, end=None, shots=None):
    page.get_by_role("link", name=link, exact=True).click()
    wait_url(page, re.compile(rf".*/ui/resources/{demo.prod}/assignments/[^/]+/{verb}$"), f"the {verb} form")
    heading(page, link, f"the {verb} form")
    if shots:
        shots.look(page, f"{verb}-assignment", link)
    if end is not None:
        page.get_by_label("End time", exact=True).fill(end)
    page.get_by_label("Reason").fill(f"Portal flows: {verb}")
    before = World(api)
    page.get_by_role("button", name=button, exact=True).click()
    past = {"extend": "extended", "remove": "removed"}[verb]
    wait_url(page, origin + f"/ui/resources/{demo.prod}?done={past}", f"Contoso Production after {verb}")
    expect_message(page, "status", f"Assignment {past}.", f"Contoso Production after {verb}")
    return before


def admin_extends_and_removes(page, origin, api, demo, assignment, shots):
    page.get_by_role("link", name="Extend Reader for Carol Auditor", exact=True).click()
    wait_url(page, re.compile(rf".*/ui/resources/{demo.prod}/assignments/[^/]+/extend$"), "the Extend form")
    heading(page, "Extend Reader for Carol Auditor", "the Extend form")
    end_field = page.get_by_label("End time", exact=True)
    check("Extend: 'End time' holds the current end (UTC)",
          end_field.input_value() == assignment["endDateTime"][:16], end_field.input_value())
    shots.look(page, "extend-assignment", "Extend Reader for Carol Auditor")
    page.go_back()
    end = (parse_time(assignment["endDateTime"]) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    before = change_assignment(page, origin, api, demo, "extend", "Extend Reader for Carol Auditor", "Extend", end)
    extended = before.changes()
    shape = (len(extended.new_requests), len(extended.audits), len(extended.changed_assignments),
             len(extended.new_assignments), len(extended.gone_assignments))
    check("API: the extension: one request, one audit record, Carol's Reader changed, nothing else",
          shape in ((1, 1, 1, 0, 0), (1, 1, 0, 1, 1)), extended.summary())
    if shape[3]:
        note(f"AdminExtend replaced the assignment (a new id) rather than changing its end: {extended.summary()}")
    r = extended.new_requests[0]
    check("API: an AdminExtend of Carol's Reader on Contoso Production, Provisioned",
          r["type"] == "AdminExtend" and r["subjectId"] == demo.carol and r["roleDefinitionId"] == demo.prod_reader
          and r["status"]["subStatus"] == "Provisioned", r)
    mine = [a for a in api.list("admin", f"{PIM}/roleAssignments",
                                {"$filter": f"subjectId eq '{demo.carol}' and resourceId eq '{demo.prod}'"})
            if a["roleDefinitionId"] == demo.prod_reader]
    check(f"API: Carol's Reader on Contoso Production now ends {end}",
          len(mine) == 1 and mine[0]["endDateTime"].startswith(end), mine)

    before = change_assignment(page, origin, api, demo, "remove", "Remove Reader from Carol Auditor", "Remove",
                               shots=shots)
    removed = before.changes().expect("the removal", new_requests=1, gone_assignments=1, audits=1)
    r = removed.new_requests[0]
    check("API: an AdminRemove of Carol's Reader on Contoso Production",
          r["type"] == "AdminRemove" and r["subjectId"] == demo.carol and r["roleDefinitionId"] == demo.prod_reader
          and removed.gone_assignments[0]["id"] == mine[0]["id"], r)
    check("Contoso Production: no 'Remove Reader from Carol Auditor' any more",
          page.get_by_role("link", name="Remove Reader from Carol Auditor", exact=True).count() == 0)


# Rule settings as their JSON means them: ApprovalRule's optional keys at their defaults
# (decisions.md §5, policy.rs).
KNOWN_RULES = {"expirationrule", "mfarule", "justificationrule", "ticketingrule", "approvalrule"}
APPROVAL_DEFAULTS = {"Approvers": [], "ApprovalTimeoutInMinutes": 1440, "RequiredApprovals": 1,
                     "AllowEmergencyBypass": False, "EmergencyMaximumMinutes": 60}
COLLECTIONS = ("adminEligibleSettings", "adminMemberSettings", "userEligibleSettings", "userMemberSettings")


def role_setting(api, role_definition_id):
    found = api.list("admin", f"{PIM}/roleSettings", {"$filter": f"roleDefinitionId eq '{role_definition_id}'"})
    if len(found) != 1:
        raise Failure(f"the role setting of {role_definition_id} not found once: {found}")
    return found[0]


def compare_settings(old, new, changed):
    """Differences between two role settings other than `changed` ({(collection, rule):
    {key: value}}): (differences in meaning, differences in text only)."""
    meaning, text = [], []
    for c in COLLECTIONS:
        a, b = old.get(c) or [], new.get(c) or []
        names_a, names_b = [r["ruleIdentifier"] for r in a], [r["ruleIdentifier"] for r in b]
        if names_a != names_b:
            meaning.append(f"{c}: rules {names_a} became {names_b}")
            continue
        for ra, rb in zip(a, b):
            name = ra["ruleIdentifier"]
            want = changed.get((c, name))
            if name.lower() not in KNOWN_RULES:
                if ra["setting"] != rb["setting"]:
                    meaning.append(f"{c} {name} (not shown by the form): {ra['setting']} became {rb['setting']}")
                continue
            sa, sb = json.loads(ra["setting"]), json.loads(rb["setting"])
            expected = dict(sa, **(want or {}))
            if sb == expected:
                continue
            if name.lower() == "approvalrule" and dict(APPROVAL_DEFAULTS, **sb) == dict(APPROVAL_DEFAULTS, **expected):
                text.append(f"{c} {name}: {ra['setting']} became {rb['setting']}")
                continue
            meaning.append(f"{c} {name}: {ra['setting']} became {rb['setting']} (expected {json.dumps(expected)})")
    return meaning, text


def admin_edits_role_settings_by_keyboard(page, origin, api, demo, shots):
    """Contributor on Contoso Production: maximum 4 hours and ticket information required,
    by keyboard only, from the resource's page."""
    # Rules the form does not show (an unknown rule in two collections, a key of ApprovalRule
    # it has no field for), set through the API: the portal's save must keep them verbatim.
    setting = role_setting(api, demo.prod_contributor)
    approval = next(r for r in setting["userMemberSettings"] if r["ruleIdentifier"] == "ApprovalRule")
    extra = {
        "userMemberSettings": [
            {"ruleIdentifier": "NotificationRule",
             "setting": json.dumps({"notificationLevel": "Critical", "recipients": ["secops@contoso.example"]})},
            {"ruleIdentifier": "ApprovalRule",
             "setting": json.dumps(dict(json.loads(approval["setting"]), BusinessFlowId="portal-flows"))},
        ],
        "adminMemberSettings": [{"ruleIdentifier": "AttributeConditionRule", "setting": '{"condition":"@Resource[tag] == \'prod\'"}'}],
    }
    status, out = api.call("admin", "PATCH", f"{PIM}/roleSettings/{setting['id']}", body=extra)
    check("API: rules the form does not show added to Contributor's setting (PATCH 204)", status == 204, f"{status} {out}")
    original = role_setting(api, demo.prod_contributor)

    goto(page, origin + f"/ui/resources/{demo.prod}", "Contoso Production")
    kb = Keyboard(page, "Contoso Production (keyboard)")
    kb.tab_to(by_name("a", "Edit settings for Contributor"), 'the link "Edit settings for Contributor"', limit=150)
    page.keyboard.press("Enter")
    wait_url(page, origin + f"/ui/resources/{demo.prod}/settings/{demo.prod_contributor}", "the role settings page")
    heading(page, "Role settings: Contributor", "the role settings page")
    for legend in ("Activation", "Eligible assignments", "Active assignments"):
        check(f"Role settings: fieldset {legend!r}", page.get_by_role("group", name=legend, exact=True).count() == 1)
    labels = ["Maximum activation duration (hours)", "Require multi-factor authentication", "Require justification",
              "Require ticket information", "Require approval", "Approvers", "Required approvals",
              "Approval timeout (minutes)", "Allow emergency access", "Emergency access maximum (minutes)",
              "Allow permanent eligible assignments", "Eligible assignments expire after (days)",
              "Allow permanent active assignments", "Active assignments expire after (days)",
              "Require multi-factor authentication on active assignment",
              "Require justification on active assignment"]
    missing = [x for x in labels if page.get_by_label(x, exact=True).count() != 1]
    check("Role settings: every field of the contract, by its label", not missing, f"missing {missing}")
    shown = {
        "max": page.get_by_label("Maximum activation duration (hours)", exact=True).input_value(),
        "mfa": page.get_by_label("Require multi-factor authentication", exact=True).is_checked(),
        "ticket": page.get_by_label("Require ticket information", exact=True).is_checked(),
        "eligible days": page.get_by_label("Eligible assignments expire after (days)", exact=True).input_value(),
        "active days": page.get_by_label("Active assignments expire after (days)", exact=True).input_value(),
    }
    check("Role settings: the stored rules shown (8 hours, MFA, no ticket, 365 and 180 days)",
          shown == {"max": "8", "mfa": True, "ticket": False, "eligible days": "365", "active days": "180"}, shown)
    shots.look(page, "role-settings", "Role settings: Contributor")

    kb = Keyboard(page, "Role settings (keyboard)")
    kb.tab_to(by_id("max_hours"), "the field 'Maximum activation duration (hours)'")
    kb.type("4")
    f = kb.tab_to(by_id("ticketing"), "the checkbox 'Require ticket information'")
    check("Role settings (keyboard): 'Require ticket information' starts unchecked", not f["checked"])
    f = kb.press("Space")
    check("Role settings (keyboard): Space checks it", f["id"] == "ticketing" and f["checked"], describe(f))
    kb.tab_to(by_name("button", "Save settings"), 'the button "Save settings"')
    before = World(api)
    posted = submit(page, lambda: page.keyboard.press("Enter"), f"/settings/{demo.prod_contributor}")
    wait_url(page, re.compile(rf".*/settings/{demo.prod_contributor}\?done=saved$"), "the role settings page after saving")
    expect_message(page, "status", "Settings saved", "Role settings after saving")
    check("Role settings after saving: the form shows 4 hours and ticket information required",
          page.get_by_label("Maximum activation duration (hours)", exact=True).input_value() == "4"
          and page.get_by_label("Require ticket information", exact=True).is_checked())
    saved = role_setting(api, demo.prod_contributor)
    exp = next(json.loads(r["setting"]) for r in saved["userMemberSettings"] if r["ruleIdentifier"] == "ExpirationRule")
    tick = next(json.loads(r["setting"]) for r in saved["userMemberSettings"] if r["ruleIdentifier"] == "TicketingRule")
    check("API: userMemberSettings ExpirationRule maximumGrantPeriodInMinutes 240, TicketingRule required",
          exp.get("maximumGrantPeriodInMinutes") == 240 and tick.get("ticketingRequired") is True, (exp, tick))
    meaning, text = compare_settings(original, saved, {
        ("userMemberSettings", "ExpirationRule"): {"maximumGrantPeriodInMinutes": 240},
        ("userMemberSettings", "TicketingRule"): {"ticketingRequired": True},
    })
    check("API: every other rule of every collection unchanged (rules the form does not show verbatim)",
          not meaning, "; ".join(meaning))
    for t in text:
        note(f"Role settings save rewrote a rule with its defaults spelled out (same meaning): {t}")
    check("API: the setting is no longer default, last updated by Demo Administrator",
          saved["isDefault"] is False and saved["lastUpdatedBy"] == "Demo Administrator", saved)
    done = before.changes().expect("the save: one audit record, nothing else", audits=1)
    check("API: its audit record (Update role setting, success, this POST's request id)",
          done.audits[0]["activityDisplayName"] == "Update role setting" and done.audits[0]["result"] == "success"
          and done.audits[0]["correlationId"] == posted.headers.get("request-id"), done.audits[0])
    shots.look(page, "role-settings-saved", "Role settings: Contributor (saved)")
    return original, saved


def admin_role_setting_refused(page, api, demo, saved, shots):
    field = page.get_by_label("Maximum activation duration (hours)", exact=True)
    field.fill("900000000")
    page.get_by_label("Require justification", exact=True).uncheck()
    before = World(api)
    posted = submit(page, page.get_by_role("button", name="Save settings", exact=True).click,
                    f"/settings/{demo.prod_contributor}")
    check("Role settings, 900000000 hours: answered 400 with the form again", posted.status == 400, posted.status)
    alert = message(page, "alert") or ""
    check("Role settings, 900000000 hours: the alert is the core's InvalidRoleSetting message about ExpirationRule",
          alert.startswith("userMemberSettings ExpirationRule") and "maximumGrantPeriodInMinutes" in alert, repr(alert))
    described = field.get_attribute("aria-describedby")
    beside = page.locator(f"#{described}").inner_text().strip() if described else None
    check("Role settings, 900000000 hours: the same message next to the field (aria-invalid, aria-describedby)",
          field.get_attribute("aria-invalid") == "true" and beside == alert, f"{described!r} → {beside!r}")
    check("Role settings, 900000000 hours: inputs kept (the value, ticket on, justification off)",
          field.input_value() == "900000000"
          and page.get_by_label("Require ticket information", exact=True).is_checked()
          and not page.get_by_label("Require justification", exact=True).is_checked())
    check("Role settings, 900000000 hours: no 'Settings saved'", message(page, "status") is None, message(page, "status"))
    refused = before.changes().expect("the refused save: one failure audited, nothing else", audits=1)
    check("API: its audit record (Update role setting, failure, this POST's request id)",
          refused.audits[0]["result"] == "failure" and refused.audits[0]["correlationId"] == posted.headers.get("request-id"),
          refused.audits[0])
    now = role_setting(api, demo.prod_contributor)
    check("API: the role setting unchanged", {c: now.get(c) for c in COLLECTIONS} == {c: saved.get(c) for c in COLLECTIONS},
          f"before {saved}\nafter {now}")
    shots.look(page, "role-settings-error", "Role settings: Contributor (refused value)")


def restore_role_setting(api, original):
    body = {c: original[c] for c in COLLECTIONS if original.get(c)}
    status, out = api.call("admin", "PATCH", f"{PIM}/roleSettings/{original['id']}", body=body)
    check("API: Contributor's rules on Contoso Production restored (for the later flows)", status == 204, f"{status} {out}")


def audit_ids_on_page(page):
    return page.get_by_role("table", name="Audit records", exact=True).locator("tbody a[href^='/ui/audit/']").evaluate_all(
        "as => as.map(a => a.getAttribute('href').slice('/ui/audit/'.length))")


def audit_csv(records):
    """The CSV the audit log's export must hold for these API records (portal.md §5.8)."""
    def text(v):
        return v if isinstance(v, str) else ""

    def field(s):
        if s[:1] in ("=", "+", "-", "@", "\t", "\r"):
            s = "'" + s
        return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n\r') else s

    lines = ["id,activityDateTime,category,activityDisplayName,result,initiatedBy,targetResources"]
    for d in records:
        user = (d.get("initiatedBy") or {}).get("user") or {}
        targets = "; ".join(f"{text(t.get('displayName'))} ({text(t.get('id'))})" for t in d.get("targetResources") or [])
        row = [text(d.get("id")), text(d.get("activityDateTime")), text(d.get("category")),
               text(d.get("activityDisplayName")), text(d.get("result")),
               f"{text(user.get('displayName'))} ({text(user.get('id'))})", targets]
        lines.append(",".join(field(x) for x in row))
    return ("\r\n".join(lines) + "\r\n").encode()


def exports_match(page, api, who, records, what):
    """The page's two downloads against the API's records of the same view."""
    body, name = download(page, "Download CSV", what)
    want = audit_csv(records)
    check(f"{what}: Download CSV ({name}) is the API's {len(records)} records, header and rows",
          body == want, first_difference(body, want))
    body, name = download(page, "Download JSON Lines", what)
    lines = body.decode().splitlines()
    got = [json.loads(x) for x in lines]
    check(f"{what}: Download JSON Lines ({name}) has one line per record, in the API's order",
          [g.get("id") for g in got] == [r["id"] for r in records], f"{[g.get('id') for g in got]}")
    for g in got:
        one = api.get(who, f"{AUDIT}/{g['id']}")
        one.pop("@odata.context", None)
        if g != one:
            raise Failure(f"{what}: the JSON Lines record {g['id']} differs from GET {AUDIT}/{g['id']}:\n{g}\n{one}")
    ok(f"{what}: every JSON Lines record equals GET {AUDIT}/{{id}} minus @odata.context")


def admin_reads_the_audit_log(page, origin, api, demo, activity, shots):
    goto(page, origin + "/ui/", "My roles")
    nav_link(page, "Audit log").click()
    wait_url(page, origin + "/ui/audit", "the audit log")
    heading(page, "Audit log", "the audit log")
    for label in ("From", "To", "Activity", "Initiated by", "Target", "Result"):
        check(f"Audit log: the filter {label!r}", page.get_by_label(label, exact=True).count() == 1)
    heads = page.get_by_role("table", name="Audit records", exact=True).locator("thead th").all_inner_texts()
    check("Audit log: table 'Audit records' with Date, Activity, Initiated by, Targets, Result",
          heads == ["Date", "Activity", "Initiated by", "Targets", "Result"], heads)
    newest = api.get("admin", AUDIT, {"$top": "50"})["value"]
    check("Audit log: the first page is the API's newest 50 records, in order",
          audit_ids_on_page(page) == [r["id"] for r in newest],
          f"page {audit_ids_on_page(page)[:5]}…, API {[r['id'] for r in newest][:5]}…")
    shots.look(page, "audit", "Audit log (administrator)")

    page.get_by_label("Activity", exact=True).fill(activity)
    page.get_by_label("Result", exact=True).select_option("success")
    page.get_by_role("button", name="Apply filters", exact=True).click()
    wait_url(page, re.compile(r".*/ui/audit\?.*activity=.*"), "the audit log filtered")
    q = activity.replace("'", "''")
    records = api.list("admin", AUDIT, {"$filter": f"contains(activityDisplayName,'{q}') and result eq 'success'"})
    ids = audit_ids_on_page(page)
    check(f"Audit log filtered by Activity {activity!r} and Result Success: the API's {len(records)} records",
          ids == [r["id"] for r in records] and len(records) >= 2, f"page {ids}\nAPI {[r['id'] for r in records]}")
    rows = table(page, "Audit records")
    check("Audit log filtered: every row's Activity and Result",
          all(r["Activity"] == activity and r["Result"] == "success" for r in rows), rows)
    check("Audit log filtered: the filters are kept",
          page.get_by_label("Activity", exact=True).input_value() == activity
          and page.get_by_label("Result", exact=True).input_value() == "success")
    shots.look(page, "audit-filtered", "Audit log (filtered)")
    exports_match(page, api, "admin", records, "Audit log filtered")

    # A record's page: every field, its hash and its predecessor's.
    record = records[0]
    page.get_by_role("table", name="Audit records", exact=True).locator(f"a[href='/ui/audit/{record['id']}']").click()
    wait_url(page, origin + f"/ui/audit/{record['id']}", "an audit record's page")
    heading(page, "Audit record", "an audit record's page")
    fields = dict(zip(page.locator("main dl.fields dt").all_inner_texts(),
                      page.locator("main dl.fields dd").all_inner_texts()))
    user = record["initiatedBy"]["user"]
    check("Audit record: its fields as the API has them (Id, Activity, Category, Result, Correlation id, Initiated by)",
          fields.get("Id") == record["id"] and fields.get("Activity") == record["activityDisplayName"]
          and fields.get("Category") == record["category"] and fields.get("Result") == record["result"]
          and fields.get("Correlation id") == record["correlationId"]
          and fields.get("Initiated by") == f"{user['displayName']} ({user['id']})", fields)
    targets = table(page, "Target resources")
    check("Audit record: its targets as the API has them",
          [(t["Type"], t["Name"], t["Id"]) for t in targets]
          == [(t["type"], t["displayName"], t["id"]) for t in record["targetResources"]], targets)
    for d in record.get("additionalDetails", []):
        if fields.get(d["key"]) != d["value"]:
            fail_on(page, "Audit record: details", f"{d['key']} = {d['value']!r}", f"{fields.get(d['key'])!r}")
    ok("Audit record: every additional detail shown")
    hashes = (fields.get("Hash", ""), fields.get("Previous record's hash", ""))
    check("Audit record: 'Hash' and 'Previous record's hash' are SHA-256 hex, and differ",
          all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes) and hashes[0] != hashes[1], hashes)
    date = page.locator("main dl.fields dt:text-is('Date') + dd")
    check_later("Audit record: 'Date' shown in the viewer's time zone inside <time datetime> (portal.md §1)",
                date.locator("time[datetime]").count() == 1,
                f"the Date reads {date.inner_text()!r}, no <time> element, at {page.url}")
    shots.look(page, "audit-record", "Audit record")
    everything = api.list("admin", AUDIT)
    at = [r["id"] for r in everything].index(record["id"])
    previous = everything[at + 1]
    goto(page, origin + f"/ui/audit/{previous['id']}", "the record before it")
    shown = page.locator("main dl.fields dt:text-is('Hash') + dd").inner_text().strip()
    check("Audit record: 'Previous record's hash' is the 'Hash' on the page of the record written before it",
          shown == hashes[1], f"record {record['id']} names {hashes[1]}, record {previous['id']} "
          f"({previous['activityDisplayName']}, {previous['activityDateTime']}) shows {shown}")

    # Verify integrity.
    goto(page, origin + "/ui/audit", "the audit log")
    def count():
        return api.get("admin", AUDIT, {"$count": "true", "$top": "1"}).get("@odata.count")

    low, before = count(), World(api)
    page.get_by_role("button", name="Verify integrity", exact=True).click()
    page.wait_for_load_state()
    high = count()
    said = message(page, "status") or ""
    n = re.fullmatch(r"Chain verified: (\d+) records", said)
    check(f"Verify integrity: status 'Chain verified: N records', N the API's count of records ({low})",
          n is not None and low <= int(n.group(1)) <= high, f"{said!r}; alert {message(page, 'alert')!r}; "
          f"the API counts {low} before, {high} after")
    before.changes().expect("verifying changed nothing")
    shown = audit_ids_on_page(page)
    check_later("Audit log after 'Verify integrity': the table still lists the records (not 'No record matches.')",
                len(shown) > 0, f"{len(shown)} rows and the text {page.locator('main tbody').first.inner_text()!r} "
                f"at {page.url} (the POST's answer is the page itself, no redirect to a GET) "
                f"(screenshot: {shots.save_failure(page, 'audit-after-verify.png')})")
    shots.look(page, "audit-verified", "Audit log (chain verified)")


def flow_g_administrator(b, origin, api, demo, shots):
    print("# g. The administrator: Resources, registration, assignments, CSV, role settings, audit log", flush=True)
    ctx = browser.new_context(b)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    sign_in(page, origin, "Demo Administrator", landing="/ui/resources")
    admin_sees_the_tree(page, origin, api, shots)
    admin_registers_a_resource_group(page, origin, api, demo, shots)
    admin_opens_production(page, origin, demo)
    admin_sees_production(page, demo, shots)
    assignment, activity = admin_assigns_carol(page, origin, api, demo, shots)
    admin_filters_and_downloads(page, origin, api, demo, shots)
    goto(page, origin + f"/ui/resources/{demo.prod}", "Contoso Production")
    admin_extends_and_removes(page, origin, api, demo, assignment, shots)
    original, saved = admin_edits_role_settings_by_keyboard(page, origin, api, demo, shots)
    admin_role_setting_refused(page, api, demo, saved, shots)
    admin_reads_the_audit_log(page, origin, api, demo, activity, shots)
    restore_role_setting(api, original)
    ctx.close()


# ---- flow h: Bob, an R3 holder on Contoso Production only --------------------------------------


def no_change_links(page, who, where):
    found = [name for name in page.get_by_role("link").evaluate_all(
        "as => as.map(a => a.getAttribute('aria-label') || a.innerText.trim())")
        if re.match(r"(Remove|Extend|Update) .+ (from|for) ", name or "") or name in ("Add assignment",)
        or (name or "").startswith("Edit settings for ")]
    check(f"{where} ({who}): no Remove, Extend, Update, Add assignment or Edit settings links", not found, found)


def nothing_changed(before, what):
    """No request, no assignment changed since `before`; returns the audit records written."""
    changes = before.changes()
    check(f"API: {what} created, changed or removed nothing",
          not (changes.new_requests or changes.changed_requests or changes.new_assignments
               or changes.gone_assignments or changes.changed_assignments), changes.summary())
    return changes.audits


def refusal_audited(before, api, who, subject_id, mirror, what):
    """A refused write from the portal: nothing changed, and the audit records the API
    writes when `who` makes the same write through it (`mirror`: method, path, body) —
    decisions.md §11: every refused write, 403 included, writes one record."""
    portal = nothing_changed(before, what)
    method, path, body = mirror
    again = World(api)
    status, out = api.call(who, method, path, body=body)
    check(f"API: the same write through the API as {who} is refused with 403", status == 403, f"{status} {out}")
    by_api = again.changes().audits

    def shape(records):
        return [(a["activityDisplayName"], a["category"], a.get("operationType"), a["result"],
                 a["initiatedBy"]["user"]["id"]) for a in records]

    check_later(f"API: {what} audited as the API audits the same refusal",
                shape(portal) == shape(by_api) and all(a[4] == subject_id for a in shape(portal)),
                f"the portal wrote {shape(portal)}, the API writes {shape(by_api)} "
                f"({[a.get('resultReason') for a in by_api]})")


def denied(page, origin, path, what, shots, key):
    goto(page, origin + path, what, status=403)
    heading(page, "Access denied", what)
    shots.look(page, key, f"Access denied ({what})")


def flow_h_bob(b, origin, api, demo, shots):
    print("# h. Bob (R3 on Contoso Production only): audit log without Verify; no changes on Contoso Development",
          flush=True)
    ctx = browser.new_context(b, dark=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    sign_in(page, origin, "Bob Approver")
    check("navigation (Bob): 'Audit log'", nav_link(page, "Audit log").count() == 1,
          page.get_by_role("navigation", name="Main").inner_text())
    nav_link(page, "Audit log").click()
    wait_url(page, origin + "/ui/audit", "Bob's audit log")
    heading(page, "Audit log", "Bob's audit log")
    mine = api.list("bob", AUDIT)
    ids = audit_ids_on_page(page)
    check("Audit log (Bob): the first page is the API's newest 50 records for Bob, in order",
          ids == [r["id"] for r in mine[:50]], f"page {len(ids)} rows, API {len(mine)} records")
    everything = api.list("admin", AUDIT)
    about = lambda r, rid: any(t.get("id") == rid for t in r.get("targetResources") or [])  # noqa: E731
    check("API: Bob reads records about Contoso Production and none about Contoso Development only",
          any(about(r, demo.prod) for r in mine) and not any(about(r, demo.dev) and not about(r, demo.prod) for r in mine)
          and any(about(r, demo.dev) for r in everything), f"{len(mine)} of {len(everything)} records")
    check("Audit log (Bob): no 'Verify integrity'",
          page.get_by_role("button", name="Verify integrity").count() == 0)
    shots.look(page, "audit-bob", "Audit log (Bob, his resources' records)")
    before = World(api)
    r = page.request.post(origin + "/ui/audit/verify", form={"csrf": csrf_of(page) or ""},
                          headers={"Origin": origin}, max_redirects=0)
    check("POST /ui/audit/verify as Bob (his own CSRF token): the 403 'Access denied' page",
          r.status == 403 and "<h1>Access denied</h1>" in r.text(), f"{r.status}: {r.text()[:200]}")
    nothing_changed(before, "Bob's verify attempt")
    r = page.request.get(origin + "/ui/audit/export.jsonl")
    got = [json.loads(x)["id"] for x in r.body().decode().splitlines()]
    check("Audit log (Bob): Download JSON Lines holds exactly the API's records for Bob",
          r.status == 200 and got == [x["id"] for x in mine], f"{r.status}: {len(got)} lines, API {len(mine)}")

    goto(page, origin + f"/ui/resources/{demo.prod}", "Contoso Production (Bob)")
    heading(page, "Contoso Production", "Contoso Production (Bob)")
    check("Contoso Production (Bob): 'Add assignment', 'Edit settings for Contributor', Remove/Extend/Update on "
          "Alice's direct Contributor",
          page.get_by_role("link", name="Add assignment", exact=True).count() == 1
          and page.get_by_role("link", name="Edit settings for Contributor", exact=True).count() == 1
          and page.get_by_role("link", name="Extend Contributor for Alice Engineer", exact=True).count() == 1)
    check("Contoso Production (Bob): its audit section lists the latest records",
          len(table(page, "Latest records")) > 0)
    shots.look(page, "resource-bob", "Contoso Production (Bob, an R3 holder)")
    page.get_by_role("link", name="All records for this resource", exact=True).click()
    wait_url(page, origin + f"/ui/audit?resource={demo.prod}", "Contoso Production's records (Bob)")
    scoped = audit_ids_on_page(page)
    check("Audit log for Contoso Production (Bob): records, each one Bob may read",
          scoped and set(scoped) <= {r["id"] for r in mine}, f"{len(scoped)} rows")
    shots.look(page, "audit-resource", "Audit log (one resource)")

    # Contoso Development: Bob has no assignment there (no R1), so the API answers 403 and so
    # does its page; with an eligible Reader (R1, not R3) he reads it but changes nothing.
    goto(page, origin + f"/ui/resources/{demo.dev}", "Contoso Development (Bob, no R1)", status=403)
    heading(page, "Access denied", "Contoso Development (Bob, no R1)")
    status, _ = api.call("bob", "GET", f"{PIM}/resources/{demo.dev}")
    check("API: Bob may not read Contoso Development either (403)", status == 403, status)
    granted = api.submit("admin", {
        "type": "AdminAdd", "assignmentState": "Eligible", "subjectId": demo.bob, "resourceId": demo.dev,
        "roleDefinitionId": demo.dev_reader, "reason": "Portal flows: Bob reads Contoso Development",
        "schedule": {"type": "Once", "duration": "P1D"},
    })
    ok("API: Bob made eligible Reader on Contoso Development (R1 without R3)")
    goto(page, origin + f"/ui/resources/{demo.dev}", "Contoso Development (Bob, eligible Reader)")
    heading(page, "Contoso Development", "Contoso Development (Bob)")
    rows = table(page, "Eligible assignments") + table(page, "Active assignments")
    check("Contoso Development (Bob): the assignments are listed",
          len(row_where(rows, Member="Platform Engineers", Role="Owner")) == 1, rows)
    no_change_links(page, "Bob", "Contoso Development")
    check("Contoso Development (Bob): the audit section says it is for administrators",
          page.get_by_role("link", name="All records for this resource").count() == 0)
    shots.look(page, "resource-reader", "Contoso Development (Bob: may read, not change)")
    before = World(api)
    denied(page, origin, f"/ui/resources/{demo.dev}/assign", "Add assignment on Contoso Development (Bob)",
           shots, "access-denied-assign")
    denied(page, origin, f"/ui/resources/{demo.dev}/settings/{demo.dev_owner}",
           "Owner's settings on Contoso Development (Bob)", shots, "access-denied-settings")
    nothing_changed(before, "Bob's refused pages")
    goto(page, origin + f"/ui/resources/{demo.dev}", "Contoso Development (Bob)")
    before = World(api)
    r = page.request.post(origin + f"/ui/resources/{demo.dev}/assign", headers={"Origin": origin}, max_redirects=0,
                          form={"csrf": csrf_of(page) or "", "role": demo.dev_owner, "member": demo.bob,
                                "state": "Active", "days": "1", "reason": "Portal flows: Bob tries"})
    check("POST Add assignment on Contoso Development as Bob (his CSRF token): the 403 'Access denied' page",
          r.status == 403 and "<h1>Access denied</h1>" in r.text(), f"{r.status}: {r.text()[:200]}")
    refusal_audited(before, api, "bob", demo.bob, ("POST", f"{PIM}/roleAssignmentRequests", {
        "type": "AdminAdd", "assignmentState": "Active", "subjectId": demo.bob, "resourceId": demo.dev,
        "roleDefinitionId": demo.dev_owner, "reason": "Portal flows: Bob tries",
        "schedule": {"type": "Once", "duration": "P1D"}}), "Bob's refused assignment")
    api.submit("admin", {
        "type": "AdminRemove", "assignmentState": "Eligible", "subjectId": demo.bob, "resourceId": demo.dev,
        "roleDefinitionId": demo.dev_reader,
    })
    check("API: Bob's Reader on Contoso Development removed again",
          not [a for a in api.list("admin", f"{PIM}/roleAssignments", {"$filter": f"subjectId eq '{demo.bob}'"})
               if a["resourceId"] == demo.dev], granted["id"])
    ctx.close()


# ---- flow i: Carol, no R3 anywhere -------------------------------------------------------------


def flow_i_carol(b, origin, api, demo, shots):
    print("# i. Carol (eligible only): no audit log, no registration, no role settings", flush=True)
    ctx = browser.new_context(b)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    sign_in(page, origin, "Carol Auditor")
    links = [t.strip() for t in page.get_by_role("navigation", name="Main").locator("a").all_inner_texts()]
    check("navigation (Carol): 'Resources' but no 'Audit log'",
          "Resources" in links and not any(t.startswith("Audit log") for t in links), links)
    nav_link(page, "Resources").click()
    wait_url(page, origin + "/ui/resources", "Carol's Resources")
    tree = resource_tree(page)
    check("Resources (Carol): what she may see (R1), as the API lists it for her",
          as_rows(tree) == expected_tree(api, "carol"), as_rows(tree))
    check("Resources (Carol): no 'Register resource'",
          page.get_by_role("link", name="Register resource").count() == 0)
    shots.look(page, "resources-carol", "Resources (Carol)")
    page.locator("main ul.tree").get_by_role("link", name="Contoso Production", exact=True).click()
    wait_url(page, origin + f"/ui/resources/{demo.prod}", "Contoso Production (Carol)")
    no_change_links(page, "Carol", "Contoso Production")
    check("Contoso Production (Carol): the audit section says it is for administrators",
          page.get_by_role("link", name="All records for this resource").count() == 0
          and page.get_by_role("table", name="Latest records").count() == 0)
    shots.look(page, "resource-carol", "Contoso Production (Carol, may read only)")
    check("Contoso Production (Carol): 'Download CSV' still offered",
          page.get_by_role("link", name="Download CSV", exact=True).count() == 1)
    body, _ = download(page, "Download CSV", "Contoso Production (Carol)")
    status, _, want = api.raw("carol", f"{PIM}/resources/{demo.prod}/roleAssignments/export", accept="text/csv")
    check("Contoso Production (Carol): Download CSV is byte for byte her API export",
          status == 200 and body == want, first_difference(body, want))
    before = World(api)
    denied(page, origin, "/ui/audit", "the audit log (Carol)", shots, "access-denied-audit")
    denied(page, origin, "/ui/resources/register", "Register resource (Carol)", shots, "access-denied-register")
    denied(page, origin, f"/ui/resources/{demo.prod}/settings/{demo.prod_contributor}",
           "Contributor's settings on Contoso Production (Carol)", shots, "access-denied-role-settings")
    denied(page, origin, f"/ui/resources/{demo.prod}/assign", "Add assignment on Contoso Production (Carol)",
           shots, "access-denied-assign-carol")
    for path in ("/ui/audit/export.csv", "/ui/audit/export.jsonl", f"/ui/audit/{api.get('admin', AUDIT, {'$top': '1'})['value'][0]['id']}"):
        r = page.request.get(origin + path, max_redirects=0)
        check(f"GET {path} as Carol: the 403 'Access denied' page",
              r.status == 403 and "<h1>Access denied</h1>" in r.text(), f"{r.status}: {r.text()[:120]}")
    nothing_changed(before, "Carol's refused pages")

    goto(page, origin + "/ui/", "Carol's My roles")
    setting_before = role_setting(api, demo.prod_contributor)
    before = World(api)
    r = page.request.post(origin + f"/ui/resources/{demo.prod}/settings/{demo.prod_contributor}",
                          form={"csrf": csrf_of(page) or "", "max_hours": "24"},
                          headers={"Origin": origin}, max_redirects=0)
    check("POST Contributor's settings as Carol (her own CSRF token): the 403 'Access denied' page",
          r.status == 403 and "<h1>Access denied</h1>" in r.text(), f"{r.status}: {r.text()[:200]}")
    check("API: Contributor's setting unchanged by Carol's POST",
          role_setting(api, demo.prod_contributor) == setting_before)
    refusal_audited(before, api, "carol", demo.carol, ("PATCH", f"{PIM}/roleSettings/{setting_before['id']}", {
        "userMemberSettings": [{"ruleIdentifier": "ExpirationRule",
                                "setting": '{"permanentAssignment":false,"maximumGrantPeriodInMinutes":1440}'}]}),
        "Carol's refused role-settings POST")
    before = World(api)
    r = page.request.post(origin + "/ui/resources/register", headers={"Origin": origin}, max_redirects=0,
                          form={"csrf": csrf_of(page) or "", "arm_id": demo.dev_arm + "/resourceGroups/rg-carol"})
    check("POST Register resource as Carol (her own CSRF token): the 403 'Access denied' page",
          r.status == 403 and "<h1>Access denied</h1>" in r.text(), f"{r.status}: {r.text()[:200]}")
    check("API: nothing registered by Carol's POST",
          not api.list("admin", f"{PIM}/resources", {"$filter": "displayName eq 'rg-carol'"}))
    refusal_audited(before, api, "carol", demo.carol, ("POST", f"{PIM}/resources/register",
                                                      {"externalId": demo.dev_arm + "/resourceGroups/rg-carol"}),
                    "Carol's refused registration")
    ctx.close()


# ---- flow j: every other flow by keyboard only -------------------------------------------------


def kb_follow(page, where, want, what, url, arrived, key="Enter", limit=60):
    """Tabs to `want` on the page as it is now, presses `key` and waits for `url`."""
    Keyboard(page, where).tab_to(want, what, limit=limit)
    page.keyboard.press(key)
    wait_url(page, url, arrived)


def sign_in_by_keyboard(page, origin, api, display_name, landing="/ui/"):
    """Signs in with the demo button "Sign in as {display_name}", by Tab and Enter."""
    goto(page, origin + landing, f"{landing} before signing in")
    wait_url(page, re.compile(r".*/ui/signin\?return=.*"), "an anonymous visit goes to sign-in")
    before = World(api)
    kb_follow(page, "Sign in (keyboard)", by_name("button", f"Sign in as {display_name}"),
              f'the button "Sign in as {display_name}"', origin + landing,
              f"signed in as {display_name} by keyboard, back at {landing}")
    who = page.locator("header .user").inner_text().strip()
    check(f"signed in as {display_name} by keyboard: the header names them, at {landing}", who == display_name,
          f"the header names {who!r} at {page.url}")
    before.changes().expect(f"signing in as {display_name} changed nothing")


def sign_out_by_keyboard(page, origin, who):
    kb_follow(page, f"{who}: Sign out (keyboard)", by_name("button", "Sign out"), 'the button "Sign out"',
              origin + "/ui/signin", f"{who} signed out by keyboard")
    goto(page, origin + "/ui/", "My roles after signing out by keyboard")
    wait_url(page, re.compile(r".*/ui/signin\?return=%2Fui%2F$"), "My roles after signing out by keyboard")
    ok(f"{who} signed out by keyboard: My roles now asks to sign in")


def dave_asks_through_the_api(api, demo, reason):
    """Dave's activation of Owner on Contoso Development, waiting for Bob (made through the API,
    after cancelling any request of Dave's still pending there)."""
    for r in api.list("dave", f"{PIM}/roleAssignmentRequests", {"$filter": f"subjectId eq '{demo.dave}'"}):
        if r["status"]["subStatus"] == "PendingApproval" and r["resourceId"] == demo.dev:
            status, out = api.call("dave", "POST", f"{PIM}/roleAssignmentRequests/{r['id']}/cancel")
            check(f"API: Dave's earlier pending request ({r.get('reason')!r}) cancelled first", status in (200, 204),
                  f"{status} {out}")
    r = api.submit("dave", {
        "type": "UserAdd", "assignmentState": "Active", "subjectId": demo.dave, "resourceId": demo.dev,
        "roleDefinitionId": demo.dev_owner, "reason": reason,
        "linkedEligibleRoleAssignmentId": demo.platform_dev_owner,
        "schedule": {"type": "Once", "duration": "PT1H"},
    })
    check(f"API: Dave asks for Owner on Contoso Development ({reason!r}), PendingApproval",
          r["status"]["subStatus"] == "PendingApproval", r)
    return r["id"]


def bob_decides_by_keyboard(page, origin, api, demo, decision, justification):
    request_id = dave_asks_through_the_api(api, demo, f"Keyboard: please {decision}")
    sign_in_by_keyboard(page, origin, api, "Bob Approver", landing="/ui/approvals")
    verb = "Approve" if decision == "approve" else "Deny"
    kb_follow(page, "Approvals (keyboard)",
              by_name("a", f"{verb} request from Dave Oncall for Owner on Contoso Development"),
              f'the link "{verb} request from Dave Oncall for Owner on Contoso Development"',
              re.compile(rf".*/ui/approvals/{request_id}/{decision}$"), f"Bob's {verb} form by keyboard")
    heading(page, f"{verb} request from Dave Oncall", f"Bob's {verb} form")
    bob_decides(page, origin, api, demo, request_id, decision, justification, keyboard=True)
    sign_out_by_keyboard(page, origin, "Bob")


def dave_deactivates_and_cancels_by_keyboard(page, origin, api, demo):
    """Dave ends the activation Bob approved through the confirmation page, then cancels a new
    pending request from My requests (its button pressed with Space)."""
    sign_in_by_keyboard(page, origin, api, "Dave Oncall")
    kb_follow(page, "My roles (keyboard)", by_name("a", "Deactivate Owner on Contoso Development"),
              'the link "Deactivate Owner on Contoso Development"', re.compile(r".*/ui/deactivate/[^/?]+$"),
              "the deactivation confirmation page by keyboard")
    heading(page, "Deactivate Owner", "the deactivation confirmation page")
    kb = Keyboard(page, "Deactivate (keyboard)")
    kb.tab_to(by_name("button", "Deactivate"), 'the button "Deactivate"')
    kb.tab_to(by_name("a", "Keep it"), 'the link "Keep it"')
    kb.tab_to(by_name("button", "Deactivate"), 'the button "Deactivate" again', key="Shift+Tab")
    before = World(api)
    posted = submit(page, lambda: page.keyboard.press("Enter"), "/ui/deactivate/")
    wait_url(page, origin + "/ui/?done=deactivated", "My roles after deactivating by keyboard")
    expect_message(page, "status", "Deactivated.", "My roles after deactivating by keyboard")
    done = before.changes().expect("Dave's deactivation by keyboard", new_requests=1, gone_assignments=1, audits=1)
    r, gone = done.new_requests[0], done.gone_assignments[0]
    check("API: a UserRemove of Dave's Owner on Contoso Development, Revoked; his activation gone; "
          "the audit record carries this POST's request id",
          r["type"] == "UserRemove" and r["subjectId"] == demo.dave and r["resourceId"] == demo.dev
          and r["status"]["subStatus"] == "Revoked" and gone["subjectId"] == demo.dave
          and gone["assignmentState"] == "Active" and gone["resourceId"] == demo.dev
          and done.audits[0]["correlationId"] == posted.headers.get("request-id"), done.summary())

    request_id = dave_asks_through_the_api(api, demo, "Keyboard: please cancel")
    kb_follow(page, "My roles (keyboard)", by_name("a", "My requests"), 'the navigation link "My requests"',
              origin + "/ui/requests", "My requests by keyboard")
    name = "Cancel request for Owner on Contoso Development"
    Keyboard(page, "My requests (keyboard)").tab_to(by_name("button", name), f'the button "{name}"')
    before = World(api)
    submit(page, lambda: page.keyboard.press("Space"), f"/ui/requests/{request_id}/cancel")
    wait_url(page, origin + "/ui/requests?done=cancelled", "My requests after cancelling by keyboard (Space)")
    expect_message(page, "status", "Request cancelled.", "My requests after cancelling by keyboard")
    changes = before.changes().expect("Dave's cancellation by keyboard", changed_requests=1, audits=1)
    _, new = changes.changed_requests[0]
    check("API: that request is Canceled", new["id"] == request_id and new["status"]["subStatus"] == "Canceled", new)
    sign_out_by_keyboard(page, origin, "Dave")


def carol_extends_by_keyboard(page, origin, api, demo):
    """Carol asks to extend an eligibility that ends within 14 days; the request is withdrawn
    and the eligibility removed again through the API afterwards."""
    eligibility = grant_carol_contributor(api, demo, demo.dev, demo.dev_owner, "P7D")
    check("API: Carol made eligible for Owner on Contoso Development for 7 days",
          eligibility["status"]["subStatus"] == "Provisioned", eligibility)
    sign_in_by_keyboard(page, origin, api, "Carol Auditor")
    kb_follow(page, "My roles (keyboard)", by_name("a", "Extend Owner on Contoso Development"),
              'the link "Extend Owner on Contoso Development"', re.compile(r".*/ui/extend/[^/?]+$"),
              "the Extend form by keyboard")
    heading(page, "Extend Owner", "the Extend form")
    end = (datetime.now(timezone.utc) + timedelta(days=30)).date()
    kb = Keyboard(page, "Extend (keyboard)")
    kb.tab_to(by_id("end"), "the field 'New end date'")
    page.keyboard.type(end.strftime("%m%d%Y"))  # the en-US date field: month, day, year
    check("Extend (keyboard): 'New end date' typed", page.locator("#end").input_value() == end.isoformat(),
          page.locator("#end").input_value())
    reason = "Keyboard: the migration runs longer"
    kb.tab_to(by_id("reason"), "the field 'Reason'")
    kb.type(reason)
    kb.tab_to(by_name("button", "Request extension"), 'the button "Request extension"')
    before = World(api)
    submit(page, lambda: page.keyboard.press("Enter"), "/ui/extend/")
    wait_url(page, re.compile(r".*/ui/requests/[^/?]+\?done=submitted$"), "Carol's extension request by keyboard")
    expect_message(page, "status", "Request submitted.", "Carol's extension request by keyboard")
    r = before.changes().expect("Carol's extension request by keyboard", new_requests=1, audits=1).new_requests[0]
    check(f"API: a UserExtend of Carol's Owner on Contoso Development, PendingAdminDecision, to {end}T23:59:59Z, "
          "with her reason",
          r["type"] == "UserExtend" and r["subjectId"] == demo.carol and r["resourceId"] == demo.dev
          and r["roleDefinitionId"] == demo.dev_owner and r["status"]["subStatus"] == "PendingAdminDecision"
          and r["schedule"]["endDateTime"].startswith(f"{end.isoformat()}T23:59:59") and r["reason"] == reason, r)
    sign_out_by_keyboard(page, origin, "Carol")
    status, out = api.call("carol", "POST", f"{PIM}/roleAssignmentRequests/{r['id']}/cancel")
    check("API: Carol withdraws the extension request", status in (200, 204), f"{status} {out}")
    api.submit("admin", {"type": "AdminRemove", "assignmentState": "Eligible", "subjectId": demo.carol,
                         "resourceId": demo.dev, "roleDefinitionId": demo.dev_owner})
    check("API: Carol's Owner on Contoso Development removed again",
          not [a for a in api.list("admin", f"{PIM}/roleAssignments", {"$filter": f"subjectId eq '{demo.carol}'"})
               if a["resourceId"] == demo.dev and a["roleDefinitionId"] == demo.dev_owner])


def admin_registers_by_keyboard(page, origin, api, demo):
    arm = demo.dev_arm + "/resourceGroups/rg-keyboard"
    check("API: no resource named rg-keyboard yet", not [r for r in resources_now(api).values() if r["externalId"] == arm])
    kb_follow(page, "Resources (keyboard)", by_name("a", "Register resource"), 'the link "Register resource"',
              origin + "/ui/resources/register", "the registration form by keyboard")
    kb = Keyboard(page, "Register resource (keyboard)")
    kb.tab_to(by_id("arm_id"), "the field 'ARM id'")
    kb.type(arm)
    kb.tab_to(by_name("button", "Register"), 'the button "Register"')
    before, resources = World(api), resources_now(api)
    submit(page, lambda: page.keyboard.press("Enter"), "/ui/resources/register")
    wait_url(page, origin + "/ui/resources?done=registered", "Resources after registering by keyboard")
    expect_message(page, "status", "Resource registered.", "Resources after registering by keyboard")
    new = [r for i, r in resources_now(api).items() if i not in resources]
    check("API: one resource registered by keyboard: resource group rg-keyboard with that ARM id",
          len(new) == 1 and new[0]["externalId"] == arm and new[0]["type"] == "resourcegroup", new)
    done = before.changes().expect("the registration by keyboard: one audit record", audits=1)
    check("API: its audit record (Register resource, success)",
          done.audits[0]["activityDisplayName"] == "Register resource" and done.audits[0]["result"] == "success",
          done.audits[0])


def admin_assigns_and_removes_by_keyboard(page, origin, api, demo):
    """On Contoso Production: an eligible Reader for Dave for 1 day, Dave found with "Find
    member" and chosen with Space; then removed through its confirmation page. Returns the
    assignment's audit activity."""
    kb_follow(page, "Resources (keyboard)", by_name("a", "Contoso Production"), 'the link "Contoso Production"',
              origin + f"/ui/resources/{demo.prod}", "Contoso Production by keyboard")
    check("API: Dave has no direct Reader on Contoso Production yet",
          not [a for a in api.list("admin", f"{PIM}/roleAssignments", {"$filter": f"subjectId eq '{demo.dave}'"})
               if a["resourceId"] == demo.prod and a["roleDefinitionId"] == demo.prod_reader])
    kb_follow(page, "Contoso Production (keyboard)", by_name("a", "Add assignment"), 'the link "Add assignment"',
              origin + f"/ui/resources/{demo.prod}/assign", "the Add assignment form by keyboard")
    kb = Keyboard(page, "Add assignment (keyboard)")
    kb.tab_to(by_id("role"), "the select 'Role'")
    page.keyboard.type("Reader")
    f = kb.focus()
    check("Add assignment (keyboard): typing 'Reader' on the Role select chooses Reader",
          f["id"] == "role" and f["value"] == demo.prod_reader, describe(f) + f" value {f['value']}")
    kb.tab_to(by_id("search"), "the field 'Name, user name or e-mail'")
    kb.type("dave")
    kb.tab_to(by_name("button", "Find member"), 'the button "Find member"')
    before = World(api)
    posted = submit(page, lambda: page.keyboard.press("Enter"), f"/ui/resources/{demo.prod}/assign")
    check("Find member (keyboard): answered 200 with the form again, the role kept",
          posted.status == 200 and page.locator("#role").input_value() == demo.prod_reader, posted.status)
    before.changes().expect("Find member by keyboard changed nothing")
    kb = Keyboard(page, "Add assignment after Find member (keyboard)")
    label = "Dave Oncall (dave@contoso.example)"
    f = kb.tab_to(by_name("input", label), f"the radio {label!r}")
    check(f"Add assignment (keyboard): the radio {label!r} starts unchecked", f["type"] == "radio" and not f["checked"])
    f = kb.press("Space")
    check("Add assignment (keyboard): Space chooses it", f["type"] == "radio" and f["name"] == label and f["checked"],
          describe(f))
    f = kb.tab_to(lambda x: x["type"] == "radio" and x["name"] in ("Eligible", "Active"), "the 'Assignment type' radios")
    check("Add assignment (keyboard): Tab lands on the chosen type, 'Eligible'", f["name"] == "Eligible" and f["checked"],
          describe(f))
    kb.tab_to(by_id("days"), "the field 'Duration'")
    kb.type("1")
    reason = "Keyboard: Dave reads production"
    kb.tab_to(by_id("reason"), "the field 'Reason'")
    kb.type(reason)
    kb.tab_to(by_name("button", "Assign"), 'the button "Assign"')
    before = World(api)
    posted = submit(page, lambda: page.keyboard.press("Enter"), f"/ui/resources/{demo.prod}/assign")
    wait_url(page, origin + f"/ui/resources/{demo.prod}?done=assigned", "Contoso Production after assigning by keyboard")
    expect_message(page, "status", "Assignment added.", "Contoso Production after assigning by keyboard")
    added = before.changes().expect("the assignment by keyboard", new_requests=1, new_assignments=1, audits=1)
    r, a = added.new_requests[0], added.new_assignments[0]
    span = parse_time(a["endDateTime"]) - parse_time(a["startDateTime"])
    check("API: an AdminAdd, Provisioned, with the reason: Dave eligible for Reader on Contoso Production for 1 day",
          r["type"] == "AdminAdd" and r["status"]["subStatus"] == "Provisioned" and r["reason"] == reason
          and a["assignmentState"] == "Eligible" and a["subjectId"] == demo.dave and a["resourceId"] == demo.prod
          and a["roleDefinitionId"] == demo.prod_reader and span == timedelta(days=1)
          and added.audits[0]["correlationId"] == posted.headers.get("request-id"), added.summary())

    kb_follow(page, "Contoso Production (keyboard)", by_name("a", "Remove Reader from Dave Oncall"),
              'the link "Remove Reader from Dave Oncall"',
              re.compile(rf".*/ui/resources/{demo.prod}/assignments/{a['id']}/remove$"),
              "the removal confirmation by keyboard", limit=150)
    heading(page, "Remove Reader from Dave Oncall", "the removal confirmation")
    kb = Keyboard(page, "Remove (keyboard)")
    kb.tab_to(by_id("reason"), "the field 'Reason'")
    kb.type("Keyboard: done")
    kb.tab_to(by_name("button", "Remove"), 'the button "Remove"')
    before = World(api)
    submit(page, lambda: page.keyboard.press("Enter"), f"/assignments/{a['id']}/remove")
    wait_url(page, origin + f"/ui/resources/{demo.prod}?done=removed", "Contoso Production after removing by keyboard")
    expect_message(page, "status", "Assignment removed.", "Contoso Production after removing by keyboard")
    removed = before.changes().expect("the removal by keyboard", new_requests=1, gone_assignments=1, audits=1)
    r = removed.new_requests[0]
    check("API: an AdminRemove of Dave's Reader on Contoso Production; that assignment gone",
          r["type"] == "AdminRemove" and r["subjectId"] == demo.dave and r["roleDefinitionId"] == demo.prod_reader
          and removed.gone_assignments[0]["id"] == a["id"], removed.summary())
    return added.audits[0]["activityDisplayName"]


def admin_audit_by_keyboard(page, origin, api, activity):
    kb_follow(page, "Contoso Production (keyboard)", by_name("a", "Audit log"), 'the navigation link "Audit log"',
              origin + "/ui/audit", "the audit log by keyboard")
    kb = Keyboard(page, "Audit log (keyboard)")
    kb.tab_to(by_id("activity"), "the filter 'Activity'")
    kb.type(activity)
    kb.tab_to(by_id("result"), "the filter 'Result'")
    f = kb.press("ArrowDown")
    check("Audit log (keyboard): ArrowDown on 'Result' chooses Success", f["id"] == "result" and f["value"] == "success",
          f"{describe(f)} value {f['value']!r}")
    kb.tab_to(by_name("button", "Apply filters"), 'the button "Apply filters"')
    page.keyboard.press("Enter")
    wait_url(page, re.compile(r".*/ui/audit\?.*activity=.*result=success.*"), "the audit log filtered by keyboard")
    q = activity.replace("'", "''")
    records = api.list("admin", AUDIT, {"$filter": f"contains(activityDisplayName,'{q}') and result eq 'success'"})
    ids = audit_ids_on_page(page)
    check(f"Audit log filtered by keyboard (Activity {activity!r}, Result Success): the API's {len(records)} records",
          ids == [r["id"] for r in records][:50] and len(records) >= 1, f"page {ids}\nAPI {[r['id'] for r in records]}")

    kb = Keyboard(page, "Audit log filtered (keyboard)")
    kb.tab_to(by_name("button", "Verify integrity"), 'the button "Verify integrity"')
    low, before = api.get("admin", AUDIT, {"$count": "true", "$top": "1"}).get("@odata.count"), World(api)
    submit(page, lambda: page.keyboard.press("Space"), "/ui/audit/verify")
    said = message(page, "status") or ""
    n = re.fullmatch(r"Chain verified: (\d+) records", said)
    check(f"Verify integrity (Space): 'Chain verified: N records', N at least the API's count ({low})",
          n is not None and int(n.group(1)) >= low, f"{said!r}; alert {message(page, 'alert')!r} at {page.url}")
    before.changes().expect("verifying by keyboard changed nothing")


def flow_j_keyboard(b, origin, api, demo, shots):
    print("# j. Every other flow by keyboard only (Tab, Shift+Tab, Enter, Space, arrows, typing)", flush=True)
    ctx = browser.new_context(b)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    bob_decides_by_keyboard(page, origin, api, demo, "approve", "Keyboard: fine for the on-call fix")
    dave_deactivates_and_cancels_by_keyboard(page, origin, api, demo)
    page.emulate_media(color_scheme="dark")  # Bob's denial and the administrator in the dark scheme
    bob_decides_by_keyboard(page, origin, api, demo, "deny", "Keyboard: not during the freeze")
    sign_in_by_keyboard(page, origin, api, "Demo Administrator", landing="/ui/resources")
    admin_registers_by_keyboard(page, origin, api, demo)
    activity = admin_assigns_and_removes_by_keyboard(page, origin, api, demo)
    admin_audit_by_keyboard(page, origin, api, activity)
    sign_out_by_keyboard(page, origin, "Demo Administrator")
    page.emulate_media(color_scheme="light")
    carol_extends_by_keyboard(page, origin, api, demo)
    ctx.close()


# ---- flow e: error pages, and 375 px wide --------------------------------------------------


def flow_e_error_pages(page, origin, shots):
    print("# e. Error pages", flush=True)
    goto(page, origin + "/ui/requests/unknown-id", "an unknown request", status=404)
    heading(page, "Not found", "an unknown request")
    shots.look(page, "not-found", "Not found (unknown request)")
    goto(page, origin + "/ui/nonexistent", "an unknown page", status=404)
    heading(page, "Not found", "an unknown page")
    shots.look(page, "not-found-page", "Not found (unknown page)")


OVERFLOW_JS = """w => {
  const path = el => {
    const parts = [];
    for (let n = el; n && n !== document.body && parts.length < 4; n = n.parentElement)
      parts.unshift(n.tagName.toLowerCase() + (n.id ? '#' + n.id : '') + (n.classList.length ? '.' + [...n.classList].join('.') : ''));
    return parts.join(' > ');
  };
  const clipped = el => {
    for (let n = el.parentElement; n && n !== document.body; n = n.parentElement)
      if (getComputedStyle(n).overflowX !== 'visible') return true;
    return false;
  };
  return [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().right > w
      && (!clipped(el) || ['absolute', 'fixed'].includes(getComputedStyle(el).position)))
    .slice(0, 5)
    .map(el => `${path(el)} (${getComputedStyle(el).position}, right edge at ${Math.round(el.getBoundingClientRect().right)} px)`);
}"""


def check_narrow_viewport(b, origin, api, demo, shots):
    """At 375 px the page body never scrolls sideways (wide tables may scroll in their own
    box). Runs last: a layout defect here leaves every functional check done."""
    print("# e. 375 px wide: My roles, Activate, Approvals", flush=True)
    api.submit("dave", {
        "type": "UserAdd", "assignmentState": "Active", "subjectId": demo.dave, "resourceId": demo.dev,
        "roleDefinitionId": demo.dev_owner, "reason": "Narrow screen check",
        "linkedEligibleRoleAssignmentId": demo.platform_dev_owner,
        "schedule": {"type": "Once", "duration": "PT1H"},
    })
    ok("API: Dave asks for Owner on Contoso Development again (for Bob's Approvals at 375 px)")
    ctx = browser.new_context(b, viewport=NARROW)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()

    def fits(what):
        width = page.evaluate("document.documentElement.scrollWidth")
        culprits = page.evaluate(OVERFLOW_JS, NARROW["width"]) if width > NARROW["width"] else []
        shot = shots.save_failure(page, f"375-{what.split()[0].lower()}.png") if culprits else None
        check_later(f"375 px: {what} does not scroll sideways", width <= NARROW["width"],
              f"document.documentElement.scrollWidth = {width} at {page.url}; past the edge: {culprits}"
              + (f" (screenshot: {shot})" if shot else ""))

    sign_in(page, origin, "Alice Engineer")
    fits("My roles (Alice)")
    shots.look(page, "my-roles-375", "My roles at 375 px", soft=True)
    page.get_by_role("link", name="Activate Contributor on Contoso Production", exact=True).click()
    wait_url(page, re.compile(r".*/ui/activate/[^/?]+$"), "Activate at 375 px")
    fits("Activate Contributor")
    shots.look(page, "activate-375", "Activate at 375 px", soft=True)
    page.get_by_role("button", name="Sign out", exact=True).click()
    wait_url(page, origin + "/ui/signin", "signed out at 375 px")
    sign_in(page, origin, "Bob Approver", landing="/ui/approvals")
    check("375 px: Approvals lists Dave's request", len(table(page, "Pending approvals")) == 1)
    fits("Approvals (Bob)")
    shots.look(page, "approvals-375", "Approvals at 375 px", soft=True)
    ctx.close()


# ---- main --------------------------------------------------------------------------------------


def preconditions(api, demo):
    """A fresh demo tenant. The demo seeds a week of history (an expired activation of
    Alice's, Dave's approved and denied ones) and Dave's activation of Owner on Contoso
    Development waiting for Bob; Dave cancels that one through the API, so that flows b and c
    start with nothing pending."""
    mine = api.list("alice", f"{PIM}/roleAssignments", {"$filter": f"subjectId eq '{demo.alice}'"})
    active = [a for a in mine if a["assignmentState"] == "Active"]
    daves = api.list("dave", f"{PIM}/roleAssignmentRequests", {"$filter": f"subjectId eq '{demo.dave}'"})
    check("API: a fresh demo tenant (Alice has no active role, Dave none of the flows' requests)",
          not active and not [r for r in daves if r.get("reason") == "Deploy the on-call fix"],
          "run flows.py against a fresh `rolegate serve --demo` database")
    pending = [r for r in daves if r["status"]["subStatus"] == "PendingApproval"]
    check("API: at most the demo's one pending request of Dave's", len(pending) <= 1, pending)
    for r in pending:
        status, out = api.call("dave", "POST", f"{PIM}/roleAssignmentRequests/{r['id']}/cancel")
        check(f"API: Dave cancels the demo's pending request ({r.get('reason')!r}) before the flows",
              status in (200, 204) and api.request("dave", r["id"])["status"]["subStatus"] == "Canceled",
              f"{status} {out}")


def main():
    args = sys.argv[1:]
    shots_dir, keys = None, DOC_SHOTS
    for flag in ("--screenshots", "--all-screenshots"):
        if flag in args:
            i = args.index(flag)
            if i + 1 >= len(args):
                raise Failure(f"{flag} needs a folder")
            shots_dir, keys = args[i + 1], (DOC_SHOTS if flag == "--screenshots" else None)
            del args[i:i + 2]
    if len(args) != 2:
        raise Failure("usage: flows.py ORIGIN FIXTURE.json [--screenshots DIR | --all-screenshots DIR]")
    origin, fixture = args[0].rstrip("/"), args[1]
    with open(fixture) as f:
        tokens = json.load(f)["tokens"]
    reason = browser.available()
    if reason:
        raise Failure(reason)
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    api = Api(origin, tokens)
    demo = Demo(api)
    preconditions(api, demo)
    shots = Shots(shots_dir, keys)
    with sync_playwright() as pw:
        b = browser.launch(pw)
        try:
            flow_a_alice(b, origin, api, demo, shots)
            dave_ctx, bob_ctx, dave, bob = flow_b_approval(b, origin, api, demo, shots)
            flow_c_cancel(dave_ctx, dave, bob, origin, api, demo, shots)
            flow_d_sign_out(dave_ctx, dave, origin, shots)
            flow_e_error_pages(dave, origin, shots)
            dave_ctx.close()
            bob_ctx.close()
            flow_f_extend_and_renew(b, origin, api, demo, shots)
            flow_g_administrator(b, origin, api, demo, shots)
            flow_h_bob(b, origin, api, demo, shots)
            flow_i_carol(b, origin, api, demo, shots)
            flow_j_keyboard(b, origin, api, demo, shots)
            check_narrow_viewport(b, origin, api, demo, shots)
        finally:
            b.close()
    print(f"pages checked with axe (light and dark): {len(shots.pages)}", flush=True)
    if shots_dir:
        print(f"screenshots: {len(shots.saved)} in {shots_dir}", flush=True)
    for n in notes:
        print(f"note {n}", flush=True)
    for d in deferred:
        print(f"FAIL {d}", flush=True)
    print(f"flows: {passed} passed, {len(deferred)} failed, {len(notes)} notes, "
          f"{time.monotonic() - started:.1f}s", flush=True)
    if deferred:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL {e}", flush=True)
        print(f"flows: {passed} passed, {1 + len(deferred)} failed", flush=True)
        sys.exit(1)
