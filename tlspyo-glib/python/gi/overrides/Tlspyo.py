# SPDX-License-Identifier: MIT
"""PyGObject overrides for the Tlspyo namespace.

They let Python code send and receive plain values, as with tlspyo:
``ep.broadcast({"step": 3, "weights": [0.5, 1.5]}, "workers")`` instead of
building ``GLib.Variant``s by hand, and ``ep.pop()`` returns plain values.

Python values map to GVariant types losslessly: what you send comes back
equal, with the same types (see ``pack`` for the table). A ``GLib.Variant``
is sent untouched, and ``raw=True`` on every receive method returns the
``GLib.Variant``s themselves, so the plain introspected API keeps working.

Loaded automatically by ``from gi.repository import Tlspyo``.
"""

import os
import struct
import unicodedata

import gi
from gi.repository import GLib

from ..module import get_introspection_module
from ..overrides import override

Tlspyo = get_introspection_module("Tlspyo")

__all__ = []

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1

# GVariant reads untrusted data, which everything received from the network
# is, only up to 128 levels of nesting (G_VARIANT_MAX_RECURSION_DEPTH):
# deeper values arrive replaced by defaults, deeper types are refused. This
# counts arrays, tuples, dict entries, variants and maybes, and with it 126
# is the deepest that arrives intact in every shape. Refuse to send more.
MAX_DEPTH = 126

_GROUP_NAME_MAX_BYTES = 255

# The default is tlspyo's: do not wait.
_NO_WAIT = 0
_WAIT_FOREVER = -1

_TYPE_V = GLib.VariantType.new("v")
_TYPE_AY = GLib.VariantType.new("ay")
_TYPE_AD = GLib.VariantType.new("ad")
_TYPE_AX = GLib.VariantType.new("ax")
_TYPE_AB = GLib.VariantType.new("ab")
_TYPE_SV = GLib.VariantType.new("{sv}")
_TYPE_XV = GLib.VariantType.new("{xv}")


class _Packed:
    """A packed value and how many containers deep it is."""

    __slots__ = ("variant", "depth")

    def __init__(self, variant, depth):
        self.variant = variant
        self.depth = depth


def _check_depth(depth, path):
    if depth > MAX_DEPTH:
        raise ValueError(
            f"{path} is nested {depth} containers deep, more than the {MAX_DEPTH} a "
            "receiver can read: flatten the structure")


def _check_int64(value, path):
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError(
            f"{path} is {value}, outside the 64-bit range int values are sent in "
            f"({_INT64_MIN} to {_INT64_MAX}): send it as a str or bytes instead")


def _check_str(value, path):
    if "\0" in value:
        raise ValueError(
            f"{path} contains a NUL character, which GVariant strings cannot hold: "
            "send it as bytes (value.encode()) instead")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{path} is not valid Unicode text ({e.reason}): "
                         "send it as bytes instead") from None


def _new_fixed_array(vtype, fmt, items):
    data = struct.pack(f"={len(items)}{fmt}", *items)
    return GLib.Variant.new_from_bytes(vtype, GLib.Bytes.new(data), True)


def _pack_list(value, path):
    if value:
        kinds = {type(item) for item in value}
        if len(kinds) == 1:
            kind = kinds.pop()
            # Homogeneous lists of one exact leaf type become typed arrays:
            # smaller on the wire, natural for C and JavaScript receivers,
            # and they unpack to the same list.
            if kind is float:
                return _Packed(_new_fixed_array(_TYPE_AD, "d", value), 1)
            if kind is int:
                for i, item in enumerate(value):
                    _check_int64(item, f"{path}[{i}]")
                return _Packed(_new_fixed_array(_TYPE_AX, "q", value), 1)
            if kind is bool:
                return _Packed(_new_fixed_array(_TYPE_AB, "?", value), 1)
            if kind is str:
                for i, item in enumerate(value):
                    _check_str(item, f"{path}[{i}]")
                return _Packed(GLib.Variant.new_strv(value), 1)
            if kind is bytes:
                return _Packed(GLib.Variant.new_array(
                    _TYPE_AY, [GLib.Variant.new_from_bytes(_TYPE_AY, GLib.Bytes.new(item), True)
                               for item in value]), 2)
    children = []
    depth = 0
    for i, item in enumerate(value):
        child = _pack(item, f"{path}[{i}]")
        depth = max(depth, child.depth)
        children.append(GLib.Variant.new_variant(child.variant))
    depth += 2
    _check_depth(depth, path)
    return _Packed(GLib.Variant.new_array(_TYPE_V if not children else None, children), depth)


