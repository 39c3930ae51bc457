"""The one reader of `talosctl get extensions`, on the output shapes talosctl
prints (cmd/talosctl/cmd/talos/output/yaml.go and json.go@v1.13.9) and on
the stand-in's; the doctor, the walk's evidence and the schematic check all
read it through this parser."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from components.facts.talos import TalosExtension, parse_extension_names, parse_extensions, parse_schematic
from components.talos.talosctl import extensions_args, run_talosctl
from tests.doctor.fakecli import data
from tests.talos.conftest import TALOSCONFIG, FakeTalosctl, install_talosctl

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"


@pytest.fixture
def stand_in(tmp_path, monkeypatch: pytest.MonkeyPatch) -> FakeTalosctl:
    """The shared talosctl stand-in (tests/stand_ins/talosctl.py) first on PATH."""
    fake = install_talosctl(tmp_path)
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TALOS_STATE", str(fake.state))
    return fake


def test_talos_extensions_yaml() -> None:
    extensions = {ext.name: ext.version for ext in parse_extensions(data("talos-extensions.yaml"))}
    assert extensions["nonfree-kmod-nvidia-production"] == "595.91.07-v1.13.9"
    assert extensions["nvidia-container-toolkit-production"] == "595.91.07-v1.18.1"
    assert "qemu-guest-agent" in extensions and "schematic" in extensions


def test_talos_extensions_json_stream_matches_yaml() -> None:
    documents = list(yaml.safe_load_all(data("talos-extensions.yaml")))
    # talosctl -o json prints one indented object per resource, back to back.
    stream = "".join(json.dumps(document, indent=4, default=str) + "\n" for document in documents)
    assert parse_extensions(stream) == parse_extensions(data("talos-extensions.yaml"))


def test_no_extensions_is_an_empty_list() -> None:
    assert parse_extensions("") == [] and parse_extension_names("") == [] and parse_schematic("") is None


def test_an_entry_without_a_name_is_left_out_as_talos_does() -> None:
    text = "node: 10.0.0.5\nmetadata: {id: '0'}\nspec: {image: 0.sqsh, metadata: {name: '', version: ''}}\n"
    assert parse_extensions(text) == []


@pytest.mark.parametrize(("text", "says"), [
    ("{\"spec\": {}}", "no spec.metadata.name"),
    ("{\"spec\": ", "`talosctl get extensions` printed something that is not YAML or JSON"),
    ("key: [unclosed", "`talosctl get extensions` printed something that is not YAML"),
    ("- just\n- a list\n", "no spec.metadata.name"),
])
def test_talos_extensions_malformed(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_extensions(text)


def test_the_stand_ins_listing_gives_system_extensions_and_the_schematic(stand_in: FakeTalosctl) -> None:
    stand_in.node("v1.13.9", SID, extensions=["nonfree-kmod-nvidia-production", "qemu-guest-agent"])
    output = run_talosctl(extensions_args("192.168.8.123", "192.168.8.99"), talosconfig=TALOSCONFIG)
    listed = parse_extensions(output)
    assert [ext.name for ext in listed] == ["nonfree-kmod-nvidia-production", "qemu-guest-agent", "schematic", "modules.dep"]
    assert listed[0] == TalosExtension("nonfree-kmod-nvidia-production", "580.95.05-v1.13.9", "0.sqsh")
    # The factory's schematic entry and Talos' modules.dep are no system extensions.
    assert parse_extension_names(output) == ["nonfree-kmod-nvidia-production", "qemu-guest-agent"]
    assert parse_schematic(output) == SID
