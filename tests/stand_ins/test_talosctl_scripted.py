"""The talosctl stand-in's scripted mode (tests/stand_ins/talosctl_scripted.py,
used by the doctor's tests) parses the command line as talosctl does before
it answers: a flag talosctl refuses is refused with talosctl's words, even
when a rule would match; a modelled command answers from its rules, the last
response repeating; an unscripted one exits 99 naming itself."""

from __future__ import annotations

import subprocess

from tests.doctor.fakecli import answer, install, rule

VERSION = ["version", "-n", "192.168.8.123", "-e", "192.168.8.99"]


def talosctl(cli, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli.bin / "talosctl"), *args], env=cli.env(), capture_output=True, text=True, timeout=60)


def test_a_flag_talosctl_refuses_is_refused_before_any_rule(tmp_path):
    cli = install(tmp_path)
    cli.set_rules("talosctl", [rule([*VERSION, "--bogus"], answer("scripted"))])
    done = talosctl(cli, *VERSION, "--bogus")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "unknown flag: --bogus\n")
    assert [call["argv"] for call in cli.calls("talosctl")] == [[*VERSION, "--bogus"]], "every call is recorded"


def test_rules_answer_in_turn_and_the_last_repeats(tmp_path):
    cli = install(tmp_path)
    cli.set_rules("talosctl", [rule(VERSION, answer("first\n"), answer("", "down\n", rc=1))])
    first, second, third = (talosctl(cli, *VERSION) for _ in range(3))
    assert (first.returncode, first.stdout) == (0, "first\n")
    assert (second.returncode, second.stderr) == (1, "down\n") and (third.returncode, third.stderr) == (1, "down\n")
    other = talosctl(cli, "version", "-n", "10.0.0.1")
    assert other.returncode == 99 and "no canned answer for ['version', '-n', '10.0.0.1']" in other.stderr
