// SPDX-License-Identifier: MIT
//
// Plain-value convenience for tlspyo-glib in GJS.
//
//     import * as Tlspyo from 'file:///usr/share/tlspyo-glib/js/tlspyo.js';
//
//     const ep = new Tlspyo.Endpoint({port: 3000, password: 'pw', groups: 'consumers'});
//     ep.start();
//     ep.broadcast({hello: [1, 2.5, 'three']}, 'consumers');
//     const values = ep.receiveAll(5000);
//
// The module is a thin layer over the introspected `Tlspyo` namespace: an
// Endpoint here owns a Tlspyo.Endpoint (its `gobject` property) and only
// converts between JS values and GLib.Variant on the way in and out. The
// mapping, both ways, is documented in docs/getting-started-javascript.md
// and on pack() and unpack() below.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import TlspyoGI from 'gi://Tlspyo?version=1.0';

// pop_async/pop_finish follow the GIO naming, so _promisify derives the
// finish function; afterwards pop_async returns a Promise when called
// without a callback. Patching the prototype is what GJS expects (it is
// idempotent per name), and leaves the callback form working.
Gio._promisify(TlspyoGI.Endpoint.prototype, 'pop_async');

/**
 * The introspected namespace, for credentials_generate(), error codes
 * (`e.matches(GI.Error, GI.Error.TIMED_OUT)`) and everything else.
 */
export {TlspyoGI as GI};
/** Tlspyo.Relay: it takes no objects, so it needs no wrapper. */
export const Relay = TlspyoGI.Relay;
export const Security = TlspyoGI.Security;

/**
 * The deepest nesting pack() accepts. A receiver reads data from the network
 * only up to 128 levels of GVariant containers (G_VARIANT_MAX_RECURSION_DEPTH)
 * and silently replaces deeper values with defaults; counting arrays, dict
 * entries, variants and maybes as tlspyo-glib's Python override does, 126 is
 * the deepest that always arrives intact. An Array level counts 2 (av), an
 * Object level 3 (a{sv}).
 */
export const MAX_DEPTH = 126;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

// A lone UTF-16 surrogate has no UTF-8 form: GJS would replace it with
// U+FFFD. A NUL would silently cut the string short. Both lose data.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function describe(value) {
    if (value === null)
        return 'null';
    if (typeof value !== 'object')
        return typeof value;
    return value.constructor?.name ?? 'object';
}

function checkString(s, path) {
    if (s.includes('\0')) {
        throw new TypeError(`${path}: a string with a NUL character cannot become a GVariant ` +
            "string; send its bytes as a Uint8Array (new TextEncoder().encode(s))");
    }
    if (LONE_SURROGATE.test(s)) {
        throw new TypeError(`${path}: the string has a lone UTF-16 surrogate, which has no ` +
            'UTF-8 form; fix the string or send bytes as a Uint8Array');
    }
}

function isPlainObject(value) {
    const proto = Object.getPrototypeOf(value);
    return proto === Object.prototype || proto === null;
}

function checkDepth(depth, path) {
    if (depth > MAX_DEPTH) {
        throw new RangeError(`${path} is nested ${depth} containers deep, more than the ` +
            `${MAX_DEPTH} a receiver can read: flatten the structure`);
    }
}

