// SPDX-License-Identifier: MIT
//
// Runs the GTK 4 example (examples/gtk/shared-counter.js) in its self-test
// mode, under the X server xvfb-run gives this process, and checks what it
// reports and the screenshot it saves: three windows, the first clicked +1
// and sent a chat line, the second and a later third show both.
//
//   xvfb-run -a gjs -m test-shared-counter.js APP.js SCREENSHOT.png

import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import System from 'system';

const TIMEOUT_MS = 25000;

Gio._promisify(Gio.Subprocess.prototype, 'communicate_utf8_async');

// Thrown, never System.exit() from async code: GJS would keep the loop going.
class Failure extends Error {}
class Skip extends Error {}

function fail(message) {
    throw new Failure(message);
}

async function runApp(app, png) {
    const proc = Gio.Subprocess.new(['gjs', '-m', app, `--self-test=${png}`],
        Gio.SubprocessFlags.STDOUT_PIPE);
    const timeout = GLib.timeout_add(GLib.PRIORITY_DEFAULT, TIMEOUT_MS, () => {
        printerr(`the example did not exit within ${TIMEOUT_MS} ms`);
        proc.force_exit();
        return GLib.SOURCE_REMOVE;
    });
    const [stdout] = await proc.communicate_utf8_async(null, null);
    GLib.source_remove(timeout);
    print(stdout.trimEnd());
    return [proc.get_if_exited() ? proc.get_exit_status() : -1, stdout];
}

/** Counts the distinct colours of one column band of the image. */
function distinctColours(pixbuf, x0, x1) {
    const pixels = pixbuf.read_pixel_bytes().toArray();
    const stride = pixbuf.get_rowstride(), n = pixbuf.get_n_channels();
    const colours = new Set();
    for (let y = 0; y < pixbuf.get_height(); y++) {
        for (let x = x0; x < x1; x++) {
            const o = y * stride + x * n;
            colours.add((pixels[o] << 16) | (pixels[o + 1] << 8) | pixels[o + 2]);
        }
    }
    return colours.size;
}

async function main([app, png]) {
    if (!app || !png)
        fail('usage: test-shared-counter.js APP.js SCREENSHOT.png');
    try {
        await import('gi://Gtk?version=4.0');
    } catch (e) {
        throw new Skip(`the GTK 4 typelib cannot be loaded (install gir1.2-gtk-4.0): ${e.message}`);
    }
    GLib.unlink(png);

    const [status, stdout] = await runApp(app, png);
    if (status !== 0)
        fail(`the example's self-test exited with status ${status}`);
    for (const expected of [
        'self-test: window B shows count 1 and "A: hello from A"',
        'self-test: window B latest value: {"from":"A","text":"hello from A"}',
        'self-test: window C, opened later, shows count 1',
    ]) {
        if (!stdout.includes(expected))
            fail(`the example did not report: ${expected}`);
    }
    const match = stdout.match(/self-test: screenshot .* (\d+)x(\d+)$/m);
    if (!match)
        fail('the example reported no screenshot');

    // Checked from the file, independently of the app: its size, and that
    // each window's third of it has real content, not one flat colour.
    const {default: GdkPixbuf} = await import('gi://GdkPixbuf');
    const pixbuf = GdkPixbuf.Pixbuf.new_from_file(png);
    const [width, height] = [pixbuf.get_width(), pixbuf.get_height()];
    if (width !== Number(match[1]) || height !== Number(match[2]))
        fail(`${png} is ${width}x${height}, the example said ${match[1]}x${match[2]}`);
    // Three windows of their default size at least 380x520, side by side.
    if (width < 3 * 380 || height < 520)
        fail(`${png} is ${width}x${height}: too small for three windows`);
    for (let i = 0; i < 3; i++) {
        const n = distinctColours(pixbuf, Math.floor(i * width / 3), Math.floor((i + 1) * width / 3));
        if (n < 32)
            fail(`window ${i + 1} of ${png} has only ${n} colours: it did not render`);
    }
    print(`ok: ${png} is ${width}x${height} and every window rendered`);
}

let error = null, settled = false;
const loop = new GLib.MainLoop(null, false);
main(ARGV).catch(e => {
    error = e;
}).finally(() => {
    settled = true;
    loop.quit();
});
if (!settled)
    loop.run();
if (error instanceof Skip) {
    print(`SKIP: ${error.message}`);
    System.exit(77);
} else if (error instanceof Failure) {
    printerr(`test-shared-counter: ${error.message}`);
    System.exit(1);
} else if (error !== null) {
    printerr(`test-shared-counter: ${error}\n${error.stack}`);
    System.exit(1);
}
