# SPDX-License-Identifier: MIT
"""tlspyo relay: the config file and its refusals, command-line overrides,
graceful stops, group rules, and the password kept out of every output."""

import json
import os
import signal
import time

import pytest

from conftest import client_args, one_line_error, start_relay, stop, wait_for_file, wait_until


def write_config(tmp_path, text):
    path = tmp_path / "relay.json"
    path.write_text(text if isinstance(text, str) else json.dumps(text, indent=2))
    return path


def test_relay_prints_where_it_listens(relay, credentials, cli):
    assert relay.banner[-1] == f"listening on 127.0.0.1:{relay.port}"
    fingerprint = cli.run("credentials", "show", "--directory", credentials).stdout
    assert any(line.startswith("certificate SHA-256 fingerprint: ") and line.split(": ")[1] in
               fingerprint for line in relay.banner)


def test_example_config_with_overrides(cli, tmp_path, password, credentials):
    """The installed example is valid; options given on the command line
    (address, port, directory) win over it."""
    relay = start_relay(cli, tmp_path, password[1], "--config",
                        os.environ["TLSPYO_EXAMPLE_CONFIG"], "--directory", credentials)
    try:
        assert relay.banner[-1] == f"listening on 127.0.0.1:{relay.port}"
        assert relay.port != 2096
        assert "3 group rules" in relay.err_path.read_text()
    finally:
        code, out, err = relay.stop(signal.SIGINT)
    assert code == 0, err
    assert "Stopping on SIGINT" in err


def test_config_values_are_used(cli, tmp_path, password, credentials):
    config = write_config(tmp_path, {
        "address": "127.0.0.1",
        "port": 0,
        "security": "none",
        "credentials_dir": "does-not-matter-without-tls",
        "handshake_timeout": 5,
        "groups": {"only": {"max_count": 1}},
    })
    port_file = tmp_path / "port"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = cli.start("relay", "--config", config, "--password-file", password[1],
                         "--port-file", port_file, stdout=out, stderr=err)
    port = int(wait_for_file(port_file, proc))
    try:
        base = ("--port", port, "--password-file", password[1], "--security", "none",
                "--timeout", "10")
        # Plain TCP from the config: a TLS endpoint is not understood...
        assert cli.run("send", *base[:-2], "--timeout", "2", "--security", "tls",
                       "--directory", credentials, "--group", "only", "1").returncode == 1
        # ...a plain one is; and only the declared group is accepted.
        ok = cli.run("send", *base, "--group", "only", "1")
        assert ok.returncode == 0, ok.stderr
        refused = cli.run("send", *base, "--group", "other", "1")
        assert refused.returncode == 1
        line = one_line_error(refused)
        assert "other" in line and "accepts" in line

        # max_count 1: a second member of "only" is refused while one is in.
        joined = (tmp_path / "err").read_text().count("connected, in groups")
        first = cli.start("receive", *base, "--group", "only")
        try:
            wait_until(lambda: (tmp_path / "err").read_text().count("connected, in groups") > joined)
            second = cli.run("receive", *base, "--group", "only", "--timeout", "5")
            assert second.returncode == 1
            assert "full" in one_line_error(second)
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=20)
            assert first.returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert "plain TCP" in (tmp_path / "err").read_text()


@pytest.mark.parametrize("text, expected", [
    ('{\n  "prot": 3000\n}', ["line 2, column 3", "“prot”", "did you mean “port”"]),
    ('{"port": "3000"}', ["line 1, column 10", "“port”", "found a string"]),
    ('{"security": "ssl"}', ["“security”", '"tls" or "none"']),
    ('{"groups": {"workers": {"max_count": "4"}}}', ["“groups.workers.max_count”", "integer"]),
    ('{"groups": {"workers": {"max_cuont": 4}}}', ["“groups.workers.max_cuont”", "max_count"]),
    ('{"handshake_timeout": 0}', ["“handshake_timeout”", "from 1 to 3600"]),
    ('{"port": 3000,\n "address": "localhost"}', ["line 2, column 13", "“address”", "IP address"]),
    ('{"port": 3000,}', ["line 1, column 15"]),
    ('{"port": 1, "port": 2}', ["appears twice"]),
    ('[]', ["found an array"]),
    ('{"stats_interval": 0.05}', ["“stats_interval”", "0.1 to 86400", "found 0.05"]),
    ('{"stats_interval": -1}', ["“stats_interval”", "found -1"]),
    ('{"stats_interval": "60"}', ["“stats_interval”", "found a string"]),
])
def test_bad_config_names_the_key(cli, tmp_path, password, text, expected):
    config = write_config(tmp_path, text)
    result = cli.run("relay", "--config", config, "--password-file", password[1],
                     "--port", "0", "--address", "127.0.0.1")
    assert result.returncode == 1
    line = one_line_error(result)
    assert str(config) in line
    for part in expected:
        assert part in line