// Returns [variant, depth in GVariant containers].
function packAt(value, path) {
    if (value instanceof GLib.Variant)
        return [value, 0];  // not measured: that would walk all of it
    if (value === null)
        return [new GLib.Variant('mv', null), 1];
    switch (typeof value) {
    case 'boolean':
        return [new GLib.Variant('b', value), 0];
    case 'number':
        // -0 is a safe integer to JS, but int64 has no -0: keep it a double.
        if (Number.isSafeInteger(value) && !Object.is(value, -0))
            return [new GLib.Variant('x', value), 0];
        return [new GLib.Variant('d', value), 0];
    case 'bigint':
        if (value >= INT64_MIN && value <= INT64_MAX)
            return [new GLib.Variant('x', value), 0];
        if (value > INT64_MAX && value <= UINT64_MAX)
            return [new GLib.Variant('t', value), 0];
        throw new RangeError(`${path}: ${value}n fits neither int64 nor uint64; ` +
            'send it as a string or pass a GLib.Variant');
    case 'string':
        checkString(value, path);
        return [new GLib.Variant('s', value), 0];
    case 'undefined':
        throw new TypeError(`${path}: undefined has no GVariant form; ` +
            'use null (sent as an empty maybe, "mv") or leave the key out');
    case 'object':
        break;
    default:
        throw new TypeError(`${path}: a ${typeof value} cannot be sent; ` +
            'send a boolean, number, bigint, string, Uint8Array, Array, plain Object, null or GLib.Variant');
    }
    if (value instanceof Uint8Array)
        return [new GLib.Variant('ay', value), 1];
    if (value instanceof GLib.Bytes)
        return [new GLib.Variant('ay', value.toArray()), 1];
    if (Array.isArray(value)) {
        const children = [];
        let depth = 0;
        for (let i = 0; i < value.length; i++) {
            const [child, childDepth] = packAt(value[i], `${path}[${i}]`);
            children.push(child);
            depth = Math.max(depth, childDepth);
        }
        checkDepth(depth + 2, path);
        return [new GLib.Variant('av', children), depth + 2];
    }
    if (isPlainObject(value)) {
        if (Object.getOwnPropertySymbols(value).length > 0)
            throw new TypeError(`${path}: an object with Symbol keys cannot be sent; GVariant dictionary keys are strings`);
        const dict = {};
        let depth = 0;
        for (const [key, child] of Object.entries(value)) {
            checkString(key, `${path} key ${JSON.stringify(key)}`);
            const [variant, childDepth] = packAt(child, `${path}.${key}`);
            depth = Math.max(depth, childDepth);
            // defineProperty, so that a key named "__proto__" stays a key.
            Object.defineProperty(dict, key, {value: variant, enumerable: true});
        }
        checkDepth(depth + 3, path);
        return [new GLib.Variant('a{sv}', dict), depth + 3];
    }
    let hint = 'convert it to a plain Object, Array or Uint8Array, or pass a GLib.Variant';
    if (value instanceof Map)
        hint = 'convert it with Object.fromEntries(map) when its keys are strings, or pass a GLib.Variant';
    else if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer)
        hint = 'only Uint8Array is sent as bytes; wrap it with new Uint8Array(buffer)';
    throw new TypeError(`${path}: a ${describe(value)} cannot be sent; ${hint}`);
}

/**
 * Converts a JS value to the GLib.Variant that travels.
 *
 * | JS value                                  | GVariant            |
 * |-------------------------------------------|---------------------|
 * | GLib.Variant                              | itself, untouched   |
 * | boolean                                   | `b`                 |
 * | number, Number.isSafeInteger and not -0   | `x` (int64)         |
 * | any other number (fractions, -0, NaN, ±Infinity, beyond 2^53) | `d` |
 * | bigint in int64 range                     | `x`                 |
 * | bigint in (2^63-1, 2^64-1]                | `t` (uint64)        |
 * | string (no NUL, no lone surrogate)        | `s`                 |
 * | Uint8Array, GLib.Bytes                    | `ay`                |
 * | Array                                     | `av`, each element packed |
 * | plain Object (string keys)                | `a{sv}`, each value packed |
 * | null                                      | `@mv nothing`       |
 *
 * Anything else (undefined, Map, Date, other typed arrays, functions,
 * GObjects) throws a TypeError that says what to send instead; a bigint
 * beyond uint64, or nesting deeper than MAX_DEPTH, throws a RangeError.
 * Nothing is sent when packing throws.
 *
 * @param {*} value the value
 * @returns {GLib.Variant} the variant
 */
export function pack(value) {
    return packAt(value, 'value')[0];
}

