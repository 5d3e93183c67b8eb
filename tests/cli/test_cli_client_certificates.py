# SPDX-License-Identifier: MIT
"""tlspyo send and receive against a relay that requires client
certificates (mutual TLS): --user, --certificate and --private-key, and the
errors of each."""

import json

import pytest

from conftest import one_line_error, start_relay

# How long a refused command tries before giving up: the relay refuses in
# the TLS handshake, which the client only sees as a lost connection, so it
# retries until --timeout.
REFUSED_TIMEOUT = "2"


def generate(cli, directory):
    result = cli.run("credentials", "generate", "--directory", directory)
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def setup(cli, tmp_path_factory, password, credentials):
    """A TLS relay with one user, alice, whose certificate is pinned in its
    client-certificates folder; mallory has a certificate of her own that
    the relay does not know."""
    tmp = tmp_path_factory.mktemp("mtls")
    alice = generate(cli, tmp / "alice")
    mallory = generate(cli, tmp / "mallory")
    clients = tmp / "clients"
    clients.mkdir()
    (clients / "alice.pem").write_text((alice / "certificate.pem").read_text())
    alice_password = tmp / "alice-password"
    alice_password.write_text("alice's password\n")
    alice_password.chmod(0o600)
    hashed = cli.run("credentials", "hash-password", "--password-file", alice_password,
                     "--rounds", "10000")
    assert hashed.returncode == 0, hashed.stderr
    config = tmp / "relay.json"
    config.write_text(json.dumps({
        "client_certificates_dir": str(clients),
        "users": {"alice": {"password_hash": hashed.stdout.strip(),
                            "rights": {"*": ["join", "broadcast", "produce", "consume"]}}},
    }))
    relay = start_relay(cli, tmp, password[1], "--config", config, "--directory", credentials)
    yield {"relay": relay, "alice": alice, "mallory": mallory, "tmp": tmp,
           "alice_password": alice_password, "shared_password": password[1],
           "credentials": credentials}
    code, out, err = relay.stop()
    assert code == 0, err
    assert "alice's password" not in out + err


def base(setup, *, user="alice", password=None, timeout="10"):
    args = ["--port", setup["relay"].port, "--directory", setup["credentials"],
            "--password-file", password or setup["alice_password"], "--timeout", timeout]
    if user is not None:
        args += ["--user", user]
    return args


def certificate_args(directory):
    return ["--certificate", directory / "certificate.pem",
            "--private-key", directory / "key.pem"]


def ok(result):
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result


def test_round_trip_with_certificate(cli, setup, group):
    alice = certificate_args(setup["alice"])
    ok(cli.run("send", *base(setup), *alice, "--group", group, '{"from": "alice"}'))
    result = ok(cli.run("receive", *base(setup), *alice, "--group", group, "--count", "1"))
    assert result.stdout == '{"from":"alice"}\n'
    assert f"connected, in groups {group}" in setup["relay"].log()


def test_one_pem_with_certificate_and_key(cli, setup, group):
    both = setup["tmp"] / "alice-both.pem"
    both.write_text((setup["alice"] / "certificate.pem").read_text() +
                    (setup["alice"] / "key.pem").read_text())
    both.chmod(0o600)
    ok(cli.run("send", *base(setup), "--certificate", both, "--group", group, "1"))
    result = ok(cli.run("receive", *base(setup), "--certificate", both, "--group", group,
                        "--count", "1"))
    assert result.stdout == "1\n"


def test_no_certificate_is_refused(cli, setup, group):
    result = cli.run("send", *base(setup, timeout=REFUSED_TIMEOUT), "--group", group, "1")
    assert result.returncode == 1
    assert "--certificate" in one_line_error(result)


def test_unknown_certificate_is_refused(cli, setup, group):
    result = cli.run("send", *base(setup, timeout=REFUSED_TIMEOUT),
                     *certificate_args(setup["mallory"]), "--group", group, "1")
    assert result.returncode == 1
    assert "client-certificates folder" in one_line_error(result)


def test_certificate_of_another_user(cli, setup, group):
    """Alice's certificate without --user (the shared password): refused by
    the relay with a reason naming her, and a hint about --user."""
    result = cli.run("send", *base(setup, user=None, password=setup["shared_password"]),
                     *certificate_args(setup["alice"]), "--group", group, "1")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "'alice'" in line and "--user" in line


def test_certificate_without_key(cli, setup, group):
    result = cli.run("send", *base(setup), "--certificate", setup["alice"] / "certificate.pem",
                     "--group", group, "1")
    assert result.returncode == 1
    assert "--private-key" in one_line_error(result)


def test_unreadable_certificate(cli, setup, group):
    missing = setup["tmp"] / "missing.pem"
    result = cli.run("receive", *base(setup), "--certificate", missing, "--group", group)
    assert result.returncode == 1
    assert str(missing) in one_line_error(result)


@pytest.mark.parametrize("args, expected", [
    (["--private-key", "key.pem"], "without --certificate"),
    (["--certificate", "certificate.pem", "--security", "none"], "--certificate needs TLS"),
    (["--user", ""], "--user is empty"),
])
def test_usage_errors(cli, setup, group, args, expected):
    for command in (["send", "--group", group, "1"], ["receive", "--group", group]):
        result = cli.run(*command, *base(setup, user=None), *args)
        assert result.returncode == 2
        assert expected in one_line_error(result)
