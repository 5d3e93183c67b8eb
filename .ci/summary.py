#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Adds up meson's testlog.json files into one plain 'N passed, N failed'
line, after one line per log (which stage passed or failed what). A log
that is missing or empty counts as a failure: its stage did not run."""
import json
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    log_passed = log_failed = log_skipped = 0
    failures = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                test = json.loads(line)
                result = test["result"]
                if result in ("OK", "EXPECTEDFAIL"):
                    log_passed += 1
                elif result == "SKIP":
                    log_skipped += 1
                else:
                    log_failed += 1
                    failures.append(f"{test['name']} ({result})")
    except OSError as e:
        print(f"{path}: not readable ({e.strerror}): that stage did not run")
        failed += 1
        continue
    if log_passed + log_failed + log_skipped == 0:
        print(f"{path}: no test ran")
        failed += 1
        continue
    print(f"{path}: {log_passed} passed, {log_failed} failed"
          + (f", {log_skipped} skipped" if log_skipped else "")
          + (f": {', '.join(failures)}" if failures else ""))
    passed += log_passed
    failed += log_failed
    skipped += log_skipped
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed or passed == 0 else 0)
