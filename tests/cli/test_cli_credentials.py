# SPDX-License-Identifier: MIT
"""tlspyo credentials generate/show/serve/fetch, including every refusal:
no overwrite without --force, no certificate written unless its fingerprint
is the one given or confirmed on a terminal."""

import hashlib
import os
import pty
import re
import ssl
import subprocess
import time

import pytest

from conftest import TIMEOUT, one_line_error, stop, wait_for_file

FINGERPRINT_RE = re.compile(r"^SHA-256 fingerprint: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$", re.M)


def fingerprint_of(pem_path):
    """Computed independently of the library: SHA-256 of the DER encoding."""
    der = ssl.PEM_cert_to_DER_cert(pem_path.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def printed_fingerprint(result):
    match = FINGERPRINT_RE.search(result.stdout)
    assert match, result.stdout
    return match.group(1)


def generate(cli, directory, *extra):
    result = cli.run("credentials", "generate", "--directory", directory, *extra)
    assert result.returncode == 0, result.stderr
    return result


def test_generate_writes_key_and_certificate(cli, tmp_path):
    directory = tmp_path / "creds"
    result = generate(cli, directory)
    key, cert = directory / "key.pem", directory / "certificate.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "PRIVATE KEY" in key.read_text()
    assert f"Private key: {key}" in result.stdout
    assert f"Certificate: {cert}" in result.stdout
    assert printed_fingerprint(result) == fingerprint_of(cert)
    assert "--server-identity" not in result.stdout


def test_generate_default_folder_and_show(cli, env, home):
    default = home / "data" / "tlspyo" / "credentials"
    result = cli.run("credentials", "generate")
    assert result.returncode == 0, result.stderr
    assert (default / "certificate.pem").exists()

    shown = cli.run("credentials", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"Folder: {default}\n" in shown.stdout
    assert printed_fingerprint(shown) == printed_fingerprint(result)
    assert "Subject: CN=default" in shown.stdout
    assert re.search(r"^Valid until: \d{4}-\d\d-\d\dT", shown.stdout, re.M)
    assert "this is a relay's folder" in shown.stdout


def test_generate_refuses_to_overwrite_without_force(cli, tmp_path):
    directory = tmp_path / "creds"
    first = generate(cli, directory)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    result = cli.run("credentials", "generate", "--directory", directory)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "exists already" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before

    forced = generate(cli, directory, "--force")
    assert printed_fingerprint(forced) != printed_fingerprint(first)
    assert printed_fingerprint(forced) == fingerprint_of(directory / "certificate.pem")


def test_generate_options(cli, tmp_path):
    directory = tmp_path / "rsa"
    result = generate(cli, directory, "--key-type", "rsa", "--days", "30",
                      "--common-name", "relay.example")
    assert "Endpoints must pass --server-identity relay.example" in result.stdout
    shown = cli.run("credentials", "show", "--directory", directory)
    assert "Subject: CN=relay.example" in shown.stdout
    # A 3072-bit RSA key in PEM is about 2.4 KB, a P-256 one about 240 bytes.
    assert len((directory / "key.pem").read_bytes()) > 1500
    valid_until = re.search(r"^Valid until: (\d{4})-", shown.stdout, re.M)
    assert valid_until and int(valid_until.group(1)) <= time.gmtime().tm_year + 1


def test_generate_interactive(cli, tmp_path):
    directory = tmp_path / "asked"
    # A bad key type is asked again; empty answers take the defaults.
    answers = f"{directory}\nmy-relay\ndsa\necdsa\n\n"
    result = cli.run("credentials", "generate", "--interactive", input=answers)
    assert result.returncode == 0, result.stderr
    assert "Key type, ecdsa or rsa [ecdsa]: " in result.stdout
    assert "Days the certificate stays valid [3650]: " in result.stdout
    assert "“dsa” does not work here" in result.stdout
    assert (directory / "key.pem").exists()
    assert "Subject: CN=my-relay" in cli.run("credentials", "show", "--directory", directory).stdout

    before = (directory / "certificate.pem").read_bytes()
    declined = cli.run("credentials", "generate", "--interactive", input=f"{directory}\n\n\n\nn\n")
    assert declined.returncode == 1
    assert "nothing was written" in declined.stderr
    assert (directory / "certificate.pem").read_bytes() == before

    accepted = cli.run("credentials", "generate", "--interactive", input=f"{directory}\n\n\n\ny\n")
    assert accepted.returncode == 0, accepted.stderr
    assert (directory / "certificate.pem").read_bytes() != before

    ended = cli.run("credentials", "generate", "--interactive", input="")
    assert ended.returncode == 1
    assert "input ended" in one_line_error(ended)


def test_show_without_certificate(cli, tmp_path):
    result = cli.run("credentials", "show", "--directory", tmp_path / "empty")
    assert result.returncode == 1
    assert f"Folder: {tmp_path / 'empty'}" in result.stdout
    line = one_line_error(result)
    assert "tlspyo credentials generate" in line and "tlspyo credentials fetch" in line


def test_show_endpoint_folder_and_mismatched_key(cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(cli, a)
    generate(cli, b)
    endpoint = tmp_path / "endpoint"
    endpoint.mkdir()
    (endpoint / "certificate.pem").write_bytes((a / "certificate.pem").read_bytes())
    shown = cli.run("credentials", "show", "--directory", endpoint)
    assert shown.returncode == 0, shown.stderr
    assert "Private key: none" in shown.stdout
    assert printed_fingerprint(shown) == fingerprint_of(a / "certificate.pem")

    (a / "key.pem").write_bytes((b / "key.pem").read_bytes())
    broken = cli.run("credentials", "show", "--directory", a)
    assert broken.returncode == 1
    assert "does not belong" in one_line_error(broken)


@pytest.fixture
def server(cli, tmp_path):
    """`tlspyo credentials serve` on a free port, for one test."""
    directory = tmp_path / "relay"
    result = generate(cli, directory)
    port_file = tmp_path / "serve.port"
    proc = cli.start("credentials", "serve", "--address", "127.0.0.1", "--port", "0",
                     "--port-file", port_file, "--directory", directory)
    port = int(wait_for_file(port_file, proc))

    class Server:
        pass

    s = Server()
    s.port = port
    s.fingerprint = printed_fingerprint(result)
    s.certificate = directory / "certificate.pem"
    s.proc = proc
    yield s
    code, out, err = stop(proc)
    assert code == 0, err
    assert f"port {port}" in out and s.fingerprint in out
    assert not port_file.exists()


def fetch(cli, port, *extra, **kwargs):
    return cli.run("credentials", "fetch", "--host", "127.0.0.1", "--port", port, *extra, **kwargs)


def test_fetch_with_matching_fingerprint(cli, server, tmp_path):
    target = tmp_path / "endpoint"
    # Case and colons do not matter.
    given = server.fingerprint.replace(":", "").lower()
    result = fetch(cli, server.port, "--fingerprint", given, "--directory", target)
    assert result.returncode == 0, result.stderr
    written = target / "certificate.pem"
    assert fingerprint_of(written) == server.fingerprint
    assert f"Wrote {written}" in result.stdout
    assert "PRIVATE" not in written.read_text()

    # The same certificate again is fine; another one needs --force.
    again = fetch(cli, server.port, "--fingerprint", server.fingerprint, "--directory", target)
    assert again.returncode == 0, again.stderr
    assert "already holds this certificate" in again.stdout


def test_fetch_into_default_folder(cli, server, env, home):
    default = home / "data" / "tlspyo" / "credentials"
    other_home = home / "other-home"
    other_env = {**env, "HOME": str(other_home), "XDG_DATA_HOME": str(other_home / "data")}
    result = fetch(cli, server.port, "--fingerprint", server.fingerprint, env=other_env)
    assert result.returncode == 0, result.stderr
    assert fingerprint_of(other_home / "data" / "tlspyo" / "credentials" / "certificate.pem") \
        == server.fingerprint
    assert default != other_home


def test_fetch_refuses_wrong_fingerprint(cli, server, tmp_path):
    target = tmp_path / "endpoint"
    wrong = "00" * 32
    result = fetch(cli, server.port, "--fingerprint", wrong, "--directory", target)
    assert result.returncode == 1
    line = one_line_error(result)
    assert server.fingerprint in line and "nothing was written" in line
    assert not target.exists()


def test_fetch_without_fingerprint_off_terminal_refuses(cli, server, tmp_path):
    target = tmp_path / "endpoint"
    result = fetch(cli, server.port, "--directory", target, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "--fingerprint" in line and server.fingerprint in line and "nothing was written" in line
    assert not target.exists()


def fetch_on_terminal(cli, port, target, answer):
    """Runs fetch with a pseudo-terminal as stdin, answering the question."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([os.environ["TLSPYO_CLI"], "credentials", "fetch", "--host",
                                 "127.0.0.1", "--port", str(port), "--directory", str(target)],
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=cli.env, encoding="utf-8")
        os.write(master, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(slave)
        os.close(master)
    return proc.returncode, out, err


def test_fetch_trust_on_first_use(cli, server, tmp_path):
    target = tmp_path / "endpoint"
    code, out, err = fetch_on_terminal(cli, server.port, target, "n")
    assert code == 1
    assert server.fingerprint in out and "[y/N]" in out
    assert "nothing was written" in err
    assert not (target / "certificate.pem").exists()

    code, out, err = fetch_on_terminal(cli, server.port, target, "y")
    assert code == 0, err
    assert fingerprint_of(target / "certificate.pem") == server.fingerprint


def test_fetch_does_not_overwrite_without_force(cli, server, tmp_path):
    target = tmp_path / "endpoint"
    other = tmp_path / "other"
    generate(cli, other)
    target.mkdir()
    original = (other / "certificate.pem").read_bytes()
    (target / "certificate.pem").write_bytes(original)

    result = fetch(cli, server.port, "--fingerprint", server.fingerprint, "--directory", target)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "--force" in line and "nothing was written" in line
    assert (target / "certificate.pem").read_bytes() == original

    forced = fetch(cli, server.port, "--fingerprint", server.fingerprint, "--directory", target,
                   "--force")
    assert forced.returncode == 0, forced.stderr
    assert fingerprint_of(target / "certificate.pem") == server.fingerprint


def test_fetch_refuses_a_relay_folder(cli, server, tmp_path):
    relay_folder = tmp_path / "relay-folder"
    generate(cli, relay_folder)
    before = (relay_folder / "certificate.pem").read_bytes()
    result = fetch(cli, server.port, "--fingerprint", server.fingerprint,
                   "--directory", relay_folder, "--force")
    assert result.returncode == 1
    assert "key.pem" in one_line_error(result)
    assert (relay_folder / "certificate.pem").read_bytes() == before


def test_fetch_from_nothing(cli, tmp_path):
    # A port that was just free: connecting is refused at once.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = fetch(cli, port, "--fingerprint", "00" * 32, "--directory", tmp_path / "x",
                   "--timeout", "5")
    assert result.returncode == 1
    assert "tlspyo credentials serve" in one_line_error(result)
    assert time.monotonic() - start < TIMEOUT
    assert not (tmp_path / "x").exists()


def test_fetch_from_something_else(cli, tmp_path):
    """A server that sends junk is not a certificate server."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    result = fetch(cli, listener.getsockname()[1], "--fingerprint", "00" * 32,
                   "--directory", tmp_path / "x")
    thread.join(TIMEOUT)
    listener.close()
    assert result.returncode == 1
    assert "did not send a certificate" in one_line_error(result)
    assert not (tmp_path / "x").exists()


def test_serve_needs_a_certificate(cli, tmp_path):
    result = cli.run("credentials", "serve", "--port", "0", "--directory", tmp_path / "none")
    assert result.returncode == 1
    assert "tlspyo credentials generate" in one_line_error(result)


HASH_RE = re.compile(r"^pbkdf2-sha256\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


def test_hash_password(cli, tmp_path, env, password):
    """One line, salted (different each time), and exactly PBKDF2-HMAC-SHA256
    of the password: checked here with Python's own implementation."""
    import base64

    first = cli.run("credentials", "hash-password", "--password-file", password[1],
                    "--rounds", "10000")
    second = cli.run("credentials", "hash-password", "--password-file", password[1],
                     "--rounds", "10000")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stderr == ""
    line = first.stdout.strip()
    assert first.stdout == line + "\n"
    assert line != second.stdout.strip()
    match = HASH_RE.match(line)
    assert match, line
    rounds, salt, key = int(match.group(1)), base64.b64decode(match.group(2)), \
        base64.b64decode(match.group(3))
    assert rounds == 10000 and len(salt) == 16 and len(key) == 32
    assert hashlib.pbkdf2_hmac("sha256", password[0].encode(), salt, rounds) == key
    assert password[0] not in first.stdout + first.stderr

    # The default round count, and the password from the environment.
    from_env = cli.run("credentials", "hash-password",
                       env={**env, "TLSPYO_PASSWORD": "from the environment"})
    assert from_env.returncode == 0, from_env.stderr
    match = HASH_RE.match(from_env.stdout.strip())
    assert match and match.group(1) == "200000"
    assert hashlib.pbkdf2_hmac("sha256", b"from the environment", base64.b64decode(match.group(2)),
                               200000) == base64.b64decode(match.group(3))


def test_hash_password_refusals(cli, password):
    # Never from the command line, where the process list shows it.
    positional = cli.run("credentials", "hash-password", "my password")
    assert positional.returncode == 2
    line = one_line_error(positional)
    assert "never on the command line" in line and "my password" in line
    none = cli.run("credentials", "hash-password")
    assert none.returncode == 2
    assert "--password-file" in one_line_error(none)
    for rounds in ("5", "-1", "10000001"):
        bad = cli.run("credentials", "hash-password", "--password-file", password[1],
                      "--rounds", rounds)
        assert bad.returncode == 2, rounds
        assert "--rounds" in one_line_error(bad)
        assert password[0] not in bad.stdout + bad.stderr
