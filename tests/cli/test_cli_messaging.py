# SPDX-License-Identifier: MIT
"""tlspyo send and receive against a TLS relay: broadcast and produce, JSON
in and out, --type, standard input, and the exit codes of both."""

import json
import signal
import socket
import time

import pytest

from conftest import TIMEOUT, client_args, one_line_error, wait_until


@pytest.fixture
def send(cli, relay, password, credentials):
    def run(*args, **kwargs):
        return cli.run("send", *client_args(relay, password, credentials), *args, **kwargs)
    return run


@pytest.fixture
def receive(cli, relay, password, credentials):
    def run(*args, **kwargs):
        return cli.run("receive", *client_args(relay, password, credentials), *args, **kwargs)
    return run


@pytest.fixture
def start_receive(cli, relay, password, credentials):
    procs = []

    def start(*args):
        proc = cli.start("receive", *client_args(relay, password, credentials), *args)
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def ok(result):
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result


@pytest.mark.parametrize("sent, printed", [
    ('{"a": [1, 2.5, "x", null, true]}', '{"a":[1,2.5,"x",null,true]}'),
    ('"héllo ☃ 😀"', '"héllo ☃ 😀"'),
    ('"tab\\tescape\\u001b[0m"', '"tab\\tescape\\u001b[0m"'),
    ("[]", "[]"),
    ("{}", "{}"),
    ("-5", "-5"),
    ("1e3", "1000.0"),
])
def test_broadcast_round_trip(send, receive, group, sent, printed):
    """The relay keeps a group's last broadcast for endpoints that join
    later, so a receiver started after the sender still gets it."""
    args = ["--", sent] if sent.startswith("-") else [sent]
    ok(send("--group", group, *args))
    result = ok(receive("--group", group, "--count", "1"))
    assert result.stdout == printed + "\n"


def test_broadcast_reaches_every_member(send, start_receive, relay, group):
    receivers = [start_receive("--group", group, "--count", "2") for _ in range(2)]
    wait_until(lambda: relay.log().count(f"in groups {group}") >= 2)
    ok(send("--group", group, '"one"'))
    ok(send("--group", group, "--broadcast", '"two"'))
    for proc in receivers:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert out == '"one"\n"two"\n'


@pytest.mark.parametrize("type_, sent, printed", [
    ("d", "1", "1.0"),
    ("u", "5", "5"),
    ("y", "255", "255"),
    ("(sidb)", '["s", 3, 1.5, true]', '["s",3,1.5,true]'),
    ("a{is}", '{"1": "a", "-2": "b"}', '{"1":"a","-2":"b"}'),
    ("mi", "null", "null"),
    ("ay", "[0, 1, 255]", "[0,1,255]"),
    ("o", '"/org/example"', '"/org/example"'),
    ("v", '{"x": 1}', '{"x":1}'),
])
def test_type(send, receive, group, type_, sent, printed):
    ok(send("--group", group, "--type", type_, sent))
    assert ok(receive("--group", group, "--count", "1")).stdout == printed + "\n"


BAD_JSON = [
    (["{\"a\": 1,}"], ["the JSON argument", "line 1, column 9", "fix the JSON"]),
    (["[1, 2"], ["line 1, column 6"]),
    (["NaN"], ["line 1, column 1", "NaN"]),
    (["'single'"], ["double quotes"]),
    (["--type", "y", "[300]"], ["line 1, column 1"]),
    (["--type", "ay", "[1, 300]"], ["line 1, column 5", "$[1]", "from 0 to 255", "--type"]),
    (["--type", "(is)", "[1, 2]"], ["line 1, column 5", "$[1]", "expected a string"]),
    (["--type", "a{sv}", "[1]"], ["expected an object"]),
    (["--type", "o", '"not a path"'], ["object path"]),
]


@pytest.mark.parametrize("args, expected", BAD_JSON)
def test_bad_json_argument(send, group, args, expected):
    result = send("--group", group, *args)
    assert result.returncode == 2
    line = one_line_error(result)
    for part in expected:
        assert part in line


def test_bad_json_argument_sends_nothing(send, receive, group):
    for args, _ in BAD_JSON:
        assert send("--group", group, "--produce", *args).returncode == 2
        assert send("--group", group, *args).returncode == 2
    assert ok(receive("--group", group, "--all", "--timeout", "0.5")).stdout == ""


def test_produce_and_notify(send, receive, group):
    ok(send("--group", group, "--produce", '"a"'))
    ok(send("--group", group, "--produce", "2", '"b"'))
    ok(send("--group", group, "--produce=1", '"c"'))
    # Credit 2 takes the first two in FIFO order; the rest stays queued.
    assert ok(receive("--group", group, "--notify", "2", "--count", "2")).stdout == '"a"\n"b"\n'
    assert ok(receive("--group", group, "--all", "--count", "2")).stdout == '"b"\n"c"\n'
    assert ok(receive("--group", group, "--all", "--timeout", "0.5")).stdout == ""


