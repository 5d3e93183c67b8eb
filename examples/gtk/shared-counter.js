// SPDX-License-Identifier: MIT
//
// Shared counter: a GTK 4 application whose windows (in one process or in
// several) share a counter and a chat through a tlspyo-glib relay.
//
// Every window owns its own endpoint in the groups "counter" and "chat".
// Clicking +1 broadcasts {from, count} to "counter"; every window, the
// sender too, shows the count once the relay sends it back, so all windows
// agree on the relay's order. The relay keeps the latest broadcast of each
// group, so a window opened later starts from the current count. The
// "Latest value" panel shows the last object the window received, as plain
// JS; the header shows the connection state, bound to the endpoint's
// `connected` property.
//
//   gjs -m examples/gtk/shared-counter.js              # relay + 2 windows
//   gjs -m examples/gtk/shared-counter.js --windows 3
//
// Across processes, host the relay in one and join it from the others:
//   export TLSPYO_PASSWORD=SomethingLongAndRandom
//   gjs -m shared-counter.js --port 3000 --credentials-dir ~/counter-creds
//   gjs -m shared-counter.js --connect 127.0.0.1:3000 --credentials-dir ~/counter-creds
// (--listen 0.0.0.0 lets other machines join; they need a copy of
// certificate.pem, never key.pem, in their --credentials-dir.)
//
// --self-test=FILE.png opens two windows, clicks +1 and sends a chat line in
// the first, waits until the second shows both, and saves a screenshot of
// both windows; the exit status says whether it all worked. It is what the
// 'gtk' test suite runs under Xvfb.
//
// From a source checkout, run it with the built typelib:
//   GI_TYPELIB_PATH=_build/tlspyo-glib LD_LIBRARY_PATH=_build/tlspyo-glib gjs -m examples/gtk/shared-counter.js
// Installed, replace the tlspyo.js import below with
//   'file:///usr/share/tlspyo-glib/js/tlspyo.js'.

import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import GObject from 'gi://GObject';
import Gdk from 'gi://Gdk?version=4.0';
import Graphene from 'gi://Graphene';
import Gtk from 'gi://Gtk?version=4.0';
import System from 'system';

import * as Tlspyo from '../../tlspyo-glib/js/tlspyo.js';

const APP_ID = 'org.tlspyo.SharedCounter';
const SELF_TEST_TIMEOUT_MS = 20000;

const CSS = `
.count { font-size: 48pt; font-weight: bold; }
.state-up { color: #26a269; font-weight: bold; }
.state-down { color: #c01c28; font-weight: bold; }
.latest { font-family: monospace; padding: 6px; }
`;

function parseHostPort(text) {
    const colon = text.lastIndexOf(':');
    const port = Number(text.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535)
        throw new Error(`--connect wants HOST:PORT, like 127.0.0.1:3000, not "${text}"`);
    return [text.slice(0, colon), port];
}

function fileExists(dir, name) {
    return GLib.file_test(GLib.build_filenamev([dir, name]), GLib.FileTest.EXISTS);
}

/** Where the windows connect, and the relay when this process hosts it. */
class Network {
    constructor({connect, listen, port, credentialsDir, password}) {
        this.tmpDir = null;
        this.relay = null;
        if (connect) {
            if (!password)
                throw new Error('Set TLSPYO_PASSWORD to the relay\'s password to join it');
            [this.host, this.port] = parseHostPort(connect);
            this.credentialsDir = credentialsDir;   // null: the default folder
            this.password = password;
            return;
        }
        if (credentialsDir) {
            // Reuse the relay's credentials when they are there already.
            if (!fileExists(credentialsDir, 'certificate.pem') || !fileExists(credentialsDir, 'key.pem'))
                Tlspyo.GI.credentials_generate(credentialsDir, null);
        } else {
            credentialsDir = this.tmpDir = GLib.dir_make_tmp('shared-counter-XXXXXX');
            Tlspyo.GI.credentials_generate(credentialsDir, null);
        }
        this.credentialsDir = credentialsDir;
        // Without TLSPYO_PASSWORD only this process's windows can join.
        this.password = password || GLib.uuid_string_random();
        this.relay = new Tlspyo.Relay({
            port,
            address: listen,
            password: this.password,
            credentials_dir: credentialsDir,
        });
        this.relay.start();
        // This process's windows reach a relay listening on every address through loopback.
        this.host = listen === '0.0.0.0' ? '127.0.0.1' : listen;
        this.port = this.relay.port;
        if (password) {
            print(`Relay on ${listen}:${this.port}. To join from another process, with the same TLSPYO_PASSWORD:\n` +
                `  gjs -m ${System.programPath} --connect ${this.host}:${this.port} --credentials-dir ${credentialsDir}`);
        } else {
            print(`Relay on ${listen}:${this.port}, with a random password: set TLSPYO_PASSWORD ` +
                'to let other processes join.');
        }
    }

