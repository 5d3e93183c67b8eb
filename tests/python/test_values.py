# SPDX-License-Identifier: MIT
"""The Python <-> GVariant mapping: documented types, lossless round trips
(locally and through a relay), GLib.Variant pass-through, raw opt-out and
the errors for what cannot be sent."""
import collections
import enum
import math

import pytest
from gi.repository import GLib, Tlspyo

from conftest import TIMEOUT_MS, assert_same, receive


class Color(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")

# (value, the GVariant type it is sent as), as documented in Tlspyo.pack.
MAPPING = [
    (None, "mv"),
    (True, "b"),
    (False, "b"),
    (0, "x"),
    (-(1 << 63), "x"),
    ((1 << 63) - 1, "x"),
    (1.5, "d"),
    (-0.0, "d"),
    (math.inf, "d"),
    ("", "s"),
    ("I HAVE BEEN BROADCAST", "s"),
    ("héllo wörld ✓ \U0001F600", "s"),
    (b"", "ay"),
    (b"\x00\x01\xff binary \x00", "ay"),
    ((), "()"),
    ((1,), "(x)"),
    ((1, "a", None, b"b", 2.5, True), "(xsmvaydb)"),
    ([], "av"),
    ([0.5, -1.25, 3.0], "ad"),
    ([1, -2, 1 << 40], "ax"),
    ([True, False, True], "ab"),
    (["a", "", "c"], "as"),
    ([b"x", b""], "aay"),
    ([1, "mixed", None, 2.5], "av"),
    ([1, True], "av"),
    ([1, 1.0], "av"),
    ([[1, 2], [3.5]], "av"),
    ({}, "a{sv}"),
    ({"a": 1, "b": "two"}, "a{sv}"),
    ({1: "one", -2: None}, "a{xv}"),
]

NESTED = [
    {"weights": [0.1, 0.2, 0.3], "step": 42, "done": False, "info": None,
     "episode": ({"obs": [1, 2, 3], "reward": -1.5}, b"\x00\xff", ("x", ("y", ("z",)))),
     "tags": ["a", "b"], "by_id": {7: [b"raw", b""], 8: {}}},
    [[[], [[]]], [{}], ((),), [None, [None]]],
    ({"k": [({"deep": [1.0, "s", (True,)]},)]}, [{"a": {"b": {"c": [1, [2, [3]]]}}}]),
    [math.nan, [math.nan], {"nan": math.nan}],
]


@pytest.mark.parametrize("value,type_string", MAPPING, ids=[repr(v)[:40] for v, _ in MAPPING])
def test_mapping_table(value, type_string):
    variant = Tlspyo.pack(value)
    assert isinstance(variant, GLib.Variant)
    assert variant.get_type_string() == type_string
    assert_same(Tlspyo.unpack(variant), value)


@pytest.mark.parametrize("value", NESTED, ids=range(len(NESTED)))
def test_nested_round_trip(value):
    assert_same(Tlspyo.unpack(Tlspyo.pack(value)), value)


def test_dict_order_is_kept():
    value = {k: i for i, k in enumerate("zyxabc")}
    assert list(Tlspyo.unpack(Tlspyo.pack(value))) == list("zyxabc")


def test_big_arrays_round_trip():
    floats = [i / 7 for i in range(100000)]
    ints = list(range(-50000, 50000))
    blob = bytes(range(256)) * 4096
    assert_same(Tlspyo.unpack(Tlspyo.pack(floats)), floats)
    assert_same(Tlspyo.unpack(Tlspyo.pack(ints)), ints)
    assert_same(Tlspyo.unpack(Tlspyo.pack(blob)), blob)


def test_subclasses_travel_as_their_base_type():
    assert_same(Tlspyo.unpack(Tlspyo.pack(Color.RED)), 1)
    assert_same(Tlspyo.unpack(Tlspyo.pack(Point(1, 2))), (1, 2))
    assert_same(Tlspyo.unpack(Tlspyo.pack(collections.OrderedDict(a=1))), {"a": 1})
    assert_same(Tlspyo.unpack(Tlspyo.pack([Color.RED, Color.RED])), [1, 1])


def test_variant_goes_through_untouched():
    variant = GLib.Variant("(ua{ss}mi)", (7, {"k": "v"}, None))
    assert Tlspyo.pack(variant) is variant
    nested = Tlspyo.pack([variant, 1])
    assert nested.get_type_string() == "av"
    assert nested.get_child_value(0).get_variant().get_type_string() == "(ua{ss}mi)"
    assert_same(Tlspyo.unpack(nested), [(7, {"k": "v"}, None), 1])


# What C or JavaScript peers may send, and what Python gets.
FOREIGN = [
    (GLib.Variant("y", 200), 200),
    (GLib.Variant("n", -3), -3),
    (GLib.Variant("q", 65535), 65535),
    (GLib.Variant("i", -7), -7),
    (GLib.Variant("u", 4000000000), 4000000000),
    (GLib.Variant("t", (1 << 64) - 1), (1 << 64) - 1),
    (GLib.Variant("o", "/org/example"), "/org/example"),
    (GLib.Variant("g", "a{sv}"), "a{sv}"),
    (GLib.Variant("ai", [1, -2]), [1, -2]),
    (GLib.Variant("au", [1, 2]), [1, 2]),
    (GLib.Variant("at", [1 << 63]), [1 << 63]),
    (GLib.Variant("a{ss}", {"a": "b"}), {"a": "b"}),
    (GLib.Variant("a{is}", {3: "c"}), {3: "c"}),
    (GLib.Variant("a(is)", [(1, "a"), (2, "b")]), [(1, "a"), (2, "b")]),
    (GLib.Variant("mi", 5), 5),
    (GLib.Variant("mi", None), None),
    (GLib.Variant("v", GLib.Variant("s", "boxed")), "boxed"),
    (GLib.Variant("aay", [b"x"]), [b"x"]),
    (GLib.Variant("(yv)", (1, GLib.Variant("ad", [0.5]))), (1, [0.5])),
]


@pytest.mark.parametrize("variant,expected", FOREIGN, ids=[v.get_type_string() for v, _ in FOREIGN])
def test_unpack_foreign_types(variant, expected):
    assert_same(Tlspyo.unpack(variant), expected)


def nest(depth, shape="list"):
    """A value nested depth containers deep. A list is two (av: an array of
    variants), a dict three (a{sv}: array, entry, variant), a tuple one; the
    rest is made up with tuples."""
    value = "leaf"
    size = {"list": 2, "dict": 3, "tuple": 1}[shape]
    for _ in range(depth // size):
        value = {"list": lambda v: [v, 0], "dict": lambda v: {"k": v},
                 "tuple": lambda v: (v,)}[shape](value)
    for _ in range(depth % size):
        value = (value,)
    return value


DEEPEST = [nest(Tlspyo.MAX_DEPTH, shape) for shape in ("list", "dict", "tuple")]


@pytest.mark.parametrize("shape", ["list", "dict", "tuple"])
def test_depth_limit(shape):
    value = nest(Tlspyo.MAX_DEPTH, shape)
    assert_same(Tlspyo.unpack(Tlspyo.pack(value)), value)
    with pytest.raises(ValueError, match="nested"):
        Tlspyo.pack(nest(Tlspyo.MAX_DEPTH + 1, shape))
    with pytest.raises(ValueError, match="nested"):
        Tlspyo.pack([1, {"a": nest(Tlspyo.MAX_DEPTH, shape)}])


@pytest.mark.parametrize("value,error,match", [
    (1 << 63, OverflowError, "64-bit"),
    (-(1 << 63) - 1, OverflowError, "64-bit"),
    ([1, 1 << 64], OverflowError, r"value\[1\]"),
    ({1 << 70: 1}, OverflowError, "key"),
    ("a\0b", ValueError, "NUL"),
    (["ok", "a\0b"], ValueError, "NUL"),
    ({"a\0": 1}, ValueError, "NUL"),
    ("\udc80", ValueError, "Unicode"),
    ({1, 2}, TypeError, "set"),
    (bytearray(b"x"), TypeError, r"bytes\(\.\.\.\)"),
    (memoryview(b"x"), TypeError, "memoryview"),
    (object(), TypeError, "object"),
    ([1, object()], TypeError, r"value\[1\]"),
    ({"a": [{"b": 1j}]}, TypeError, r"value\['a'\]\[0\]\['b'\]"),
    ({1.5: "x"}, TypeError, "float"),
    ({"a": 1, 2: "b"}, TypeError, "mixes"),
    ({(1, 2): "x"}, TypeError, "tuple"),
    ({True: "x"}, TypeError, "bool"),
])
def test_unsendable_values(value, error, match):
    with pytest.raises(error, match=match):
        Tlspyo.pack(value)


# Through a real relay: what a Python endpoint sends, a Python endpoint gets back.

@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("credentials-values"))
    Tlspyo.credentials_generate(folder)
    relay = Tlspyo.Relay(0, "pw", address="127.0.0.1", credentials_dir=folder)
    relay.start()
    ep = Tlspyo.Endpoint("127.0.0.1", relay.props.port, "pw", "loop", credentials_dir=folder)
    ep.start()
    ep.wait_connected(TIMEOUT_MS)
    yield ep
    ep.stop()
    relay.stop()


# DEEPEST checks MAX_DEPTH against what GLib really reads back.
ALL_VALUES = [v for v, _ in MAPPING] + NESTED + DEEPEST


@pytest.mark.parametrize("value", ALL_VALUES, ids=[repr(v)[:40] for v in ALL_VALUES])
def test_round_trip_through_relay(loopback, value):
    loopback.broadcast(value, "loop")
    assert_same(receive(loopback, 1)[0], value)


def test_raw_opt_out(loopback):
    sent = GLib.Variant("(ia{sv})", (7, {"k": GLib.Variant("d", 1.5)}))
    for method in ("pop", "get_last", "receive_all"):
        loopback.broadcast(sent, "loop")
        loopback.flush(TIMEOUT_MS)
        got = getattr(loopback, method)(timeout_ms=TIMEOUT_MS, raw=True)
        assert len(got) == 1 and isinstance(got[0], GLib.Variant), (method, got)
        assert got[0].get_type_string() == "(ia{sv})"
        assert got[0].equal(sent)
    # Plain values are the default, for the same object.
    loopback.broadcast(sent, "loop")
    assert_same(receive(loopback, 1), [(7, {"k": 1.5})])


def test_raw_gi_surface_still_works(loopback):
    # The introspected methods, called as in C, through the overridden class.
    Tlspyo.Endpoint.broadcast(loopback, GLib.Variant("s", "raw"), "loop")
    got = Tlspyo.Endpoint.receive_all(loopback, TIMEOUT_MS, raw=True)
    assert [v.get_string() for v in got] == ["raw"]
