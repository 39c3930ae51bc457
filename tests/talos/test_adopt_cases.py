"""Adoption, whole output: realistic running configs in, and out the whole
merged config (byte for byte where the program writes YAML), the exact
change lines, guard refusals, reboot paths, diff, ``Originals`` record and
the config restore gives back."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from components.talos.adopt import NodeState, merge, plan_adoption, restore
from components.talos.adopt_changes import Change
from components.talos.adopt_guard import guard, leaf_differences
from components.talos.adopt_originals import Originals
from components.talos.config_diff import diff_lines
from components.talos.config_documents import AdoptError, dump_documents, load_documents, v1alpha1_index
from components.talos.config_reboots import reboot_paths
from components.talos.cri_customization import with_block
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
    ("1.5", 1.5), ("1_000.25", 1000.25), ("1__000.5", 1000.5), ("2024.5", 2024.5), ("1e3", 1000.0), ("-.Inf", -math.inf), (".INF", math.inf),
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
    ('plugins = "none"\n',
     f"{WHERE}: plugins is 'none', not a table, so default_runtime_name cannot go under it; fix it on the node or {DISABLE}"),
    ('[[plugins."io.containerd.cri.v1.runtime".containerd]]\n  snapshotter = "overlayfs"\n',
     f'{WHERE}: plugins."io.containerd.cri.v1.runtime".containerd is [{{\'snapshotter\': \'overlayfs\'}}], not a table, '
     f"so default_runtime_name cannot go under it; fix it on the node or {DISABLE}"),
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


# -- what the node had: the Originals record --------------------------------


def test_originals_record_what_a_hand_set_up_node_had_at_every_owned_path() -> None:
    machine = load_documents(as_text(with_node_gpu_bits("v1.12.11")))[0]["machine"]
    record = Originals()
    record.record(machine, owned("v1.12.11"))
    assert record.to_dict() == {
        "install": {"image": "ghcr.io/siderolabs/installer:v1.12.11", "wipe": False}, "modules": ["nvidia", "nvidia_uvm"],
        "sysctls": {"net.core.bpf_jit_harden": "2"}, "nodeLabels": {"drmoo.io/gpu": "none", "drmoo.io/role": None},
        "criFile": {"entry": None}, "absent": []}
    assert Originals.from_dict(record.to_dict()) == record


def test_originals_already_recorded_are_kept_and_new_label_keys_are_added() -> None:
    record = Originals(install={"image": "ghcr.io/siderolabs/installer:v1.10.6"}, modules=["nvidia"],
                       sysctls={"net.core.bpf_jit_harden": None}, node_labels={"drmoo.io/gpu": None},
                       cri_file={"entry": None}, absent=["nodeLabels"])
    machine = load_documents(as_text(with_own_cri_file("v1.12.11")))[0]["machine"]
    machine["nodeLabels"] = {"drmoo.io/gpu": "nvidia-t4", "drmoo.io/role": "gpu"}
    record.record(machine, owned("v1.12.11"))
    assert record.to_dict() == {
        "install": {"image": "ghcr.io/siderolabs/installer:v1.10.6", "wipe": False}, "modules": ["nvidia"],
        "sysctls": {"net.core.bpf_jit_harden": None}, "nodeLabels": {"drmoo.io/gpu": None, "drmoo.io/role": "gpu"},
        "criFile": {"entry": None}, "absent": ["nodeLabels"]}


def test_the_nodes_own_cri_file_entry_is_recorded_as_a_copy() -> None:
    machine = load_documents(as_text(with_own_cri_file("v1.12.11", METRICS)))[0]["machine"]
    record = Originals()
    record.record(machine, owned("v1.12.11"))
    assert record.cri_file == {"entry": {"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644, "content": METRICS}}
    machine["files"][-1]["content"] = "changed"
    assert record.cri_file["entry"]["content"] == METRICS


def test_originals_from_nothing_are_empty() -> None:
    assert Originals.from_dict(None) == Originals()
    assert Originals.from_dict({}).to_dict() == {"install": {}, "modules": None, "sysctls": {}, "nodeLabels": {}, "criFile": None, "absent": None}


# -- the guard ----------------------------------------------------------------


def adopted(documents: list[dict[str, Any]], version: str = "v1.12.11") -> list[dict[str, Any]]:
    return merge(load_documents(as_text(documents)), owned(version)).documents


def test_guard_refuses_a_different_number_of_documents() -> None:
    before = load_documents(as_text(multi_document()))
    with pytest.raises(AdoptError) as error:
        guard(before, adopted(multi_document())[:-1], LABELS)
    assert str(error.value) == "refusing: the merged config has 5 documents, the node's has 6"


@pytest.mark.parametrize(("tamper", "paths"), [
    (lambda d: d[0]["machine"]["install"].update(disk="/dev/sdb"), ["document 0: machine.install.disk"]),
    (lambda d: d[0]["machine"]["kernel"]["modules"][0].update(parameters=["nbds_max=4"]), ["document 0: machine.kernel.modules[0].parameters"]),
    (lambda d: d[0]["machine"]["kernel"]["modules"].append({"name": "nvidia", "parameters": ["x"]}),
     ["document 0: machine.kernel.modules[] (1 -> 2 items)"]),
    (lambda d: d[0]["machine"]["sysctls"].update({"vm.nr_hugepages": 1024}), ["document 0: machine.sysctls.vm.nr_hugepages"]),
    (lambda d: d[0]["machine"]["nodeLabels"].update(team="gpu"), ["document 0: machine.nodeLabels"]),
    (lambda d: d[0]["machine"]["files"][0].update(permissions=0o600), ["document 0: machine.files[0].permissions"]),
    (lambda d: d[0]["machine"]["files"][-1].update(content="# mine\n" + BLOCK_1_8), ["document 0: machine.files[] (1 -> 2 items)"]),
    (lambda d: d[0]["machine"]["files"].pop(0), ["document 0: machine.files"]),
    (lambda d: d[0]["machine"].pop("kubelet"), ["document 0: machine.kubelet"]),
    (lambda d: d[0].update(persist=True), ["document 0: persist"]),
    (lambda d: d[4]["provisioning"].update(minSize="1GiB"), ["document 4: provisioning.minSize"]),
    (lambda d: d.__setitem__(2, {"apiVersion": "v1alpha1", "kind": "ResolverConfig", "nameservers": []}),
     ["document 2: nameservers[] (2 -> 0 items)"]),
], ids=["install disk", "module parameter", "NVIDIA module with parameters", "sysctl type", "label on a node without labels", "mode of the node's file",
        "lines outside the block", "foreign file dropped", "kubelet dropped", "top-level key", "other document", "resolvers emptied"])
def test_guard_names_every_path_outside_the_owned_ones(tamper: Any, paths: list[str]) -> None:
    before = load_documents(as_text(multi_document("v1.13.9")))
    after = merge(before, owned("v1.13.9", nvidia_default_runtime=True)).documents
    guard(before, after, LABELS)
    tamper(after)
    with pytest.raises(AdoptError) as error:
        guard(before, after, LABELS)
    assert str(error.value) == "refusing: the merged config would change paths this program does not own: " + "; ".join(paths)


def test_guard_names_at_most_twenty_paths() -> None:
    before = [{"version": "v1alpha1", "cluster": {f"key{index:02}": index for index in range(25)}}]
    after = [{"version": "v1alpha1", "cluster": {f"key{index:02}": -index for index in range(25)}}]
    with pytest.raises(AdoptError) as error:
        guard(before, after, [])
    assert str(error.value).endswith("; ".join(f"document 0: cluster.key{index:02}" for index in range(1, 21)))
    assert "key21" not in str(error.value) and "key00" not in str(error.value)


def test_guard_lets_owned_values_appear_in_empty_or_absent_sections() -> None:
    before = [{"version": "v1alpha1", "machine": {"kernel": {}, "files": [], "install": {}}}]
    after = [{"version": "v1alpha1", "machine": {
        "install": {"image": "x", "wipe": False}, "kernel": {"modules": [{"name": "nvidia"}]}, "sysctls": {"net.core.bpf_jit_harden": "1"},
        "nodeLabels": {"drmoo.io/gpu": "nvidia-t4"}, "files": [cri_entry(BLOCK_1_8)]}}]
    guard(before, after, ["drmoo.io/gpu"])
    with pytest.raises(AdoptError, match=r"paths this program does not own: document 0: machine.nodeLabels$"):
        guard(before, after, [])
    guard([{"version": "v1alpha1", "machine": "odd"}], [{"version": "v1alpha1", "machine": "odd"}], [])


@pytest.mark.parametrize(("before", "after", "paths"), [
    ({"a": 1, "b": [1, 2], "c": {"d": 1}}, {"a": 1.0, "b": [1], "e": 2, "c": {"d": 2}}, ["a", "b[] (2 -> 1 items)", "c.d", "e"]),
    ({"a": 1, "gone": 2}, {"a": 1}, ["gone"]),
    ([{"a": 1}, {"a": 2}], [{"a": 1}, {"a": 3}], ["[1].a"]),
    (1, 2, ["(document)"]),
    ({"a": True}, {"a": 1}, ["a"]),
    ({"a": {"b": {}}}, {"a": {"b": []}}, ["a.b"]),
    ({"a": [1]}, {"a": [1]}, []),
])
def test_leaf_differences_are_named_by_path(before: Any, after: Any, paths: list[str]) -> None:
    assert leaf_differences(before, after) == paths


# -- reboots ------------------------------------------------------------------


def with_edits(documents: list[dict[str, Any]], edit: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(documents)
    edit(out)
    return out


FEATURES = {"kubePrism": {"enabled": True}, "hostDNS": {"enabled": True}, "rbac": True}


@pytest.mark.parametrize(("edit", "version", "paths"), [
    (lambda d: None, "v1.12.11", []),
    (lambda d: d[0]["machine"]["install"].update(image="x"), "v1.12.11", []),
    (lambda d: d[0]["machine"].update(files=[], kernel={"modules": []}, sysctls={"a": "1"}, nodeLabels={"a": "b"}), "v1.12.11", [".machine.files"]),
    (lambda d: d[0].update(debug=True, cluster={}, persist=True), "v1.12.11", [".persist"]),
    (lambda d: d[0]["machine"].update(type="controlplane", disks=[]), "v1.12.11", [".machine.disks", ".machine.type"]),
    (lambda d: d[0]["machine"]["features"].update(hostDNS={"enabled": False}, kubePrism={"enabled": False}), "v1.12.11", []),
    (lambda d: d[0]["machine"]["features"].update(hostDNS={"enabled": False}), "v1.8.4", [".machine.features.hostDNS"]),
    (lambda d: d[0]["machine"]["features"].update(hostDNS={"enabled": False}), "v1.7.6", [".machine.features.hostDNS"]),
    (lambda d: d[0]["machine"]["features"].update(hostDNS={"enabled": False}), "v1.9.0", []),
    (lambda d: d[0]["machine"]["features"].update(rbac=False, stableHostname=True), "v1.12.11",
     [".machine.features.rbac", ".machine.features.stableHostname"]),
    (lambda d: d[0]["machine"].pop("features"), "v1.12.11", [".machine.features.rbac"]),
    (lambda d: d[1].update(hostname="other"), "v1.12.11", []),
    (lambda d: d[0].pop("machine"), "v1.12.11", [".machine.features.rbac", ".machine.type"]),
], ids=["nothing", "install", "the owned sections", "top-level keys", "machine keys", "free features", "hostDNS on 1.8",
        "before the oldest list", "hostDNS on 1.9", "other features", "features removed", "other documents", "machine removed"])
def test_which_v1alpha1_changes_make_talos_reboot(edit: Any, version: str, paths: list[str]) -> None:
    before = [{"version": "v1alpha1", "debug": False, "machine": {"type": "worker", "features": FEATURES, "install": {"image": "a"}},
               "cluster": {"clusterName": "homelab"}}, {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "moody-good"}]
    before[0], before[1] = before[1], before[0]
    before.reverse()
    assert reboot_paths(before, with_edits(before, edit), version) == paths
    assert reboot_paths([before[1], before[0]], [*reversed(with_edits(before, edit))], version) == paths, "wherever v1alpha1 is"


# -- the preview diff ---------------------------------------------------------


def test_the_preview_diff_of_the_small_node_is_whole() -> None:
    assert diff_lines(SMALL, SMALL_ADOPTED) == [
        "--- machine config (node)", "+++ machine config (wanted)",
        "@@ -7 +7 @@", "-    image: ghcr.io/siderolabs/installer:v1.12.11", f"+    image: {image('v1.12.11')}",
        "@@ -10,0 +11,20 @@", *("+" + line for line in SMALL_ADOPTED.splitlines()[10:30])]


@pytest.mark.parametrize(("line", "shown"), [
    ("  token: abcdef.0123456789abcdef", "  token: ***"),
    ("    - key: LS0tLS1CRUdJTiBFQyBQUklWQVRF", "    - key: ***"),
    ('  "password" = "hunter2hunter2"', '  "password" = ***'),
    ("  secretboxEncryptionSecret: c2VjcmV0Ym94", "  secretboxEncryptionSecret: ***"),
    ("  token: short", "  token: short"),
    ("  id: 12345678", "  id: ***"),
    ("  id: 1234567", "  id: 1234567"),
    ("  tokens: abcdef.0123456789abcdef", "  tokens: abcdef.0123456789abcdef"),
    ("  hostname: abcdef.0123456789abcdef", "  hostname: abcdef.0123456789abcdef"),
])
def test_the_diff_masks_values_of_secret_looking_keys(line: str, shown: str) -> None:
    assert diff_lines("a: 1\n", f"a: 1\n{line}\n", name="config") == ["--- config (node)", "+++ config (wanted)", "@@ -1,0 +2 @@", f"+{shown}"]
    assert diff_lines(f"{line}\n", "", name="config")[-1] == f"-{shown}"


def test_a_node_with_an_empty_kernel_section_is_adopted() -> None:
    text = "version: v1alpha1\nmachine:\n  type: worker\n  kernel: {}\n  files: []\n"
    plan = plan_adoption(NodeState("v1.13.9", None, text, text), owned("v1.13.9"), upgrade_follows=False)
    assert plan.merged.documents[0]["machine"]["kernel"] == {"modules": [{"name": name} for name in ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")]}
    back = restore(plan.merged.documents, plan.merged.originals, owned("v1.13.9"))
    assert back.text() == text


# -- restore ------------------------------------------------------------------


def gpu_node_adopted() -> tuple[list[dict[str, Any]], Any]:
    before = load_documents(as_text(with_node_gpu_bits("v1.12.11")))
    merged = merge(before, owned("v1.12.11"))
    return before, merged


def test_restore_leaves_every_owned_path_someone_else_edited_and_names_it() -> None:
    before, merged = gpu_node_adopted()
    edited = copy.deepcopy(merged.documents)
    machine = edited[0]["machine"]
    machine["install"].update(image="ghcr.io/me/installer:v1", wipe=True)
    machine["sysctls"]["net.core.bpf_jit_harden"] = "0"
    machine["nodeLabels"]["drmoo.io/role"] = "storage"
    machine["files"][-1]["content"] = BLOCK_1_8.replace('"nvidia"', '"runc"')
    back = restore(edited, merged.originals, owned("v1.12.11"))
    assert back.conflicts == [
        "machine.install.image is 'ghcr.io/me/installer:v1', neither this program's image nor the original",
        'machine.sysctls[net.core.bpf_jit_harden] is \'0\', neither "1" nor the original',
        "machine.nodeLabels[drmoo.io/role] is 'storage', neither 'worker' nor the original",
        f"{CRI}: the lines between the program's markers were edited"]
    assert [change.line() for change in back.changes] == [
        "machine.kernel.modules[name=nvidia_drm]: remove {'name': 'nvidia_drm'}",
        "machine.kernel.modules[name=nvidia_modeset]: remove {'name': 'nvidia_modeset'}",
        "machine.nodeLabels[drmoo.io/gpu]: 'nvidia-t4' -> 'none'"]
    expected = copy.deepcopy(edited)
    expected[0]["machine"]["kernel"]["modules"] = before[0]["machine"]["kernel"]["modules"]
    expected[0]["machine"]["nodeLabels"]["drmoo.io/gpu"] = "none"
    assert back.documents == expected


def test_restore_after_partial_changes_puts_back_only_what_is_still_the_programs() -> None:
    before, merged = gpu_node_adopted()
    partial = copy.deepcopy(merged.documents)
    machine = partial[0]["machine"]
    machine["kernel"]["modules"] = [item for item in machine["kernel"]["modules"] if item["name"] != "nvidia_drm"]
    machine["kernel"]["modules"].append({"name": "nvidia_modeset", "parameters": ["x=1"]})
    machine["sysctls"]["net.core.bpf_jit_harden"] = "2"
    machine["nodeLabels"]["drmoo.io/gpu"] = "none"
    del machine["nodeLabels"]["drmoo.io/role"]
    machine["files"].pop()
    back = restore(partial, merged.originals, owned("v1.12.11"))
    assert back.conflicts == []
    assert [change.line() for change in back.changes] == [
        f"machine.install.image: '{image('v1.12.11')}' -> 'ghcr.io/siderolabs/installer:v1.12.11'",
        "machine.kernel.modules[name=nvidia_modeset]: remove {'name': 'nvidia_modeset'}"]
    expected = copy.deepcopy(before)
    expected[0]["machine"]["kernel"]["modules"].append({"name": "nvidia_modeset", "parameters": ["x=1"]})
    assert back.documents == expected


@pytest.mark.parametrize(("running_image", "restored"), [
    (image("v1.12.11"), "ghcr.io/siderolabs/installer:v1.12.11"),
    (image("v1.13.9"), "ghcr.io/siderolabs/installer:v1.12.11"),
    (f"factory.talos.dev/installer/{SID}:v1.13.9", "ghcr.io/siderolabs/installer:v1.12.11"),
    ("ghcr.io/siderolabs/installer:v1.12.11", "ghcr.io/siderolabs/installer:v1.12.11"),
], ids=["this program's image", "a later step's image", "same schematic, other platform", "already the original"])
def test_restore_puts_the_original_image_back_over_any_image_of_this_programs_schematic(running_image: str, restored: str) -> None:
    _, merged = gpu_node_adopted()
    documents = copy.deepcopy(merged.documents)
    documents[0]["machine"]["install"]["image"] = running_image
    back = restore(documents, merged.originals, owned("v1.12.11"))
    assert back.conflicts == []
    assert back.documents[0]["machine"]["install"] == {"disk": "/dev/sda", "image": restored, "wipe": False}


@pytest.mark.parametrize("running_image", [
    f"factory.talos.dev/metal-installer/{'0' * 64}:v1.12.11",
    f"factory.talos.dev/metal-installer/{SID}:v1.12.11-custom",
    f"example.com/metal-installer/{SID}:v1.12.11",
    f"factory.talos.dev/metal_x-installer/{SID}:v1.12.11",
])
def test_an_image_of_another_schematic_is_a_conflict(running_image: str) -> None:
    _, merged = gpu_node_adopted()
    documents = copy.deepcopy(merged.documents)
    documents[0]["machine"]["install"]["image"] = running_image
    back = restore(documents, merged.originals, owned("v1.12.11"))
    assert back.conflicts[0] == f"machine.install.image is {running_image!r}, neither this program's image nor the original"
    assert back.documents[0]["machine"]["install"]["image"] == running_image


def test_an_owned_image_that_is_not_from_the_factory_is_ours_only_when_equal() -> None:
    plain = OwnedValues(version="v1.12.11", image="registry.local/installer:v1.12.11", node_labels={}, bpf_jit_harden=False, default_runtime=False)
    originals = Originals(install={"image": "ghcr.io/siderolabs/installer:v1.12.11", "wipe": None})
    ours = [{"version": "v1alpha1", "machine": {"install": {"image": "registry.local/installer:v1.12.11", "wipe": False}}}]
    assert restore(ours, originals, plain).documents == [
        {"version": "v1alpha1", "machine": {"install": {"image": "ghcr.io/siderolabs/installer:v1.12.11"}}}]
    other = [{"version": "v1alpha1", "machine": {"install": {"image": f"factory.talos.dev/metal-installer/{SID}:v1.12.11", "wipe": True}}}]
    back = restore(other, originals, plain)
    assert back.documents == other and back.changes == [] and len(back.conflicts) == 1


def test_restore_without_records_changes_nothing_the_node_had() -> None:
    documents = load_documents(as_text(with_node_gpu_bits("v1.12.11")))
    back = restore(documents, Originals(modules=["nvidia", "nvidia_uvm"]), owned("v1.12.11"))
    assert back.documents == documents and back.changes == [] and back.conflicts == []


def test_restore_gives_the_nodes_own_cri_file_back_byte_for_byte() -> None:
    for content in (METRICS, METRICS.rstrip("\n"), HEADER + '  snapshotter = "overlayfs"'):
        before = load_documents(as_text(with_own_cri_file("v1.12.11", content)))
        merged = merge(before, owned("v1.12.11"))
        back = restore(merged.documents, merged.originals, owned("v1.12.11"))
        assert back.documents[0]["machine"]["files"][-1]["content"] == content
        assert back.changes[-1] == Change(f"{CRI}.content", merged.documents[0]["machine"]["files"][-1]["content"], content)


def test_restore_keeps_what_the_node_added_to_its_cri_file_after_adoption() -> None:
    before = load_documents(as_text(with_own_cri_file("v1.12.11", METRICS)))
    merged = merge(before, owned("v1.12.11"))
    edited = copy.deepcopy(merged.documents)
    edited[0]["machine"]["files"][-1]["content"] += "[debug]\n  level = \"info\"\n"
    back = restore(edited, merged.originals, owned("v1.12.11"))
    assert back.documents[0]["machine"]["files"][-1]["content"] == METRICS + "[debug]\n  level = \"info\"\n"


def test_restore_removes_a_cri_file_the_program_created_even_when_the_block_was_taken_out() -> None:
    _, merged = gpu_node_adopted()
    edited = copy.deepcopy(merged.documents)
    edited[0]["machine"]["files"][-1]["content"] = ""
    back = restore(edited, merged.originals, owned("v1.12.11"))
    assert not any(entry["path"] == CRI_CUSTOMIZATION_PATH for entry in back.documents[0]["machine"]["files"])
    assert Change(CRI, "", back.changes[-1].after) == back.changes[-1]


def test_restore_leaves_a_cri_file_without_the_block_alone() -> None:
    before = load_documents(as_text(with_own_cri_file("v1.12.11", METRICS)))
    back = restore(before, Originals(cri_file={"entry": None}), owned("v1.12.11"))
    assert back.documents == before and back.changes == []


def test_restore_accepts_the_block_inside_the_nodes_containerd_table() -> None:
    content = HEADER + '  snapshotter = "overlayfs"\n'
    before = load_documents(as_text(with_own_cri_file("v1.7.6", content)))
    merged = merge(before, owned("v1.12.11"))
    assert merged.documents[0]["machine"]["files"][-1]["content"] == HEADER + INNER_LINE + '  snapshotter = "overlayfs"\n'
    back = restore(merged.documents, merged.originals, owned("v1.7.6"))
    assert back.conflicts == [] and back.documents[0]["machine"]["files"][-1]["content"] == content


@pytest.mark.parametrize(("absent", "machine", "left"), [
    (["files", "nodeLabels"], {"files": [], "nodeLabels": {}, "sysctls": {}}, {"sysctls": {}}),
    (["kernel", "kernel.modules"], {"kernel": {"modules": []}}, {}),
    (["kernel.modules"], {"kernel": {"modules": []}}, {"kernel": {}}),
    (["kernel", "kernel.modules"], {"kernel": {"modules": [{"name": "nbd"}]}}, {"kernel": {"modules": [{"name": "nbd"}]}}),
    (["nodeLabels"], {"nodeLabels": None}, {}),
    (["sysctls"], {"sysctls": {"a": "1"}}, {"sysctls": {"a": "1"}}),
    (["kernel.modules"], {"kernel": None}, {"kernel": None}),
], ids=["absent and empty", "nested", "only the inner one was absent", "not empty", "null", "holds a value", "parent not a mapping"])
def test_restore_drops_only_empty_sections_the_node_did_not_have(absent: list[str], machine: dict[str, Any], left: dict[str, Any]) -> None:
    originals = Originals(absent=absent)
    back = restore([{"version": "v1alpha1", "machine": machine}], originals,
                   OwnedValues(version="v1.12.11", image="x", node_labels={}, bpf_jit_harden=False, default_runtime=False))
    assert back.documents == [{"version": "v1alpha1", "machine": left}], "restore creates no section, not even install"


# -- the plan -----------------------------------------------------------------

ADDED_1_13 = [*MODULES_ADDED, "machine.nodeLabels[drmoo.io/gpu]: add 'nvidia-t4'", "machine.nodeLabels[drmoo.io/role]: add 'worker'"]


def test_a_plan_before_an_upgrade_stages_the_config_and_says_why() -> None:
    text = as_text(worker_documents("v1.12.11"))
    plan = plan_adoption(NodeState("v1.12.11", None, text, text), owned("v1.13.9"), upgrade_follows=True)
    assert (plan.mode, plan.reboot_paths, plan.changed) == ("staged", [], True)
    assert plan.lines() == [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.12.11' -> '{image('v1.13.9')}'", *ADDED_1_13,
        "apply with --mode=staged: the node runs Talos v1.12.11 and is upgraded to v1.13.9 next; "
        "the upgrade's reboot applies it (no reboot of its own)"]
    assert plan.diff == diff_lines(text, plan.merged.text())
    assert plan.owned == owned("v1.13.9")


def test_a_plan_without_an_upgrade_applies_at_once_without_a_reboot() -> None:
    text = as_text(worker_documents("v1.13.9"))
    plan = plan_adoption(NodeState("v1.13.9", SID, text, text), owned("v1.13.9"), upgrade_follows=False)
    assert (plan.mode, plan.reboot_paths, plan.reason) == ("auto", [], "the node already runs Talos v1.13.9 from the wanted image")
    assert plan.lines() == [
        f"machine.install.image: 'ghcr.io/siderolabs/installer:v1.13.9' -> '{image('v1.13.9')}'", *ADDED_1_13,
        "apply with --mode=auto: Talos applies these without a reboot"]


def test_a_plan_that_adds_the_cri_file_says_talos_reboots_for_it() -> None:
    plan = plan_adoption(NodeState("v1.12.11", SID, SMALL, SMALL), owned("v1.12.11"), upgrade_follows=False)
    assert plan.merged.text() == SMALL_ADOPTED
    assert plan.diff == diff_lines(SMALL, SMALL_ADOPTED)
    assert plan.lines()[-1] == "apply with --mode=auto: Talos reboots the node, because it cannot apply .machine.files without a reboot"
    assert len(plan.lines()) == 10


def test_a_plan_for_an_adopted_node_does_nothing_and_says_whether_a_config_is_staged() -> None:
    plan = plan_adoption(NodeState("v1.12.11", SID, SMALL_ADOPTED, SMALL_ADOPTED), owned("v1.12.11"), upgrade_follows=True)
    assert (plan.mode, plan.reboot_paths, plan.diff, plan.changed) == ("none", [], [], False)
    assert plan.lines() == ["nothing to do because the node's config already holds every owned value for Talos v1.12.11"]
    staged = plan_adoption(NodeState("v1.12.11", SID, SMALL_ADOPTED, SMALL), owned("v1.12.11"), upgrade_follows=False)
    assert staged.lines() == ["nothing to do because the node's config already holds every owned value for Talos v1.12.11 "
                              "(a staged config is waiting for the next reboot)"]
    assert staged.merged.originals == merge(load_documents(SMALL), owned("v1.12.11")).originals, "recorded from the running config"


def test_a_plan_counts_reboots_against_the_running_config() -> None:
    stored = with_edits(load_documents(SMALL), lambda d: d[0]["machine"].update(sysfs={"a": "1"}, disks=[{"device": "/dev/sdb"}]))
    plan = plan_adoption(NodeState("v1.12.11", SID, as_text(stored), SMALL), owned("v1.12.11"), upgrade_follows=False)
    assert plan.reboot_paths == [".machine.disks", ".machine.files"]


def test_a_plan_takes_back_a_label_the_program_no_longer_sets() -> None:
    merged = merge(load_documents(SMALL), owned("v1.12.11"))
    text = merged.text()
    fewer = owned("v1.12.11", node_labels={"drmoo.io/gpu": "nvidia-t4"})
    plan = plan_adoption(NodeState("v1.12.11", SID, text, text), fewer, upgrade_follows=False, originals=merged.originals)
    assert plan.lines() == ["machine.nodeLabels[drmoo.io/role]: remove 'worker'", "apply with --mode=auto: Talos applies these without a reboot"]
    assert plan.merged.originals.node_labels == {"drmoo.io/gpu": None}
    assert merged.originals.node_labels == {"drmoo.io/gpu": None, "drmoo.io/role": None}, "the caller's record is not changed"


def test_a_plan_refuses_a_stored_config_that_is_not_yaml() -> None:
    with pytest.raises(AdoptError, match="^the machine config is empty$"):
        plan_adoption(NodeState("v1.12.11", SID, "", SMALL), owned("v1.12.11"), upgrade_follows=False)


def test_a_plan_without_a_machine_in_the_running_config_records_every_path_as_absent() -> None:
    running = "version: v1alpha1\ncluster:\n  clusterName: homelab\n"
    plan = plan_adoption(NodeState("v1.12.11", SID, SMALL, running), owned("v1.12.11"), upgrade_follows=True)
    assert plan.merged.originals.absent == ["install", "kernel", "kernel.modules", "sysctls", "nodeLabels", "files"]
    assert plan.merged.originals.install == {"image": None, "wipe": None}


def test_a_node_without_a_kernel_section_is_adopted() -> None:
    # `talosctl gen config` writes no machine.kernel; the guard must not take
    # the kernel section the merge adds for the modules as a foreign change.
    documents = load_documents(SMALL)
    after = merge(documents, owned("v1.13.9")).documents
    guard(documents, after, LABELS)
    assert after[0]["machine"]["kernel"] == {"modules": [{"name": name} for name in ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")]}


def test_every_differing_list_item_is_named() -> None:
    assert leaf_differences([{"a": 1}, {"a": 2}], [{"a": 3}, {"a": 4}], "modules") == ["modules[0].a", "modules[1].a"]


def test_a_float_that_only_yaml_v3_reads_as_a_number_is_quoted() -> None:
    # PyYAML's own (YAML 1.1) rules read 1e3 as a string and would leave it bare.
    assert dump_documents([{"value": "1e3"}]) == "value: '1e3'\n"


def test_a_line_longer_than_64_kib_is_folded() -> None:
    # Talos reads folded plain scalars back as the same string.
    long = " ".join(["word"] * 20000)
    text = dump_documents([{"value": long}])
    assert len(text.splitlines()) == 2
    assert load_documents(text) == [{"value": long}]


def test_a_node_without_wipe_gets_wipe_false_and_says_so() -> None:
    merged = merge([{"version": "v1alpha1", "machine": {"install": {"disk": "/dev/sda", "wipe": True}}}], owned("v1.13.9"))
    assert [change.line() for change in merged.changes][:2] == [
        f"machine.install.image: add '{image('v1.13.9')}'", "machine.install.wipe: True -> False"]


def test_the_nodes_own_empty_cri_file_stays_when_the_default_runtime_is_no_longer_wanted() -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", "")))
    on_1_12 = merge(documents, owned("v1.12.11"))
    off = merge(on_1_12.documents, owned("v1.12.11", nvidia_default_runtime=False), on_1_12.originals)
    assert off.documents[0]["machine"]["files"] == documents[0]["machine"]["files"]
    assert off.changes == [Change(f"{CRI}.content", BLOCK_1_8, "")]


def test_a_cri_file_without_content_that_the_node_did_not_have_is_removed() -> None:
    documents = worker_documents("v1.12.11")
    documents[0]["machine"]["files"].append({"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644})
    off = merge(documents, owned("v1.12.11", nvidia_default_runtime=False), Originals(cri_file={"entry": None}))
    assert off.documents[0]["machine"]["files"] == worker_documents("v1.12.11")[0]["machine"]["files"]
    assert off.changes[-1].line() == f"{CRI}: remove ''"


@pytest.mark.parametrize("content", ["[metrics]\n  address = 1\n  ", "\n[metrics]\n  address = 1"],
                         ids=["trailing spaces", "leading blank line"])
def test_restore_gives_back_a_cri_file_with_odd_whitespace_byte_for_byte(content: str) -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", content)))
    merged = merge(documents, owned("v1.12.11"))
    back = restore(merged.documents, merged.originals, owned("v1.12.11"))
    assert back.documents[0]["machine"]["files"][-1]["content"] == content


# A comment ending in X without a final line break: the restored bytes must
# be the node's, not the node's with trailing X's or line breaks trimmed.
ENDS_IN_X = METRICS + "# reviewed by MAX"


def test_a_cri_file_ending_without_a_line_break_comes_back_byte_for_byte_from_restore_and_from_merge() -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", ENDS_IN_X)))
    merged = merge(documents, owned("v1.12.11"))
    assert merged.documents[0]["machine"]["files"][-1]["content"] == ENDS_IN_X + "\n" + BLOCK_1_8
    back = restore(merged.documents, merged.originals, owned("v1.12.11"))
    assert back.documents == documents
    off = merge(merged.documents, owned("v1.12.11", nvidia_default_runtime=False), merged.originals)
    assert off.documents[0]["machine"]["files"] == documents[0]["machine"]["files"]
    assert off.changes == [Change(f"{CRI}.content", ENDS_IN_X + "\n" + BLOCK_1_8, ENDS_IN_X)]


def own_cri_node_adopted(content: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    before = load_documents(as_text(with_own_cri_file("v1.12.11", content)))
    after = merge(before, owned("v1.12.11")).documents
    guard(before, after, LABELS)
    return before, after


@pytest.mark.parametrize(("content", "edited"), [
    (METRICS, METRICS.rstrip("\n") + "  \n"),
    (METRICS, "\n" + METRICS),
    (ENDS_IN_X, ENDS_IN_X[:-1]),
], ids=["trailing spaces at the end", "leading blank line added", "last character taken"])
def test_guard_refuses_an_edit_of_the_nodes_own_lines_in_its_cri_file(content: str, edited: str) -> None:
    before, after = own_cri_node_adopted(content)
    files = after[0]["machine"]["files"]
    files[-1]["content"] = files[-1]["content"].replace(content.rstrip("\n"), edited.rstrip("\n"), 1)
    with pytest.raises(AdoptError) as error:
        guard(before, after, LABELS)
    assert str(error.value) == "refusing: the merged config would change paths this program does not own: document 0: machine.files[1].content"


def test_guard_adopts_a_cri_file_without_a_final_line_break_that_starts_with_a_blank_line() -> None:
    content = "\n" + METRICS.rstrip("\n")
    text = as_text(with_own_cri_file("v1.12.11", content))
    plan = plan_adoption(NodeState("v1.12.11", SID, text, text), owned("v1.12.11"), upgrade_follows=False)
    assert plan.merged.documents[0]["machine"]["files"][-1]["content"] == content + "\n" + BLOCK_1_8


def test_guard_refuses_a_trailing_line_break_added_to_a_file_the_program_does_not_own() -> None:
    before, after = own_cri_node_adopted(METRICS)
    after[0]["machine"]["files"][0]["content"] += "\n"
    with pytest.raises(AdoptError) as error:
        guard(before, after, LABELS)
    assert str(error.value) == "refusing: the merged config would change paths this program does not own: document 0: machine.files[0].content"


def test_guard_compares_the_files_after_a_cri_file_holding_only_the_block() -> None:
    before = load_documents(as_text(worker_documents("v1.12.11")))
    after = merge(before, owned("v1.12.11")).documents
    before[0]["machine"]["files"].append({"op": "create", "path": "/var/etc/motd", "permissions": 0o600, "content": "moody-good\n"})
    after[0]["machine"]["files"].append({"op": "create", "path": "/var/etc/motd", "permissions": 0o600, "content": "other\n"})
    assert [entry["path"] for entry in after[0]["machine"]["files"]] == ["/etc/nfsmount.conf", CRI_CUSTOMIZATION_PATH, "/var/etc/motd"]
    with pytest.raises(AdoptError) as error:
        guard(before, after, LABELS)
    assert str(error.value) == "refusing: the merged config would change paths this program does not own: document 0: machine.files[1].content"


def test_a_plan_leaves_the_callers_originals_as_they_were() -> None:
    partial = Originals(install={"image": "ghcr.io/siderolabs/installer:v1.12.11"})
    kept = copy.deepcopy(partial)
    plan = plan_adoption(NodeState("v1.12.11", SID, SMALL, SMALL), owned("v1.12.11"), upgrade_follows=False, originals=partial)
    assert partial == kept
    assert plan.merged.originals.install == {"image": "ghcr.io/siderolabs/installer:v1.12.11", "wipe": False}


def test_a_plan_that_changes_nothing_still_carries_the_owned_values() -> None:
    plan = plan_adoption(NodeState("v1.12.11", SID, SMALL_ADOPTED, SMALL_ADOPTED), owned("v1.12.11"), upgrade_follows=False)
    assert plan.owned == owned("v1.12.11") and plan.mode == "none"


def test_a_plan_names_every_path_talos_reboots_for() -> None:
    stored = with_edits(load_documents(SMALL), lambda d: d[0]["machine"].update(disks=[{"device": "/dev/sdb"}], features={"rbac": True}))
    plan = plan_adoption(NodeState("v1.12.11", SID, as_text(stored), SMALL), owned("v1.12.11"), upgrade_follows=False)
    assert plan.reboot_paths == [".machine.disks", ".machine.features.rbac", ".machine.files"]
    assert plan.lines()[-1] == ("apply with --mode=auto: Talos reboots the node, because it cannot apply "
                                ".machine.disks, .machine.features.rbac, .machine.files without a reboot")


def test_restore_of_a_node_whose_labels_were_all_removed_by_hand() -> None:
    _, merged = gpu_node_adopted()
    edited = copy.deepcopy(merged.documents)
    del edited[0]["machine"]["nodeLabels"]
    back = restore(edited, merged.originals, owned("v1.12.11"))
    assert "nodeLabels" not in back.documents[0]["machine"]
    assert back.conflicts == ["machine.nodeLabels[drmoo.io/gpu] is None, neither 'nvidia-t4' nor the original"]
    fresh = merge(load_documents(SMALL), owned("v1.12.11"))
    edited = copy.deepcopy(fresh.documents)
    del edited[0]["machine"]["nodeLabels"]
    back = restore(edited, fresh.originals, owned("v1.12.11"))
    assert back.conflicts == [] and back.text() == SMALL, "labels the node never had are simply gone"


def test_restore_of_a_config_without_a_machine_section_changes_nothing() -> None:
    documents = [{"version": "v1alpha1", "cluster": {"clusterName": "homelab"}}]
    _, merged = gpu_node_adopted()
    back = restore(documents, merged.originals, owned("v1.12.11"))
    assert (back.documents, back.changes, back.conflicts) == (documents, [], [])


def test_restore_works_on_the_first_cri_file_entry_only_as_merge_does() -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", METRICS)))
    merged = merge(documents, owned("v1.12.11"))
    twice = copy.deepcopy(merged.documents)
    second = {**twice[0]["machine"]["files"][-1], "op": "append"}
    marker = {"op": "create", "path": "/var/etc/flag", "permissions": 0o644, "content": ""}
    twice[0]["machine"]["files"] += [second, marker]
    back = restore(twice, merged.originals, owned("v1.12.11"))
    assert back.documents[0]["machine"]["files"] == [*documents[0]["machine"]["files"], second, marker]
    edited = copy.deepcopy(twice)
    edited[0]["machine"]["files"][1]["content"] = edited[0]["machine"]["files"][1]["content"].replace('"nvidia"', '"runc"')
    back = restore(edited, merged.originals, owned("v1.12.11"))
    assert back.conflicts == [f"{CRI}: the lines between the program's markers were edited"]
    assert back.documents[0]["machine"]["files"] == edited[0]["machine"]["files"]


def test_restore_leaves_the_nodes_own_cri_file_without_content_alone() -> None:
    documents = worker_documents("v1.12.11")
    entry = {"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644}
    documents[0]["machine"]["files"].append(entry)
    back = restore(documents, Originals(cri_file={"entry": dict(entry)}), owned("v1.12.11"))
    assert (back.documents, back.changes, back.conflicts) == (documents, [], [])