    endpoint() {
        return new Tlspyo.Endpoint({
            host: this.host,
            port: this.port,
            password: this.password,
            groups: ['counter', 'chat'],
            credentials_dir: this.credentialsDir,
        });
    }

    close() {
        this.relay?.stop();
        if (this.tmpDir !== null) {
            for (const name of ['key.pem', 'certificate.pem'])
                GLib.unlink(GLib.build_filenamev([this.tmpDir, name]));
            GLib.rmdir(this.tmpDir);
        }
    }
}

const CounterWindow = GObject.registerClass(
class CounterWindow extends Gtk.ApplicationWindow {
    _init(app, network, name) {
        super._init({application: app, default_width: 380, default_height: 520});
        this.name = name;
        this.count = 0;
        this.endpoint = network.endpoint();

        const header = new Gtk.HeaderBar();
        header.set_title_widget(new Gtk.Label({label: `Counter ${name}`, css_classes: ['title']}));
        this.stateLabel = new Gtk.Label();
        header.pack_end(this.stateLabel);
        // A window opened later starts from the relay's latest broadcast.
        const more = new Gtk.Button({label: 'New window'});
        more.connect('clicked', () => newWindow(app));
        header.pack_start(more);
        this.set_titlebar(header);

        const box = new Gtk.Box({
            orientation: Gtk.Orientation.VERTICAL,
            spacing: 12,
            margin_top: 12, margin_bottom: 12, margin_start: 12, margin_end: 12,
        });
        this.set_child(box);

        this.countLabel = new Gtk.Label({label: '0', css_classes: ['count']});
        box.append(this.countLabel);

        const buttons = new Gtk.Box({spacing: 6, halign: Gtk.Align.CENTER});
        this.minusButton = new Gtk.Button({label: '−1'});
        this.plusButton = new Gtk.Button({label: '+1', css_classes: ['suggested-action']});
        this.resetButton = new Gtk.Button({label: 'Reset'});
        this.minusButton.connect('clicked', () => this._publish(this.count - 1));
        this.plusButton.connect('clicked', () => this._publish(this.count + 1));
        this.resetButton.connect('clicked', () => this._publish(0));
        for (const b of [this.minusButton, this.plusButton, this.resetButton])
            buttons.append(b);
        box.append(buttons);

        const chatRow = new Gtk.Box({spacing: 6});
        this.entry = new Gtk.Entry({hexpand: true, placeholder_text: 'Say something'});
        this.sendButton = new Gtk.Button({label: 'Send'});
        this.entry.connect('activate', () => this._say());
        this.sendButton.connect('clicked', () => this._say());
        chatRow.append(this.entry);
        chatRow.append(this.sendButton);
        box.append(chatRow);

        this.chatList = new Gtk.ListBox({selection_mode: Gtk.SelectionMode.NONE});
        box.append(new Gtk.ScrolledWindow({child: this.chatList, vexpand: true, min_content_height: 100}));

        this.latestLabel = new Gtk.Label({
            label: 'nothing yet', xalign: 0, wrap: true, selectable: true, css_classes: ['latest'],
        });
        box.append(new Gtk.Frame({label: 'Latest value', child: this.latestLabel}));

        const role = network.relay ? 'hosted here' : 'joined';
        box.append(new Gtk.Label({
            label: `Relay ${network.host}:${network.port} (${role}, TLS)`,
            xalign: 0, css_classes: ['dim-label'],
        }));

        // The connection state drives the header and what can be clicked.
        const endpoint = this.endpoint.gobject;
        endpoint.bind_property_full('connected', this.stateLabel, 'label',
            GObject.BindingFlags.SYNC_CREATE,
            (_binding, up) => [true, up ? '● connected' : '○ connecting…'],
            null);
        endpoint.bind_property_full('connected', this.stateLabel, 'css-classes',
            GObject.BindingFlags.SYNC_CREATE,
            (_binding, up) => [true, [up ? 'state-up' : 'state-down']],
            null);
        for (const widget of [this.minusButton, this.plusButton, this.resetButton, this.entry, this.sendButton])
            endpoint.bind_property('connected', widget, 'sensitive', GObject.BindingFlags.SYNC_CREATE);

        this.endpoint.connect('object-received', (_ep, value, group) => {
            this._show(value, group);
            return true;  // handled here: keep nothing in the local queue
        });
        this.connect('close-request', () => {
            this.endpoint.stop();
            return false;
        });
        this.endpoint.start();
    }

    _publish(count) {
        this.endpoint.broadcast({from: this.name, count}, 'counter');
    }

    _say() {
        const text = this.entry.text.trim();
        if (text === '')
            return;
        this.endpoint.broadcast({from: this.name, text}, 'chat');
        this.entry.text = '';
    }

    _show(value, group) {
        this.latestLabel.label = `${JSON.stringify(value)}\nvia group "${group}"`;
        if (group === 'counter' && Number.isInteger(value?.count)) {
            this.count = value.count;
            this.countLabel.label = String(value.count);
        } else if (group === 'chat' && typeof value?.text === 'string') {
            this.chatList.append(new Gtk.Label({label: `${value.from}: ${value.text}`, xalign: 0}));
        }
    }
});

