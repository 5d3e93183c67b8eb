// SPDX-License-Identifier: MIT
//
// The tlspyo README example in JavaScript: a relay, a producer and two
// consumers in one script that never runs a main loop (blocking calls drive
// it). It checks what it prints, so it doubles as a test.
//
//   gjs -m examples/readme.js [CREDENTIALS-DIR]
//
// Without a folder, TLS credentials are generated into a temporary one.
// From a source checkout this imports the module from the tree; once
// tlspyo-glib is installed, import it from its installed place instead:
//   import * as Tlspyo from 'file:///usr/share/tlspyo-glib/js/tlspyo.js';

import GLib from 'gi://GLib';
import System from 'system';

import * as Tlspyo from '../tlspyo-glib/js/tlspyo.js';

const PASSWORD = 'VerySecurePassword';
// tlspyo's blocking=True is timeout -1; 10 s here so the example cannot hang.
const TIMEOUT_MS = 10000;

function main(credentialsDir) {
    // A relay on 127.0.0.1; port 0 lets the system pick a free port.
    const relay = new Tlspyo.Relay({
        port: 0,
        address: '127.0.0.1',
        password: PASSWORD,
        credentials_dir: credentialsDir,
    });
    relay.start();

    const endpoint = groups => new Tlspyo.Endpoint({
        host: '127.0.0.1',
        port: relay.port,
        password: PASSWORD,
        groups,
        credentials_dir: credentialsDir,
    }).start();

    const prod = endpoint('producers');
    const cons1 = endpoint('consumers');
    const cons2 = endpoint('consumers');

    // The producer broadcasts to every endpoint of "consumers"...
    prod.broadcast('I HAVE BEEN BROADCAST', 'consumers');
    // ...and puts an object in the shared queue of "consumers".
    prod.produce('I HAVE BEEN PRODUCED', 'consumers');
    // Consumer 1 is ready to consume one produced object.
    cons1.notifyReady('consumers');

    // Consumer 1 gets the broadcast AND the produced object.
    let res = [];
    while (res.length < 2) {
        const got = cons1.receiveAll(TIMEOUT_MS);
        if (got.length === 0)
            throw new Error(`Consumer 1 received nothing in ${TIMEOUT_MS} ms`);
        res.push(...got);
    }
    print(`Consumer 1 has received: ${JSON.stringify(res)}`);
    check(res, ['I HAVE BEEN BROADCAST', 'I HAVE BEEN PRODUCED'], 'Consumer 1');

    // Consumer 2 gets only the broadcast.
    res = cons2.receiveAll(TIMEOUT_MS);
    print(`Consumer 2 has received: ${JSON.stringify(res)}`);
    check(res, ['I HAVE BEEN BROADCAST'], 'Consumer 2');
    // The produced object went to consumer 1 only: nothing more arrives.
    check(cons2.receiveAll(500), [], 'Consumer 2, later');

    for (const ep of [prod, cons1, cons2])
        ep.stop();
    relay.stop();
}

function check(got, expected, who) {
    if (JSON.stringify(got) !== JSON.stringify(expected))
        throw new Error(`${who} received ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
}

let tmpDir = null;
try {
    let credentialsDir = ARGV[0];
    if (!credentialsDir) {
        credentialsDir = tmpDir = GLib.dir_make_tmp('tlspyo-example-XXXXXX');
        Tlspyo.GI.credentials_generate(tmpDir, null);
    }
    main(credentialsDir);
} catch (e) {
    printerr(`readme.js: ${e.message}`);
    System.exit(1);
} finally {
    if (tmpDir !== null) {
        for (const name of ['key.pem', 'certificate.pem'])
            GLib.unlink(GLib.build_filenamev([tmpDir, name]));
        GLib.rmdir(tmpDir);
    }
}
