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
