"""The README stays true: it documents every config key and secret, and its
test command is the one CI runs."""

from __future__ import annotations

import re

from pydantic import BaseModel

from components.config import SECRETS, StackConfig
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _leaf_keys(model: type[BaseModel]) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        alias = field.alias or name
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        candidates += [inner for candidate in candidates for inner in getattr(candidate, "__args__", ()) or ()]
        nested = [arg for arg in candidates if isinstance(arg, type) and issubclass(arg, BaseModel)]
        keys += _leaf_keys(nested[0]) if nested else [alias]
    return keys


def test_readme_documents_every_config_key():
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`[^`]*?([A-Za-z0-9]+)`", section)) | set(re.findall(r"\.([A-Za-z0-9]+)", section))
    missing = sorted({key for key in _leaf_keys(StackConfig) if key not in documented})
    assert missing == [], f"config keys missing from the README's Configuration section: {missing}"


def test_readme_documents_every_secret_and_its_environment_variable():
    section = README.split("## Secrets", 1)[1].split("\n## ", 1)[0]
    for spec in SECRETS:
        assert f"`{spec.key}`" in section, spec.key
        if spec.env:
            assert f"`{spec.env}`" in section, spec.env


def test_ci_runs_the_readme_test_command():
    assert "./test.sh" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\./test\.sh$", ci, re.MULTILINE), "CI must run the README's test command"


def test_setup_render_needs_no_pulumi_cli_and_no_credentials(tmp_path):
    import os
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith(("PULUMI_", "PROXMOX_", "KUBECONFIG", "TALOSCONFIG"))}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if "pulumi" not in part)
    result = subprocess.run(["bash", "setup.sh", "homelab", "render"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (ROOT / "render" / "homelab" / "graph.mmd").exists()
    assert "installing the Pulumi CLI" not in result.stdout
