"""The README stays true: it documents every config key and secret, and its
test command is the one CI runs."""

from __future__ import annotations

import re

from components.config import SECRETS
from tests.conftest import HOMELAB_STACK, ROOT
from tests.private_venv import private_venv
from tests.readme_config import documented_keys, model_keys

README = (ROOT / "README.md").read_text()


def test_readme_configuration_table_has_one_row_per_config_key():
    """Parsed row by row: a key missing from the table, a row for a key the
    program does not have, or a key listed twice all fail."""
    documented, keys = documented_keys(), model_keys()
    assert sorted(set(keys) - set(documented)) == [], "config keys missing from the README's Configuration table"
    assert sorted(set(documented) - set(keys)) == [], "README Configuration rows for keys the config does not have"
    assert sorted(key for key in set(documented) if documented.count(key) > 1) == [], "keys documented twice"


def test_the_configuration_page_has_one_row_per_config_key_too():
    """docs/configuration.md, the long form of the README's table."""
    documented, keys = documented_keys((ROOT / "docs" / "configuration.md").read_text()), model_keys()
    assert sorted(set(keys) - set(documented)) == [], "config keys missing from docs/configuration.md"
    assert sorted(set(documented) - set(keys)) == [], "docs/configuration.md rows for keys the config does not have"
    assert sorted(key for key in set(documented) if documented.count(key) > 1) == [], "keys documented twice"


def test_the_readme_is_short_enough_to_read():
    assert len(README.splitlines()) <= 250, "README.md is for users: keep it under about 250 lines, move detail into docs/"


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
    """`./setup.sh homelab render` in a copy of the repository (it installs
    into .venv and writes render/): the checkout itself is never written.
    The copy's .venv sees this interpreter's packages, so the install finds
    every package already there and needs no network."""
    import os
    import shutil
    import subprocess

    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(".git", ".venv", "render", "state", "mutants", "__pycache__",
                                                                             "Pulumi.*.yaml"))
    shutil.copy2(HOMELAB_STACK, copy / HOMELAB_STACK.name)  # the checkout's own stack files are the user's
    private_venv(copy / ".venv")
    before = sorted(path.name for path in ROOT.iterdir())
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PULUMI_", "PROXMOX_", "KUBECONFIG", "TALOSCONFIG"))}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if "pulumi" not in part)
    result = subprocess.run(["bash", "setup.sh", "homelab", "render"], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (copy / "render" / "homelab" / "graph.mmd").read_text().startswith("flowchart TD")
    assert (copy / "render" / "homelab" / "host" / "plan.txt").exists()
    assert "installing the Pulumi CLI" not in result.stdout
    assert sorted(path.name for path in ROOT.iterdir()) == before, "setup.sh wrote into the checkout"


def test_readme_starts_with_contents_that_link_every_section():
    contents = README.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    titles = re.findall(r"(?m)^## (.+)$", README)
    for title in titles:
        if title != "Contents":
            assert f"[{title}]" in contents, f"the Contents list has no entry for {title!r}"


def test_the_readmes_minimal_stack_validates_and_renders(tmp_path):
    """The minimal stack for a new node, as the README prints it."""
    from components.config import load_stack_file

    text = README.split("## A minimal stack for a new node", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "Pulumi.gpu-node.yaml"
    path.write_text(text)
    cfg = load_stack_file(path)
    assert cfg.gpus[0].model == "ga10x" and cfg.gpus[0].all_functions


def test_readme_moved_docs_exist_and_step_1_says_what_to_do_with_the_reference_stack():
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / link).is_file(), link
    step = README.split("## Quick start", 1)[1].split("\n2. ", 1)[0]
    assert "rename it" in step and "second node" in step and "Pulumi.homelab.yaml" in step
