"""Parsing the Talos secrets bundle and talosconfig into provider inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.talos.secrets import TalosSecretsError, parse_machine_secrets, parse_talosconfig, talosconfig_text
from tests.talos.conftest import MACHINE_SECRETS, TALOSCONFIG


def test_bundle_maps_crt_key_to_provider_cert_key() -> None:
    args = parse_machine_secrets(MACHINE_SECRETS)
    assert args["cluster"] == {"id": "Q2x1c3RlcklEc3RhbmRpbg==", "secret": "Y2x1c3Rlci1zZWNyZXQtc3RhbmQtaW4="}
    assert args["secrets"] == {"bootstrap_token": "abcdef.0123456789abcdef",
                               "secretbox_encryption_secret": "c2VjcmV0Ym94LXN0YW5kLWluLXZhbHVlLTMyYnl0ZXM="}
    assert args["trustdinfo"] == {"token": "trustd.0123456789abcdef"}
    assert args["certs"]["k8s_aggregator"] == {"cert": "QUdHLUNSVC1TVEFORC1JTg==", "key": "QUdHLUtFWS1TVEFORC1JTg=="}
    assert args["certs"]["k8s_serviceaccount"] == {"key": "U0EtS0VZLVNUQU5ELUlO"}
    assert set(args["certs"]) == {"etcd", "k8s", "k8s_aggregator", "k8s_serviceaccount", "os"}


def test_bundle_keeps_the_optional_aescbc_secret() -> None:
    text = MACHINE_SECRETS.replace("    bootstraptoken:", "    aescbcencryptionsecret: YWVzY2JjLXN0YW5kLWlu\n    bootstraptoken:")
    assert parse_machine_secrets(text)["secrets"]["aescbc_encryption_secret"] == "YWVzY2JjLXN0YW5kLWlu"


def test_incomplete_bundle_names_the_key_and_field_but_not_values() -> None:
    text = MACHINE_SECRETS.replace("    k8saggregator:\n        crt: QUdHLUNSVC1TVEFORC1JTg==\n", "    k8saggregator:\n")
    with pytest.raises(TalosSecretsError) as error:
        parse_machine_secrets(text)
    assert "proxmox-talos-gpu:talosMachineSecrets has no certs.k8saggregator.crt" in str(error.value)
    assert "Q2x1c3Rlck" not in str(error.value)


def test_bundle_that_is_not_yaml_mapping_is_refused() -> None:
    with pytest.raises(TalosSecretsError, match="talosMachineSecrets is not a YAML mapping"):
        parse_machine_secrets("just-a-token")


def test_talosconfig_current_context_gives_client_configuration() -> None:
    assert parse_talosconfig(TALOSCONFIG) == {
        "ca_certificate": "Q0EtQ0VSVElGSUNBVEUtU1RBTkQtSU4=",
        "client_certificate": "Q0xJRU5ULUNFUlQtU1RBTkQtSU4=",
        "client_key": "Q0xJRU5ULUtFWS1TVEFORC1JTg==",
    }


def test_talosconfig_with_unknown_current_context_is_refused() -> None:
    with pytest.raises(TalosSecretsError, match="context 'prod' is not among its contexts \\(homelab\\)"):
        parse_talosconfig(TALOSCONFIG.replace("context: homelab", "context: prod"))


def test_talosconfig_without_key_names_the_field() -> None:
    text = "\n".join(line for line in TALOSCONFIG.splitlines() if "key:" not in line)
    with pytest.raises(TalosSecretsError, match="talosClientConfiguration: context 'homelab' has no key"):
        parse_talosconfig(text)


def test_talosconfig_from_environment_path_is_read(tmp_path: Path) -> None:
    path = tmp_path / "talosconfig"
    path.write_text(TALOSCONFIG)
    assert talosconfig_text(str(path)) == TALOSCONFIG
    assert talosconfig_text(TALOSCONFIG) == TALOSCONFIG