def test_unreadable_config(cli, tmp_path, password):
    result = cli.run("relay", "--config", tmp_path / "missing.json", "--password-file",
                     password[1])
    assert result.returncode == 1
    assert "--config" in one_line_error(result)


def test_relative_credentials_dir_is_relative_to_the_config(cli, tmp_path, password):
    folder = tmp_path / "conf"
    folder.mkdir()
    assert cli.run("credentials", "generate", "--directory", folder / "creds").returncode == 0
    config = folder / "relay.json"
    config.write_text('{"credentials_dir": "creds", "address": "127.0.0.1", "port": 0}')
    relay = start_relay(cli, tmp_path, password[1], "--config", config)
    code, _, err = relay.stop()
    assert code == 0, err


def test_missing_credentials(cli, tmp_path, password):
    result = cli.run("relay", "--password-file", password[1], "--port", "0",
                     "--directory", tmp_path / "nothing")
    assert result.returncode == 1
    assert "tlspyo credentials generate" in one_line_error(result)


def test_port_in_use(cli, relay, password, credentials):
    result = cli.run("relay", "--address", "127.0.0.1", "--port", relay.port,
                     "--password-file", password[1], "--directory", credentials)
    assert result.returncode == 1
    assert str(relay.port) in one_line_error(result)


def test_password_file_edge_cases(cli, tmp_path, credentials):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = cli.run("relay", "--password-file", empty, "--port", "0", "--directory", credentials)
    assert result.returncode == 1
    assert "empty" in one_line_error(result)

    result = cli.run("relay", "--password-file", tmp_path, "--port", "0")
    assert result.returncode == 1
    assert "regular file" in one_line_error(result)

    result = cli.run("relay", "--password-file", tmp_path / "none", "--port", "0")
    assert result.returncode == 1
    assert "--password-file" in one_line_error(result)


def test_password_from_environment_and_file_newline(cli, tmp_path, credentials):
    """TLSPYO_PASSWORD works, and the trailing newline of a password file is
    not part of the password: the two agree."""
    secret = "environment-secret"
    env = {**cli.env, "TLSPYO_PASSWORD": secret}
    pw_file = tmp_path / "pw"
    pw_file.write_text(secret + "\r\n")
    port_file = tmp_path / "port"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = cli.start("relay", "--address", "127.0.0.1", "--port", "0", "--port-file",
                         port_file, "--directory", credentials, env=env, stdout=out, stderr=err)
    port = int(wait_for_file(port_file, proc))
    try:
        result = cli.run("send", "--port", port, "--password-file", pw_file, "--directory",
                         credentials, "--group", "g", "--timeout", "10", "1")
        assert result.returncode == 0, result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_password_never_printed(cli, tmp_path, password, credentials):
    """Not in the relay's output (verbose, with a refused and an accepted
    endpoint), not in the clients', and not in the relay's argv."""
    relay = start_relay(cli, tmp_path, password[1], "--directory", credentials)
    outputs = []
    try:
        with open(f"/proc/{relay.proc.pid}/cmdline", "rb") as f:
            assert password[0].encode() not in f.read()
        wrong = tmp_path / "wrong"
        wrong.write_text("not-" + password[0] + "\n")
        refused = cli.run("send", "--port", relay.port, "--password-file", wrong,
                          "--directory", credentials, "--group", "g", "--timeout", "5", "1")
        assert refused.returncode == 1
        line = one_line_error(refused)
        assert "password" in line and "--password-file" in line
        outputs += [refused.stdout, refused.stderr]
        for verbose in ([], ["--verbose"]):
            ok = cli.run("send", *client_args(relay, password, credentials), *verbose,
                         "--group", "g", "1")
            assert ok.returncode == 0, ok.stderr
            outputs += [ok.stdout, ok.stderr]
    finally:
        code, out, err = relay.stop()
    assert code == 0, err
    assert "Refused" in err and "authentication" in err
    assert "connected, in groups g" in err
    outputs += [out, err]
    for text in outputs:
        assert password[0] not in text
        assert wrong.read_text().strip() not in text


