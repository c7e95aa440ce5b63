"""Prepares what the conformance run needs on a fresh server and prints it as shell exports.

Arguments: base URL, `authsome init --json`'s output. Standard library only.

Every operation that ends or changes something the others rely on (a key, a session, a user,
a workspace) gets a resource of its own to fuzz, so that the rest keep exercising their success
paths: `*_DEL` are deleted, `*_ROLL` rolled, `*_OUT` signed out, `*_ADMIN` changed by platform
operators.
"""

import json
import shlex
import sys
import urllib.error
import urllib.request

BASE, INIT = sys.argv[1], json.loads(sys.argv[2])
MK = INIT["managementKey"]
out = {"BASE": BASE, "MK": MK, "ROOT_WS": INIT["workspaceId"]}


def call(method, path, body=None, token=None, headers=None, expect=(200, 201, 204)):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    parsed = json.loads(raw) if raw else None
    if status not in expect:
        sys.exit(f"prepare: {method} {path} answered {status}: {parsed}")
    return parsed


def login():
    body = {"email": INIT["ownerEmail"], "password": INIT["ownerPassword"]}
    return call("POST", "/control/v1/auth/login", body)["token"]


cst = out["CST"] = login()
out["CST_OUT"] = login()

# A customer workspace on the enterprise plan with limits far above what the fuzzer sends, so
# the gateway's limiter is consulted but never decides an answer.
limits = {"requestsPerSecondPerKey": 1_000_000, "requestsPerMonth": 1_000_000_000_000}
for name in ("WS", "WS_DEL", "WS_ADMIN", "WS_SHRED"):
    ws = out[name] = call("POST", "/control/v1/workspaces", {"name": f"Conformance {name}"}, cst)["id"]
    call("PATCH", f"/control/v1/admin/workspaces/{ws}", {"plan": "enterprise", "limits": limits}, MK)
ws = out["WS"]

for name in ("APP", "APP_DEL", "APP_ADMIN"):
    body = {"name": f"Conformance {name}", "environment": "development"}
    out[name] = call("POST", f"/control/v1/workspaces/{ws}/applications", body, cst)["id"]
app = out["APP"]


def app_key(kind, name):
    created = call("POST", f"/control/v1/applications/{app}/keys", {"type": kind, "name": name}, cst)
    return created["id"], created["secret"]


_, out["PK"] = app_key("publishable", "conformance")
out["SK_ID"], out["SK"] = app_key("secret", "conformance")
out["KEY_DEL"], _ = app_key("secret", "to delete")
out["KEY_ROLL"], _ = app_key("secret", "to roll")


def management_key(name):
    return call("POST", f"/control/v1/workspaces/{ws}/keys", {"name": name}, cst)["id"]


for name in ("WK_DEL", "WK_ROLL", "WK_REASSIGN"):
    out[name] = management_key(name)

# Team members (invited; the operator's answer carries the invitation's id).
for name, email in (("MEM", "member@conformance.test"), ("MEM_DEL", "leaver@conformance.test")):
    member = call("POST", f"/control/v1/workspaces/{ws}/members", {"email": email, "role": "viewer"}, cst)
    out[name] = member["id"]
    out[f"{name}_INV"] = member["invitation"]["id"]

# The application's users: one signed in (the access token the user routes use), one for the
# admin routes, one to delete.
pk = {"X-Publishable-Key": out["PK"]}
password = "conformance password"


def sign_up(email):
    return call("POST", f"/v1/{app}/auth/signup", {"email": email, "password": password}, headers=pk)


signed = sign_up("ada@conformance.test")
out["USR"], out["ACCESS"] = signed["user"]["id"], signed["session"]["token"]
out["REFRESH"] = signed["session"]["refreshToken"]


def sign_in(email):
    return call("POST", f"/v1/{app}/auth/signin", {"email": email, "password": password}, headers=pk)


out["ACCESS_OUT"] = sign_in("ada@conformance.test")["session"]["token"]
out["SES_OWN"] = sign_in("ada@conformance.test")["session"]["id"]
out["USR_ADMIN"] = sign_up("grace@conformance.test")["user"]["id"]
out["SES_DEL"] = sign_in("grace@conformance.test")["session"]["id"]
out["USR_DEL"] = sign_up("alan@conformance.test")["user"]["id"]

sk = out["SK"]
for name in ("ORG", "ORG_DEL"):
    org = call("POST", f"/v1/{app}/organizations", {"name": f"Conformance {name}", "createdBy": out["USR"]}, sk)
    out[name] = org["id"]
org = out["ORG"]
for name, user in (("ORM", out["USR_ADMIN"]), ("ORM_DEL", out["USR_DEL"])):
    body = {"userId": user, "role": "member"}
    out[name] = call("POST", f"/v1/{app}/organizations/{org}/memberships", body, sk)["id"]

# The vault: one with secrets (CONFORMANCE_SECRET with two versions, one to delete, one whose
# first version is destroyed), one empty to delete.
for name in ("VAULT", "VAULT_DEL"):
    out[name] = call("POST", f"/control/v1/workspaces/{ws}/vaults", {"name": name.lower()}, cst)["id"]
for secret in ("CONFORMANCE_SECRET", "CONFORMANCE_SECRET", "TO_DELETE", "TO_DESTROY", "TO_DESTROY"):
    call("PUT", f"/control/v1/vaults/{out['VAULT']}/secrets/{secret}", {"value": "conformance value"}, cst)

for name in ("PRN", "PRN_DEL"):
    out[name] = call("POST", f"/control/v1/workspaces/{ws}/principals", {"name": name.lower()}, cst)["id"]

out["TIS_DEL"] = call(
    "POST",
    f"/control/v1/workspaces/{ws}/trusted-issuers",
    {"issuer": "https://issuer.conformance.test", "jwksUri": "https://issuer.conformance.test/jwks",
     "audience": "authsome", "principalId": out["PRN"], "claims": {"sub": "conformance"}},
    cst,
)["id"]

for name, value in out.items():
    print(f"export CONFORMANCE_{name}={shlex.quote(value)}")
