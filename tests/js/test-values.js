// SPDX-License-Identifier: MIT
//
// The plain-value mapping of tlspyo.js: its table, that unpack() is the
// lossless inverse of pack(), that GLib.Variants pass untouched, that bad
// values and destinations throw before anything is sent, and the raw
// opt-out; first without a network, then through a relay.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';

import {
    Tlspyo, Fixture, run, assert, assertEqual, assertThrows, popN,
} from './harness.js';

const {pack, unpack} = Tlspyo;

// [value, GVariant text pack() must make, what unpack() must give back]
const TABLE = [
    [true, 'true'],
    [false, 'false'],
    [0, 'int64 0'],
    [-5, 'int64 -5'],
    [Number.MAX_SAFE_INTEGER, 'int64 9007199254740991'],
    [Number.MIN_SAFE_INTEGER, 'int64 -9007199254740991'],
    [2 ** 53, '9007199254740992.0'],
    [1.5, '1.5'],
    [-0, '-0.0'],
    [NaN, 'nan'],
    [-Infinity, '-inf'],
    [5n, 'int64 5', 5],
    [2n ** 53n, 'int64 9007199254740992'],
    [2n ** 63n - 1n, 'int64 9223372036854775807'],
    [-(2n ** 63n), 'int64 -9223372036854775808'],
    [2n ** 63n, 'uint64 9223372036854775808'],
    [2n ** 64n - 1n, 'uint64 18446744073709551615'],
    ['', "''"],
    ['héllo, 世界 🙂', "'héllo, 世界 🙂'"],
    [new Uint8Array([0, 1, 255]), '[byte 0x00, 0x01, 0xff]'],
    [new Uint8Array([]), '@ay []'],
    [new GLib.Bytes(new Uint8Array([104, 105])), '[byte 0x68, 0x69]', new Uint8Array([104, 105])],
    [[], '@av []'],
    [[1, 'a', [true]], "[<int64 1>, <'a'>, <[<true>]>]"],
    [{}, '@a{sv} {}'],
    [{a: 1, nested: {list: [null, 2.5]}},
        "{'a': <int64 1>, 'nested': <{'list': <[<@mv nothing>, <2.5>]>}>}"],
    [null, '@mv nothing'],
];

function testTable() {
    for (const [value, text, back = value] of TABLE) {
        const variant = pack(value);
        assertEqual(variant.print(true), text, `pack(${String(value)})`);
        assertEqual(unpack(variant), back, `unpack(pack(${text}))`);
        // Lossless: the unpacked value packs to the very same variant.
        assertEqual(pack(unpack(variant)), variant, `pack(unpack(${text}))`);
    }
}

function testProtoKey() {
    const value = JSON.parse('{"__proto__": 1, "x": [2]}');
    const variant = pack(value);
    assertEqual(variant.print(true), "{'__proto__': <int64 1>, 'x': <[<int64 2>]>}", 'pack');
    const back = unpack(variant);
    assert(Object.getPrototypeOf(back) === Object.prototype, 'the prototype was replaced');
    assertEqual(Object.keys(back), ['__proto__', 'x'], 'keys');
    assertEqual(pack(back), variant, 'round trip');
}

function testVariantPassThrough() {
    const v = new GLib.Variant('(iu)', [-1, 7]);
    assert(pack(v) === v, 'a GLib.Variant was not passed untouched');
    const inList = pack([v, {k: v}]);
    assertEqual(inList.get_child_value(0).get_variant(), v, 'in an Array');
    assertEqual(inList.get_child_value(1).get_variant().lookup_value('k', null), v, 'in an Object');
}

function testForeignTypes() {
    const cases = [
        [new GLib.Variant('(iu)', [-1, 7]), [-1, 7]],
        [new GLib.Variant('y', 200), 200],
        [new GLib.Variant('n', -3), -3],
        [new GLib.Variant('u', 4000000000), 4000000000],
        [new GLib.Variant('o', '/a/b'), '/a/b'],
        [new GLib.Variant('ms', 'x'), 'x'],
        [new GLib.Variant('ms', null), null],
        [new GLib.Variant('as', ['p', 'q']), ['p', 'q']],
        [new GLib.Variant('a{si}', {p: 1}), {p: 1}],
        [new GLib.Variant('a{ix}', {1: 10, 2: 20}), new Map([[1, 10], [2, 20]])],
        [new GLib.Variant('(ia{sv})', [7, {k: new GLib.Variant('d', 1.5)}]), [7, {k: 1.5}]],
        [new GLib.Variant('v', new GLib.Variant('s', 'in')), 'in'],
        [new GLib.Variant('()', []), []],
        [new GLib.Variant('x', -(2n ** 63n)), -(2n ** 63n)],
        [new GLib.Variant('t', 2n ** 64n - 1n), 2n ** 64n - 1n],
        // Typed arrays, as the Python override sends homogeneous lists.
        [new GLib.Variant('ax', [1, -2, 2n ** 62n, -(2n ** 63n)]), [1, -2, 2n ** 62n, -(2n ** 63n)]],
        [new GLib.Variant('at', [0, 2n ** 64n - 1n]), [0, 2n ** 64n - 1n]],
        [new GLib.Variant('ax', []), []],
        [new GLib.Variant('ad', [0.5, -1]), [0.5, -1]],
        [new GLib.Variant('ai', [1, -1]), [1, -1]],
        [new GLib.Variant('ab', [true, false]), [true, false]],
        [new GLib.Variant('aay', [new Uint8Array([1]), new Uint8Array([])]), [new Uint8Array([1]), new Uint8Array([])]],
        [new GLib.Variant('a{xv}', {}), new Map()],
    ];
    for (const [variant, expected] of cases)
        assertEqual(unpack(variant), expected, `unpack(${variant.print(true)})`);
}