def test_stop_closes_connections(cli, tmp_path, password, credentials):
    relay = start_relay(cli, tmp_path, password[1], "--directory", credentials)
    receiver = cli.start("receive", *client_args(relay, password, credentials), "--group", "g")
    try:
        wait_until(lambda: "connected, in groups g" in relay.err_path.read_text())
        code, _, err = relay.stop()
        assert code == 0, err
        assert "closing 1 connection" in err
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.communicate(timeout=20)
        assert receiver.returncode == 0


def test_quick_start(cli, tmp_path):
    """The README's four lines, with only what a test needs added: a free
    port on loopback instead of 2096."""
    env = {**cli.env, "HOME": str(tmp_path), "TLSPYO_PASSWORD": "VerySecurePassword"}
    del env["XDG_DATA_HOME"]
    assert cli.run("credentials", "generate", env=env).returncode == 0
    assert (tmp_path / ".local/share/tlspyo/credentials/key.pem").exists()
    port_file = tmp_path / "port"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        relay = cli.start("relay", "--address", "127.0.0.1", "--port", "0",
                          "--port-file", port_file, env=env, stdout=out, stderr=err)
    try:
        port = wait_for_file(port_file, relay)
        sent = cli.run("send", "--port", port, "--group", "consumers",
                       '"I HAVE BEEN BROADCAST"', env=env)
        assert sent.returncode == 0, sent.stderr
        received = cli.run("receive", "--port", port, "--group", "consumers", "--count", "1",
                           env=env)
        assert received.returncode == 0, received.stderr
        assert received.stdout == '"I HAVE BEEN BROADCAST"\n'
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=20) == 0
    assert "VerySecurePassword" not in (tmp_path / "out").read_text() + (tmp_path / "err").read_text()


def hash_password(cli, password_file):
    result = cli.run("credentials", "hash-password", "--password-file", password_file,
                     "--rounds", "10000")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_config_users(cli, tmp_path, password, credentials):
    """A relay with users and no shared password: the config's users are
    applied, the shared password is refused with a reason, and the relay
    logs the refusal."""
    worker_password = tmp_path / "worker-password"
    worker_password.write_text("the worker's password\n")
    config = write_config(tmp_path, {
        "address": "127.0.0.1",
        "port": 0,
        "security": "none",
        "users": {"worker": {"password_hash": hash_password(cli, worker_password),
                             "rights": {"samples": ["produce"], "*": ["join"]}}},
    })
    port_file = tmp_path / "port"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        # No --password-file and no $TLSPYO_PASSWORD: users only.
        proc = cli.start("relay", "--config", config, "--port-file", port_file, "--verbose",
                         stdout=out, stderr=err)
    port = int(wait_for_file(port_file, proc))
    try:
        refused = cli.run("send", "--port", port, "--password-file", password[1],
                          "--security", "none", "--timeout", "10", "--group", "samples", "1")
        assert refused.returncode == 1
        assert "no shared password" in one_line_error(refused)
    finally:
        code, _, _ = stop(proc)
    err_text = (tmp_path / "err").read_text()
    assert code == 0, err_text
    assert "no shared password" in err_text
    assert password[0] not in err_text


def test_config_limits(cli, tmp_path, password, credentials):
    """The config's limits are applied: one connection per address here, so
    a second client is refused with the limit's name while the first one
    stays."""
    config = write_config(tmp_path, {
        "address": "127.0.0.1",
        "port": 0,
        "security": "none",
        "limits": {"max_connections_per_address": 1},
    })
    relay = start_relay(cli, tmp_path, password[1], "--config", config)
    base = ("--port", relay.port, "--password-file", password[1], "--security", "none",
            "--timeout", "10")
    receiver = cli.start("receive", *base, "--group", "held")
    try:
        wait_until(lambda: "connected, in groups held" in relay.err_path.read_text())
        refused = cli.run("send", *base, "--group", "other", "1")
        assert refused.returncode == 1
        assert "max-connections-per-address" in one_line_error(refused)
        assert receiver.poll() is None
    finally:
        stop(receiver)
        code, _, err = relay.stop()
    assert code == 0, err
    assert "max-connections-per-address" in err