def _pack_dict(value, path):
    keys = list(value)
    if all(isinstance(k, str) for k in keys):
        entry_type, new_key = _TYPE_SV, GLib.Variant.new_string
        for k in keys:
            _check_str(k, f"key {k!r} of {path}")
    elif all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
        entry_type, new_key = _TYPE_XV, GLib.Variant.new_int64
        for k in keys:
            _check_int64(k, f"key {k!r} of {path}")
    else:
        bad = [k for k in keys if not isinstance(k, (str, int)) or isinstance(k, bool)]
        if bad:
            raise TypeError(f"{path} has a key {bad[0]!r} of type {type(bad[0]).__name__}: "
                            "dict keys must be all str or all int")
        raise TypeError(f"{path} mixes str and int keys: dict keys must be all str or all int")
    entries = []
    depth = 0
    for k in keys:
        child = _pack(value[k], f"{path}[{k!r}]")
        depth = max(depth, child.depth)
        entries.append(GLib.Variant.new_dict_entry(new_key(k),
                                                   GLib.Variant.new_variant(child.variant)))
    depth += 3
    _check_depth(depth, path)
    return _Packed(GLib.Variant.new_array(entry_type if not entries else None, entries), depth)


def _pack(value, path):
    if value is None:
        return _Packed(GLib.Variant.new_maybe(_TYPE_V, None), 1)
    if isinstance(value, GLib.Variant):
        # Sent as it is. Its depth is not measured: that would walk it all.
        return _Packed(value, 0)
    if isinstance(value, bool):
        return _Packed(GLib.Variant.new_boolean(value), 0)
    if isinstance(value, int):
        _check_int64(value, path)
        return _Packed(GLib.Variant.new_int64(value), 0)
    if isinstance(value, float):
        return _Packed(GLib.Variant.new_double(value), 0)
    if isinstance(value, str):
        _check_str(value, path)
        return _Packed(GLib.Variant.new_string(value), 0)
    if isinstance(value, bytes):
        return _Packed(GLib.Variant.new_from_bytes(_TYPE_AY, GLib.Bytes.new(value), True), 1)
    if isinstance(value, tuple):
        children = [_pack(item, f"{path}[{i}]") for i, item in enumerate(value)]
        depth = 1 + max((c.depth for c in children), default=0)
        _check_depth(depth, path)
        return _Packed(GLib.Variant.new_tuple(*[c.variant for c in children]), depth)
    if isinstance(value, list):
        return _pack_list(value, path)
    if isinstance(value, dict):
        return _pack_dict(value, path)
    hint = ""
    if isinstance(value, (bytearray, memoryview)):
        hint = " (convert it with bytes(...))"
    elif hasattr(value, "tolist"):
        hint = " (convert it with .tolist())"
    elif isinstance(value, (set, frozenset)):
        hint = " (convert it to a list or tuple)"
    raise TypeError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be "
        "sent: send None, bool, int, float, str, bytes, and tuples, lists and dicts of "
        f"them, or a GLib.Variant{hint}")


