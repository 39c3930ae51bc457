"""Adopting a node's running machine config (pure planner): on realistic
running configs, every value the program does not own survives, the owned
paths come out right, the result is a valid Talos config of that version,
adopting the result again changes nothing, and restore gives the node its
own config back."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.talos.adopt import NodeState, merge, plan_adoption, restore
from components.talos.adopt_guard import guard
from components.talos.adopt_originals import Originals
from components.talos.config_diff import diff_lines
from components.talos.config_documents import AdoptError, dump_documents, load_documents
from components.talos.config_reboots import reboot_paths
from components.talos.cri_customization import BLOCK_BEGIN, with_block
from components.talos.machine_config import CRI_CUSTOMIZATION_PATH, NVIDIA_MODULES, NodeSpec, OwnedValues
from tests.talos.running_configs import as_text, multi_document, with_node_gpu_bits, with_own_cri_file, worker_documents
from tests.talos.test_machine_config import schema_errors

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"
LABELS = {"drmoo.io/gpu": "nvidia-t4", "drmoo.io/role": "worker"}
SPEC = NodeSpec(target_version="v1.13.9", schematic_id=SID, platform="metal", node_labels=LABELS,
                bpf_jit_harden=None, nvidia_default_runtime=None)


def owned(version: str = "v1.13.9", **overrides: Any) -> OwnedValues:
    spec = SPEC
    if overrides:
        spec = NodeSpec(**{**spec.__dict__, **overrides})
    return spec.owned(version)


# -- what "owned" means, written out independently of the planner ----------


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a YAML tree by path; list items by index, except the
    two lists the program appends to, keyed by their item's identity."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, f"{path}.{key}" if path else str(key)))
        return out or {path: {}}
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            ident = item.get("name") or item.get("path") if isinstance(item, dict) and path.endswith(("modules", "files")) else index
            out.update(leaves(item, f"{path}[{ident}]"))
        return out or {path: []}
    return {path: value}


def is_owned(path: str, labels: Any = LABELS) -> bool:
    return (path in ("machine.install.image", "machine.install.wipe")
            or any(path.startswith(f"machine.kernel.modules[{name}]") for name in NVIDIA_MODULES)
            or path == "machine.sysctls.net.core.bpf_jit_harden"
            or any(path == f"machine.nodeLabels.{key}" for key in labels)
            or path.startswith(f"machine.files[{CRI_CUSTOMIZATION_PATH}]"))


CONFIGS = {
    "guide worker v1.11.6": lambda: worker_documents("v1.11.6"),
    "guide worker v1.13.9 (network documents)": lambda: worker_documents("v1.13.9"),
    "multi-document v1.13.9": multi_document,
    "node with some NVIDIA modules, labels and files": lambda: with_node_gpu_bits("v1.13.9"),
    "node with its own CRI customization": lambda: with_own_cri_file("v1.11.6"),
}
# (config, Talos version of the node and of its schema, version adopted for)
CASES = [("guide worker v1.11.6", "v1.11.6", "v1.11.6"),
         ("guide worker v1.13.9 (network documents)", "v1.13.9", "v1.13.9"),
         ("multi-document v1.13.9", "v1.13.9", "v1.13.9"),
         ("node with some NVIDIA modules, labels and files", "v1.13.9", "v1.13.9"),
         ("node with its own CRI customization", "v1.11.6", "v1.11.6")]


@pytest.mark.parametrize(("name", "schema", "version"), CASES, ids=[case[0] for case in CASES])
def test_every_value_the_program_does_not_own_survives(name: str, schema: str, version: str) -> None:
    before = CONFIGS[name]()
    after = merge(load_documents(as_text(before)), owned(version)).documents
    assert len(after) == len(before)
    for index, (old, new) in enumerate(zip(before, after, strict=True)):
        kept, now = leaves(old), leaves(new)
        lost = {path: value for path, value in kept.items() if not is_owned(path) and now.get(path, "(gone)") != value}
        assert lost == {}, f"document {index} lost or changed values the program does not own"
        if index:
            assert new == old, "documents other than v1alpha1 come out unchanged"


@pytest.mark.parametrize(("name", "schema", "version"), CASES, ids=[case[0] for case in CASES])
def test_owned_paths_are_merged_in_and_the_result_is_a_valid_talos_config(name: str, schema: str, version: str) -> None:
    before = CONFIGS[name]()
    want = owned(version)
    after = merge(load_documents(as_text(before)), want).documents
    machine = after[0]["machine"]
    assert machine["install"]["image"] == f"factory.talos.dev/metal-installer/{SID}:{version}"
    assert machine["install"]["wipe"] is False
    assert machine["install"]["disk"] == before[0]["machine"]["install"]["disk"], "the node's install disk is not owned"
    names = [item["name"] for item in machine["kernel"]["modules"]]
    own = [item["name"] for item in before[0]["machine"]["kernel"]["modules"]]
    assert names[:len(own)] == own, "the node's own modules come first, untouched"
    assert sorted(names) == sorted(set(names)), "no module is listed twice"
    assert set(NVIDIA_MODULES) <= set(names)
    for key, value in LABELS.items():
        assert machine["nodeLabels"][key] == value
    guide_sets = version < "v1.13"
    assert (machine["sysctls"].get("net.core.bpf_jit_harden") == "1") is guide_sets
    cri = [entry for entry in machine.get("files", []) if entry["path"] == CRI_CUSTOMIZATION_PATH]
    assert bool(cri and 'default_runtime_name = "nvidia"' in cri[0]["content"]) is guide_sets
    assert schema_errors(schema, after) == []


@pytest.mark.parametrize(("name", "schema", "version"), CASES, ids=[case[0] for case in CASES])
def test_adopting_the_result_again_changes_nothing_and_restore_gives_the_node_its_config_back(name: str, schema: str, version: str) -> None:
    before = load_documents(as_text(CONFIGS[name]()))
    first = merge(before, owned(version))
    again = merge(load_documents(first.text()), owned(version), first.originals)
    assert again.changes == [] and again.documents == first.documents
    back = restore(load_documents(first.text()), first.originals, owned(version))
    assert back.conflicts == []
    assert back.documents == before


def test_labels_and_modules_the_node_already_has_are_kept_and_recorded() -> None:
    before = load_documents(as_text(with_node_gpu_bits("v1.13.9")))
    merged = merge(before, owned())
    machine = merged.documents[0]["machine"]
    modules = machine["kernel"]["modules"]
    assert modules[:3] == [{"name": "nbd"}, {"name": "nvidia", "parameters": ["NVreg_OpenRmEnableUnsupportedGpus=1"]}, {"name": "nvidia_uvm"}]
    assert modules[3:] == [{"name": "nvidia_drm"}, {"name": "nvidia_modeset"}], "only the missing NVIDIA modules are appended"
    assert machine["nodeLabels"]["topology.kubernetes.io/zone"] == "pve5", "a label the program does not own survives"
    assert merged.originals.node_labels["drmoo.io/gpu"] == "none"
    assert merged.originals.modules == ["nvidia", "nvidia_uvm"]
    assert machine["sysctls"]["net.core.bpf_jit_harden"] == "2", "not set by the 1.13 guide: the node's own value stays"
    back = restore(merged.documents, merged.originals, owned())
    assert back.documents[0]["machine"]["kernel"]["modules"] == before[0]["machine"]["kernel"]["modules"], "restore removes only what it added"
    assert back.documents[0]["machine"]["nodeLabels"]["drmoo.io/gpu"] == "none"


def test_the_step_to_1_13_takes_back_what_only_the_1_12_guide_sets() -> None:
    before = load_documents(as_text(with_node_gpu_bits("v1.11.6")))
    on_1_12 = merge(before, owned("v1.12.11"))
    assert on_1_12.documents[0]["machine"]["sysctls"]["net.core.bpf_jit_harden"] == "1"
    on_1_13 = merge(on_1_12.documents, owned("v1.13.9"), on_1_12.originals)
    machine = on_1_13.documents[0]["machine"]
    assert machine["sysctls"]["net.core.bpf_jit_harden"] == "2", "the node's own value comes back, not a deletion"
    assert not any(entry["path"] == CRI_CUSTOMIZATION_PATH for entry in machine["files"]), "the file the program created is gone"
    assert {change.path for change in on_1_13.changes} == {
        "machine.install.image", "machine.sysctls[net.core.bpf_jit_harden]", f"machine.files[path={CRI_CUSTOMIZATION_PATH}]"}


def test_explicit_overrides_hold_on_every_version() -> None:
    before = load_documents(as_text(worker_documents("v1.11.6")))
    machine = merge(before, owned("v1.13.9", bpf_jit_harden=True, nvidia_default_runtime=True)).documents[0]["machine"]
    assert machine["sysctls"]["net.core.bpf_jit_harden"] == "1"
    assert any(entry["path"] == CRI_CUSTOMIZATION_PATH for entry in machine["files"])
    machine = merge(before, owned("v1.12.11", bpf_jit_harden=False, nvidia_default_runtime=False)).documents[0]["machine"]
    assert "net.core.bpf_jit_harden" not in machine["sysctls"]
    assert not any(entry["path"] == CRI_CUSTOMIZATION_PATH for entry in machine["files"])


# -- the node's own CRI customization file --------------------------------


def test_the_default_runtime_goes_into_the_nodes_own_cri_file() -> None:
    before = load_documents(as_text(with_own_cri_file("v1.12.11")))
    merged = merge(before, owned("v1.12.11"))
    [entry] = [entry for entry in merged.documents[0]["machine"]["files"] if entry["path"] == CRI_CUSTOMIZATION_PATH]
    original = before[0]["machine"]["files"][-1]["content"]
    assert entry["content"].startswith(original), "the node's own lines stay first, byte for byte"
    assert entry["content"].count("[metrics]") == 1 and 'sandbox = "registry.k8s.io/pause:3.8"' in entry["content"]
    assert 'default_runtime_name = "nvidia"' in entry["content"] and BLOCK_BEGIN in entry["content"]
    assert entry["op"] == "create" and entry["permissions"] == 0o644


def test_a_line_goes_into_the_nodes_existing_containerd_table() -> None:
    content = ('[plugins."io.containerd.cri.v1.runtime".containerd]\n  snapshotter = "overlayfs"\n'
               '[plugins."io.containerd.cri.v1.images".pinned_images]\n  sandbox = "registry.k8s.io/pause:3.8"')
    merged = with_block(content, "v1.12.11")
    import tomllib

    table = tomllib.loads(merged)["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert table == {"snapshotter": "overlayfs", "default_runtime_name": "nvidia"}
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", content)))
    first = merge(documents, owned("v1.12.11"))
    back = restore(first.documents, first.originals, owned("v1.12.11"))
    assert back.documents == documents, "a file without a final line break comes back byte for byte"


@pytest.mark.parametrize(("content", "message"), [
    ('[plugins."io.containerd.cri.v1.runtime".containerd]\n  default_runtime_name = "runc"\n', "already sets default_runtime_name = 'runc'"),
    ('plugins."io.containerd.cri.v1.runtime".containerd.snapshotter = "overlayfs"\n', "cannot add a line to"),
    ("[metrics\naddress = 1\n", "not valid TOML"),
])
def test_a_cri_file_the_program_cannot_merge_into_is_refused_with_its_path(content: str, message: str) -> None:
    documents = load_documents(as_text(with_own_cri_file("v1.12.11", content)))
    with pytest.raises(AdoptError, match=message) as error:
        merge(documents, owned("v1.12.11"))
    assert f"machine.files[path={CRI_CUSTOMIZATION_PATH}]" in str(error.value)
    assert "talos.nvidiaDefaultRuntime" in str(error.value)


# -- the guard, reboots, the plan ------------------------------------------


def test_guard_names_any_change_outside_the_owned_paths() -> None:
    before = load_documents(as_text(multi_document()))
    after = merge(before, owned()).documents
    guard(before, after, LABELS)
    tampered = copy.deepcopy(after)
    tampered[0]["machine"]["kubelet"]["extraArgs"]["system-reserved"] = "cpu=0"
    tampered[3]["maxSize"] = "1GiB"
    with pytest.raises(AdoptError) as error:
        guard(before, tampered, LABELS)
    assert "document 0: machine.kubelet.extraArgs.system-reserved" in str(error.value)
    assert "document 3: provisioning" not in str(error.value) and "document 3: maxSize" in str(error.value)
    dropped = copy.deepcopy(after)
    dropped[0]["machine"]["kernel"]["modules"] = [item for item in dropped[0]["machine"]["kernel"]["modules"] if item["name"] != "nbd"]
    with pytest.raises(AdoptError, match="document 0: machine.kernel$"):  # no module of its own is left: the section is named
        guard(before, dropped, LABELS)


def test_which_changes_make_talos_reboot() -> None:
    before = load_documents(as_text(worker_documents("v1.12.11")))
    assert reboot_paths(before, merge(before, owned("v1.12.11")).documents, "v1.12.11") == [".machine.files"]
    assert reboot_paths(before, merge(before, owned("v1.13.9")).documents, "v1.12.11") == [], \
        "image, modules, sysctls and labels apply without a reboot"
    kubelet = copy.deepcopy(before)
    kubelet[0]["machine"]["features"]["rbac"] = False
    assert reboot_paths(before, kubelet, "v1.12.11") == [".machine.features.rbac"]


def state(version: str, documents: list[dict[str, Any]], schematic: str | None = None) -> NodeState:
    return NodeState(version=version, schematic=schematic, stored=as_text(documents), running=as_text(documents))


def test_plan_stages_the_config_when_an_upgrade_follows_and_says_why() -> None:
    plan = plan_adoption(state("v1.12.11", worker_documents("v1.12.11")), owned(), upgrade_follows=True)
    assert plan.mode == "staged"
    assert any("--mode=staged" in line and "the upgrade's reboot applies it" in line for line in plan.lines())


def test_plan_applies_at_once_when_no_upgrade_follows_and_names_what_reboots() -> None:
    documents = worker_documents("v1.13.9")
    plan = plan_adoption(state("v1.13.9", documents, SID), owned(nvidia_default_runtime=True), upgrade_follows=False)
    assert plan.mode == "auto" and plan.reboot_paths == [".machine.files"]
    assert any("Talos reboots the node" in line and ".machine.files" in line for line in plan.lines())
    again = plan_adoption(state("v1.13.9", plan.merged.documents, SID), owned(nvidia_default_runtime=True), upgrade_follows=False,
                          originals=plan.merged.originals)
    assert again.mode == "none" and again.lines()[0].startswith("nothing to do because")


def test_originals_come_from_the_running_config_not_a_staged_one() -> None:
    running = worker_documents("v1.12.11")
    staged = merge(running, owned()).documents
    plan = plan_adoption(NodeState("v1.12.11", None, stored=as_text(staged), running=as_text(running)), owned(), upgrade_follows=True)
    assert not plan.changed, "the staged config already holds the owned values"
    assert plan.merged.originals.install["image"] == "ghcr.io/siderolabs/installer:v1.12.11"
    assert "a staged config is waiting" in plan.lines()[0]


def test_preview_diff_shows_changed_lines_only_and_no_secret() -> None:
    documents = worker_documents("v1.11.6")
    text = as_text(documents)
    merged = merge(load_documents(text), owned("v1.11.6"))
    lines = diff_lines(text, merged.text())
    changed = [line for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert any("factory.talos.dev/metal-installer" in line for line in changed)
    assert all("token" not in line and "abcdef.0123456789abcdef" not in line for line in lines)
    assert not any(line.startswith(" ") for line in lines), "no context lines"
    secret = [" token: abcdef.0123456789abcdef", "  ca: LS0t"]
    assert diff_lines("a: 1\n", "a: 1\n" + secret[0] + "\n")[-1] == "+ token: ***"


def test_yaml_keeps_the_types_talos_reads() -> None:
    text = "version: v1alpha1\nmachine:\n  files:\n  - permissions: 0o644\n    path: /a\n    content: x\n  nodeLabels:\n    a: 'yes'\n    b: '0o17'\n    c: 'on'\n    d: '2024-01-01'\n"
    documents = load_documents(text)
    machine = documents[0]["machine"]
    assert machine["files"][0]["permissions"] == 0o644
    assert machine["nodeLabels"] == {"a": "yes", "b": "0o17", "c": "on", "d": "2024-01-01"}
    assert load_documents(dump_documents(documents)) == documents
    assert "b: '0o17'" in dump_documents(documents), "a string yaml.v3 would read as a number is quoted"


def test_a_config_without_a_v1alpha1_document_is_refused() -> None:
    with pytest.raises(AdoptError, match="no v1alpha1 document"):
        merge([{"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "x"}], owned())


def test_originals_round_trip_through_state() -> None:
    merged = merge(load_documents(as_text(with_node_gpu_bits("v1.11.6"))), owned("v1.12.11"))
    assert Originals.from_dict(merged.originals.to_dict()) == merged.originals


def test_a_foreign_edit_of_an_owned_path_is_named_on_restore() -> None:
    before = load_documents(as_text(worker_documents("v1.12.11")))
    merged = merge(before, owned("v1.12.11"))
    edited = copy.deepcopy(merged.documents)
    edited[0]["machine"]["install"]["image"] = "ghcr.io/siderolabs/installer:v1.12.11-custom"
    edited[0]["machine"]["nodeLabels"]["drmoo.io/gpu"] = "a100"
    result = restore(edited, merged.originals, owned("v1.12.11"))
    assert any("machine.install.image" in conflict for conflict in result.conflicts)
    assert any("machine.nodeLabels[drmoo.io/gpu]" in conflict for conflict in result.conflicts)
