#!/usr/bin/python3
"""A Rolegate `exec` connector (docs/connectors.md "Any system: the exec kind").

Keeps an allowlist file that an application reads: one line `TARGET<TAB>PRINCIPAL` per
grant, for instance `deploy:production<TAB>alice`. Rolegate runs it without a shell, with a
cleared environment (only the variables the connector's `env` lists) and one JSON document
on standard input:

- `apply` / `revoke`: add or remove the line (a repeated apply or revoke succeeds);
- `list`: print `{"grants": [...]}` for the targets asked about (reconciliation).

Exit 0 is success; anything else is retried by Rolegate, standard error becoming the
item's `lastError`. Runs for different people may overlap: a lock file serialises them,
and the file is replaced atomically so the application never reads half of it.
"""

import fcntl
import json
import os
import sys
import tempfile

path = os.environ["ALLOWLIST"]
doc = json.load(sys.stdin)
if doc.get("version") != 1:
    sys.exit(f"unsupported document version {doc.get('version')!r}")


def lines():
    try:
        with open(path, encoding="utf-8") as f:
            return [tuple(l.split("\t", 1)) for l in f.read().splitlines() if "\t" in l]
    except FileNotFoundError:
        return []


with open(path + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    grants = lines()
    operation = doc["operation"]
    if operation == "list":
        asked = set(doc["targets"])
        found = [{"target": t, "principal": p} for t, p in grants if t in asked]
        json.dump({"grants": found}, sys.stdout)
        sys.exit(0)
    key = (doc["target"], doc["principal"])
    if any(c in "\t\r\n" for c in "".join(key)):
        sys.exit("a target or principal with a tab or a line break cannot be written")
    if operation == "apply" and key not in grants:
        grants.append(key)
    elif operation == "revoke":
        grants = [g for g in grants if g != key]
    elif operation != "apply":
        sys.exit(f"unknown operation {operation!r}")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(f"{t}\t{p}\n" for t, p in sorted(grants)))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
