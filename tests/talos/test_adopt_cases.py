"""Adoption, whole output: realistic running configs in, and out the whole
merged config (byte for byte where the program writes YAML), the exact
change lines, guard refusals, reboot paths, diff, ``Originals`` record and
the config restore gives back."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from components.talos.adopt import (
    AdoptError,
    Change,
    NodeState,
    Originals,
    diff_lines,
    dump_documents,
    guard,
    leaf_differences,
    load_documents,
    merge,
    plan_adoption,
    reboot_paths,
    restore,
    v1alpha1_index,
    with_block,
)
from components.talos.machine_config import CRI_CUSTOMIZATION_PATH, NodeSpec, OwnedValues
from tests.talos.running_configs import as_text, multi_document, with_node_gpu_bits, with_own_cri_file, worker_documents

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"
LABELS = {"drmoo.io/gpu": "nvidia-t4", "drmoo.io/role": "worker"}
CRI = f"machine.files[path={CRI_CUSTOMIZATION_PATH}]"
BLOCK_1_8 = ("# BEGIN proxmox-talos-gpu: nvidia as containerd's default runtime\n"
             '[plugins."io.containerd.cri.v1.runtime".containerd]\n'
             '  default_runtime_name = "nvidia"\n'
             "# END proxmox-talos-gpu\n")
BLOCK_1_7 = BLOCK_1_8.replace("io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri")
# The marked line alone, as it goes into the node's own containerd table.
INNER_LINE = ("# BEGIN proxmox-talos-gpu: nvidia as containerd's default runtime\n"
              '  default_runtime_name = "nvidia"\n'
              "# END proxmox-talos-gpu\n")


def owned(version: str = "v1.12.11", **overrides: Any) -> OwnedValues:
    spec = {"target_version": "v1.13.9", "schematic_id": SID, "platform": "metal", "node_labels": LABELS,
            "bpf_jit_harden": None, "nvidia_default_runtime": None, **overrides}
    return NodeSpec(**spec).owned(version)


def image(version: str) -> str:
    return f"factory.talos.dev/metal-installer/{SID}:{version}"


def cri_entry(content: str) -> dict[str, Any]:
    """The file entry the program creates on a node without one."""
    return {"content": content, "permissions": 0o644, "path": CRI_CUSTOMIZATION_PATH, "op": "create"}


# A small v1.12 worker, written as `talosctl read` prints it.
SMALL = """\
version: v1alpha1
debug: false
machine:
  type: worker
  install:
    disk: /dev/sda
    image: ghcr.io/siderolabs/installer:v1.12.11
    wipe: false
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.34.3
cluster:
  clusterName: homelab
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: moody-good
"""

SMALL_ADOPTED = f"""\
version: v1alpha1
debug: false
machine:
  type: worker
  install:
    disk: /dev/sda
    image: {image("v1.12.11")}
    wipe: false
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.34.3
  kernel:
    modules:
    - name: nvidia
    - name: nvidia_uvm
    - name: nvidia_drm
    - name: nvidia_modeset
  sysctls:
    net.core.bpf_jit_harden: '1'
  nodeLabels:
    drmoo.io/gpu: nvidia-t4
    drmoo.io/role: worker
  files:
  - content: |
      # BEGIN proxmox-talos-gpu: nvidia as containerd's default runtime
      [plugins."io.containerd.cri.v1.runtime".containerd]
        default_runtime_name = "nvidia"
      # END proxmox-talos-gpu
    permissions: 420
    path: /etc/cri/conf.d/20-customization.part
    op: create