def pack(value):
    """Converts a Python value to the GLib.Variant that carries it.

    The mapping is lossless: ``unpack(pack(v)) == v``, with the same types.

    ===========================  ==============================  ==========
    Python                       GVariant                        unpacks to
    ===========================  ==============================  ==========
    None                         ``mv`` (nothing)                None
    bool                         ``b``                           bool
    int (64-bit signed range)    ``x``                           int
    float                        ``d``                           float
    str (no NUL character)       ``s``                           str
    bytes                        ``ay``                          bytes
    tuple                        ``(...)``, one member per item  tuple
    list of only float           ``ad``                          list
    list of only int             ``ax``                          list
    list of only bool            ``ab``                          list
    list of only str             ``as``                          list
    list of only bytes           ``aay``                         list
    any other list, or empty     ``av``                          list
    dict with str keys, or {}    ``a{sv}``                       dict
    dict with int keys           ``a{xv}``                       dict
    GLib.Variant                 itself, untouched               its value
    ===========================  ==============================  ==========

    Subclasses travel as their base type (an IntEnum as int, a namedtuple as
    tuple). Anything else raises TypeError; an int out of range raises
    OverflowError; a str with a NUL character, or nesting deeper than
    MAX_DEPTH containers, raises ValueError.
    """
    return _pack(value, "value").variant


def _unpack_fixed(variant, fmt, size):
    data = variant.get_data_as_bytes().get_data() or b""
    n = variant.n_children()
    if len(data) != n * size:
        return None
    return list(struct.unpack(f"={n}{fmt}", data))


_LEAVES = {
    "b": GLib.Variant.get_boolean,
    "y": GLib.Variant.get_byte,
    "n": GLib.Variant.get_int16,
    "q": GLib.Variant.get_uint16,
    "i": GLib.Variant.get_int32,
    "u": GLib.Variant.get_uint32,
    "x": GLib.Variant.get_int64,
    "t": GLib.Variant.get_uint64,
    "h": GLib.Variant.get_handle,
    "d": GLib.Variant.get_double,
    "s": GLib.Variant.get_string,
    "o": GLib.Variant.get_string,
    "g": GLib.Variant.get_string,
}

_FIXED_ARRAYS = {"ad": ("d", 8), "ax": ("q", 8), "at": ("Q", 8), "ai": ("i", 4), "au": ("I", 4)}


def unpack(variant):
    """Converts a GLib.Variant to a plain Python value.

    The inverse of ``pack``. Objects sent from C or JavaScript can be of any
    type: integers of every size become int, ``o`` and ``g`` become str,
    arrays become list (``ay`` becomes bytes), dictionaries dict, tuples
    tuple, variants their content, and maybes None or their content.
    """
    type_string = variant.get_type_string()
    leaf = _LEAVES.get(type_string)
    if leaf is not None:
        return leaf(variant)
    head = type_string[0]
    if head == "v":
        return unpack(variant.get_variant())
    if head == "a":
        if type_string == "ay":
            return variant.get_data_as_bytes().get_data() or b""
        fixed = _FIXED_ARRAYS.get(type_string)
        if fixed is not None:
            items = _unpack_fixed(variant, *fixed)
            if items is not None:
                return items
        if type_string[1] == "{":
            result = {}
            for i in range(variant.n_children()):
                entry = variant.get_child_value(i)
                result[unpack(entry.get_child_value(0))] = unpack(entry.get_child_value(1))
            return result
        return [unpack(variant.get_child_value(i)) for i in range(variant.n_children())]
    if head == "(":
        return tuple(unpack(variant.get_child_value(i)) for i in range(variant.n_children()))
    if head == "m":
        if variant.n_children() == 0:
            return None
        return unpack(variant.get_child_value(0))
    raise TypeError(f"GVariant type {type_string!r} has no Python equivalent")


__all__ += ["pack", "unpack", "MAX_DEPTH"]


def _unpack_all(variants, raw):
    if raw:
        return list(variants)
    return [unpack(v) for v in variants]


