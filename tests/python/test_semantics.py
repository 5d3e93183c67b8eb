# SPDX-License-Identifier: MIT
"""Every tlspyo semantic through the Python bindings, over TLS (and TCP
where noted), from a script that never runs a main loop."""
import time

import pytest
from gi.repository import GLib, Tlspyo

from conftest import PASSWORD, TIMEOUT_MS, assert_same, assert_tlspyo_error, receive, receive_none


def test_broadcast_reaches_every_member(net):
    relay = net.relay()
    prod = net.endpoint(relay, "producers")
    cons = [net.endpoint(relay, "consumers") for _ in range(3)]
    other = net.endpoint(relay, "others")
    prod.broadcast({"n": 1}, "consumers")
    for ep in cons:
        assert receive(ep, 1) == [{"n": 1}]
    receive_none(other)
    receive_none(prod)


def test_broadcast_reaches_the_sender_when_member(net):
    relay = net.relay()
    ep = net.endpoint(relay, ["a", "b"])
    ep.broadcast("to a", "a")
    ep.broadcast("to b", "b")
    assert receive(ep, 2) == ["to a", "to b"]


def test_late_joiner_gets_latest_broadcast_only(net):
    relay = net.relay()
    prod = net.endpoint(relay, "producers")
    for i in range(3):
        prod.broadcast(i, "consumers")
    prod.flush(TIMEOUT_MS)
    late = net.endpoint(relay, "consumers")
    assert receive(late, 1) == [2]
    receive_none(late)


def test_produce_notify_fifo(net):
    relay = net.relay()
    prod = net.endpoint(relay, "producers")
    cons = net.endpoint(relay, "consumers")
    for i in range(5):
        prod.produce(f"item {i}", "consumers")
    prod.flush(TIMEOUT_MS)
    receive_none(cons)  # nothing without notify_ready
    cons.notify_ready("consumers")  # count defaults to 1
    assert receive(cons, 1) == ["item 0"]
    receive_none(cons)
    cons.notify_ready("consumers", 2)
    assert receive(cons, 2) == ["item 1", "item 2"]
    cons.notify_ready("consumers", count=-1)  # everything queued now
    assert receive(cons, 2) == ["item 3", "item 4"]


def test_produced_object_goes_to_one_consumer(net):
    relay = net.relay()
    prod = net.endpoint(relay, "producers")
    cons_1 = net.endpoint(relay, "consumers")
    cons_2 = net.endpoint(relay, "consumers")
    cons_1.notify_ready("consumers")
    cons_2.notify_ready("consumers")
    cons_1.flush(TIMEOUT_MS)
    cons_2.flush(TIMEOUT_MS)
    prod.produce("only one", "consumers")
    prod.produce("the other", "consumers")
    got = receive(cons_1, 1) + receive(cons_2, 1)
    assert sorted(got) == ["only one", "the other"]
    receive_none(cons_1)
    receive_none(cons_2)


def test_notify_ready_forms(net):
    relay = net.relay()
    prod = net.endpoint(relay, "p")
    cons = net.endpoint(relay, ["x", "y", "z"])
    for group in ("x", "y", "z"):
        for i in range(3):
            prod.produce(f"{group}{i}", group)
    prod.flush(TIMEOUT_MS)
    cons.notify_ready(["x", "y"])            # one from each
    assert sorted(receive(cons, 2)) == ["x0", "y0"]
    cons.notify_ready(("x", "z"), 2)         # two from each
    assert sorted(receive(cons, 4)) == ["x1", "x2", "z0", "z1"]
    cons.notify_ready({"y": -1, "z": 1})     # tlspyo's dict form
    assert sorted(receive(cons, 3)) == ["y1", "y2", "z2"]
    receive_none(cons)


@pytest.mark.parametrize("group,count,error", [
    ("g", 0, ValueError),
    ("g", 1.5, TypeError),
    ("g", True, TypeError),
    ("", 1, ValueError),
    ("bad\nname", 1, ValueError),
    (["g", 3], 1, TypeError),
    ({"g": 1, "h": 0}, 1, ValueError),
    ([], 1, ValueError),
    ("g", 1 << 40, OverflowError),
])
def test_notify_ready_refuses_and_sends_nothing(net, group, count, error):
    relay = net.relay()
    prod = net.endpoint(relay, "p")
    cons = net.endpoint(relay, ["g", "h"])
    prod.produce("queued", "g")
    prod.flush(TIMEOUT_MS)
    with pytest.raises(error):
        cons.notify_ready(group, count)
    receive_none(cons)  # no credit was given for "g"
    cons.notify_ready("g")
    assert receive(cons, 1) == ["queued"]


