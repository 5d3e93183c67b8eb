#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The tlspyo README example in Python: a relay, a producer and two consumers
in one script that never runs a main loop (blocking calls drive it).

Usage: readme.py [CREDENTIALS-DIR]
Without a folder, TLS credentials are generated into a temporary one.
"""
import sys
import tempfile

import gi
gi.require_version("Tlspyo", "1.0")
from gi.repository import Tlspyo  # noqa: E402


def main(credentials_dir):
    # A relay on 127.0.0.1; port 0 lets the system pick a free port.
    re = Tlspyo.Relay(
        port=0,  # tlspyo's README uses 3000: any free port, the same for the relay and endpoints
        password="VerySecurePassword",  # the same on the relay and endpoints, AND strong
        address="127.0.0.1",  # listen on this machine only; leave it out to listen everywhere
        credentials_dir=credentials_dir,  # key.pem and certificate.pem (TLS is the default)
    )
    re.start()
    port = re.props.port  # the port the system picked

    # An endpoint in group "producers", and two in group "consumers".
    prod = Tlspyo.Endpoint("127.0.0.1", port, "VerySecurePassword", "producers",
                           credentials_dir=credentials_dir)
    cons_1 = Tlspyo.Endpoint("127.0.0.1", port, "VerySecurePassword", "consumers",
                             credentials_dir=credentials_dir)
    cons_2 = Tlspyo.Endpoint("127.0.0.1", port, "VerySecurePassword", "consumers",
                             credentials_dir=credentials_dir)
    for ep in (prod, cons_1, cons_2):
        ep.start()  # connects in the background

    # The producer broadcasts an object to every endpoint of "consumers"...
    prod.broadcast("I HAVE BEEN BROADCAST", "consumers")
    # ...and puts one in the shared queue of "consumers".
    prod.produce("I HAVE BEEN PRODUCED", "consumers")
    # Consumer 1 tells the relay it is ready to consume one produced object.
    cons_1.notify_ready("consumers")

    # Consumer 1 receives the broadcast AND the produced object. tlspyo's
    # blocking=True is timeout_ms=-1; 10 s here so that the example cannot hang.
    res = []
    while len(res) < 2:
        got = cons_1.receive_all(timeout_ms=10000)
        if not got:
            sys.exit("Consumer 1 received nothing in 10 s")
        res += got
    print(f"Consumer 1 has received: {res}")

    # Consumer 2 receives only the broadcast.
    res = cons_2.receive_all(timeout_ms=10000)
    print(f"Consumer 2 has received: {res}")

    # Let us close everyone gracefully.
    prod.stop()
    cons_1.stop()
    cons_2.stop()
    re.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="tlspyo-example-") as tmp:
            Tlspyo.credentials_generate(tmp)
            main(tmp)