def _security(value):
    if isinstance(value, str):
        name = value.upper()
        if name == "TLS":
            return Tlspyo.Security.TLS
        if name in ("TCP", "NONE"):
            return Tlspyo.Security.NONE
        raise ValueError(f"security {value!r} is not understood: use \"TLS\" or \"TCP\" "
                         "(or Tlspyo.Security.TLS / Tlspyo.Security.NONE)")
    return value


def _props(kwargs, renamed, unsupported, cls):
    """Maps keyword arguments to GObject properties, with hints for tlspyo's names."""
    for name in kwargs:
        if name in renamed:
            raise TypeError(f"{cls}() has no argument '{name}', tlspyo's name: "
                            f"use {renamed[name]}= instead")
        if name in unsupported:
            raise TypeError(f"{cls}() has no argument '{name}': {unsupported[name]}")
    if "security" in kwargs and kwargs["security"] is None:
        # tlspyo's security=None turns TLS off: never let it mean the default.
        raise ValueError(f"{cls}(security=None) is tlspyo's way to turn TLS off: write "
                         "security=\"TCP\" (or leave security out for TLS)")
    props = {}
    for name, value in kwargs.items():
        if value is None:
            continue
        if name == "security":
            value = _security(value)
        elif name == "credentials_dir" or name == "credentials-dir":
            value = _fspath(value)
        props[name] = value
    return props


def _fspath(value):
    return os.fspath(value) if value is not None else None


_UNSUPPORTED = {
    "local_com_port": "tlspyo-glib has no helper process and needs no local port: drop it",
    "header_size": "tlspyo-glib frames objects itself: drop it",
    "max_buf_len": "tlspyo-glib buffers by itself: drop it",
    "serializer": "objects are GVariants, not pickles: send plain values or GLib.Variants",
    "deserializer": "objects are GVariants, not pickles: received values are plain values",
    "deserializer_mode": "objects are deserialized as they are taken: drop it",
}

_ENDPOINT_RENAMED = {
    "ip_server": "host",
    "connection": "security",
    "keys_dir": "credentials_dir",
    "hostname": "server_identity",
    "recon_max_delay": "reconnect_max_delay",
    "recon_initial_delay": "reconnect_initial_delay",
    "recon_factor": "reconnect_factor",
    "recon_jitter": "reconnect_jitter",
}

_RELAY_RENAMED = {
    "connection": "security",
    "keys_dir": "credentials_dir",
}


def _groups(groups):
    if groups is None:
        return None
    if isinstance(groups, str):
        return [groups]
    if isinstance(groups, (list, tuple, set, frozenset)):
        for g in groups:
            if not isinstance(g, str):
                raise TypeError(f"groups holds {g!r}, a {type(g).__name__}: "
                                "group names are str")
        return list(groups)
    raise TypeError(f"groups is a {type(groups).__name__}: give a group name (str) "
                    "or a list of them")


def _check_group_name(name):
    """Mirrors the library's group name rules, to refuse a batch before any of it is sent."""
    if not isinstance(name, str):
        raise TypeError(f"group {name!r} is a {type(name).__name__}: group names are str")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"group {name!r} is not valid Unicode text") from None
    if size == 0:
        raise ValueError("a group name is empty: give each group a name of 1 to "
                         f"{_GROUP_NAME_MAX_BYTES} bytes")
    if size > _GROUP_NAME_MAX_BYTES:
        raise ValueError(f"group name of {size} bytes is too long: give each group a "
                         f"name of 1 to {_GROUP_NAME_MAX_BYTES} bytes (in UTF-8)")
    for c in name:
        if unicodedata.category(c) == "Cc":
            raise ValueError(f"group {name!r} contains control character "
                             f"U+{ord(c):04X}: group names must be printable")


