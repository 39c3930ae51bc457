"""Values Proxmox, its provider or Talos would refuse later are refused when
the config is read, naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from components.config import ConfigError, parse_stack_config
from tests.conftest import stack_file_config


def refusal(change) -> str:
    raw = stack_file_config()
    change(raw)
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(raw)
    return str(raised.value)


def accepted(change) -> None:
    raw = stack_file_config()
    change(raw)
    parse_stack_config(raw)


def test_a_talos_patch_newer_than_the_table_is_refused_unless_allowed() -> None:
    text = refusal(lambda raw: raw["talos"].update(version="v1.12.99"))
    assert "proxmox-talos-gpu:talos.version = 'v1.12.99': newer than the latest v1.12 release this program knows (v1.12.11)" in text
    assert "talos.allowUnlistedVersion: true" in text
    assert "not a minor this program knows" in refusal(lambda raw: raw["talos"].update(version="v1.14.0"))
    accepted(lambda raw: raw["talos"].update(version="v1.13.10", allowUnlistedVersion=True))
    accepted(lambda raw: raw["talos"].update(version="v1.13.2"))


def test_a_cpu_type_the_provider_refuses_is_refused_with_the_nearest() -> None:
    text = refusal(lambda raw: raw["vm"].update(cpuType="Host"))
    assert "proxmox-talos-gpu:vm.cpuType = 'Host': not a CPU type the Proxmox provider accepts (case matters); did you mean 'host'?" in text
    accepted(lambda raw: raw["vm"].update(cpuType="x86-64-v2-AES"))
    accepted(lambda raw: raw["vm"].update(cpuType="custom-gpu"))


def test_memory_above_the_providers_maximum_is_refused() -> None:
    assert "vm.memoryMiB = 268435457" in refusal(lambda raw: raw["vm"].update(memoryMiB=268435457))
    accepted(lambda raw: raw["vm"].update(memoryMiB=268435456))


def test_a_username_without_a_realm_is_refused() -> None:
    def password(user):
        return lambda raw: raw["proxmox"].update(authMethod="password", username=user)
    text = refusal(password("root"))
    assert "proxmox-talos-gpu:proxmox.username = 'root': needs a realm: user@realm, e.g. root@pam" in text
    assert "proxmox.username" in refusal(password("root@"))
    accepted(password("admin@pve"))


def test_a_mapping_name_that_is_not_a_proxmox_config_id_is_refused() -> None:
    def named(name):
        return lambda raw: raw["gpus"][0].update(mappingName=name)
    assert "proxmox-talos-gpu:gpus[0].mappingName = 'g': not a Proxmox configuration id" in refusal(named("g"))
    assert "not a Proxmox configuration id" in refusal(named("1gpu"))
    accepted(named("gt"))
    text = refusal(lambda raw: raw["vm"].update(name="1node"))
    assert "gpus[0].mappingName = (missing): the default, '1node-gpu0' (from vm.name)" in text or "'1node-gpu0'" in text