def test_send_object_destinations(net):
    relay = net.relay()
    prod = net.endpoint(relay, "p")
    a = net.endpoint(relay, "a")
    ab = net.endpoint(relay, ["a", "b"])
    c = net.endpoint(relay, "c")
    prod.send_object("to a", "a")
    prod.send_object(("to a and b", 1), ("a", "b"))
    prod.send_object(["list", "form"], ["b"])
    prod.send_object({"mixed": True}, {"a": -1, "c": 2})
    assert receive(a, 3) == ["to a", ("to a and b", 1), {"mixed": True}]
    # Once per destination group it belongs to.
    assert receive(ab, 5) == ["to a", ("to a and b", 1), ("to a and b", 1),
                              ["list", "form"], {"mixed": True}]
    receive_none(c)
    c.notify_ready("c", -1)
    assert receive(c, 2) == [{"mixed": True}, {"mixed": True}]


BAD_DESTINATIONS = [
    (3, TypeError),
    (None, TypeError),
    (b"a", TypeError),
    ({"a"}, TypeError),
    ((), ValueError),
    ([], ValueError),
    ({}, ValueError),
    (("a", 3), TypeError),
    (["a", None], TypeError),
    ({"a": "1"}, TypeError),
    ({"a": 1.0}, TypeError),
    ({"a": True}, TypeError),
    ({"a": 1, "b": 0}, ValueError),
    ({"a": 1 << 31}, OverflowError),
    ({1: 1}, TypeError),
    ("", GLib.Error),
    (("a", ""), GLib.Error),
    ({"a": 1, "bad\x01": -1}, GLib.Error),
    (GLib.Variant("i", 1), GLib.Error),
]


@pytest.mark.parametrize("destination,error", BAD_DESTINATIONS,
                         ids=[repr(d) for d, _ in BAD_DESTINATIONS])
def test_send_object_refuses_bad_destinations(net, destination, error):
    relay = net.relay(security="TCP")
    prod = net.endpoint(relay, "p")
    a = net.endpoint(relay, "a")
    with pytest.raises(error) as excinfo:
        prod.send_object("must not be sent", destination)
    if error is GLib.Error:
        assert_tlspyo_error(excinfo, Tlspyo.Error.INVALID_ARGUMENT)
    a.notify_ready("a", -1)
    prod.send_object("sentinel", "a")
    # Objects arrive in order: had anything been sent, it would come first.
    assert receive(a, 1) == ["sentinel"]
    receive_none(a)


def test_send_object_accepts_variant_destination(net):
    relay = net.relay(security="TCP")
    ep = net.endpoint(relay, "a")
    ep.send_object(1, GLib.Variant("a{si}", {"a": -1}))
    assert receive(ep, 1) == [1]


def test_accepted_groups(net):
    relay = net.relay(accepted_groups={"open": None, "pair": 2, "small": {"max_count": 1}})
    net.endpoint(relay, "open")
    net.endpoint(relay, ["open", "pair"])
    net.endpoint(relay, "pair")
    net.endpoint(relay, "small")
    for groups in ("closed", ["open", "closed"], "pair", "small"):
        ep = net.endpoint(relay, groups, connect=False)
        with pytest.raises(GLib.Error) as excinfo:
            ep.wait_connected(TIMEOUT_MS)
        assert_tlspyo_error(excinfo, Tlspyo.Error.GROUP_REFUSED)
        ep.stop()


def test_accept_group_max_consumables(net):
    relay = net.relay(accepted_groups={"q": {"max_count": None, "max_consumables": 2}})
    prod = net.endpoint(relay, "q")
    for i in range(4):
        prod.produce(i, "q")
    prod.flush(TIMEOUT_MS)
    prod.notify_ready("q", -1)
    assert receive(prod, 2) == [2, 3]  # the oldest were dropped


def test_accept_group_method_defaults(net):
    relay = Tlspyo.Relay(0, PASSWORD, address="127.0.0.1", security="TCP")
    relay.accept_group("only")
    relay.start()
    net.objects.append(relay)
    net.endpoint(relay, "only")
    ep = net.endpoint(relay, "other", connect=False)
    with pytest.raises(GLib.Error) as excinfo:
        ep.wait_connected(TIMEOUT_MS)
    assert_tlspyo_error(excinfo, Tlspyo.Error.GROUP_REFUSED)