def _check_count(count, group, what):
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError(f"the count for group {group!r} is {count!r}, a "
                        f"{type(count).__name__}: counts are int")
    if count == 0:
        raise ValueError(f"the count for group {group!r} is 0: {what}")
    if not _INT32_MIN <= count <= _INT32_MAX:
        raise OverflowError(f"the count for group {group!r} is {count}, outside the "
                            "32-bit range")


def _destination(destination):
    if isinstance(destination, GLib.Variant):
        return destination
    if isinstance(destination, str):
        return GLib.Variant.new_string(destination)
    if isinstance(destination, (list, tuple)):
        if not destination:
            raise ValueError("the destination names no group: give at least one")
        for group in destination:
            if not isinstance(group, str):
                raise TypeError(f"the destination holds {group!r}, a "
                                f"{type(group).__name__}: group names are str")
        return GLib.Variant.new_strv(list(destination))
    if isinstance(destination, dict):
        if not destination:
            raise ValueError("the destination names no group: give at least one")
        for group, count in destination.items():
            if not isinstance(group, str):
                raise TypeError(f"the destination has key {group!r}, a "
                                f"{type(group).__name__}: group names are str")
            _check_count(count, group, "use a negative count to broadcast, or a "
                         "positive one to produce that many copies")
        return GLib.Variant("a{si}", destination)
    raise TypeError(f"the destination is a {type(destination).__name__}: give a group "
                    "name (str), a tuple or list of group names, or a dict from group "
                    "name to count")


def _timeout(method, timeout_ms, blocking):
    if blocking is not None:
        if timeout_ms is not None:
            raise TypeError(f"{method}() takes timeout_ms or blocking, not both")
        if not isinstance(blocking, bool):
            raise TypeError(f"{method}(): blocking is True or False")
        return _WAIT_FOREVER if blocking else _NO_WAIT
    if timeout_ms is None:
        return _NO_WAIT
    if isinstance(timeout_ms, bool):
        # tlspyo's second argument is `blocking`: pop(1, True) must not
        # silently mean "wait 1 ms".
        raise TypeError(f"{method}(): timeout_ms is a number of milliseconds, not a bool: "
                        "write blocking=True (or timeout_ms=-1) to wait without limit")
    return timeout_ms


