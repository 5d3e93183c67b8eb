#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Runs `tlspyo bench ... --json` and checks its correctness, never its speed.

    check-bench.py --expect produce,broadcast,... -- TLSPYO bench --quick --json [...]

Passes when the command exits 0, prints one JSON object whose "ok" is true,
ran exactly the expected cases, each of them ok, and each received exactly
what its own parameters say it must (objects x consumers, round trips,
connects, endpoints). Figures such as objects/s are not looked at.
"""

import argparse
import json
import subprocess
import sys

# A bound of its own, below meson's, so that a stuck bench is reported
# here with its output instead of being killed silently.
TIMEOUT_S = 240


def expected_count(case):
    kind = case.get("name")
    if kind == "produce":
        return case["count"]
    if kind == "broadcast":
        return case["count"] * case["consumers"]
    if kind == "latency":
        return case["rounds"]
    if kind == "large":
        return case["count"]
    if kind == "connect":
        return case["connects"]
    if kind == "fanin":
        return case["endpoints"]
    raise KeyError(f"unknown case {kind!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--expect", required=True,
                        help="the cases the run must hold, comma-separated")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    try:
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        sys.stderr.write(f"FAIL: the bench did not finish within {TIMEOUT_S} s\n")
        sys.stderr.write((e.stderr or b"").decode(errors="replace"))
        return 1

    stderr = run.stderr.decode(errors="replace")
    problems = []
    try:
        report = json.loads(run.stdout)
    except ValueError as e:
        sys.stderr.write(f"FAIL: the output is not one JSON object ({e})\n{stderr}")
        sys.stderr.write(run.stdout.decode(errors="replace"))
        return 1

    if run.returncode != 0:
        problems.append(f"exit code {run.returncode}, not 0")
    if report.get("ok") is not True:
        problems.append('"ok" is not true')

    cases = report.get("cases", [])
    seen = [c.get("name") for c in cases]
    for kind in args.expect.split(","):
        # large runs twice: 1 MiB and 64 MiB objects.
        want = 2 if kind == "large" else 1
        if seen.count(kind) != want:
            problems.append(f"case {kind} ran {seen.count(kind)} times, not {want}")
    for kind in set(seen) - set(args.expect.split(",")):
        problems.append(f"case {kind} was not asked for")

    for case in cases:
        label = case.get("name", "?")
        if "size" in case and label == "large":
            label += f" {case['size']} B"
        if case.get("ok") is not True:
            problems.append(f"{label}: FAILED: {case.get('error', 'no reason given')}")
            continue
        try:
            want = expected_count(case)
        except KeyError as e:
            problems.append(f"{label}: {e}")
            continue
        if want < 1:
            problems.append(f"{label}: the workload is empty")
        if case.get("expected") != want:
            problems.append(f"{label}: expected {case.get('expected')}, computed {want}")
        if case.get("received") != want:
            problems.append(f"{label}: received {case.get('received')} of {want}")

    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        sys.stderr.write(stderr)
        return 1
    print(f"ok: {len(cases)} cases, every count and order right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