function unpackInteger(variant) {
    // get_int64 rounds beyond 2^53 (and warns); the text form is exact.
    const n = BigInt(variant.print(false));
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

const FAST_ARRAYS = new Set(['ab', 'an', 'aq', 'ai', 'au', 'ah', 'ad']);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function unpackInt64Array(variant, signed) {
    const bytes = variant.get_data_as_bytes().toArray();
    const n = variant.n_children();
    if (bytes.length !== n * 8)
        return null;  // not in normal form: the item by item path copes
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const items = new Array(n);
    for (let i = 0; i < n; i++) {
        const big = signed ? view.getBigInt64(i * 8, LITTLE_ENDIAN) : view.getBigUint64(i * 8, LITTLE_ENDIAN);
        const small = Number(big);
        items[i] = Number.isSafeInteger(small) ? small : big;
    }
    return items;
}

/**
 * Converts a received GLib.Variant to a plain JS value: the inverse of
 * pack(), so that pack(unpack(v)) equals v for every v pack() can make.
 *
 * Other types, from C or Python senders, come back as the nearest JS value:
 * `y n q i u h` and `d` as numbers, `x t` as numbers when safe integers and
 * bigints otherwise, `o g` as strings, tuples as Arrays, maybes as null or
 * their value, dictionaries with string keys as Objects and with other keys
 * as Maps, `v` as its content. Those conversions drop the exact GVariant
 * type; use the raw mode when it matters.
 *
 * @param {GLib.Variant} variant the variant
 * @returns {*} the value
 */
export function unpack(variant) {
    const type = variant.get_type_string();
    switch (type[0]) {
    case 'b':
        return variant.get_boolean();
    case 'y': case 'n': case 'q': case 'i': case 'u': case 'h': case 'd':
        return variant.deepUnpack();
    case 'x': case 't':
        return unpackInteger(variant);
    case 's': case 'o': case 'g':
        return variant.get_string()[0];
    case 'v':
        return unpack(variant.get_variant());
    case 'm': {
        const child = variant.get_maybe();
        return child === null ? null : unpack(child);
    }
    case '(': {
        const items = [];
        for (let i = 0; i < variant.n_children(); i++)
            items.push(unpack(variant.get_child_value(i)));
        return items;
    }
    case 'a':
        break;
    default:
        throw new TypeError(`cannot unpack a GVariant of type ${type}`);
    }
    if (type === 'ay')
        return variant.deepUnpack();
    // Arrays of numbers, as Python peers send lists: in one go, not item by item.
    if (FAST_ARRAYS.has(type))
        return variant.deepUnpack();
    if (type === 'ax' || type === 'at') {
        const items = unpackInt64Array(variant, type === 'ax');
        if (items !== null)
            return items;
    }
    const n = variant.n_children();
    if (type[1] === '{') {
        const stringKeys = 'sog'.includes(type[2]);
        const entries = [];
        for (let i = 0; i < n; i++) {
            const entry = variant.get_child_value(i);
            entries.push([unpack(entry.get_child_value(0)), unpack(entry.get_child_value(1))]);
        }
        // fromEntries defines own properties: "__proto__" stays a plain key.
        return stringKeys ? Object.fromEntries(entries) : new Map(entries);
    }
    const items = [];
    for (let i = 0; i < n; i++)
        items.push(unpack(variant.get_child_value(i)));
    return items;
}

function packDestination(destination) {
    if (destination instanceof GLib.Variant)
        return destination;
    if (typeof destination === 'string') {
        checkString(destination, 'destination');
        return new GLib.Variant('s', destination);
    }
    if (Array.isArray(destination)) {
        destination.forEach((group, i) => {
            if (typeof group !== 'string')
                throw new TypeError(`destination[${i}]: a group name must be a string, not a ${describe(group)}`);
            checkString(group, `destination[${i}]`);
        });
        return new GLib.Variant('as', destination);
    }
    if (destination !== null && typeof destination === 'object' && isPlainObject(destination)) {
        for (const [group, count] of Object.entries(destination)) {
            checkString(group, `destination key ${JSON.stringify(group)}`);
            if (!Number.isInteger(count) || count < -(2 ** 31) || count >= 2 ** 31) {
                throw new TypeError(`destination.${group}: the count must be an integer ` +
                    '(negative to broadcast, positive to produce that many copies), not ' +
                    `${typeof count === 'number' ? count : describe(count)}`);
            }
        }
        return new GLib.Variant('a{si}', destination);
    }
    throw new TypeError(`destination: a ${describe(destination)} is not a destination; pass a group ` +
        'name, an Array of group names, or an Object mapping group names to counts');
}

/**
 * An endpoint that takes and gives plain JS values.
 *
 * It owns a Tlspyo.Endpoint, `gobject`, which stays fully usable: bind to
 * its `connected` property, or call its methods for GLib.Variants.
 */
export class Endpoint {
    /**
     * @param {object} [properties] Tlspyo.Endpoint construct properties
     *   (host, port, password, groups, credentials_dir, security, ...);
     *   `groups` may be a single string. Or an existing Tlspyo.Endpoint.
     * @param {object} [options]
     * @param {boolean} [options.raw=false] receive GLib.Variants instead of
     *   plain values
     */
    constructor(properties = {}, {raw = false} = {}) {
        if (properties instanceof TlspyoGI.Endpoint) {
            this.gobject = properties;
        } else {
            const props = {...properties};
            if (typeof props.groups === 'string')
                props.groups = [props.groups];
            this.gobject = new TlspyoGI.Endpoint(props);
        }
        /** When true, receive methods and signals give GLib.Variants. */
        this.raw = raw;
    }

    _out(variants) {
        return this.raw ? variants : variants.map(unpack);
    }

    /** Whether the endpoint is connected and joined right now. */
    get connected() {
        return this.gobject.connected;
    }

    /** How many received objects wait in the local queue. */
    get nQueued() {
        return this.gobject.get_n_queued();
    }

    /** Starts connecting in the background; throws GLib.Error on bad settings. */
    start() {
        this.gobject.start();
        return this;
    }

    stop() {
        this.gobject.stop();
    }

    /** Waits until connected; -1 waits without limit. Throws GLib.Error. */
    waitConnected(timeoutMs = -1) {
        return this.gobject.wait_connected(timeoutMs);
    }

    /** Waits until the relay acknowledged everything sent. Throws GLib.Error. */
    flush(timeoutMs = -1) {
        return this.gobject.flush(timeoutMs);
    }

    /** Sends `value` (see pack()) to every endpoint of `group`. */
    broadcast(value, group) {
        return this.gobject.broadcast(pack(value), group);
    }

    /** Appends `value` (see pack()) to the shared queue of `group`. */
    produce(value, group) {
        return this.gobject.produce(pack(value), group);
    }

    /**
     * Sends `value` to several groups, as tlspyo's send_object.
     *
     * @param {*} value see pack()
     * @param {string|string[]|Object<string,number>|GLib.Variant} destination
     *   a group to broadcast to, groups to broadcast to each, or group ->
     *   count (negative: broadcast; positive: produce that many copies)
     */
    sendObject(value, destination) {
        const dest = packDestination(destination);
        return this.gobject.send_object(pack(value), dest);
    }

    /** Tells the relay this endpoint is ready to consume `count` objects of `group` (negative: all queued). */
    notifyReady(group, count = 1) {
        return this.gobject.notify_ready(group, count);
    }

    /**
     * Takes up to `maxItems` of the oldest received objects, waiting at most
     * `timeoutMs` (0: not at all, -1: without limit) for the first one. While
     * it waits it iterates the main context, so signals still run.
     */
    pop(maxItems = 1, timeoutMs = 0) {
        return this._out(this.gobject.pop(maxItems, timeoutMs));
    }

    /** Like pop(), but the newest `maxItems`; older ones are discarded. */
    getLast(maxItems = 1, timeoutMs = 0) {
        return this._out(this.gobject.get_last(maxItems, timeoutMs));
    }

    /** Takes every received object, waiting as pop() does for the first one. */
    receiveAll(timeoutMs = 0) {
        return this._out(this.gobject.receive_all(timeoutMs));
    }

    /**
     * Resolves with up to `maxItems` of the oldest received objects as soon as
     * there is one, without blocking. Needs a running main loop (or a
     * pending top-level await). Rejects with a GLib.Error when cancelled.
     *
     * @param {number} [maxItems=1]
     * @param {Gio.Cancellable|null} [cancellable=null]
     * @returns {Promise<Array>}
     */
    async popAsync(maxItems = 1, cancellable = null) {
        const variants = await this.gobject.pop_async(maxItems, cancellable);
        return this._out(variants);
    }

    /**
     * Connects to a signal of the endpoint. For `object-received` (and its
     * detailed form `object-received::GROUP`) the callback gets
     * `(endpoint, value, group)` with the value unpacked unless `raw` is set;
     * returning true takes the object out of the local queue. Other signals
     * (`notify::connected`, ...) get `(endpoint, ...args)`.
     *
     * @returns {number} the handler id, for disconnect()
     */
    connect(signal, callback) {
        if (signal === 'object-received' || signal.startsWith('object-received::')) {
            return this.gobject.connect(signal, (_gobject, variant, group) =>
                Boolean(callback(this, this.raw ? variant : unpack(variant), group)));
        }
        return this.gobject.connect(signal, (_gobject, ...args) => callback(this, ...args));
    }

    disconnect(handlerId) {
        this.gobject.disconnect(handlerId);
    }
}

/**
 * Wraps an existing Tlspyo.Endpoint, for example one made in C code.
 *
 * @param {TlspyoGI.Endpoint} endpoint
 * @param {object} [options] as for the Endpoint constructor
 * @returns {Endpoint}
 */
export function wrap(endpoint, options = {}) {
    if (!(endpoint instanceof TlspyoGI.Endpoint))
        throw new TypeError(`wrap() takes a Tlspyo.Endpoint, not a ${describe(endpoint)}`);
    return new Endpoint(endpoint, options);
}
