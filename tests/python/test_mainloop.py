# SPDX-License-Identifier: MIT
"""Applications with a GLib.MainLoop: object-received signals and pop_async
with a callback (PyGObject 3.42 has no awaitables); and scripts without one,
whose blocking calls iterate the context so signals still arrive."""
import threading

import pytest
from gi.repository import Gio, GLib, Tlspyo

from conftest import PASSWORD, TIMEOUT_MS, assert_same, assert_tlspyo_error, receive


def run_until(done):
    """Runs a GLib.MainLoop until done() holds, failing the test after
    TIMEOUT_MS instead of running forever. Assertions in callbacks come
    before what done() checks, so a failed one shows as a timeout."""
    loop = GLib.MainLoop()
    timed_out = []

    def on_timeout():
        timed_out.append(True)
        loop.quit()
        return GLib.SOURCE_REMOVE

    def check():
        if done():
            loop.quit()
        return GLib.SOURCE_CONTINUE

    sources = [GLib.timeout_add(TIMEOUT_MS, on_timeout), GLib.timeout_add(5, check)]
    try:
        loop.run()
    finally:
        for source_id in sources:
            source = GLib.MainContext.default().find_source_by_id(source_id)
            if source is not None:
                source.destroy()
    assert not timed_out, f"the main loop ran {TIMEOUT_MS} ms without finishing"


def test_signals_and_pop_async(net):
    relay = net.relay()
    prod = net.endpoint(relay, "producers")
    cons = net.endpoint(relay, ["a", "b"])
    main_thread = threading.current_thread()
    seen_a, seen_b, popped = [], [], []

    def on_a(endpoint, obj, group, tag):
        assert threading.current_thread() is main_thread
        seen_a.append((endpoint, obj, group, tag))
        return True  # take it: it is not queued

    def on_b_raw(endpoint, obj, group):
        seen_b.append((obj, group))
        return False  # leave it for pop_async

    def on_popped(endpoint, result, tag):
        assert threading.current_thread() is main_thread
        popped.append((endpoint.pop_finish(result), tag))

    cons.connect_object_received(on_a, "my data", group="a")
    cons.connect("object-received::b", on_b_raw)
    cons.pop_async(1, None, on_popped, "pop data")
    prod.broadcast({"x": [1.5, 2.5]}, "a")
    prod.broadcast(b"\x00bytes", "b")

    run_until(lambda: seen_a and seen_b and popped)

    assert len(seen_a) == 1
    endpoint, obj, group, tag = seen_a[0]
    assert endpoint is cons and group == "a" and tag == "my data"
    assert_same(obj, {"x": [1.5, 2.5]})
    variant, group = seen_b[0]
    assert isinstance(variant, GLib.Variant) and variant.get_type_string() == "ay"
    assert group == "b"
    assert_same(popped, [([b"\x00bytes"], "pop data")])
    assert cons.get_n_queued() == 0


def test_pop_async_waits_for_produced_objects(net):
    relay = net.relay(security="TCP")
    prod = net.endpoint(relay, "p")
    cons = net.endpoint(relay, "work")
    results = []

    def on_popped(endpoint, result):
        results.extend(endpoint.pop_finish(result))
        if len(results) < 3:
            endpoint.pop_async(2, None, on_popped)

    cons.pop_async(2, None, on_popped)
    cons.notify_ready("work", 3)
    for i in range(3):
        prod.produce({"job": i}, "work")

    run_until(lambda: len(results) >= 3)
    assert results == [{"job": 0}, {"job": 1}, {"job": 2}]