def test_produced_objects_need_notify(send, receive, group):
    ok(send("--group", group, "--produce", '"queued"'))
    # Without --notify nothing produced is handed out, and a timeout
    # without --count is a normal end.
    assert ok(receive("--group", group, "--timeout", "0.5")).stdout == ""
    assert ok(receive("--group", group, "--notify", "1", "--count", "1")).stdout == '"queued"\n'


def test_stdin_one_object_per_line(send, receive, group):
    lines = '1\n\n  "two"  \r\n[3]\n{"four": 4}\n'
    ok(send("--group", group, "--produce", "-", input=lines))
    result = ok(receive("--group", group, "--notify", "4", "--count", "4"))
    assert result.stdout == '1\n"two"\n[3]\n{"four":4}\n'


def test_stdin_with_type(send, receive, group):
    ok(send("--group", group, "--produce", "--type", "(si)", "-", input='["a", 1]\n["b", 2]\n'))
    result = ok(receive("--group", group, "--all", "--count", "2"))
    assert result.stdout == '["a",1]\n["b",2]\n'


def test_stdin_bad_line_stops_with_its_position(send, receive, group):
    lines = '"first"\n"second"\n\n{"x": bad}\n"never"\n'
    result = send("--group", group, "--produce", "-", input=lines)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "standard input, line 4, column 7" in line
    assert "the 2 objects before it reached the relay" in line
    # What came before the bad line was delivered; nothing after it.
    assert ok(receive("--group", group, "--all", "--count", "2")).stdout == '"first"\n"second"\n'
    assert ok(receive("--group", group, "--all", "--timeout", "0.5")).stdout == ""


def test_stdin_line_not_fitting_type(send, group):
    result = send("--group", group, "--type", "i", "-", input="1\n2\n\"three\"\n")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "standard input, line 3, column 1" in line and "--type" in line


def test_receive_count_not_reached(send, receive, group):
    ok(send("--group", group, '"only one"'))
    start = time.monotonic()
    result = receive("--group", group, "--count", "2", "--timeout", "1")
    assert result.returncode == 1
    assert result.stdout == '"only one"\n'
    assert "received 1 of 2" in one_line_error(result)
    assert time.monotonic() - start < TIMEOUT


def test_receive_until_signal(send, start_receive, relay, group):
    proc = start_receive("--group", group, "--with-group")
    wait_until(lambda: f"in groups {group}" in relay.log())
    ok(send("--group", group, '{"n": 1}'))
    # The line is flushed as soon as it is printed.
    assert json.loads(proc.stdout.readline()) == {"group": group, "object": {"n": 1}}
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert out == ""


def test_receive_several_groups(send, start_receive, relay, group):
    other = group + "-other"
    proc = start_receive("--group", group, "--group", other, "--with-group", "--count", "2")
    wait_until(lambda: f"in groups {group},{other}" in relay.log())
    ok(send("--group", group, "1"))
    ok(send("--group", other, "2"))
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"group": group, "object": 1}, {"group": other, "object": 2}]


def test_join_another_group(send, receive, group):
    ok(send("--group", group, "--join", group + "-sender", '"x"'))
    assert ok(receive("--group", group, "--count", "1")).stdout == '"x"\n'


def test_unreachable_relay(cli, password, credentials, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for command in (["send", "--group", "g", "1"], ["receive", "--group", "g"]):
        start = time.monotonic()
        result = cli.run(*command, "--port", port, "--password-file", password[1],
                         "--directory", credentials, "--timeout", "1")
        assert result.returncode == 1
        line = one_line_error(result)
        assert "--timeout" in line and "--port" in line
        assert time.monotonic() - start < TIMEOUT


def test_wrong_relay_certificate(cli, relay, password, tmp_path):
    other = tmp_path / "other"
    assert cli.run("credentials", "generate", "--directory", other).returncode == 0
    result = cli.run("send", "--port", relay.port, "--password-file", password[1],
                     "--directory", other, "--group", "g", "--timeout", "5", "1")
    assert result.returncode == 1
    assert "certificate" in one_line_error(result)


def test_missing_endpoint_certificate(cli, relay, password, tmp_path):
    result = cli.run("receive", "--port", relay.port, "--password-file", password[1],
                     "--directory", tmp_path / "none", "--group", "g", "--timeout", "5")
    assert result.returncode == 1
    assert "tlspyo credentials fetch" in one_line_error(result)