class Endpoint(Tlspyo.Endpoint):
    """A node that exchanges objects with other endpoints through a Relay.

    ``Tlspyo.Endpoint(host, port, password, groups, **properties)``: the
    first four may be given by position, as in tlspyo. ``groups`` is a group
    name or a list of them; ``security`` takes ``"TLS"`` or ``"TCP"`` as
    well as a ``Tlspyo.Security``. Call ``start()`` to connect, or use the
    endpoint as a context manager: ``with Tlspyo.Endpoint(...) as ep:``
    starts it, and at the end of the block waits (up to ``stop_timeout``
    seconds) until the relay has acknowledged everything sent, raising
    GLib.Error if it did not, then stops it.
    """

    def __init__(self, host=None, port=None, password=None, groups=None, **kwargs):
        kwargs.update(host=host, port=port, password=password, groups=_groups(groups))
        Tlspyo.Endpoint.__init__(
            self, **_props(kwargs, _ENDPOINT_RENAMED, _UNSUPPORTED, "Tlspyo.Endpoint"))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        try:
            if exc_type is None:
                # stop() waits for acknowledgements only once connected: a
                # script that sends and leaves the block at once would lose
                # what it sent before the connection was up.
                self.flush(int(self.props.stop_timeout * 1000))
        finally:
            self.stop()
        return False

    def wait_connected(self, timeout_ms=-1):
        """Waits until connected and accepted; raises GLib.Error on refusal or timeout."""
        return Tlspyo.Endpoint.wait_connected(self, timeout_ms)

    def flush(self, timeout_ms=-1):
        """Waits until the relay has acknowledged everything sent so far."""
        return Tlspyo.Endpoint.flush(self, timeout_ms)

    def broadcast(self, obj, group):
        """Sends obj, a plain value or a GLib.Variant, to every endpoint of group."""
        return Tlspyo.Endpoint.broadcast(self, pack(obj), group)

    def produce(self, obj, group):
        """Appends obj, a plain value or a GLib.Variant, to the shared queue of group."""
        return Tlspyo.Endpoint.produce(self, pack(obj), group)

    def send_object(self, obj, destination):
        """Sends obj to several groups at once, as tlspyo's send_object.

        destination is a group name (broadcast to it), a tuple or list of
        group names (broadcast to each), or a dict from group name to count
        (negative: broadcast; positive: produce that many copies). An invalid
        destination raises TypeError or ValueError (GLib.Error for an invalid
        group name) and nothing is sent.
        """
        destination = _destination(destination)
        return Tlspyo.Endpoint.send_object(self, pack(obj), destination)

    def notify_ready(self, group, count=1):
        """Tells the relay this endpoint is ready to consume produced objects (tlspyo's notify).

        group is a group name, a tuple or list of them (count applies to
        each), or a dict from group name to count. A negative count asks for
        every object queued at the relay now. Nothing is sent when any group
        or count is invalid.
        """
        if isinstance(group, dict):
            requests = list(group.items())
        elif isinstance(group, (list, tuple)):
            requests = [(g, count) for g in group]
        else:
            requests = [(group, count)]
        if not requests:
            raise ValueError("notify_ready() names no group: give at least one")
        for g, c in requests:
            _check_group_name(g)
            _check_count(c, g, "give a positive count, or -1 for everything queued now")
        for g, c in requests:
            Tlspyo.Endpoint.notify_ready(self, g, c)
        return True

    def pop(self, max_items=1, timeout_ms=None, *, blocking=None, raw=False):
        """Takes the oldest max_items received objects, as a list.

        timeout_ms: 0 (the default) returns at once, -1 waits without limit,
        N waits at most N ms for at least one object. blocking=True is
        tlspyo's spelling of timeout_ms=-1. raw=True returns GLib.Variants.
        """
        return _unpack_all(Tlspyo.Endpoint.pop(
            self, max_items, _timeout("pop", timeout_ms, blocking)), raw)

    def get_last(self, max_items=1, timeout_ms=None, *, blocking=None, raw=False):
        """Takes the newest max_items received objects and discards older ones."""
        return _unpack_all(Tlspyo.Endpoint.get_last(
            self, max_items, _timeout("get_last", timeout_ms, blocking)), raw)

    def receive_all(self, timeout_ms=None, *, blocking=None, raw=False):
        """Takes every received object."""
        return _unpack_all(Tlspyo.Endpoint.receive_all(
            self, _timeout("receive_all", timeout_ms, blocking)), raw)

    def pop_async(self, max_items=1, cancellable=None, callback=None, *user_data):
        """Calls callback(endpoint, result, *user_data) once objects are there.

        In the callback, endpoint.pop_finish(result) returns them.
        """
        if callback is None:
            if gi.version_info >= (3, 50, 0):
                # Newer PyGObject returns an awaitable when there is no callback.
                return Tlspyo.Endpoint.pop_async(self, max_items, cancellable)
            # Older PyGObject would run the operation unobserved, and the
            # objects it takes would be lost.
            raise TypeError("pop_async() needs a callback: the objects it takes are "
                            "returned by pop_finish() in that callback")
        return Tlspyo.Endpoint.pop_async(self, max_items, cancellable, callback, *user_data)

    def pop_finish(self, result, *, raw=False):
        """Finishes pop_async(): returns the objects, as a list."""
        return _unpack_all(Tlspyo.Endpoint.pop_finish(self, result), raw)

    def connect_object_received(self, handler, *user_data, group=None, raw=False):
        """Connects handler(endpoint, obj, group, *user_data) to object-received.

        Like ``connect("object-received", ...)``, but obj is a plain value
        (a GLib.Variant with raw=True), and group=... only sees objects of
        that group. The handler returns True to take the object, or a false
        value (None included) to leave it in the queue for pop(). Returns the
        handler id, for disconnect().
        """
        signal = "object-received" if group is None else "object-received::" + group

        def on_object_received(endpoint, obj, obj_group, *data):
            return bool(handler(endpoint, obj if raw else unpack(obj), obj_group, *data))

        return self.connect(signal, on_object_received, *user_data)


