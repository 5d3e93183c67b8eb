// SPDX-License-Identifier: MIT
//
// tlspyo.js in an application that runs a GLib.MainLoop: object-received
// and notify::connected signals, and pop_async awaited through
// Gio._promisify. GJS refuses to run JS called from another thread, so
// each handler also checks it runs on the thread that owns the main context.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';

import {
    Tlspyo, Fixture, PASSWORD, TIMEOUT_MS, run, runLoop, nextSignal, assert, assertEqual,
} from './harness.js';

const {pack} = Tlspyo;

function onMainThread() {
    return GLib.MainContext.default().is_owner();
}

function withFixture(fn) {
    const fx = new Fixture();
    try {
        fn(fx);
    } finally {
        fx.close();
    }
}

function testObjectReceived() {
    // Once a group's name is a quark (as after any detailed emission), a
    // handler connected without a detail must still be called: GLib 2.74's
    // g_signal_has_handler_pending() with a detail does not see it.
    GLib.quark_from_string('receivers');
    withFixture(fx => {
        const sender = fx.endpoint('senders');
        const plain = fx.endpoint('receivers');
        const raw = fx.endpoint(['receivers', 'other'], {raw: true});

        runLoop(async () => {
            const gotPlain = nextSignal(plain, 'object-received');
            const gotRaw = nextSignal(raw, 'object-received');
            sender.broadcast({n: 1, list: [1.5, 'x']}, 'receivers');
            const [self, value, group] = await gotPlain;
            assert(self === plain, 'the handler did not get the wrapped endpoint');
            assertEqual(value, {n: 1, list: [1.5, 'x']}, 'object-received value');
            assertEqual(group, 'receivers', 'object-received group');
            const [, variant] = await gotRaw;
            assertEqual(variant, pack({n: 1, list: [1.5, 'x']}), 'raw object-received value');
            assert(onMainThread(), 'object-received ran off the main thread');
        });
        // A handler returning false leaves the object in the local queue.
        assertEqual(plain.pop(1, 0), [{n: 1, list: [1.5, 'x']}], 'queued after the signal');

        // The detailed signal sees only its group, and returning true takes the object.
        runLoop(async () => {
            const seen = [];
            const id = raw.connect('object-received::other', (_ep, v, group) => {
                assert(onMainThread(), 'object-received::other ran off the main thread');
                seen.push([Tlspyo.unpack(v), group]);
                return true;
            });
            const last = nextSignal(raw, 'object-received', (_ep, v) => Tlspyo.unpack(v) === 'end');
            sender.broadcast('to receivers', 'receivers');
            sender.broadcast('to other', 'other');
            sender.broadcast('end', 'receivers');
            await last;
            raw.disconnect(id);
            assertEqual(seen, [['to other', 'other']], 'detailed handler');
        });
        assertEqual(raw.receiveAll(0).map(Tlspyo.unpack), [{n: 1, list: [1.5, 'x']}, 'to receivers', 'end'],
            'taken objects were not queued');
    });
}

function testConnectedNotify() {
    withFixture(fx => {
        const ep = new Tlspyo.Endpoint({
            host: '127.0.0.1',
            port: fx.relay.port,
            password: PASSWORD,
            groups: 'g',
            credentials_dir: fx.dir,
        });
        fx.endpoints.push(ep);
        assertEqual(ep.connected, false, 'connected before start');
        runLoop(async () => {
            const up = nextSignal(ep, 'notify::connected', self => self.connected);
            ep.start();
            const [self] = await up;
            assert(self === ep && onMainThread(), 'notify::connected handler');
            assertEqual(ep.connected, true, 'connected after notify');
            assertEqual(ep.gobject.connected, true, 'the GObject property');
            const down = nextSignal(ep, 'notify::connected', s => !s.connected);
            fx.relay.stop();
            await down;
        });
        assertEqual(ep.connected, false, 'connected after the relay stopped');
    });
}

function testPopAsync() {
    withFixture(fx => {
        const sender = fx.endpoint('senders');
        const ep = fx.endpoint('receivers');

        runLoop(async () => {
            // Pending before anything arrives: it resolves on the main loop.
            const pending = ep.popAsync(5);
            sender.broadcast([1, {a: new Uint8Array([9])}], 'receivers');
            assertEqual(await pending, [[1, {a: new Uint8Array([9])}]], 'popAsync');
            assert(onMainThread(), 'popAsync resolved off the main thread');

            // Already queued: it resolves with up to maxItems, oldest first.
            for (const v of ['a', 'b', 'c'])
                sender.broadcast(v, 'receivers');
            sender.flush(TIMEOUT_MS);
            const got = [];
            while (got.length < 3)
                got.push(...await ep.popAsync(2));
            assertEqual(got, ['a', 'b', 'c'], 'popAsync in order');

            // The promisified GI method itself gives GLib.Variants.
            sender.broadcast('gi', 'receivers');
            assertEqual(await ep.gobject.pop_async(1, null), [pack('gi')], 'Tlspyo.Endpoint.pop_async promise');

            // The callback form still works after _promisify.
            sender.broadcast('callback', 'receivers');
            const viaCallback = await new Promise((resolve, reject) => {
                ep.gobject.pop_async(1, null, (source, result) => {
                    try {
                        resolve(source.pop_finish(result));
                    } catch (e) {
                        reject(e);
                    }
                });
            });
            assertEqual(viaCallback, [pack('callback')], 'pop_async with a callback');

            // raw popAsync.
            ep.raw = true;
            sender.broadcast(7, 'receivers');
            assertEqual(await ep.popAsync(), [pack(7)], 'raw popAsync');
            ep.raw = false;

            // Cancelling rejects with G_IO_ERROR_CANCELLED, and takes nothing.
            const cancellable = new Gio.Cancellable();
            const cancelled = ep.popAsync(1, cancellable);
            GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
                cancellable.cancel();
                return GLib.SOURCE_REMOVE;
            });
            let error = null;
            try {
                await cancelled;
            } catch (e) {
                error = e;
            }
            assert(error?.matches?.(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED),
                `cancelled popAsync: ${error}`);
            sender.broadcast('after cancel', 'receivers');
            assertEqual(await ep.popAsync(), ['after cancel'], 'popAsync after a cancel');
        });
    });
}

run([
    ['object-received on a GLib.MainLoop', testObjectReceived],
    ['notify::connected on a GLib.MainLoop', testConnectedNotify],
    ['popAsync awaited through Gio._promisify', testPopAsync],
]);
