// SPDX-License-Identifier: MIT
//
// A small TAP harness for the GJS tests: every wait is bounded, an
// exception anywhere (even in a signal handler) fails the test, and the
// process exits non-zero when any test failed.

import GLib from 'gi://GLib';
import System from 'system';

import * as Tlspyo from '../../tlspyo-glib/js/tlspyo.js';

export {Tlspyo};

// Same bound as TLSPYO_TEST_TIMEOUT_MS in tests/tlspyo-test-utils.h.
export const TIMEOUT_MS = 10000;
export const PASSWORD = 'test-password';

export class AssertionError extends Error {
    get name() {
        return 'AssertionError';
    }
}

function show(value) {
    if (value instanceof GLib.Variant)
        return `GLib.Variant(${value.print(true)})`;
    if (typeof value === 'bigint')
        return `${value}n`;
    if (Object.is(value, -0))
        return '-0';
    if (value instanceof Uint8Array)
        return `Uint8Array[${value}]`;
    if (value instanceof Map)
        return `Map(${show([...value])})`;
    if (Array.isArray(value))
        return `[${value.map(show).join(', ')}]`;
    if (value !== null && typeof value === 'object')
        return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${show(v)}`).join(', ')}}`;
    return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** Deep equality that tells 1 from 1n, -0 from 0, Object from Map, and key order. */
export function same(a, b) {
    if (Object.is(a, b))
        return true;
    if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object')
        return false;
    if (a instanceof GLib.Variant || b instanceof GLib.Variant) {
        return a instanceof GLib.Variant && b instanceof GLib.Variant &&
            a.get_type_string() === b.get_type_string() && a.equal(b);
    }
    if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b))
        return false;
    if (a instanceof Uint8Array)
        return a.length === b.length && a.every((x, i) => x === b[i]);
    if (a instanceof Map)
        return same([...a], [...b]);
    if (Array.isArray(a))
        return a.length === b.length && a.every((x, i) => same(x, b[i]));
    const ka = Object.keys(a), kb = Object.keys(b);
    return same(ka, kb) && ka.every(k => same(a[k], b[k]));
}

export function assertEqual(got, expected, what = 'value') {
    if (!same(got, expected))
        throw new AssertionError(`${what}: got ${show(got)}, expected ${show(expected)}`);
}

export function assert(condition, message) {
    if (!condition)
        throw new AssertionError(message);
}

/** Calls fn and checks it throws an instance of errorClass whose message matches. */
export function assertThrows(fn, errorClass, pattern, what) {
    try {
        fn();
    } catch (e) {
        if (!(e instanceof errorClass) || (pattern && !pattern.test(e.message)))
            throw new AssertionError(`${what}: threw ${e}, expected a ${errorClass.name} matching ${pattern}`);
        return e;
    }
    throw new AssertionError(`${what}: did not throw`);
}

/**
 * Runs the async function on a GLib.MainLoop until its promise settles, at
 * most timeoutMs (GJS 1.74 has no MainLoop.runAsync). Returns its value or
 * throws its error; throws on timeout.
 */
export function runLoop(fn, timeoutMs = TIMEOUT_MS) {
    const loop = new GLib.MainLoop(null, false);
    let settled = false, timedOut = false, value, error;
    const timeoutId = GLib.timeout_add(GLib.PRIORITY_DEFAULT, timeoutMs, () => {
        timedOut = true;
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    Promise.resolve().then(fn).then(v => {
        value = v;
    }, e => {
        error = e ?? new Error('rejected without a reason');
    }).finally(() => {
        settled = true;
        loop.quit();
    });
    // Quitting a loop that is not running yet does not stop a later run().
    if (!settled)
        loop.run();
    if (!timedOut)
        GLib.source_remove(timeoutId);
    if (!settled)
        throw new AssertionError(`no result within ${timeoutMs} ms`);
    if (error !== undefined)
        throw error;
    return value;
}

/**
 * A promise for the next emission of `signal` on `target` (a wrapped or a
 * plain endpoint) for which accept(...args) holds; resolves with the args.
 * The handler returns `result` to the emitter.
 */
export function nextSignal(target, signal, accept = () => true, result = false) {
    return new Promise((resolve, reject) => {
        const id = target.connect(signal, (...args) => {
            try {
                if (!accept(...args))
                    return false;
                target.disconnect(id);
                resolve(args);
            } catch (e) {
                target.disconnect(id);
                reject(e);
            }
            return result;
        });
    });
}

/** A temporary credentials folder and a relay on 127.0.0.1 port 0. */
export class Fixture {
    constructor() {
        this.dir = GLib.dir_make_tmp('tlspyo-js-test-XXXXXX');
        Tlspyo.GI.credentials_generate(this.dir, null);
        this.relay = new Tlspyo.Relay({
            port: 0,
            address: '127.0.0.1',
            password: PASSWORD,
            credentials_dir: this.dir,
        });
        this.relay.start();
        this.endpoints = [];
    }

    /** A started, connected wrapped endpoint. */
    endpoint(groups, options = {}) {
        const ep = new Tlspyo.Endpoint({
            host: '127.0.0.1',
            port: this.relay.port,
            password: PASSWORD,
            groups,
            credentials_dir: this.dir,
        }, options);
        this.endpoints.push(ep);
        ep.start();
        ep.waitConnected(TIMEOUT_MS);
        return ep;
    }

    close() {
        for (const ep of this.endpoints)
            ep.stop();
        this.relay.stop();
        for (const name of ['key.pem', 'certificate.pem'])
            GLib.unlink(GLib.build_filenamev([this.dir, name]));
        GLib.rmdir(this.dir);
    }
}

/** Pops until n objects came, each pop bounded; fails if fewer arrive. */
export function popN(ep, n) {
    const got = [];
    const deadline = GLib.get_monotonic_time() + TIMEOUT_MS * 1000;
    while (got.length < n) {
        const left = Math.max(0, Math.floor((deadline - GLib.get_monotonic_time()) / 1000));
        const batch = ep.pop(n - got.length, left);
        if (batch.length === 0)
            throw new AssertionError(`received ${got.length} of ${n} objects within ${TIMEOUT_MS} ms`);
        got.push(...batch);
    }
    return got;
}

/** Runs [name, fn] pairs as TAP subtests and exits 1 if any failed. */
export function run(tests) {
    print(`1..${tests.length}`);
    let failed = 0;
    tests.forEach(([name, fn], i) => {
        try {
            fn();
            print(`ok ${i + 1} - ${name}`);
        } catch (e) {
            failed++;
            print(`not ok ${i + 1} - ${name}`);
            for (const line of `${e}\n${e.stack ?? ''}`.trimEnd().split('\n'))
                print(`# ${line}`);
        }
    });
    if (failed > 0) {
        printerr(`${failed} of ${tests.length} tests failed`);
        System.exit(1);
    }
}
