# SPDX-License-Identifier: MIT
"""Shared fixtures for the end-to-end tests of the `tlspyo` command.

Every process is started with a bounded timeout, in a private HOME and
XDG_DATA_HOME, against relays bound to 127.0.0.1 on a port the system picks
(read back from --port-file)."""

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

CLI = os.environ.get("TLSPYO_CLI")
# Every wait is bounded by this; a hung command fails the test instead.
TIMEOUT = 20


def pytest_configure(config):
    if not CLI or not os.access(CLI, os.X_OK):
        raise pytest.UsageError("TLSPYO_CLI must name the built tlspyo executable")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def env(home):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TLSPYO_PASSWORD")}
    environ["HOME"] = str(home)
    environ["XDG_DATA_HOME"] = str(home / "data")
    environ["XDG_CONFIG_HOME"] = str(home / "config")
    environ["XDG_CACHE_HOME"] = str(home / "cache")
    environ["LC_ALL"] = "C.UTF-8"
    return environ


class Cli:
    def __init__(self, env):
        self.env = env

    def run(self, *args, input=None, env=None, timeout=TIMEOUT, stdin=None):
        """Runs `tlspyo ARGS` to completion and returns the CompletedProcess
        with text stdout/stderr."""
        return subprocess.run(
            [CLI, *map(str, args)],
            input=input,
            stdin=stdin if input is None else None,
            env=env or self.env,
            capture_output=True,
            timeout=timeout,
            encoding="utf-8",
            errors="strict",
        )

    def start(self, *args, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
        return subprocess.Popen(
            [CLI, *map(str, args)],
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            encoding="utf-8",
        )


@pytest.fixture(scope="module")
def cli(env):
    return Cli(env)


def one_line_error(result):
    """The error contract: one line on stderr, "tlspyo: what: what to do"."""
    err = result.stderr
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("tlspyo: "), lines[0]
    assert ": " in lines[0][len("tlspyo: "):], lines[0]
    return lines[0]


def wait_for_file(path, proc, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before writing {path}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{path} did not appear within {timeout} s")


def wait_until(condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.02)


def stop(proc, sig=signal.SIGTERM):
    """Stops a long-running command the way an operator would; returns
    (returncode, stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"did not stop within {TIMEOUT} s on {sig}: {err}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def password(home):
    """A password file; the password is distinctive so that a leak is found."""
    secret = "pw-" + secrets.token_hex(12)
    path = home / "password"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret, path


@pytest.fixture(scope="module")
def credentials(cli, home):
    directory = home / "relay-credentials"
    result = cli.run("credentials", "generate", "--directory", directory)
    assert result.returncode == 0, result.stderr
    return directory


class Relay:
    """A `tlspyo relay` process; its output goes to files, so that a chatty
    relay never blocks on a full pipe."""

    def __init__(self, proc, port, port_file, out_path, err_path, banner):
        self.proc = proc
        self.port = port
        self.port_file = port_file
        self.out_path = out_path
        self.err_path = err_path
        self.banner = banner

    def log(self):
        return self.out_path.read_text() + self.err_path.read_text()

    def stop(self, sig=signal.SIGTERM):
        code, _, _ = stop(self.proc, sig)
        return code, self.out_path.read_text(), self.err_path.read_text()


def start_relay(cli, tmp, password_file, *extra, env=None):
    tag = secrets.token_hex(4)
    port_file = tmp / f"relay-{tag}.port"
    out_path = tmp / f"relay-{tag}.out"
    err_path = tmp / f"relay-{tag}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = cli.start("relay", "--address", "127.0.0.1", "--port", "0",
                         "--port-file", port_file, "--password-file", password_file,
                         "--verbose", *extra, env=env, stdout=out, stderr=err)
    port = int(wait_for_file(port_file, proc))
    deadline = time.monotonic() + TIMEOUT
    while "listening on " not in out_path.read_text():
        assert time.monotonic() < deadline, "the relay did not say where it listens"
        assert proc.poll() is None, err_path.read_text()
        time.sleep(0.02)
    banner = out_path.read_text().splitlines()
    return Relay(proc, port, port_file, out_path, err_path, banner)


@pytest.fixture(scope="module")
def relay(cli, home, password, credentials):
    """One TLS relay per test module, with every connection logged; at the
    end it must stop cleanly on SIGTERM and never have printed the password."""
    relay = start_relay(cli, home, password[1], "--directory", credentials)
    yield relay
    code, out, err = relay.stop()
    assert code == 0, err
    assert password[0] not in out + err
    assert not relay.port_file.exists()


@pytest.fixture
def group(request):
    """A group name unique to the test: the relay keeps the last broadcast of
    each group, so tests must not share them."""
    return "g-" + request.node.name.replace("[", "-").replace("]", "")[:200]


def client_args(relay, password, credentials, *extra):
    return ("--port", relay.port, "--password-file", password[1],
            "--directory", credentials, "--timeout", "10", *extra)