Endpoint = override(Endpoint)
__all__.append("Endpoint")


class Relay(Tlspyo.Relay):
    """The meeting point of endpoints.

    ``Tlspyo.Relay(port, password, accepted_groups=None, **properties)``:
    port and password may be given by position, as in tlspyo.
    ``accepted_groups`` is tlspyo's: None accepts every group; otherwise a
    dict from group name to None, to a max_count, or to a dict with
    ``max_count`` and ``max_consumables`` (None or missing: unlimited).
    ``security`` takes ``"TLS"`` or ``"TCP"`` as well as a
    ``Tlspyo.Security``. Call ``start()`` to listen, or use the relay as a
    context manager.
    """

    def __init__(self, port=None, password=None, accepted_groups=None, **kwargs):
        groups = _accepted_groups(accepted_groups)
        kwargs.update(port=port, password=password)
        Tlspyo.Relay.__init__(
            self, **_props(kwargs, _RELAY_RENAMED, _UNSUPPORTED, "Tlspyo.Relay"))
        for name, max_count, max_consumables in groups:
            Tlspyo.Relay.accept_group(self, name, max_count, max_consumables)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def accept_group(self, group, max_count=-1, max_consumables=-1):
        """Accepts group, with at most max_count members and max_consumables queued (-1: no limit)."""
        return Tlspyo.Relay.accept_group(self, group, max_count, max_consumables)


def _limit(value, group, key):
    if value is None:
        return -1
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"accepted_groups[{group!r}]: {key} is {value!r}: give an int, "
                        "or None for no limit")
    if not -1 <= value <= _INT32_MAX:
        raise ValueError(f"accepted_groups[{group!r}]: {key} is {value}: give -1 or None "
                         "for no limit, or a positive int")
    return value


def _accepted_groups(accepted):
    if accepted is None:
        return []
    if not isinstance(accepted, dict):
        raise TypeError("accepted_groups is a dict from group name to None, a max_count, "
                        "or {'max_count': ..., 'max_consumables': ...}")
    result = []
    for group, spec in accepted.items():
        _check_group_name(group)
        if spec is None or isinstance(spec, int) and not isinstance(spec, bool):
            result.append((group, _limit(spec, group, "max_count"), -1))
        elif isinstance(spec, dict):
            unknown = set(spec) - {"max_count", "max_consumables"}
            if unknown:
                raise ValueError(f"accepted_groups[{group!r}] has unknown keys "
                                 f"{sorted(unknown)}: use max_count and max_consumables")
            result.append((group, _limit(spec.get("max_count"), group, "max_count"),
                           _limit(spec.get("max_consumables"), group, "max_consumables")))
        else:
            raise TypeError(f"accepted_groups[{group!r}] is {spec!r}: give None, a "
                            "max_count, or {'max_count': ..., 'max_consumables': ...}")
    return result


Relay = override(Relay)
__all__.append("Relay")


def credentials_generate(directory=None, common_name=None):
    """Generates the relay's key.pem and certificate.pem into directory.

    directory (a str or path) defaults to credentials_get_default_dir();
    common_name to "default". Existing files are not replaced.
    """
    return Tlspyo.credentials_generate(_fspath(directory), common_name)


def credentials_load_certificate(directory=None, with_key=False):
    """Loads certificate.pem (and key.pem with with_key=True) from directory."""
    return Tlspyo.credentials_load_certificate(_fspath(directory), with_key)


__all__ += ["credentials_generate", "credentials_load_certificate"]