def stats_lines(text):
    """The relay's stats messages, from "stats: " on."""
    return ["stats: " + line.split(": stats: ", 1)[1] for line in text.splitlines()
            if ": stats: " in line]


def test_stats_and_drops_are_logged(cli, tmp_path, password):
    """--stats-interval (fractional, and winning over the config's key) logs
    the relay's statistics with a summary per group; an object pushed out of
    a full queue (max_consumables 1) is logged with its group and reason, and
    shows in the stats."""
    config = write_config(tmp_path, {
        "security": "none",
        "groups": {"bounded": {"max_consumables": 1}},
        "stats_interval": 86400,
    })
    relay = start_relay(cli, tmp_path, password[1], "--config", config,
                        "--stats-interval", "0.2")
    base = ("--port", relay.port, "--password-file", password[1], "--security", "none",
            "--timeout", "10", "--group", "bounded")
    try:
        wait_until(lambda: stats_lines(relay.err_path.read_text()))
        first = stats_lines(relay.err_path.read_text())[0]
        assert first.startswith("stats: 0 connections, 0 queued (0 bytes), 0 in flight, "
                                "0 dropped, "), first
        assert "; group “bounded”: 0 members, 0 queued (0 bytes), 0 in flight, 0 credit, " \
               "0 dropped" in first

        ok = cli.run("send", *base, "--produce", '"first"')
        assert ok.returncode == 0, ok.stderr
        assert "Dropped" not in relay.err_path.read_text()
        ok = cli.run("send", *base, "--produce", '"second"')
        assert ok.returncode == 0, ok.stderr

        wait_until(lambda: "Dropped 1 object for group “bounded”: queue of group 'bounded' "
                           "is full (max_consumables 1)" in relay.err_path.read_text())
        # The oldest went; the stats show the one left and the drop.
        wait_until(lambda: any("1 queued" in line and "1 dropped" in line and
                               "group “bounded”: 0 members, 1 queued" in line
                               for line in stats_lines(relay.err_path.read_text())))
        received = cli.run("receive", *base, "--notify", "1", "--count", "1")
        assert received.returncode == 0, received.stderr
        assert received.stdout == '"second"\n'
    finally:
        code, out, err = relay.stop()
    assert code == 0, err
    assert password[0] not in out + err


def test_stats_interval_from_config(cli, tmp_path, password):
    config = write_config(tmp_path, {"security": "none", "stats_interval": 0.2})
    relay = start_relay(cli, tmp_path, password[1], "--config", config)
    try:
        wait_until(lambda: stats_lines(relay.err_path.read_text()))
    finally:
        code, _, err = relay.stop()
    assert code == 0, err


def test_no_stats_by_default(cli, tmp_path, password):
    """--stats-interval 0 turns the stats off, overriding the config's
    key: no line, even after several of the key's intervals."""
    config = write_config(tmp_path, {"security": "none", "stats_interval": 0.1})
    relay = start_relay(cli, tmp_path, password[1], "--config", config,
                        "--stats-interval", "0")
    try:
        ok = cli.run("send", "--port", relay.port, "--password-file", password[1],
                     "--security", "none", "--timeout", "10", "--group", "g", "1")
        assert ok.returncode == 0, ok.stderr
        time.sleep(0.5)
    finally:
        code, _, err = relay.stop()
    assert code == 0, err
    assert "Stopping on SIGTERM" in err
    assert not stats_lines(err)


@pytest.mark.parametrize("value", ["0.05", "-1", "abc", "1e9", "nan", ""])
def test_bad_stats_interval(cli, password, value):
    result = cli.run("relay", "--stats-interval", value, "--password-file", password[1],
                     "--port", "0", "--address", "127.0.0.1")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "--stats-interval" in line and "0.1 to 86400" in line
