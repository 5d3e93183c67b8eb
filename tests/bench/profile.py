#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Profiles `tlspyo bench` with perf: where each process of a case spends its CPU.

    profile.py [--frequency HZ] [--top N] [--keep DATA] TLSPYO BENCH OPTION...

for example `profile.py _build/tlspyo-glib/tools/tlspyo --cases produce`.
Records the whole run (the bench and every process it starts) with
`perf record --call-graph dwarf`, then prints, for each process (named by
its role: tlspyo-relay, tlspyo-producer…):

- its share of the samples, and of each of its threads (main, tlspyo-worker…);
- the shared objects its time is spent in (self time);
- the functions with the most self time;
- the tlspyo-glib function each sample runs under (the innermost
  libtlspyo-glib frame of its call chain), which says which part of the
  library pays for the GLib, GnuTLS and kernel time below it.

With --threads, each thread is its own entry instead of each process: use it
with --endpoints-in-process, where the endpoints are threads of the bench
(perf unwinds the main thread of a child process poorly, threads well).

Needs perf, and permission to record (root, or kernel.perf_event_paranoid
at most 1 for a user's own processes).
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

HEADER = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+(?P<period>\d+)\s+\S+:\s*$")
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(?P<sym>.+?)\s+\((?P<dso>[^()]*)\)\s*$")


def short_dso(dso):
    base = os.path.basename(dso)
    if base.startswith("[") or not base:
        return base or "?"
    return re.sub(r"\.so[.0-9]*$", "", base)


def clean_sym(sym):
    return re.sub(r"\+0x[0-9a-f]+$", "", sym)


def samples(data):
    """Yields (comm, pid, tid, period, [(sym, dso), ...] leaf first)."""
    script = subprocess.Popen(
        ["perf", "script", "-i", data, "-F", "comm,pid,tid,period,event,ip,sym,dso"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    current = None
    for line in script.stdout:
        m = HEADER.match(line)
        if m:
            if current:
                yield current
            current = (m["comm"], int(m["pid"]), int(m["tid"]), int(m["period"]), [])
            continue
        m = FRAME.match(line)
        if m and current:
            current[4].append((clean_sym(m["sym"]), short_dso(m["dso"])))
    if current:
        yield current
    script.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frequency", type=int, default=999)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--keep", metavar="DATA", help="keep perf's data in DATA")
    parser.add_argument("--threads", action="store_true", help="one entry per thread")
    parser.add_argument("tlspyo")
    parser.add_argument("options", nargs=argparse.REMAINDER)
    args = parser.parse_args()

    data = args.keep or tempfile.mktemp(prefix="tlspyo-bench-", suffix=".perf")
    record = ["perf", "record", "-q", "-F", str(args.frequency), "--call-graph", "dwarf,16384",
              "-o", data, "--", args.tlspyo, "bench"] + args.options
    sys.stderr.write("running: " + " ".join(record) + "\n")
    run = subprocess.run(record, stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(run.stdout)

    roles = {}
    per_pid = collections.Counter()
    per_thread = collections.defaultdict(collections.Counter)
    per_dso = collections.defaultdict(collections.Counter)
    per_sym = collections.defaultdict(collections.Counter)
    per_lib = collections.defaultdict(collections.Counter)
    total = 0
    for comm, pid, tid, period, frames in samples(data):
        total += period
        if args.threads:
            pid = (pid, tid)
            roles[pid] = f"{comm} thread {tid}"
        per_pid[pid] += period
        if tid == pid and not args.threads:
            roles[pid] = comm
        per_thread[pid][comm if tid != pid else "main"] += period
        if not frames:
            continue
        sym, dso = frames[0]
        per_dso[pid][dso] += period
        per_sym[pid][f"{sym} ({dso})"] += period
        under = next((s for s, d in frames if d.startswith("libtlspyo-glib")), None)
        if under is None:
            under = "(outside tlspyo-glib: " + next(
                (s for s, d in frames if d in ("tlspyo", "libc")), frames[-1][0]) + ")"
        per_lib[pid][under] += period

    if not args.keep:
        os.unlink(data)
    if total == 0:
        sys.exit("perf recorded nothing: is perf allowed here (kernel.perf_event_paranoid)?")

    def pct(v, of):
        return f"{100.0 * v / of:5.1f}%"

    for pid, weight in per_pid.most_common():
        if weight < total * 0.01:
            continue
        name = roles.get(pid, f"pid {pid}")
        where = f"pid {pid[0]}" if args.threads else f"pid {pid}"
        print(f"\n## {name} ({where}): {pct(weight, total)} of all samples")
        print("threads: " + ", ".join(f"{t} {pct(v, weight)}"
                                      for t, v in per_thread[pid].most_common(6)))
        print("self time by shared object: " + ", ".join(
            f"{d} {pct(v, weight)}" for d, v in per_dso[pid].most_common(8)))
        print("\nself time, top functions:")
        for s, v in per_sym[pid].most_common(args.top):
            print(f"  {pct(v, weight)}  {s}")
        print("\nunder which tlspyo-glib function (inclusive):")
        for s, v in per_lib[pid].most_common(args.top):
            print(f"  {pct(v, weight)}  {s}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
