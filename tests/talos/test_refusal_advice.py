"""Every refusal of a way from one Talos version to another that advises a
``talos.version`` value advises one the config validation accepts (a node on
another major release is not told to set its version)."""

from __future__ import annotations

import re

import pytest

from components.config.values import _talos_version
from components.talos.versions import PathRefused, upgrade_steps

VERSIONS = ["v1.6.7", "v1.8.4", "v1.9.6", "v1.11.6", "v1.12.3", "v1.13.4", "v1.13.9", "v1.13.10", "v1.14.0", "v2.0.0", "v2.1.3"]


@pytest.mark.parametrize("running", VERSIONS)
@pytest.mark.parametrize("target", VERSIONS)
def test_advised_versions_pass_the_config_validation(running: str, target: str) -> None:
    try:
        upgrade_steps(running, target)
    except PathRefused as error:
        message = str(error)
    else:
        return
    for advised in re.findall(r"set \S*talos\.version to (v\d+\.\d+\.\d+)", message, flags=re.IGNORECASE):
        _talos_version(advised)  # raises ValueError for a value the stack file could not hold
    for major in re.findall(r"add the latest v(\d+)\.\d+\.z to \S*talos\.upgradePath", message):
        assert major == "1", f"talos.upgradePath holds only releases of talos.version's major, v1: {message}"
    if running.startswith("v2"):
        assert "talos.version to v2" not in message and "cannot manage this node" in message, message
