"""components.cli.run, the edge every tool's __main__ goes through: Ctrl-C
and an unforeseen error are one line on stderr and an exit code, never a
traceback; PTG_DEBUG=1 shows the traceback of an unforeseen error."""

from __future__ import annotations

import pytest

from components.cli import EXIT_INTERNAL, EXIT_INTERRUPTED, run


def test_the_exit_code_of_main_is_returned():
    assert run("tool", lambda: 5) == 5


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run("doctor", interrupted) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "\ndoctor: interrupted\n"


def test_an_unforeseen_error_is_one_line_saying_how_to_see_more(capsys, monkeypatch):
    monkeypatch.delenv("PTG_DEBUG", raising=False)

    def broken() -> int:
        return {}["missing"]

    assert run("render", broken) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("render: unexpected error (KeyError: 'missing'); this is a bug: rerun with PTG_DEBUG=1")


def test_ptg_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("PTG_DEBUG", "1")

    def broken() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run("talos", broken)
