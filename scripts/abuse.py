"""The driver of scripts/abuse.sh: attacks a running server and prints the figures.

Arguments: base URL, the server's pid, `authsome init --json`'s output. Standard library only.
"""

import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BASE, PID, INIT = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
MK = INIT["managementKey"]
WS = INIT["workspaceId"]
FAST = 0.050  # a refusal should take at most this long


def call(method, path, body=None, token=None, headers=None):
    """(status, parsed body, seconds)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    elapsed = time.perf_counter() - started
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, elapsed


def status_mib(field):
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


refused = []  # seconds each 429/503 took


def note(status, elapsed):
    if status in (429, 503):
        refused.append(elapsed)


def audit_entries(action):
    total, attempts, cursor = 0, 0, None
    while True:
        path = f"/control/v1/workspaces/{WS}/audit?action={action}&limit=100"
        if cursor:
            path += f"&cursor={cursor}"
        status, body, _ = call("GET", path, token=MK)
        assert status == 200, body
        for entry in body["data"]:
            total += 1
            attempts += entry["changes"].get("repeated", 1)
        cursor = body.get("nextCursor")
        if not body.get("hasMore"):
            return total, attempts


# The two tenants: the bursting one an application of a new workspace on the free plan (10
# requests per second per key) with 8 publishable keys; the quiet one of the root workspace.
status, login, _ = call(
    "POST", "/control/v1/auth/login", {"email": INIT["ownerEmail"], "password": INIT["ownerPassword"]}
)
assert status == 200, login
SESSION = login["token"]
status, free_ws, _ = call("POST", "/control/v1/workspaces", {"name": "Bursting Co"}, SESSION)
assert status == 201, free_ws


def application(ws, token, name, keys):
    status, app, _ = call(
        "POST",
        f"/control/v1/workspaces/{ws}/applications",
        {"name": name, "environment": "development"},
        token,
    )
    assert status == 201, app
    made = []
    for _ in range(keys):
        status, key, _ = call(
            "POST", f"/control/v1/applications/{app['id']}/keys", {"type": "publishable"}, token
        )
        assert status == 201, key
        made.append(key["secret"])
    return app["id"], made


busy_app, busy_keys = application(free_ws["id"], SESSION, "Bursting", 8)
quiet_app, quiet_keys = application(WS, MK, "Quiet", 1)
PER_KEY = 10  # the free plan's requests per second per key
PASSWORD = "correct horse battery staple"
status, body, _ = call(
    "POST",
    f"/v1/{quiet_app}/auth/signup",
    {"email": "calm@quiet.test", "password": PASSWORD},
    headers={"X-Publishable-Key": quiet_keys[0]},
)
assert status == 201, body


def quiet_sign_in():
    status, body, elapsed = call(
        "POST",
        f"/v1/{quiet_app}/auth/signin",
        {"email": "calm@quiet.test", "password": PASSWORD},
        headers={"X-Publishable-Key": quiet_keys[0]},
    )
    assert status == 200, body
    return elapsed


# (b) baseline, then the burst.
baseline = [quiet_sign_in() for _ in range(30)]
stop = threading.Event()
burst_statuses = []
counter = iter(range(10**9))


WORKERS = 56
# Each key's workers together stay within its rate limit.
PACE = (WORKERS / len(busy_keys)) / PER_KEY


def burst_worker(worker):
    key = busy_keys[worker % len(busy_keys)]
    time.sleep(worker * PACE / WORKERS)
    while not stop.is_set():
        started = time.perf_counter()
        n = next(counter)
        status, _, elapsed = call(
            "POST",
            f"/v1/{busy_app}/auth/signup",
            {"email": f"u{n}@burst.test", "password": PASSWORD},
            headers={"X-Publishable-Key": key},
        )
        burst_statuses.append(status)
        note(status, elapsed)
        time.sleep(max(0.0, PACE - (time.perf_counter() - started)))


threads = [threading.Thread(target=burst_worker, args=(w,)) for w in range(WORKERS)]
for t in threads:
    t.start()
time.sleep(2.0)
during = [quiet_sign_in() for _ in range(60)]
stop.set()
for t in threads:
    t.join()

# (a) a flood at one member's email, and a spray over many emails, from one address.
before_entries, _ = audit_entries("account.sign_in_failed")
flood = 1000
flood_statuses = []


def flood_one(n):
    status, _, elapsed = call(
        "POST",
        "/control/v1/auth/login",
        {"email": INIT["ownerEmail"], "password": f"guess {n}"},
    )
    flood_statuses.append(status)
    note(status, elapsed)


with ThreadPoolExecutor(16) as pool:
    list(pool.map(flood_one, range(flood)))
spray_statuses = []
for n in range(60):
    status, _, elapsed = call(
        "POST", "/control/v1/auth/login", {"email": f"user{n}@spray.test", "password": "guess"}
    )
    spray_statuses.append(status)
    note(status, elapsed)

# (c) 1 MB emails.
rss_before_big = status_mib("VmRSS:")
big = "a" * 1_000_000 + "@x.test"
big_statuses = []
for _ in range(40):
    status, _, elapsed = call("POST", "/control/v1/auth/login", {"email": big, "password": "x"})
    big_statuses.append(status)
rss_after_big = status_mib("VmRSS:")

# The fold window closes within a minute and the maintenance loop writes its count.
time.sleep(70)
after_entries, attempts = audit_entries("account.sign_in_failed")
written = after_entries - before_entries
refused_attempts = flood + len(spray_statuses)


def counts(statuses):
    return ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses)))


p50_base, p99_base = statistics.median(baseline), pct(baseline, 99)
p50_during, p99_during = statistics.median(during), pct(during, 99)
print(f"peak RSS of the server: {status_mib('VmHWM:'):.0f} MiB")
print(
    f"(b) other tenant's sign-in: baseline p50 {p50_base * 1000:.0f} ms p99 {p99_base * 1000:.0f} ms;"
    f" during the burst p50 {p50_during * 1000:.0f} ms p99 {p99_during * 1000:.0f} ms"
    f" (p99 {p99_during / p99_base:.2f}x baseline; target under 2x)"
)
print(
    f"    the burst: {WORKERS} clients on {len(busy_keys)} keys of a free workspace, within the"
    f" keys' rate limits; its {len(burst_statuses)} sign-ups: {counts(burst_statuses)}"
)
print(f"(a) flood of {flood} logins at one member: {counts(flood_statuses)}")
print(f"    spray of {len(spray_statuses)} emails from one address: {counts(spray_statuses)}")
print(
    f"    audit entries written: {written} for {refused_attempts} refused attempts"
    f" ({written * 1000 / refused_attempts:.1f} per 1,000; target under 10);"
    f" attempts the entries account for: {attempts}"
)
print(
    f"(c) 40 logins with 1 MB emails: {counts(big_statuses)};"
    f" RSS {rss_before_big:.0f} -> {rss_after_big:.0f} MiB"
)
fast = sum(1 for e in refused if e <= FAST)
print(
    f"refusals (429/503) answered within 50 ms: {fast} of {len(refused)}"
    f" ({100 * fast / max(1, len(refused)):.1f}%)"
)
