# SPDX-License-Identifier: MIT
"""The command as a whole: dispatch, --help of every subcommand, exit codes,
the one-line error contract, and no way to put a password in argv."""

import re

import pytest

from conftest import one_line_error

SUBCOMMANDS = [
    ("credentials", "generate"),
    ("credentials", "show"),
    ("credentials", "serve"),
    ("credentials", "fetch"),
    ("relay",),
    ("send",),
    ("receive",),
]


def test_no_command_is_a_usage_error(cli):
    result = cli.run()
    assert result.returncode == 2
    assert result.stdout == ""
    for command in SUBCOMMANDS:
        assert " ".join(command) in result.stderr


def test_help_lists_every_subcommand(cli):
    for flag in ("--help", "-h", "help"):
        result = cli.run(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage:\n  tlspyo COMMAND")
        for command in SUBCOMMANDS:
            assert re.search(r"^  " + re.escape(" ".join(command)) + r" +\S", result.stdout, re.M)


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_subcommand_help(cli, command):
    result = cli.run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage:\n  tlspyo {' '.join(command)} [OPTION…]")
    assert "--help" in result.stdout
    # `tlspyo help X` is `tlspyo X --help`.
    assert cli.run("help", *command).stdout == result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_unknown_option_is_a_usage_error(cli, command):
    result = cli.run(*command, "--no-such-option")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "--no-such-option" in line
    assert f"tlspyo {' '.join(command)} --help" in line


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_stray_argument_is_a_usage_error(cli, command):
    # send takes exactly one object; the others take none.
    args = ["x", "y"] if command == ("send",) else ["stray"]
    extra = ["--group", "g"] if command == ("send",) else []
    result = cli.run(*command, *extra, *args)
    assert result.returncode == 2, result.stderr
    one_line_error(result)


def test_unknown_command(cli):
    for args in (["frobnicate"], ["credentials", "frobnicate"]):
        result = cli.run(*args)
        assert result.returncode == 2
        line = one_line_error(result)
        assert "“frobnicate”" in line and "--help" in line


def test_credentials_alone_lists_its_commands(cli):
    result = cli.run("credentials")
    assert result.returncode == 2
    for name in ("generate", "show", "serve", "fetch"):
        assert re.search(r"^  " + name + r" +\S", result.stderr, re.M)
    result = cli.run("credentials", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage:\n  tlspyo credentials COMMAND")


def test_version(cli):
    result = cli.run("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"tlspyo \d+\.\d+\.\d+ \(tlspyo-glib\)\n", result.stdout)


@pytest.mark.parametrize("command", [("relay",), ("send",), ("receive",)], ids=" ".join)
def test_no_password_option(cli, command):
    """The process list shows argv, so no option takes the password itself."""
    help_text = cli.run(*command, "--help").stdout
    assert "--password-file" in help_text
    assert not re.search(r"--password(?!-file)", help_text)
    result = cli.run(*command, "--password", "secret")
    assert result.returncode == 2
    assert "--password" in one_line_error(result)


@pytest.mark.parametrize("command", [("relay",), ("send", "--group", "g", "1"),
                                     ("receive", "--group", "g")], ids=lambda c: c[0])
def test_missing_password_says_how_to_give_one(cli, command, tmp_path):
    result = cli.run(*command, "--security", "none", "--port", "1")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "--password-file" in line and "TLSPYO_PASSWORD" in line


@pytest.mark.parametrize("args", [
    ("relay", "--port", "70000"),
    ("relay", "--port", "12abc"),
    ("relay", "--security", "ssl"),
    ("relay", "--address", "localhost"),
    ("send", "--group", "g", "--port", "0", "1"),
    ("send", "--group", "g", "--timeout", "-1", "1"),
    ("send", "--group", "g", "--type", "a{", "[]"),
    ("send", "--group", "g", "--type", "a*", "[]"),
    ("send", "--group", "g", "--broadcast", "--produce", "1"),
    ("send", "--group", "g", "--produce", "0", "1"),
    ("send", "--group", "g", "--produce=-2", "1"),
    ("send", "1"),
    ("receive",),
    ("receive", "--group", "g", "--timeout", "0"),
    ("receive", "--group", "g", "--notify", "5", "--count", "2"),
    ("receive", "--group", "g", "--notify", "2", "--all"),
    ("credentials", "generate", "--key-type", "dsa"),
    ("credentials", "generate", "--days", "0"),
    ("credentials", "generate", "--common-name", ""),
    ("credentials", "serve"),
    ("credentials", "fetch"),
    ("credentials", "fetch", "--port", "1", "--fingerprint", "AB:CD"),
], ids=lambda a: " ".join(a))
def test_bad_values_are_usage_errors(cli, args):
    result = cli.run(*args, env={**cli.env, "TLSPYO_PASSWORD": "x"})
    assert result.returncode == 2, result.stderr
    one_line_error(result)
