#!/usr/bin/env python3
"""What one audit outbox row costs a SQLite write transaction, without AuthSome around it.

Runs, in this process through Python's own sqlite3 (no driver threads, no async runtime), the
statements of a workspace update as the control-plane store does on SQLite: WAL, synchronous
NORMAL, `BEGIN IMMEDIATE; UPDATE …; COMMIT`, a passive checkpoint every 100 writes. Then the same
with the audit outbox row inserted in the transaction (and, every 100 writes, the writer's
delete of the rows it took), once with a one-byte body and once with a typical event's JSON;
and, for comparison, with the log's entry appended in the transaction itself instead of an
outbox row (the entry with its indexes, and the log's head moved), as a design without an
outbox would do (event ids time-ordered, as UUIDv7s are).

Whatever the audit log does afterwards, a fail-closed audit needs the event stored in the write's
own transaction, so on another page than the written row: at least one more WAL frame per
commit. This measures that floor: CPU per write and WAL frames per write.

Usage: scripts/sqlite-outbox-floor.py [writes]   (default 20000; CPU times, so run it on a
quiet machine, and compare the kinds within one run)
"""
import json
import os
import sqlite3
import sys
import tempfile
import time

BODY = json.dumps(
    {
        "id": "evt_01kbm2x4yq8h9f3g7c6v5t4r2e",
        "at": "2026-12-03T10:00:00.000Z",
        "action": "workspace.updated",
        "actor": {"account": "acc_01kbm2x4yq8h9f3g7c6v5t4r2f"},
        "workspaceId": "ws_01kbm2x4yq8h9f3g7c6v5t4r2g",
        "target": "ws_01kbm2x4yq8h9f3g7c6v5t4r2g",
        "requestId": "req_01kbm2x4yq8h9f3g7c6v5t4r2h",
        "outcome": "success",
        "changes": {"name": {"from": "Audited op 12.34", "to": "Audited op 12.35"}},
        "ip": "203.0.113.7",
        "userAgent": "authsome-cli/0.1 (linux; x86_64)",
    }
)


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL "
        "UNIQUE, plan TEXT, status TEXT, kyc_status TEXT, payment_status TEXT, metadata TEXT, "
        "limits TEXT, root INTEGER, created_at BIGINT, updated_at BIGINT)"
    )
    db.execute(
        "CREATE TABLE audit_outbox (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, "
        "body TEXT NOT NULL, created_at BIGINT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE audit_logs (workspace_id TEXT PRIMARY KEY, size BIGINT NOT NULL, "
        "head_hash BLOB NOT NULL, compact_range BLOB NOT NULL)"
    )
    db.execute(
        "CREATE TABLE audit_entries (workspace_id TEXT NOT NULL, idx BIGINT NOT NULL, "
        "id TEXT NOT NULL, at BIGINT NOT NULL, action TEXT NOT NULL, actor_id TEXT, "
        "application_id TEXT, outcome TEXT NOT NULL, leaf_hash BLOB NOT NULL, body TEXT, "
        "PRIMARY KEY (workspace_id, idx))"
    )
    db.execute("CREATE UNIQUE INDEX audit_entries_id ON audit_entries (id)")
    db.execute("CREATE INDEX audit_entries_at ON audit_entries (workspace_id, at)")
    db.execute("INSERT INTO audit_logs VALUES ('ws_0100', 0, zeroblob(32), zeroblob(320))")
    for i in range(200):
        db.execute(
            "INSERT INTO workspaces VALUES (?, 'Name', ?, 'pro', 'active', 'completed', "
            "'current', '{}', '{}', 0, 0, 0)",
            (f"ws_{i:04}", f"slug-{i:04}"),
        )
    return db


def run(db, body, writes):
    """CPU µs and WAL frames per write; body None for the plain write, a tuple for the entry
    appended in the transaction."""
    frames = 0
    started = time.process_time()
    for i in range(writes):
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE workspaces SET name = ?, slug = ?, plan = ?, status = ?, kyc_status = ?, "
            "payment_status = ?, metadata = ?, limits = ?, updated_at = ? WHERE id = ?",
            (f"Name {i}", "slug-0100", "pro", "active", "completed", "current", "{}", "{}", i,
             "ws_0100"),
        )
        if isinstance(body, tuple):
            (size,) = db.execute(
                "UPDATE audit_logs SET size = size + 1, head_hash = ?, compact_range = ? "
                "WHERE workspace_id = 'ws_0100' RETURNING size",
                (os.urandom(32), os.urandom(320)),
            ).fetchone()
            db.execute(
                "INSERT INTO audit_entries VALUES ('ws_0100', ?, ?, ?, 'workspace.updated', "
                "'acc_01kbm2x4yq8h9f3g7c6v5t4r2f', NULL, 'success', ?, ?)",
                (size, f"evt_{time.time_ns():020}", i, os.urandom(32), body[0]),
            )
        elif body is not None:
            db.execute(
                "INSERT INTO audit_outbox (id, body, created_at) VALUES (?, ?, ?)",
                (f"evt_{i}", body, i),
            )
        db.execute("COMMIT")
        if i % 100 == 99:
            if isinstance(body, str):
                db.execute("DELETE FROM audit_outbox")
            _, log, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            frames += log
    return (time.process_time() - started) * 1e6 / writes, frames / writes


def main():
    writes = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    kinds = [
        ("plain", None),
        ("outbox, 1-byte body", "x"),
        (f"outbox, {len(BODY)}-byte body", BODY),
        # The canonical line is the event with its index and previous hash: a little longer.
        ("entry appended in place", (BODY + " " * 100,)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: [] for name, _ in kinds}
        # Interleaved rounds, each kind on its own database, so drift falls on all alike.
        dbs = {name: open_db(os.path.join(tmp, f"{n}.db")) for n, (name, _) in enumerate(kinds)}
        for _ in range(3):
            for name, body in kinds:
                results[name].append(run(dbs[name], body, writes // 3))
        plain = sorted(r[0] for r in results["plain"])[1]
        print(f"SQLite {sqlite3.sqlite_version}, {writes} writes of each kind, median of 3 rounds")
        for name, _ in kinds:
            cpu = sorted(r[0] for r in results[name])[1]
            frames = sorted(r[1] for r in results[name])[1]
            print(f"{name:<24} {cpu:>6.1f} µs CPU/write ({(cpu / plain - 1) * 100:+5.1f}%)  "
                  f"{frames:.2f} WAL frames/write")


if __name__ == "__main__":
    main()
