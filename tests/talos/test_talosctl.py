"""The talosctl transport and the parsers for what it prints, against a
stand-in talosctl on PATH that records its arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.facts.talos import parse_schematic, parse_server_version
from components.talos.talosctl import (
    TalosctlError,
    extensions_args,
    run_talosctl,
    version_args,
)
from tests.talos.conftest import TALOSCONFIG, FakeTalosctl

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"


def test_talosconfig_goes_to_a_0600_file_that_is_removed(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.12.4", SID)
    out = run_talosctl(version_args("192.168.8.123", "192.168.8.99"), talosconfig=TALOSCONFIG)
    assert parse_server_version(out) == "v1.12.4"
    [call] = fake_talosctl.calls()
    assert call["talosconfig_mode"] == "0o600"
    assert call["talosconfig_has_contexts"] is True
    assert not Path(call["talosconfig"]).exists()
    assert call["argv"][:2] == ["--talosconfig", call["talosconfig"]]
    assert call["argv"][2:] == ["version", "--nodes", "192.168.8.123", "--endpoints", "192.168.8.99"]


def test_talosconfig_file_is_removed_when_talosctl_fails(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.12.4", SID)
    fake_talosctl.fail_next("rpc error: connection refused")
    with pytest.raises(TalosctlError, match="failed \\(exit 1\\): rpc error: connection refused"):
        run_talosctl(version_args("192.168.8.123", "192.168.8.99"), talosconfig=TALOSCONFIG)
    [call] = fake_talosctl.calls()
    assert not Path(call["talosconfig"]).exists()


def test_failure_output_that_echoes_a_credential_is_masked(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.12.4", SID)
    fake_talosctl.fail_next("bad certificate Q0xJRU5ULUtFWS1TVEFORC1JTg==")
    with pytest.raises(TalosctlError) as error:
        run_talosctl(["version"], talosconfig=TALOSCONFIG)
    assert "Q0xJRU5ULUtFWS1TVEFORC1JTg==" not in str(error.value)
    assert "bad certificate ***" in str(error.value)


def test_missing_talosctl_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TalosctlError, match="talosctl is not installed \\(not found on PATH\\)"):
        run_talosctl(["version"], talosconfig=TALOSCONFIG)
    assert [name for name in os.listdir(tmp_path)] == []


@pytest.mark.parametrize("args", [["reset", "--nodes", "x"], ["upgrade", "--wipe-mode", "all"], ["upgrade", "--preserve=false"]])
def test_wiping_commands_are_refused_before_talosctl_runs(fake_talosctl: FakeTalosctl, args: list[str]) -> None:
    with pytest.raises(TalosctlError, match="never wipes"):
        run_talosctl(args)
    assert fake_talosctl.calls() == []


def test_schematic_is_read_from_the_schematic_extension(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.12.4", SID)
    assert parse_schematic(run_talosctl(extensions_args("192.168.8.123", "192.168.8.99"), talosconfig=TALOSCONFIG)) == SID


def test_node_not_from_the_factory_has_no_schematic(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.11.6", None)
    assert parse_schematic(run_talosctl(extensions_args("192.168.8.123", "192.168.8.99"), talosconfig=TALOSCONFIG)) is None


def test_server_version_is_not_confused_with_client_version() -> None:
    out = "Client:\n\tTag:         v1.13.9\nServer:\n\tNODE:        192.168.8.123\n\tTag:         v1.11.6\n\tEnabled:     RBAC\n"
    assert parse_server_version(out) == "v1.11.6"
    with pytest.raises(ValueError, match="no Server section"):
        parse_server_version("Client:\n\tTag:         v1.13.9\n")
