# SPDX-License-Identifier: MIT
"""Fixtures for the PyGObject tests: a relay on 127.0.0.1 port 0 with
credentials generated for the session, and endpoints connected to it.

meson test sets GI_TYPELIB_PATH and LD_LIBRARY_PATH to the build tree. The
override is loaded from the source tree: its folder goes first in
gi.overrides.__path__ before Tlspyo is imported, so an installed copy
cannot shadow it.
"""
import math
import os
import time

import gi

gi.require_version("Tlspyo", "1.0")

import gi.overrides  # noqa: E402

SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON_PATH = os.path.join(SOURCE_ROOT, "tlspyo-glib", "python")
OVERRIDES_DIR = os.path.join(PYTHON_PATH, "gi", "overrides")
gi.overrides.__path__.insert(0, OVERRIDES_DIR)

from gi.repository import GLib, Tlspyo  # noqa: E402

import pytest  # noqa: E402

# Every wait in these tests is bounded by this, so a failure fails instead of hanging.
TIMEOUT_MS = int(os.environ.get("TLSPYO_TEST_TIMEOUT_MS", "10000"))
PASSWORD = "correct horse battery staple"


def pytest_sessionstart(session):
    # Fail loudly if the override under test is not the one in this tree.
    import sys
    module = sys.modules.get("gi.overrides.Tlspyo")
    assert module is not None, "the Tlspyo override did not load"
    assert os.path.dirname(os.path.abspath(module.__file__)) == OVERRIDES_DIR, module.__file__


@pytest.fixture(scope="session")
def credentials(tmp_path_factory):
    folder = tmp_path_factory.mktemp("credentials")
    Tlspyo.credentials_generate(folder)
    return str(folder)


class Network:
    """Makes relays and endpoints, and stops them all at teardown."""

    def __init__(self, credentials):
        self.credentials = credentials
        self.objects = []

    def relay(self, security="TLS", **kwargs):
        relay = Tlspyo.Relay(0, PASSWORD, address="127.0.0.1", security=security,
                             credentials_dir=self.credentials, **kwargs)
        relay.start()
        self.objects.append(relay)
        return relay

    def endpoint(self, relay, groups, password=PASSWORD, connect=True, **kwargs):
        ep = Tlspyo.Endpoint("127.0.0.1", relay.props.port, password, groups,
                             security=relay.props.security,
                             credentials_dir=self.credentials,
                             reconnect_initial_delay=0.05, **kwargs)
        self.objects.append(ep)
        ep.start()
        if connect:
            ep.wait_connected(TIMEOUT_MS)
        return ep

    def stop(self):
        # Endpoints first, so they leave cleanly, then relays.
        for obj in reversed(self.objects):
            if isinstance(obj, Tlspyo.Endpoint):
                obj.stop()
        for obj in self.objects:
            if isinstance(obj, Tlspyo.Relay):
                obj.stop()


@pytest.fixture
def net(credentials):
    network = Network(credentials)
    yield network
    network.stop()


def receive(ep, count, raw=False):
    """Receives exactly count objects, waiting at most TIMEOUT_MS in all."""
    got = []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(got) < count:
        left = int((deadline - time.monotonic()) * 1000)
        assert left > 0, f"received {got} after {TIMEOUT_MS} ms, expected {count} objects"
        got += ep.receive_all(timeout_ms=left, raw=raw)
    assert len(got) == count, f"received {got}, expected {count} objects"
    return got


def receive_none(ep, wait_ms=200):
    """Asserts nothing arrives in wait_ms (for what must not be delivered)."""
    got = ep.receive_all(timeout_ms=wait_ms)
    assert got == [], f"received {got}, expected nothing"


def assert_same(actual, expected, path="value"):
    """Equal, and of exactly the same types all the way down."""
    assert type(actual) is type(expected), \
        f"{path}: {actual!r} is a {type(actual).__name__}, expected {type(expected).__name__}"
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for k in expected:
            assert_same(actual[k], expected[k], f"{path}[{k!r}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), f"{path}: {actual!r} is not NaN"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_tlspyo_error(excinfo, code):
    error = excinfo.value
    assert isinstance(error, GLib.Error), error
    assert error.matches(Tlspyo.error_quark(), code), \
        f"{error.domain}:{error.code} {error.message}, expected {code}"
