"""SCIM 2.0 conformance of a running Rolegate, checked by scim2-tester (pinned in
requirements.txt).

    python scim_conformance.py BASE_URL TOKEN

BASE_URL is the server's origin (http://127.0.0.1:8080); the SCIM service is under
/scim/v2. TOKEN is a bearer token the server accepts on /scim (the --scim-token-file
secret, or a tenant administrator's JWT). Every check is printed; the exit status is 0 when
none failed apart from those docs/scim.md lists as deliberately unsupported (KNOWN below,
each with its reason), 1 otherwise.
"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

# (check title, substring of its reason) -> why Rolegate deliberately does not do it.
# Keep in step with the "Not supported" section of docs/scim.md.
KNOWN: dict[tuple[str, str], str] = {}

FAILED = {Status.ERROR, Status.CRITICAL}


def known(result) -> str | None:
    for (title, needle), why in KNOWN.items():
        if result.title == title and needle in (result.reason or ""):
            return why
    return None


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    origin, token = sys.argv[1].rstrip("/"), sys.argv[2]
    http = Client(
        base_url=f"{origin}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )
    client = SyncSCIMClient(http)
    results = check_server(client)

    counts: dict[str, int] = {}
    failures = []
    for r in results:
        name = r.status.name
        why = known(r) if r.status in FAILED else None
        if why:
            name = "KNOWN"
        counts[name] = counts.get(name, 0) + 1
        rt = f"[{r.resource_type}] " if r.resource_type else ""
        line = f"{name:8} {rt}{r.title}: {r.reason or ''}"
        print(line.splitlines()[0] if line else line)
        if why:
            print(f"         (deliberately unsupported: {why})")
        elif r.status in FAILED:
            failures.append(r)

    print()
    print(", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
    for r in failures:
        print(f"\nFAILED {r.resource_type or ''} {r.title}\n  reason: {r.reason}\n  data: {r.data!r}"[:4000])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