cluster:
  clusterName: homelab
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: moody-good
"""


# -- YAML as Talos reads and writes it ---------------------------------------


@pytest.mark.parametrize(("scalar", "value"), [
    ("1.5", 1.5), ("1_000.25", 1000.25), ("1e3", 1000.0), ("-.Inf", -math.inf), (".INF", math.inf),
    ("0x1F", 31), ("0o644", 420), ("~", None), ("true", True), ("False", False),
    ("yes", "yes"), ("on", "on"), ("2024-01-01", "2024-01-01"), ("'1.5'", "1.5"), ('"3"', "3"), ("'~'", "~"),
])
def test_scalars_load_as_talos_reads_them(scalar: str, value: Any) -> None:
    [document] = load_documents(f"version: v1alpha1\nvalue: {scalar}\n")
    assert document == {"version": "v1alpha1", "value": value}
    assert type(document["value"]) is type(value)


def test_nan_loads_as_a_float_nan() -> None:
    [document] = load_documents("value: .NaN\n")
    assert isinstance(document["value"], float) and math.isnan(document["value"])


def test_strings_are_written_so_that_talos_reads_them_back_as_strings() -> None:
    documents = [{"plain": "moody-good", "answer": "yes", "number": "12", "octal": "0o17", "float": "1.5", "nothing": "null",
                  "empty": "", "date": "2024-01-01", "int": 5, "flag": True, "lines": "a\nb\n",
                  "long": "word " * 30 + "end"},
                 {"list": [1, {"name": "nbd"}]}]
    assert dump_documents(documents) == (
        "plain: moody-good\nanswer: 'yes'\nnumber: '12'\noctal: '0o17'\nfloat: '1.5'\nnothing: 'null'\n"
        "empty: ''\ndate: '2024-01-01'\nint: 5\nflag: true\nlines: |\n  a\n  b\n"
        f"long: {'word ' * 30}end\n"
        "---\nlist:\n- 1\n- name: nbd\n")
    assert load_documents(dump_documents(documents)) == documents


@pytest.mark.parametrize(("text", "message"), [
    ("", "the machine config is empty"),
    ("---\n---\n", "the machine config is empty"),
    ("- nbd\n", "document 0 of the machine config is not a mapping"),
    ("version: v1alpha1\n---\n\n---\nplain text\n", "document 1 of the machine config is not a mapping"),
])
def test_a_config_that_is_not_a_list_of_mappings_is_refused(text: str, message: str) -> None:
    with pytest.raises(AdoptError) as error:
        load_documents(text)
    assert str(error.value) == message


def test_invalid_yaml_is_refused_with_the_parsers_reason() -> None:
    with pytest.raises(AdoptError) as error:
        load_documents("machine: [nbd\n")
    assert str(error.value).startswith("the machine config is not valid YAML: while parsing a flow sequence")


def test_empty_documents_are_dropped() -> None:
    assert load_documents("---\nversion: v1alpha1\n---\n---\nkind: X\n") == [{"version": "v1alpha1"}, {"kind": "X"}]


def test_the_v1alpha1_document_is_the_one_with_that_version_and_no_kind() -> None:
    documents = [{"apiVersion": "v1alpha1", "kind": "HostnameConfig"}, {"version": "v1alpha1", "kind": "Odd"},
                 {"version": "v1alpha2"}, {"version": "v1alpha1", "machine": {}}]
    assert v1alpha1_index(documents) == 3
    with pytest.raises(AdoptError) as error:
        v1alpha1_index(documents[:3])
    assert str(error.value) == "the machine config has no v1alpha1 document (`version: v1alpha1`); is this a Talos machine config?"


def test_a_machine_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(AdoptError) as error:
        merge([{"version": "v1alpha1", "machine": ["worker"]}], owned())
    assert str(error.value) == "machine in the v1alpha1 document is not a mapping"


# -- the merge, whole ---------------------------------------------------------


def test_a_small_node_is_adopted_byte_for_byte() -> None:
    merged = merge(load_documents(SMALL), owned())
    assert merged.text() == SMALL_ADOPTED
    assert [change.line() for change in merged.changes] == [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.12.11' -> '{image('v1.12.11')}'",
        "machine.kernel.modules[name=nvidia]: add {'name': 'nvidia'}",
        "machine.kernel.modules[name=nvidia_uvm]: add {'name': 'nvidia_uvm'}",
        "machine.kernel.modules[name=nvidia_drm]: add {'name': 'nvidia_drm'}",
        "machine.kernel.modules[name=nvidia_modeset]: add {'name': 'nvidia_modeset'}",
        "machine.sysctls[net.core.bpf_jit_harden]: add '1'",
        "machine.nodeLabels[drmoo.io/gpu]: add 'nvidia-t4'",
        "machine.nodeLabels[drmoo.io/role]: add 'worker'",
        f"{CRI}: add <4 lines>",
    ]
    assert merged.changed
    assert merged.originals.to_dict() == {
        "install": {"image": "ghcr.io/siderolabs/installer:v1.12.11", "wipe": False}, "modules": [],
        "sysctls": {"net.core.bpf_jit_harden": None}, "nodeLabels": {"drmoo.io/gpu": None, "drmoo.io/role": None},
        "criFile": {"entry": None}, "absent": ["kernel", "kernel.modules", "sysctls", "nodeLabels", "files"]}


def test_restore_of_the_small_node_gives_its_text_back_byte_for_byte() -> None:
    merged = merge(load_documents(SMALL), owned())
    back = restore(load_documents(SMALL_ADOPTED), merged.originals, owned())
    assert back.text() == SMALL
    assert back.conflicts == []
    assert [change.line() for change in back.changes] == [
        f"machine.install.image: '{image('v1.12.11')}' -> 'ghcr.io/siderolabs/installer:v1.12.11'",
        "machine.kernel.modules[name=nvidia]: remove {'name': 'nvidia'}",
        "machine.kernel.modules[name=nvidia_uvm]: remove {'name': 'nvidia_uvm'}",
        "machine.kernel.modules[name=nvidia_drm]: remove {'name': 'nvidia_drm'}",
        "machine.kernel.modules[name=nvidia_modeset]: remove {'name': 'nvidia_modeset'}",
        "machine.sysctls[net.core.bpf_jit_harden]: remove '1'",
        "machine.nodeLabels[drmoo.io/gpu]: remove 'nvidia-t4'",
        "machine.nodeLabels[drmoo.io/role]: remove 'worker'",
        f"{CRI}: remove <4 lines>",
    ]


def test_a_node_without_install_or_machine_gets_them_and_loses_them_again() -> None:
    bare = [{"version": "v1alpha1", "cluster": {"clusterName": "homelab"}}]
    merged = merge(bare, owned("v1.13.9"))
    assert merged.documents == [{"version": "v1alpha1", "cluster": {"clusterName": "homelab"}, "machine": {
        "install": {"image": image("v1.13.9"), "wipe": False},
        "kernel": {"modules": [{"name": "nvidia"}, {"name": "nvidia_uvm"}, {"name": "nvidia_drm"}, {"name": "nvidia_modeset"}]},
        "nodeLabels": dict(LABELS)}}]
    assert merged.originals.to_dict() == {
        "install": {"image": None, "wipe": None}, "modules": [], "sysctls": {"net.core.bpf_jit_harden": None},
        "nodeLabels": {"drmoo.io/gpu": None, "drmoo.io/role": None}, "criFile": {"entry": None},
        "absent": ["install", "kernel", "kernel.modules", "sysctls", "nodeLabels", "files"]}
    back = restore(merged.documents, merged.originals, owned("v1.13.9"))
    assert back.documents == [{"version": "v1alpha1", "cluster": {"clusterName": "homelab"}, "machine": {}}]
    assert [change.line() for change in back.changes][:2] == [
        f"machine.install.image: remove '{image('v1.13.9')}'", "machine.install.wipe: remove False"]


def expected_merge(documents: list[dict[str, Any]], edit: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(documents)
    edit(out[0]["machine"])
    return out


def _guide_worker_1_12(machine: dict[str, Any]) -> None:
    machine["install"]["image"] = image("v1.12.11")
    machine["sysctls"]["net.core.bpf_jit_harden"] = "1"
    machine["kernel"]["modules"] += [{"name": name} for name in ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")]
    machine["files"].append(cri_entry(BLOCK_1_8))
    machine["nodeLabels"] = dict(LABELS)


def _gpu_bits_1_12(machine: dict[str, Any]) -> None:
    machine["install"]["image"] = image("v1.12.11")
    machine["sysctls"]["net.core.bpf_jit_harden"] = "1"
    machine["kernel"]["modules"] += [{"name": "nvidia_drm"}, {"name": "nvidia_modeset"}]
    machine["files"].append(cri_entry(BLOCK_1_8))
    machine["nodeLabels"] = {"drmoo.io/gpu": "nvidia-t4", "topology.kubernetes.io/zone": "pve5", "drmoo.io/role": "worker"}


def _gpu_bits_1_13(machine: dict[str, Any]) -> None:
    machine["install"]["image"] = image("v1.13.9")
    machine["kernel"]["modules"] += [{"name": "nvidia_drm"}, {"name": "nvidia_modeset"}]
    machine["nodeLabels"] = {"drmoo.io/gpu": "nvidia-t4", "topology.kubernetes.io/zone": "pve5", "drmoo.io/role": "worker"}


def _own_cri_1_12(machine: dict[str, Any]) -> None:
    _guide_worker_1_12(machine)
    machine["files"].pop()
    own = machine["files"][-1]
    own["content"] += BLOCK_1_8


MODULES_ADDED = [f"machine.kernel.modules[name={name}]: add {{'name': '{name}'}}" for name in ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")]
MERGE_CASES = {
    "guide worker on 1.12": (lambda: worker_documents("v1.12.11"), "v1.12.11", _guide_worker_1_12, [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.12.11' -> '{image('v1.12.11')}'", *MODULES_ADDED,
        "machine.sysctls[net.core.bpf_jit_harden]: add '1'", "machine.nodeLabels[drmoo.io/gpu]: add 'nvidia-t4'",
        "machine.nodeLabels[drmoo.io/role]: add 'worker'", f"{CRI}: add <4 lines>"]),
    "node with GPU bits on 1.12": (lambda: with_node_gpu_bits("v1.12.11"), "v1.12.11", _gpu_bits_1_12, [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.12.11' -> '{image('v1.12.11')}'", *MODULES_ADDED[2:],
        "machine.sysctls[net.core.bpf_jit_harden]: '2' -> '1'", "machine.nodeLabels[drmoo.io/gpu]: 'none' -> 'nvidia-t4'",
        "machine.nodeLabels[drmoo.io/role]: add 'worker'", f"{CRI}: add <4 lines>"]),
    "node with GPU bits on 1.13": (lambda: with_node_gpu_bits("v1.13.9"), "v1.13.9", _gpu_bits_1_13, [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.13.9' -> '{image('v1.13.9')}'", *MODULES_ADDED[2:],
        "machine.nodeLabels[drmoo.io/gpu]: 'none' -> 'nvidia-t4'", "machine.nodeLabels[drmoo.io/role]: add 'worker'"]),
    "multi-document on 1.13": (multi_document, "v1.13.9", lambda machine: (
        machine["install"].update(image=image("v1.13.9")),
        machine["kernel"]["modules"].extend({"name": name} for name in ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")),
        machine.update(nodeLabels=dict(LABELS))), [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.13.9' -> '{image('v1.13.9')}'", *MODULES_ADDED,
        "machine.nodeLabels[drmoo.io/gpu]: add 'nvidia-t4'", "machine.nodeLabels[drmoo.io/role]: add 'worker'"]),
    "node with its own CRI file on 1.12": (lambda: with_own_cri_file("v1.12.11"), "v1.12.11", _own_cri_1_12, [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.12.11' -> '{image('v1.12.11')}'", *MODULES_ADDED,
        "machine.sysctls[net.core.bpf_jit_harden]: add '1'", "machine.nodeLabels[drmoo.io/gpu]: add 'nvidia-t4'",
        "machine.nodeLabels[drmoo.io/role]: add 'worker'", f"{CRI}.content: <6 lines> -> <10 lines>"]),
}


@pytest.mark.parametrize("name", list(MERGE_CASES))
def test_merge_changes_exactly_the_owned_paths_and_says_so(name: str) -> None:
    make, version, edit, lines = MERGE_CASES[name]
    before = load_documents(as_text(make()))
    merged = merge(before, owned(version))
    assert merged.documents == expected_merge(before, edit)
    assert [change.line() for change in merged.changes] == lines
    guard(before, merged.documents, LABELS)
    again = merge(load_documents(merged.text()), owned(version), merged.originals)
    assert again.changes == [] and not again.changed
    assert again.originals == merged.originals
    back = restore(load_documents(merged.text()), merged.originals, owned(version))
    assert (back.text(), back.conflicts) == (as_text(before), [])


# -- the CRI customization file ---------------------------------------------

HEADER = '[plugins."io.containerd.cri.v1.runtime".containerd]\n'
METRICS = '[metrics]\n  address = "0.0.0.0:11234"\n'


@pytest.mark.parametrize(("content", "version", "merged"), [
    ("", "v1.12.11", BLOCK_1_8),
    ("", "v1.7.6", BLOCK_1_7),
    (METRICS, "v1.12.11", METRICS + BLOCK_1_8),
    (METRICS.rstrip("\n"), "v1.12.11", METRICS + BLOCK_1_8),
    (HEADER + '  snapshotter = "overlayfs"\n' + METRICS, "v1.12.11", HEADER + INNER_LINE + '  snapshotter = "overlayfs"\n' + METRICS),
    (METRICS + "  " + HEADER.rstrip("\n"), "v1.12.11", METRICS + "  " + HEADER + INNER_LINE),
    (HEADER + '  default_runtime_name = "nvidia"\n', "v1.12.11", HEADER + '  default_runtime_name = "nvidia"\n'),
    ('plugins."io.containerd.cri.v1.runtime".containerd.default_runtime_name = "nvidia"', "v1.12.11",
     'plugins."io.containerd.cri.v1.runtime".containerd.default_runtime_name = "nvidia"'),
    (METRICS + BLOCK_1_8, "v1.12.11", METRICS + BLOCK_1_8),
    (HEADER + INNER_LINE + METRICS, "v1.12.11", HEADER + INNER_LINE + METRICS),
], ids=["empty file", "containerd 1 key before Talos 1.8", "own table", "no final line break", "into the node's containerd table",
        "indented header without a final line break", "node already sets nvidia", "node sets nvidia by dotted key", "block at the end again", "block inside the table again"])
def test_the_default_runtime_line_is_merged_into_the_nodes_file(content: str, version: str, merged: str) -> None:
    assert with_block(content, version) == merged


WHERE = f"{CRI}.content"
DISABLE = "set proxmox-talos-gpu:talos.nvidiaDefaultRuntime: false"


@pytest.mark.parametrize(("content", "message"), [
    (HEADER + '  default_runtime_name = "runc"\n',
     f"{WHERE} already sets default_runtime_name = 'runc'; this program would make it \"nvidia\". Remove that line on the node, or {DISABLE}"),
    ('plugins."io.containerd.cri.v1.runtime".containerd.snapshotter = "overlayfs"\n',
     f"{WHERE}: the node defines {HEADER.rstrip()} in a form this program cannot add a line to without rewriting the file "
     "(Cannot declare ('plugins', 'io.containerd.cri.v1.runtime', 'containerd') twice (at line 3, column 51)); "
     f"add default_runtime_name = \"nvidia\" there by hand, or {DISABLE}"),
    (f'note = """\n{HEADER}"""\n',
     f"{WHERE}: the node defines {HEADER.rstrip()} in a form this program cannot add a line to without rewriting the file "
     f"(the merge changes other keys); add default_runtime_name = \"nvidia\" there by hand, or {DISABLE}"),
    ("[metrics\naddress = 1\n",
     f"{WHERE} is not valid TOML (Expected ']' at the end of a table declaration (at line 1, column 9)); fix it on the node or {DISABLE}"),
])
def test_a_cri_file_the_line_cannot_go_into_is_refused_whole(content: str, message: str) -> None:
    with pytest.raises(AdoptError) as error:
        with_block(content, "v1.12.11")
    assert str(error.value) == message


def test_a_node_file_holding_only_the_block_is_merged_without_a_change() -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", BLOCK_1_8)))
    merged = merge(documents, owned("v1.12.11"))
    assert not any(change.path.startswith(CRI) for change in merged.changes)
    assert merged.originals.cri_file == {"entry": {"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644, "content": BLOCK_1_8}}


def test_a_cri_file_without_content_gets_the_block() -> None:
    documents = worker_documents("v1.12.11")
    documents[0]["machine"]["files"].append({"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644})
    merged = merge(documents, owned("v1.12.11"))
    assert merged.documents[0]["machine"]["files"][-1] == {"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644, "content": BLOCK_1_8}
    assert merged.changes[-1] == Change(f"{CRI}.content", "", BLOCK_1_8)


def test_when_the_default_runtime_is_no_longer_wanted_only_the_block_leaves_the_nodes_file() -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", METRICS.rstrip("\n"))))
    on_1_12 = merge(documents, owned("v1.12.11"))
    assert on_1_12.documents[0]["machine"]["files"][-1]["content"] == METRICS + BLOCK_1_8
    off = merge(on_1_12.documents, owned("v1.12.11", nvidia_default_runtime=False), on_1_12.originals)
    assert off.documents[0]["machine"]["files"][-1]["content"] == METRICS.rstrip("\n"), "the node's own bytes, without the added line break"
    assert off.changes == [Change(f"{CRI}.content", METRICS + BLOCK_1_8, METRICS.rstrip("\n"))]
    unchanged = merge(off.documents, owned("v1.12.11", nvidia_default_runtime=False), off.originals)
    assert unchanged.changes == [] and unchanged.documents == off.documents


def test_a_node_file_edited_after_adoption_keeps_the_edit_when_the_block_leaves() -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", METRICS)))
    on_1_12 = merge(documents, owned("v1.12.11"))
    edited = copy.deepcopy(on_1_12.documents)
    edited[0]["machine"]["files"][-1]["content"] = "# tuned\n" + edited[0]["machine"]["files"][-1]["content"]
    off = merge(edited, owned("v1.12.11", nvidia_default_runtime=False), on_1_12.originals)
    assert off.documents[0]["machine"]["files"][-1]["content"] == "# tuned\n" + METRICS


def test_a_file_the_program_created_is_removed_whole_when_no_longer_wanted() -> None:
    on_1_12 = merge(load_documents(SMALL), owned("v1.12.11"))
    off = merge(on_1_12.documents, owned("v1.12.11", nvidia_default_runtime=False), on_1_12.originals)
    assert "files" not in off.documents[0]["machine"], "the node had no files section: it goes too"
    assert off.changes[-1] == Change(CRI, BLOCK_1_8, off.changes[-1].after) and off.changes[-1].line() == f"{CRI}: remove <4 lines>"


def test_a_node_that_already_makes_nvidia_the_default_runtime_keeps_its_file_as_it_is() -> None:
    content = HEADER + '  snapshotter = "overlayfs"\n  default_runtime_name = "nvidia"\n'
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", content)))
    merged = merge(documents, owned("v1.12.11"))
    assert merged.documents[0]["machine"]["files"][-1]["content"] == content
    assert not any(change.path.startswith(CRI) for change in merged.changes)
    back = restore(merged.documents, merged.originals, owned("v1.12.11"))
    assert back.documents == documents and back.conflicts == []
