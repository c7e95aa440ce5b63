#!/usr/bin/env python3
"""Fails when the workspace's `rust-version` is not true of its locked dependencies: each
dependency's own `rust-version` must be at most the workspace's. (Clippy's `incompatible_msrv`,
on in `.ci/run` through `-D warnings`, checks the standard-library APIs the code itself uses.)"""
import json
import re
import subprocess
import sys


def version(text):
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    with open("Cargo.toml") as f:
        found = re.search(r'^rust-version\s*=\s*"([^"]+)"', f.read(), re.M)
    if not found:
        sys.exit("Cargo.toml: no workspace rust-version")
    ours = found.group(1)
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    resolved = {node["id"] for node in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    too_new = []
    for package in meta["packages"]:
        if package["id"] not in resolved:
            continue
        theirs = package.get("rust_version")
        if package["id"] in members:
            if theirs != ours:
                too_new.append(f"{package['name']} declares rust-version {theirs}, not the workspace's {ours}")
        elif theirs and version(theirs) > version(ours):
            too_new.append(f"{package['name']} {package['version']} needs Rust {theirs}")
    if too_new:
        print(f"rust-version = \"{ours}\" is not true:", file=sys.stderr)
        for line in too_new:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    print(f"ci: rust-version {ours} holds for every locked dependency")


main()