def test_pop_finish_raw(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    results = []
    ep.pop_async(1, None, lambda src, res: results.append(src.pop_finish(res, raw=True)))
    ep.broadcast(GLib.Variant("(su)", ("raw", 7)), "g")
    run_until(lambda: results)
    [variant] = results[0]
    assert variant.get_type_string() == "(su)" and variant.unpack() == ("raw", 7)


def test_pop_async_cancelled(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    cancellable = Gio.Cancellable()
    errors = []

    def on_popped(endpoint, result):
        try:
            endpoint.pop_finish(result)
        except GLib.Error as e:
            errors.append(e)
        else:
            errors.append(None)

    ep.pop_async(1, cancellable, on_popped)
    GLib.idle_add(cancellable.cancel)
    run_until(lambda: errors)
    assert errors[0] is not None and errors[0].matches(Gio.io_error_quark(),
                                                       Gio.IOErrorEnum.CANCELLED), errors
    # The cancelled request took nothing: the next object is still there.
    ep.broadcast("after", "g")
    assert receive(ep, 1) == ["after"]


def test_pop_async_needs_a_callback(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    with pytest.raises(TypeError, match="callback"):
        ep.pop_async(1)


def test_connected_is_notified(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g", connect=False)
    changes = []
    ep.connect("notify::connected", lambda obj, pspec: changes.append(obj.props.connected))
    run_until(lambda: True in changes)
    relay.stop()
    run_until(lambda: changes[-1] is False)


def test_handler_can_disconnect(net):
    relay = net.relay()
    ep = net.endpoint(relay, "g")
    seen = []
    handler_id = ep.connect_object_received(lambda e, obj, group: seen.append(obj))
    ep.broadcast(1, "g")
    run_until(lambda: seen)
    ep.disconnect(handler_id)
    ep.broadcast(2, "g")
    # Returning None left the first in the queue; the second arrives unseen.
    assert receive(ep, 2) == [1, 2]
    assert seen == [1]


def test_blocking_calls_drive_the_context(net):
    """No main loop: a blocking pop() dispatches signals and other sources."""
    relay = net.relay()
    prod = net.endpoint(relay, "p")
    cons = net.endpoint(relay, "g")
    seen, idles = [], []
    cons.connect_object_received(lambda ep, obj, group: seen.append(obj) and False)
    GLib.idle_add(lambda: idles.append(True) and GLib.SOURCE_REMOVE)
    prod.broadcast({"hello": "world"}, "g")
    assert receive(cons, 1) == [{"hello": "world"}]
    assert seen == [{"hello": "world"}]  # emitted while pop() waited
    assert idles == [True]


def test_endpoint_in_a_thread(net):
    """An endpoint started on another thread blocks without any main loop there."""
    relay = net.relay()
    prod = net.endpoint(relay, "p")
    results, errors = [], []

    def worker():
        try:
            ep = Tlspyo.Endpoint("127.0.0.1", relay.props.port, PASSWORD, "t",
                                 credentials_dir=net.credentials)
            ep.start()
            ep.notify_ready("t")
            results.extend(ep.pop(timeout_ms=TIMEOUT_MS))
            ep.stop()
        except Exception as e:  # reported to the test below
            errors.append(e)

    thread = threading.Thread(target=worker)
    thread.start()
    prod.produce(("from", "main"), "t")
    thread.join(TIMEOUT_MS / 1000 * 2)
    assert not thread.is_alive(), "the thread did not finish"
    assert errors == []
    assert results == [("from", "main")]


def test_wait_connected_refusal_in_loop_app(net):
    relay = net.relay(accepted_groups={"ok": None})
    ep = net.endpoint(relay, "nope", connect=False)
    with pytest.raises(GLib.Error) as excinfo:
        ep.wait_connected(TIMEOUT_MS)
    assert_tlspyo_error(excinfo, Tlspyo.Error.GROUP_REFUSED)


@pytest.mark.parametrize("detailed", [False, True], ids=["any-group", "group-detail"])
def test_handler_sees_every_object(net, detailed):
    """Each object is signalled, not only the first one of its group."""
    relay = net.relay(security="TCP")
    ep = net.endpoint(relay, ["g", "h"])
    seen = []
    ep.connect_object_received(lambda e, obj, group: seen.append((group, obj)),
                               group="g" if detailed else None)
    expected = []
    for i in range(3):
        for group in ("g", "h"):
            ep.broadcast(i, group)
            if detailed and group == "h":
                continue
            expected.append((group, i))
            # One at a time: each arrives alone, not batched behind another.
            run_until(lambda: len(seen) == len(expected))
    assert seen == expected
    assert receive(ep, 6) == [0, 0, 1, 1, 2, 2]  # the handler returned None: all queued