let windowCount = 0;

/** Opens one more window; with several processes, the pid tells them apart. */
function newWindow(application) {
    const prefix = network.relay ? '' : `pid ${new Gio.Credentials().get_unix_pid()} · `;
    const window = new CounterWindow(application, network, `${prefix}${String.fromCharCode(65 + windowCount++ % 26)}`);
    window.present();
    return window;
}

// Self-test helpers: every wait ends with the test's deadline.

function waitUntil(condition, what) {
    return new Promise((resolve, reject) => {
        const started = GLib.get_monotonic_time();
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, 20, () => {
            if (condition()) {
                resolve();
                return GLib.SOURCE_REMOVE;
            }
            if (GLib.get_monotonic_time() - started > SELF_TEST_TIMEOUT_MS * 1000) {
                reject(new Error(`timed out waiting until ${what}`));
                return GLib.SOURCE_REMOVE;
            }
            return GLib.SOURCE_CONTINUE;
        });
    });
}

/** Resolves once the window has gone through a few more frames. */
function framesPainted(window, n = 3) {
    return new Promise(resolve => {
        let ticks = 0;
        window.add_tick_callback(() => {
            if (++ticks < n)
                return GLib.SOURCE_CONTINUE;
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    });
}

/** Renders the windows side by side into one PNG, with GTK's own renderer. */
function screenshot(windows, path) {
    const gap = 16;
    const paintables = windows.map(widget => new Gtk.WidgetPaintable({widget}));
    const width = paintables.reduce((w, p) => w + p.get_intrinsic_width(), gap * (windows.length + 1));
    const height = Math.max(...paintables.map(p => p.get_intrinsic_height())) + 2 * gap;
    const snapshot = new Gtk.Snapshot();
    snapshot.append_color(new Gdk.RGBA({red: 0.2, green: 0.22, blue: 0.26, alpha: 1}),
        new Graphene.Rect({origin: new Graphene.Point({x: 0, y: 0}), size: new Graphene.Size({width, height})}));
    let x = gap;
    for (const p of paintables) {
        snapshot.save();
        snapshot.translate(new Graphene.Point({x, y: gap}));
        p.snapshot(snapshot, p.get_intrinsic_width(), p.get_intrinsic_height());
        snapshot.restore();
        x += p.get_intrinsic_width() + gap;
    }
    const texture = windows[0].get_renderer().render_texture(snapshot.to_node(), null);
    if (!texture.save_to_png(path))
        throw new Error(`could not write ${path}`);
    return [texture.get_width(), texture.get_height()];
}

async function selfTest(app, pngPath) {
    const [a, b] = [newWindow(app), newWindow(app)];
    await waitUntil(() => a.endpoint.connected && b.endpoint.connected, 'both windows are connected');
    await waitUntil(() => a.plusButton.sensitive && b.plusButton.sensitive, 'the buttons follow `connected`');

    a.plusButton.emit('clicked');
    a.entry.text = 'hello from A';
    a.sendButton.emit('clicked');
    await waitUntil(() => b.countLabel.label === '1' && b.chatList.get_row_at_index(0) !== null &&
        b.latestLabel.label.includes('hello from A'), 'window B shows what A sent');
    // The sender shows its own broadcast too: it got it back from the relay.
    await waitUntil(() => a.countLabel.label === '1', 'window A shows its own count');
    const row = b.chatList.get_row_at_index(0).get_child().label;
    if (row !== 'A: hello from A')
        throw new Error(`window B's chat shows "${row}"`);
    print(`self-test: window B shows count ${b.countLabel.label} and "${row}"`);
    print(`self-test: window B latest value: ${b.latestLabel.label.split('\n')[0]}`);

    // A window that joins later starts from the relay's latest broadcasts.
    const c = newWindow(app);
    await waitUntil(() => c.countLabel.label === '1' && c.chatList.get_row_at_index(0) !== null,
        'window C, opened later, shows the latest count and message');
    print(`self-test: window C, opened later, shows count ${c.countLabel.label}`);

    await Promise.all([a, b, c].map(w => framesPainted(w)));
    const [width, height] = screenshot([a, b, c], pngPath);
    print(`self-test: screenshot ${pngPath} ${width}x${height}`);
    for (const w of [a, b, c])
        w.close();
}

GLib.set_prgname('shared-counter');
// Several processes may each run the demo at once: no uniqueness.
const app = new Gtk.Application({application_id: APP_ID, flags: Gio.ApplicationFlags.NON_UNIQUE});
app.add_main_option('windows', 0, 0, GLib.OptionArg.INT, 'How many windows to open (2)', 'N');
app.add_main_option('port', 0, 0, GLib.OptionArg.INT, 'Port of the relay to host; 0 picks a free one (0)', 'PORT');
app.add_main_option('listen', 0, 0, GLib.OptionArg.STRING, 'Address the hosted relay listens on (127.0.0.1)', 'ADDRESS');
app.add_main_option('connect', 0, 0, GLib.OptionArg.STRING, 'Join the relay at HOST:PORT instead of hosting one', 'HOST:PORT');
app.add_main_option('credentials-dir', 0, 0, GLib.OptionArg.STRING, 'Folder of the relay\'s TLS credentials', 'DIR');
app.add_main_option('self-test', 0, 0, GLib.OptionArg.STRING, 'Run one exchange and save a screenshot to FILE', 'FILE');

let options = {};
let network = null;
let exitStatus = 0;

app.connect('handle-local-options', (_app, dict) => {
    options = dict.end().recursiveUnpack();
    return -1;  // go on
});

app.connect('startup', () => {
    const provider = new Gtk.CssProvider();
    provider.load_from_data(CSS);  // GTK 4.8: one argument, the length is implicit
    Gtk.StyleContext.add_provider_for_display(Gdk.Display.get_default(), provider,
        Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION);
});

app.connect('activate', () => {
    try {
        network = new Network({
            connect: options.connect,
            listen: options['self-test'] ? '127.0.0.1' : (options.listen ?? '127.0.0.1'),
            port: options['self-test'] ? 0 : (options.port ?? 0),
            credentialsDir: options['credentials-dir'],
            password: GLib.getenv('TLSPYO_PASSWORD'),
        });
    } catch (e) {
        printerr(`shared-counter: ${e.message}`);
        exitStatus = 1;
        return;  // no window: the application quits
    }
    if (options['self-test']) {
        const timeout = GLib.timeout_add(GLib.PRIORITY_DEFAULT, SELF_TEST_TIMEOUT_MS + 5000, () => {
            printerr('shared-counter: self-test did not finish');
            exitStatus = 1;
            app.quit();
            return GLib.SOURCE_REMOVE;
        });
        selfTest(app, options["self-test"]).catch(e => {
            printerr(`shared-counter: self-test failed: ${e.message}\n${e.stack}`);
            exitStatus = 1;
        }).finally(() => {
            GLib.source_remove(timeout);
            app.quit();
        });
        return;
    }
    for (let i = 0; i < (options.windows ?? 2); i++)
        newWindow(app);
});

app.connect('shutdown', () => network?.close());

const status = app.run([System.programInvocationName, ...ARGV]);
System.exit(exitStatus || status);
