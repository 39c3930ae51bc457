"""Shared fixtures: the reference stack's config and a mock-engine runner for
the whole program (__main__.py)."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest

from components.config import read_stack_file
from tests.harness import ProgramRun, run_program

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"

# Plain stand-ins for the stack's secrets: the tests check they stay secret.
FAKE_SECRETS = {
    "proxmoxApiToken": "root@pam!pulumi=00000000-0000-0000-0000-000000000000",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n",
    "talosMachineSecrets": "cluster:\n  id: fake\n",
    "talosClientConfiguration": "context: homelab\ncontexts:\n  homelab:\n    ca: Zg==\n    crt: Zg==\n    key: Zg==\n",
    "kubeconfig": "apiVersion: v1\nkind: Config\nclusters: []\n",
    "jellyfinApiKey": "0123456789abcdef0123456789abcdef",
}


def stack_file_config(stack: str = "homelab") -> dict[str, Any]:
    """Top-level config of Pulumi.<stack>.yaml, namespace stripped."""
    return read_stack_file(ROOT / f"Pulumi.{stack}.yaml")


@pytest.fixture
def homelab() -> dict[str, Any]:
    return copy.deepcopy(stack_file_config("homelab"))


def run_main(config: dict[str, Any], secrets: dict[str, str] | None = None, **kwargs: Any) -> ProgramRun:
    """Run __main__.py under the mock engine with ``config``."""
    return run_program(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
        config,
        secret_keys=FAKE_SECRETS if secrets is None else secrets,
        **kwargs,
    )


def reference(*parts: str) -> Path:
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared upstream reference data), which is not present")
    return path
