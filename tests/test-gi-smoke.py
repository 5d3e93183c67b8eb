#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The typelib loads and the README example runs through plain introspection."""
import sys
import tempfile

import gi
gi.require_version("Tlspyo", "1.0")
from gi.repository import GLib, Tlspyo  # noqa: E402

with tempfile.TemporaryDirectory() as creds:
    Tlspyo.credentials_generate(creds, None)
    relay = Tlspyo.Relay(port=0, address="127.0.0.1", password="pw", credentials_dir=creds)
    relay.start()
    port = relay.props.port
    assert port > 0

    def endpoint(group):
        ep = Tlspyo.Endpoint(host="127.0.0.1", port=port, password="pw", groups=[group],
                             credentials_dir=creds)
        ep.start()
        return ep

    prod = endpoint("producers")
    cons = endpoint("consumers")
    prod.broadcast(GLib.Variant("s", "hello"), "consumers")
    prod.produce(GLib.Variant("(ia{sv})", (7, {"k": GLib.Variant("d", 1.5)})), "consumers")
    cons.notify_ready("consumers", 1)
    got = []
    while len(got) < 2:
        batch = cons.receive_all(10000)
        assert batch, "nothing received within 10 s"
        got += [v.unpack() for v in batch]
    assert got == ["hello", (7, {"k": 1.5})], got
    try:
        cons.pop(0, 0)
    except GLib.Error as e:
        assert e.matches(Tlspyo.error_quark(), Tlspyo.Error.INVALID_ARGUMENT), e
    else:
        sys.exit("pop(0) did not fail")
    for ep in (prod, cons):
        ep.stop()
    relay.stop()
print("ok")