function nested(levels, wrap) {
    let value = 'leaf';
    for (let i = 0; i < levels; i++)
        value = wrap(value);
    return value;
}

function testDepth() {
    assertEqual(Tlspyo.MAX_DEPTH, 126, 'MAX_DEPTH');
    // An Array level is 2 containers (av), an Object level 3 (a{sv}).
    assertEqual(unpack(pack(nested(63, v => [v]))), nested(63, v => [v]), '63 Arrays');
    assertEqual(unpack(pack(nested(42, v => ({k: v})))), nested(42, v => ({k: v})), '42 Objects');
    assertThrows(() => pack(nested(64, v => [v])), RangeError, /^value is nested 128 containers deep/, '64 Arrays');
    assertThrows(() => pack({a: nested(41, v => ({k: v})), b: [nested(62, v => [v])]}), RangeError,
        /nested 129 containers deep/, 'the deepest branch counts');
}

function testBadValues() {
    const bad = [
        [undefined, TypeError, /^value: undefined has no GVariant form/],
        [{a: [1, undefined]}, TypeError, /^value\.a\[1\]: undefined/],
        [new Map([['a', 1]]), TypeError, /Object\.fromEntries/],
        [new Int16Array(2), TypeError, /only Uint8Array/],
        [new ArrayBuffer(2), TypeError, /only Uint8Array/],
        [new Date(0), TypeError, /a Date cannot be sent/],
        [Symbol('s'), TypeError, /a symbol cannot be sent/],
        [() => 1, TypeError, /a function cannot be sent/],
        [new Gio.Cancellable(), TypeError, /cannot be sent/],
        ['a\0b', TypeError, /NUL/],
        [['x\uD800'], TypeError, /^value\[0\]: .*lone UTF-16 surrogate/],
        [{'k\0': 1}, TypeError, /NUL/],
        [{[Symbol('k')]: 1}, TypeError, /Symbol keys/],
        [2n ** 64n, RangeError, /fits neither/],
        [-(2n ** 63n) - 1n, RangeError, /fits neither/],
    ];
    for (const [value, errorClass, pattern] of bad)
        assertThrows(() => pack(value), errorClass, pattern, `pack(${typeof value === 'symbol' ? 'symbol' : String(value)})`);
}

// Through a relay: what one endpoint sends, another gets back equal.

function withFixture(fn) {
    const fx = new Fixture();
    try {
        fn(fx);
    } finally {
        fx.close();
    }
}

function testNetworkRoundTrip() {
    withFixture(fx => {
        const sender = fx.endpoint('senders');
        const plain = fx.endpoint('receivers');
        const raw = fx.endpoint('receivers', {raw: true});
        const foreign = new GLib.Variant('(ia{sv})', [7, {k: new GLib.Variant('d', 1.5)}]);
        for (const [value] of TABLE)
            sender.broadcast(value, 'receivers');
        sender.broadcast(foreign, 'receivers');
        const got = popN(plain, TABLE.length + 1);
        const gotRaw = popN(raw, TABLE.length + 1);
        TABLE.forEach(([value, text, back = value], i) => {
            assertEqual(got[i], back, `received ${text}`);
            assertEqual(gotRaw[i], pack(value), `received raw ${text}`);
        });
        assertEqual(got[TABLE.length], [7, {k: 1.5}], 'received a foreign variant');
        // The deepest value pack() allows arrives intact.
        sender.broadcast(nested(63, v => [v]), 'receivers');
        assertEqual(popN(plain, 1), [nested(63, v => [v])], 'received MAX_DEPTH nesting');
        popN(raw, 1);
        // The raw opt-out keeps the exact type a plain value would lose.
        assertEqual(gotRaw[TABLE.length], foreign, 'received a foreign variant raw');

        // raw can be switched on an existing endpoint, and the GObject is
        // there for plain GI calls.
        sender.broadcast({x: 1}, 'receivers');
        plain.raw = true;
        assertEqual(popN(plain, 1), [pack({x: 1})], 'after raw = true');
        assertEqual(popN(raw, 1), [pack({x: 1})], 'raw');
        sender.broadcast([1], 'receivers');
        assertEqual(plain.gobject.pop(1, 10000), [pack([1])], 'gobject.pop');
    });
}

