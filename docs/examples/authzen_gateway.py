#!/usr/bin/env python3
"""An enforcement point in 30 lines (docs/authzen.md): an HTTP service that asks Rolegate
before it starts a VM, and refuses (403, saying which role to activate) when Rolegate says no.
Standard library only. Run: ROLEGATE_URL=… ROLEGATE_PEP_TOKEN=… PROTECTED_SCOPE=… python3
authzen_gateway.py PORT, then POST /vms/NAME/start with the caller in X-User."""
import json, os, sys, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

ROLEGATE = os.environ["ROLEGATE_URL"]      # the Rolegate server
TOKEN = os.environ["ROLEGATE_PEP_TOKEN"]   # a token whose subject is a --authzen-client
SCOPE = os.environ["PROTECTED_SCOPE"]      # the ARM id this service manages

def decide(user, operation, resource):
    body = {"subject": {"type": "user", "id": user}, "action": {"name": operation},
            "resource": {"type": "azureResource", "id": resource}}
    req = urllib.request.Request(ROLEGATE + "/access/v1/evaluation", json.dumps(body).encode(),
                                 {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            d = json.load(r)
        return d["decision"], d["context"].get("reason_user", {}).get("message", "")
    except Exception as e:  # fail closed
        return False, f"the decision point did not answer ({e})"

class Service(BaseHTTPRequestHandler):
    def do_POST(self):  # POST /vms/NAME/start
        user, vm = self.headers.get("X-User", ""), self.path.strip("/").split("/")[1]
        ok, why = decide(user, "Microsoft.Compute/virtualMachines/start/action",
                         f"{SCOPE}/providers/Microsoft.Compute/virtualMachines/{vm}")
        self.send_response(200 if ok else 403)
        self.end_headers()
        self.wfile.write((f"started {vm}\n" if ok else f"forbidden: {why}\n").encode())

HTTPServer(("127.0.0.1", int(sys.argv[1])), Service).serve_forever()