@pytest.mark.parametrize("accepted,error", [
    (["a"], TypeError),
    ({"a": "2"}, TypeError),
    ({"a": {"max_count": 1, "max_queue": 3}}, ValueError),
    ({"a": -5}, ValueError),
    ({"": None}, ValueError),
])
def test_accepted_groups_validation(accepted, error):
    with pytest.raises(error):
        Tlspyo.Relay(0, PASSWORD, accepted_groups=accepted)


def test_get_last(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    for i in range(5):
        ep.broadcast(i, "g")
    assert receive(ep, 5) == [0, 1, 2, 3, 4]
    for i in range(5, 10):
        ep.broadcast(i, "g")
    ep.flush(TIMEOUT_MS)
    # Wait, bounded, until all five are queued locally.
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while ep.get_n_queued() < 5:
        assert time.monotonic() < deadline, "the broadcasts did not all arrive"
        time.sleep(0.01)
    assert ep.get_last(2) == [8, 9]
    assert ep.pop() == []  # the older ones were discarded
    assert ep.get_last() == []


def test_pop_defaults_and_max_items(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    assert ep.pop() == []  # does not wait by default, as tlspyo's blocking=False
    assert ep.get_last() == []
    assert ep.receive_all() == []
    for i in range(4):
        ep.broadcast(i, "g")
    assert ep.pop(timeout_ms=TIMEOUT_MS) == [0]  # max_items defaults to 1
    rest = []
    while len(rest) < 3:
        rest += ep.pop(3, TIMEOUT_MS)
    assert rest == [1, 2, 3]
    with pytest.raises(GLib.Error) as excinfo:
        ep.pop(0)
    assert_tlspyo_error(excinfo, Tlspyo.Error.INVALID_ARGUMENT)


def test_blocking_keyword(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    ep.broadcast("waited for", "g")
    assert ep.pop(blocking=True) == ["waited for"]
    ep.broadcast("again", "g")
    assert ep.receive_all(blocking=True) == ["again"]
    ep.broadcast("last", "g")
    assert ep.get_last(blocking=True) == ["last"]
    assert ep.pop(blocking=False) == []
    with pytest.raises(TypeError, match="blocking=True"):
        ep.pop(1, True)  # tlspyo's positional blocking must not mean 1 ms
    with pytest.raises(TypeError, match="not both"):
        ep.pop(timeout_ms=5, blocking=True)


def test_wrong_password(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g", password="not the password", connect=False)
    with pytest.raises(GLib.Error) as excinfo:
        ep.wait_connected(TIMEOUT_MS)
    assert_tlspyo_error(excinfo, Tlspyo.Error.AUTHENTICATION)


def test_wrong_password_tcp(net):
    relay = net.relay(security="TCP")
    ep = net.endpoint(relay, "g", password="not the password", connect=False)
    with pytest.raises(GLib.Error) as excinfo:
        ep.wait_connected(TIMEOUT_MS)
    assert_tlspyo_error(excinfo, Tlspyo.Error.AUTHENTICATION)


def test_readme_flow_tcp(net):
    relay = net.relay(security="TCP")
    prod = net.endpoint(relay, "producers")
    cons_1 = net.endpoint(relay, "consumers")
    cons_2 = net.endpoint(relay, "consumers")
    prod.broadcast("I HAVE BEEN BROADCAST", "consumers")
    prod.produce("I HAVE BEEN PRODUCED", "consumers")
    cons_1.notify_ready("consumers")
    assert receive(cons_1, 2) == ["I HAVE BEEN BROADCAST", "I HAVE BEEN PRODUCED"]
    assert receive(cons_2, 1) == ["I HAVE BEEN BROADCAST"]
    receive_none(cons_2)


def test_pop_on_endpoint_not_started(net):
    relay = net.relay()
    ep = Tlspyo.Endpoint("127.0.0.1", relay.props.port, PASSWORD, "g")
    with pytest.raises(GLib.Error) as excinfo:
        ep.pop(timeout_ms=TIMEOUT_MS)
    assert_tlspyo_error(excinfo, Tlspyo.Error.CLOSED)


def test_constructor_conveniences(credentials):
    ep = Tlspyo.Endpoint("10.0.0.1", 3000, "pw", "consumers", security="TCP",
                         credentials_dir=credentials, server_identity="relay.example")
    assert ep.props.host == "10.0.0.1"
    assert ep.props.port == 3000
    assert ep.props.groups == ["consumers"]
    assert ep.props.security == Tlspyo.Security.NONE
    assert ep.props.credentials_dir == credentials
    assert ep.props.server_identity == "relay.example"
    assert Tlspyo.Endpoint(groups=("a", "b")).props.groups == ["a", "b"]
    assert Tlspyo.Endpoint(security="tls").props.security == Tlspyo.Security.TLS
    assert Tlspyo.Endpoint().props.host == "127.0.0.1"  # GLib defaults stay
    relay = Tlspyo.Relay(3000, "pw", security=Tlspyo.Security.NONE)
    assert relay.props.port == 3000
    assert relay.props.security == Tlspyo.Security.NONE


@pytest.mark.parametrize("kwargs,match", [
    ({"ip_server": "127.0.0.1"}, "host="),
    ({"connection": "TCP"}, "security="),
    ({"local_com_port": 3001}, "no helper process"),
    ({"security": "UDP"}, "TLS"),
    ({"security": None}, "TCP"),  # tlspyo's None means plain TCP: refused, not TLS
    ({"groups": 3}, "group name"),
    ({"groups": ["a", 1]}, "str"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Tlspyo.Endpoint(**kwargs)


def test_context_managers(net, credentials):
    with Tlspyo.Relay(0, PASSWORD, address="127.0.0.1", credentials_dir=credentials) as relay:
        with Tlspyo.Endpoint("127.0.0.1", relay.props.port, PASSWORD, "g",
                             credentials_dir=credentials) as ep:
            ep.broadcast("in a with block", "g")
            assert receive(ep, 1) == ["in a with block"]
        assert not ep.props.connected
    assert relay.get_n_connections() == 0


def test_with_block_delivers_before_stopping(net):
    """A script that sends and leaves at once, before it is even connected."""
    relay = net.relay()
    cons = net.endpoint(relay, "c")
    for i in range(3):
        with Tlspyo.Endpoint("127.0.0.1", relay.props.port, PASSWORD, "p",
                             credentials_dir=net.credentials) as prod:
            prod.produce(i, "c")
    cons.notify_ready("c", -1)
    assert receive(cons, 3) == [0, 1, 2]


def test_with_block_reports_what_was_not_delivered(net):
    relay = net.relay()
    port = relay.props.port
    relay.stop()
    with pytest.raises(GLib.Error) as excinfo:
        with Tlspyo.Endpoint("127.0.0.1", port, PASSWORD, "p", stop_timeout=0.3,
                             credentials_dir=net.credentials) as prod:
            prod.produce("lost", "c")
    assert_tlspyo_error(excinfo, Tlspyo.Error.TIMED_OUT)
    assert not prod.props.connected
    # An exception in the block is not masked, and the endpoint still stops.
    with pytest.raises(KeyError):
        with Tlspyo.Endpoint("127.0.0.1", port, PASSWORD, "p", stop_timeout=0.3,
                             credentials_dir=net.credentials) as prod:
            raise KeyError("from the block")
    with pytest.raises(GLib.Error) as excinfo:
        prod.pop(timeout_ms=TIMEOUT_MS)
    assert_tlspyo_error(excinfo, Tlspyo.Error.CLOSED)


def test_credentials_helpers(tmp_path):
    Tlspyo.credentials_generate(tmp_path / "creds")  # a path, not only a str
    assert (tmp_path / "creds" / "key.pem").exists()
    cert = Tlspyo.credentials_load_certificate(tmp_path / "creds")
    assert len(Tlspyo.credentials_get_fingerprint(cert).split(":")) == 32
    with pytest.raises(GLib.Error) as excinfo:
        Tlspyo.credentials_generate(tmp_path / "creds")
    assert_tlspyo_error(excinfo, Tlspyo.Error.CREDENTIALS)


def test_variant_objects_keep_their_type(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    sent = GLib.Variant("a(uy)", [(1, 2), (3, 4)])
    ep.produce(sent, "g")
    ep.notify_ready("g")
    got = receive(ep, 1, raw=True)[0]
    assert got.get_type_string() == "a(uy)" and got.equal(sent)
    ep.send_object(sent, {"g": -1})
    assert_same(receive(ep, 1), [[(1, 2), (3, 4)]])