function testProduceAndGetLast() {
    withFixture(fx => {
        const prod = fx.endpoint(['producers']);
        const cons = fx.endpoint('workers');
        for (let i = 0; i < 3; i++)
            prod.produce({job: i}, 'workers');
        prod.flush(10000);
        assertEqual(cons.pop(1, 0), [], 'nothing before notifyReady');
        cons.notifyReady('workers', 3);
        assertEqual(popN(cons, 3), [{job: 0}, {job: 1}, {job: 2}], 'FIFO');

        prod.broadcast('old', 'workers');
        prod.broadcast('new', 'workers');
        prod.flush(10000);
        // Wait until both are queued, so getLast has both to choose from.
        const deadline = GLib.get_monotonic_time() + 10000 * 1000;
        while (cons.nQueued < 2 && GLib.get_monotonic_time() < deadline)
            GLib.MainContext.default().iteration(false) || GLib.usleep(10000);
        assertEqual(cons.getLast(1, 10000), ['new'], 'getLast');
        assertEqual(cons.nQueued, 0, 'getLast discarded the older one');
    });
}

function testSendObject() {
    withFixture(fx => {
        const sender = fx.endpoint('senders');
        const both = fx.endpoint(['b', 'c']);
        const q = fx.endpoint('q');

        // Nothing may go out when the destination or the value is bad.
        const badDestinations = [
            [5, /a number is not a destination/],
            [null, /a null is not a destination/],
            [undefined, /a undefined is not a destination/],
            [[1], /destination\[0\]: a group name must be a string/],
            [{b: 1.5}, /destination\.b: the count must be an integer/],
            [{b: 'x'}, /destination\.b: the count must be an integer/],
            [{b: 2 ** 31}, /destination\.b: the count must be an integer/],
            [new Map([['b', 1]]), /a Map is not a destination/],
        ];
        for (const [dest, pattern] of badDestinations)
            assertThrows(() => sender.sendObject('bad', dest), TypeError, pattern, `destination ${String(dest)}`);
        assertThrows(() => sender.sendObject(undefined, 'b'), TypeError, /undefined/, 'bad value');
        assertThrows(() => sender.broadcast({a: undefined}, 'b'), TypeError, /value\.a/, 'bad broadcast');
        assertThrows(() => sender.produce(new Map(), 'q'), TypeError, /Map/, 'bad produce');
        // The C library checks the rest: a count of 0 is a GLib.Error.
        const e = assertThrows(() => sender.sendObject('bad', {b: 0}), GLib.Error, null, 'count 0');
        assert(e.matches(Tlspyo.GI.Error, Tlspyo.GI.Error.INVALID_ARGUMENT), `count 0: ${e}`);

        sender.sendObject('s', 'b');
        sender.sendObject('list', ['b', 'c']);
        sender.sendObject('dict', {c: -1, q: 2});
        sender.sendObject(pack('variant dest'), new GLib.Variant('as', ['c']));
        q.notifyReady('q', 2);
        assertEqual(popN(both, 5), ['s', 'list', 'list', 'dict', 'variant dest'], 'broadcasts');
        assertEqual(popN(q, 2), ['dict', 'dict'], 'produced copies');
        sender.flush(10000);
        assertEqual(both.receiveAll(200), [], 'nothing bad was sent');
    });
}

function testWrap() {
    const gobject = new Tlspyo.GI.Endpoint({groups: ['g'], password: 'x'});
    const ep = Tlspyo.wrap(gobject, {raw: true});
    assert(ep.gobject === gobject, 'wrap does not keep the endpoint');
    assert(ep.raw === true, 'wrap drops options');
    assertEqual(new Tlspyo.Endpoint({groups: 'single'}).gobject.groups, ['single'], 'groups as a string');
    assertEqual(ep.connected, false, 'connected before start');
    assertThrows(() => Tlspyo.wrap({groups: ['g']}), TypeError, /takes a Tlspyo\.Endpoint/, 'wrap(Object)');
}

run([
    ['mapping table and lossless inverse', testTable],
    ['a __proto__ key stays a key', testProtoKey],
    ['GLib.Variant passes untouched', testVariantPassThrough],
    ['types from other senders unpack', testForeignTypes],
    ['nesting is limited to MAX_DEPTH', testDepth],
    ['bad values throw', testBadValues],
    ['wrap and constructor options', testWrap],
    ['round trip through a relay, plain and raw', testNetworkRoundTrip],
    ['produce, notifyReady, getLast', testProduceAndGetLast],
    ['sendObject destinations; bad ones send nothing', testSendObject],
]);
