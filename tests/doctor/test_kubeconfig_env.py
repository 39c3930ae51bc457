"""doctor and a bad KUBECONFIG: treated as a bad TALOSCONFIG is (exit 2, one
line naming the variable, the path and the problem), where kubectl itself
would fail on a folder or quietly fall back to localhost:8080 when no file of
the list exists (client-go tools/clientcmd/loader.go)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tools.doctor.cli import EXIT_USAGE, kubeconfig_problem, main


def doctor(monkeypatch: pytest.MonkeyPatch, kubeconfig: str) -> tuple[int, str, str]:
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    monkeypatch.delenv("TALOSCONFIG", raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = main(["--stack", "homelab", "--layer", "kubernetes"], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_a_missing_kubeconfig_file_is_a_usage_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = doctor(monkeypatch, str(missing))
    assert (code, out) == (EXIT_USAGE, "")
    assert err.startswith(f"doctor: cannot read KUBECONFIG {missing}: No such file or directory"), err
    assert "localhost:8080" in err and len(err.strip().splitlines()) == 1


def test_a_folder_as_kubeconfig_is_a_usage_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = doctor(monkeypatch, str(tmp_path))
    assert (code, out) == (EXIT_USAGE, "")
    assert err.strip() == f"doctor: cannot read KUBECONFIG {tmp_path}: is a folder, not a kubeconfig file"


def test_a_list_is_read_as_kubectl_reads_it(tmp_path: Path) -> None:
    good = tmp_path / "config"
    good.write_text("apiVersion: v1\nkind: Config\n")
    missing = tmp_path / "missing"
    assert kubeconfig_problem(None) is None and kubeconfig_problem("") is None
    assert kubeconfig_problem(f"{missing}:{good}") is None  # kubectl skips a missing file of the list
    assert "none of its 2 files" in (kubeconfig_problem(f"{missing}:{tmp_path / 'other'}") or "")
    assert "is a folder" in (kubeconfig_problem(f"{good}:{tmp_path}") or "")  # kubectl fails on a folder anywhere in the list
