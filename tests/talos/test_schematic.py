"""Offline Image Factory schematic IDs, extension sets and installer images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import ConfigError
from components.talos.schematic import extensions_for, factory_id, installer_image, planned_installer, render_schematic, schematic_id
from components.talos.schematic_format import SchematicFormatError, marshal, parse_schematic
from tests.talos.conftest import make_cfg

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((Path(__file__).with_name("factory_vectors.json")).read_text())
VECTORS_V4 = json.loads((Path(__file__).with_name("factory_vectors_v4.json")).read_text())

# The two published pairs (Talos docs, Image Factory).
PUBLISHED = [
    ("customization: {}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    ("customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n",
     "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"),
]


@pytest.mark.parametrize(("text", "expected"), PUBLISHED)
def test_schematic_id_matches_published_vectors(text: str, expected: str) -> None:
    assert schematic_id(text) == expected


@pytest.mark.parametrize(("text", "expected"), PUBLISHED)
def test_render_reproduces_published_yaml_byte_for_byte(text: str, expected: str) -> None:
    extensions = parse_schematic(text).official_extensions
    assert render_schematic(extensions) == text


def test_schematic_id_matches_image_factory_unit_test_vectors() -> None:
    # siderolabs/image-factory pkg/schematic/schematic_test.go TestUnmarshalID
    assert schematic_id('{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}') == "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
    assert schematic_id('{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [], "systemExtensions": {}}}') == "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"
    assert schematic_id('{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}') == "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"
    assert schematic_id('{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}') == "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6"
    assert schematic_id("{}") == "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    # TestID "4k sector disk image"
    assert schematic_id('{"customization": {"diskImage": {"sectorSize": 4096}}}') == "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea"


@pytest.mark.parametrize("yaml_version", ["v4", "v3"])
def test_published_ids_are_the_same_with_yaml_v3_and_v4(yaml_version: str) -> None:
    for text, expected in PUBLISHED:
        assert schematic_id(text, yaml_version) == expected
    assert schematic_id('{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}', yaml_version) == "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6"


@pytest.mark.parametrize("vector", [v for v in VECTORS if "yaml" in v], ids=lambda v: v["input"][:50])
def test_canonical_yaml_and_id_match_yaml_v3(vector: dict[str, str]) -> None:
    # factory_vectors.json was written by gopkg.in/yaml.v3 (factory_vectors/main.go -tags yamlv3),
    # what image-factory releases before v1.0.0 marshalled with.
    assert marshal(parse_schematic(vector["input"]), "v3") == vector["yaml"]
    assert schematic_id(vector["input"], "v3") == vector["id"]


@pytest.mark.parametrize("vector", [v for v in VECTORS_V4 if "yaml" in v], ids=lambda v: v["input"][:50])
def test_canonical_yaml_and_id_match_yaml_v4(vector: dict[str, str]) -> None:
    # factory_vectors_v4.json was written by go.yaml.in/yaml/v4 with the current
    # factory struct (owner, embeddedMachineConfiguration, secureboot.enrollKeys;
    # factory_vectors/main.go), as image-factory v1.5.0 marshals.
    assert marshal(parse_schematic(vector["input"])) == vector["yaml"]
    assert schematic_id(vector["input"]) == vector["id"]


@pytest.mark.parametrize("vector", [v for v in VECTORS + VECTORS_V4 if "error" in v], ids=lambda v: v["input"][:50])
def test_parse_refuses_what_the_factory_refuses(vector: dict[str, str]) -> None:
    with pytest.raises(SchematicFormatError):
        parse_schematic(vector["input"])


def test_yaml_v3_and_v4_quote_yaml_1_1_words_differently() -> None:
    text = '{"customization": {"extraKernelArgs": ["off", "12:30"]}}'
    assert marshal(parse_schematic(text)) == "customization:\n    extraKernelArgs:\n        - 'off'\n        - '12:30'\n"
    assert marshal(parse_schematic(text), "v3") == 'customization:\n    extraKernelArgs:\n        - "off"\n        - "12:30"\n'
    assert schematic_id(text) != schematic_id(text, "v3")


def test_current_factory_fields_are_accepted_and_written_in_the_factorys_order() -> None:
    text = (
        "customization:\n"
        "  secureboot: {includeWellKnownCertificates: true, enrollKeys: force}\n"
        "  systemExtensions: {officialExtensions: [siderolabs/qemu-guest-agent]}\n"
        "  embeddedMachineConfiguration: |\n    apiVersion: v1alpha1\n    kind: HostnameConfig\n    hostname: gpu-1\n"
        "owner: alice\n"
    )
    parsed = parse_schematic(text)
    assert (parsed.owner, parsed.secureboot_enroll_keys) == ("alice", "force")
    assert parsed.embedded_machine_configuration == "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: gpu-1\n"
    assert marshal(parsed) == (
        "owner: alice\n"
        "customization:\n"
        "    embeddedMachineConfiguration: |\n"
        "        apiVersion: v1alpha1\n        kind: HostnameConfig\n        hostname: gpu-1\n"
        "    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n"
        "    secureboot:\n        enrollKeys: force\n        includeWellKnownCertificates: true\n"
    )


def test_unknown_secureboot_key_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(SchematicFormatError, match="enrollKeys, includeWellKnownCertificates"):
        parse_schematic("customization:\n  secureboot:\n    enrollKey: force\n")


def test_leading_line_break_is_kept_by_v4_and_refused_for_v3() -> None:
    text = '{"customization": {"embeddedMachineConfiguration": "\\nkind: x\\n"}}'
    assert marshal(parse_schematic(text)) == "customization:\n    embeddedMachineConfiguration: |\n\n        kind: x\n"
    with pytest.raises(SchematicFormatError, match="yaml.v3"):
        marshal(parse_schematic(text), "v3")


def test_parse_refuses_empty_and_multi_document_files() -> None:
    with pytest.raises(SchematicFormatError, match="empty"):
        parse_schematic("")
    with pytest.raises(SchematicFormatError, match="more than one"):
        parse_schematic("customization: {}\n---\ncustomization: {}\n")


def test_extensions_default_is_proprietary_production_with_guest_agent_sorted(homelab) -> None:
    assert extensions_for(make_cfg(homelab).talos) == [
        "siderolabs/nonfree-kmod-nvidia-production",
        "siderolabs/nvidia-container-toolkit-production",
        "siderolabs/qemu-guest-agent",
    ]


def test_extensions_open_lts_pairs_kmod_and_toolkit_branch(homelab) -> None:
    cfg = make_cfg(homelab, extensions={"driver": "open", "branch": "lts", "extra": ["siderolabs/zfs", "siderolabs/amd-ucode"]})
    assert extensions_for(cfg.talos) == [
        "siderolabs/amd-ucode",
        "siderolabs/nvidia-container-toolkit-lts",
        "siderolabs/nvidia-open-gpu-kernel-modules-lts",
        "siderolabs/zfs",
    ]


def test_extensions_refuse_a_second_nvidia_driver_or_toolkit_in_extra(homelab) -> None:
    cfg = make_cfg(homelab, extensions={"branch": "production", "extra": ["siderolabs/nvidia-container-toolkit-lts"]})
    with pytest.raises(ConfigError) as error:
        extensions_for(cfg.talos)
    message = str(error.value)
    assert "proxmox-talos-gpu:talos.extensions.extra[0] = 'siderolabs/nvidia-container-toolkit-lts'" in message
    assert "matching pair" in message


def test_extension_order_in_config_does_not_change_the_id(homelab) -> None:
    one = make_cfg(homelab, extensions={"extra": ["siderolabs/zfs", "siderolabs/qemu-guest-agent"]})
    two = make_cfg(homelab, extensions={"extra": ["siderolabs/qemu-guest-agent", "siderolabs/zfs"]})
    assert schematic_id(render_schematic(extensions_for(one.talos))) == schematic_id(render_schematic(extensions_for(two.talos)))


def test_installer_image_uses_platform_installer_from_talos_1_10() -> None:
    sid = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
    assert installer_image(sid, "v1.13.9", "metal") == f"factory.talos.dev/metal-installer/{sid}:v1.13.9"
    assert installer_image(sid, "v1.10.0", "nocloud") == f"factory.talos.dev/nocloud-installer/{sid}:v1.10.0"
    assert installer_image(sid, "v1.9.6", "metal") == f"factory.talos.dev/installer/{sid}:v1.9.6"


def test_installer_image_refuses_a_non_id() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        installer_image("dc7b152", "v1.13.9", "metal")


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "components.talos", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_schematic_id_prints_the_factory_id_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "schematic.yaml"
    path.write_text("customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/qemu-guest-agent]\n")
    done = run_cli("schematic-id", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515\n"


def test_cli_schematic_id_explains_a_file_not_in_factory_format(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("customization:\n  extensions:\n    - siderolabs/qemu-guest-agent\n")
    done = run_cli("schematic-id", str(path))
    assert done.returncode == 2
    assert "not a schematic in the Image Factory's format" in done.stderr
    assert "'extensions'" in done.stderr and "systemExtensions" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_schematic_prints_the_stacks_schematic_with_id_and_installer() -> None:
    done = run_cli("schematic", "homelab")
    assert done.returncode == 0, done.stderr
    body = done.stdout.split("# id: ")[0]
    sid = schematic_id(body)
    assert f"# id: {sid}\n" in done.stdout
    assert f"# installer: factory.talos.dev/metal-installer/{sid}:v1.13.9\n" in done.stdout


@pytest.mark.parametrize("extensions", [
    {},
    {"driver": "open", "branch": "lts", "extra": ["siderolabs/zfs", "siderolabs/amd-ucode"]},
    {"branch": "lts", "extra": ["siderolabs/i915"]},
])
def test_the_planned_id_is_the_hash_of_the_rendered_bytes_which_the_factory_marshals_unchanged(homelab, extensions) -> None:
    # The factory hashes its Marshal of what it decoded: a rendered schematic
    # must come back from that round trip byte for byte, or hashing it as
    # rendered would give another ID than the factory's.
    talos = make_cfg(homelab, extensions=extensions).talos
    rendered, sid, image = planned_installer(talos)
    assert marshal(parse_schematic(rendered)) == rendered
    assert sid == factory_id(rendered) == schematic_id(rendered)
    assert image.endswith(f"/{sid}:{talos.version}")


def test_the_default_stacks_planned_id_is_the_factorys() -> None:
    # The default stack's extensions (proprietary production + the guest
    # agent) at their real factory ID, as the machine config tests pin it.
    rendered = render_schematic(["siderolabs/nonfree-kmod-nvidia-production", "siderolabs/nvidia-container-toolkit-production",
                                 "siderolabs/qemu-guest-agent"])
    assert factory_id(rendered) == "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"
