# SPDX-License-Identifier: MIT
"""examples/readme.py, the tlspyo README example in Python, runs in a fresh
interpreter with no main loop and prints what tlspyo's prints."""
import os
import subprocess
import sys

from conftest import OVERRIDES_DIR, SOURCE_ROOT, TIMEOUT_MS

EXAMPLE = os.path.join(SOURCE_ROOT, "examples", "readme.py")

EXPECTED = ("Consumer 1 has received: ['I HAVE BEEN BROADCAST', 'I HAVE BEEN PRODUCED']\n"
            "Consumer 2 has received: ['I HAVE BEEN BROADCAST']\n")

# Runs the example as __main__, with this tree's override first in
# gi.overrides.__path__, as conftest.py does for the tests themselves.
BOOTSTRAP = """
import runpy, sys
import gi.overrides
gi.overrides.__path__.insert(0, sys.argv[1])
script = sys.argv[2]
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
import gi.overrides.Tlspyo
assert gi.overrides.Tlspyo.__file__.startswith(sys.argv[0].rsplit("/examples/", 1)[0]), \\
    gi.overrides.Tlspyo.__file__
"""


def run_example(*args):
    return subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, OVERRIDES_DIR, EXAMPLE, *args],
        capture_output=True, text=True, timeout=2 * TIMEOUT_MS / 1000)


def test_readme_example():
    result = run_example()
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED


def test_readme_example_with_credentials_dir(credentials):
    result = run_example(credentials)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED
    assert "VerySecurePassword" not in result.stdout + result.stderr
