"""The dynamic providers' shared check/diff helpers (components.dynamic) and
the one logger (components.log), on their own; the providers' own tests run
them the engine's way."""

from __future__ import annotations

import sys

import pytest

from components.dynamic import PROVIDER_KEY, cannot_read, changed_keys, outputs, replacing, says, undecided, updating
from components.log import logger


def test_changed_keys_compares_only_the_keys_given_and_counts_a_missing_key_as_its_default():
    olds = {"node": "a", "gpus": 1, "other": "x"}
    news = {"node": "b", "gpus": 1, "other": "y", "resource": "nvidia.com/gpu"}
    assert changed_keys(olds, news, ("node", "gpus")) == ["node"]
    assert changed_keys(olds, news, ("resource",)) == ["resource"]
    assert changed_keys(olds, news, ("resource",), {"resource": "nvidia.com/gpu"}) == []


def test_a_replacement_deletes_first_and_an_update_does_not():
    replace = replacing(["host"])
    assert (replace.changes, replace.replaces, replace.delete_before_replace) == (True, ["host"], True)
    update = updating(False)
    assert (update.changes, update.replaces, update.delete_before_replace) == (False, [], False)
    assert updating(True).changes is True


def test_unknown_inputs_leave_the_decision_to_the_engine_unless_a_known_key_changed():
    assert undecided([]).changes is None
    assert undecided(["gpus"]).changes is True


def test_pending_lines_and_the_first_line_of_an_error():
    assert says(["nothing to do", "upgrade to v1.12.1"], ("upgrade to",))
    assert not says(None, ("upgrade to",))
    assert cannot_read("node-1", OSError("connection refused\nmore")) == "not known: cannot read node-1 (connection refused)"
    assert cannot_read("node-1", TimeoutError()) == "not known: cannot read node-1 (TimeoutError)"


def test_outputs_drop_the_provider_blob_and_stale_state():
    props = {PROVIDER_KEY: "blob", "node": "a", "pendingChanges": ["x"], "originals": {"old": 1}}
    assert outputs(props, ("pendingChanges", "originals"), originals={"new": 2}) == {"node": "a", "originals": {"new": 2}}


def test_the_logger_writes_tagged_lines_to_stderr_or_pulumi_log(capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "pulumi.log", raising=False)
    logger("gpu-vm")("planned VM changes")
    assert capsys.readouterr().err == "[gpu-vm] planned VM changes\n"
    said = []

    class Log:
        @staticmethod
        def info(line):
            said.append(line)

    monkeypatch.setitem(sys.modules, "pulumi.log", Log)
    logger("talos-config")("restore x")
    assert said == ["[talos-config] restore x"] and capsys.readouterr().err == ""


def test_a_warning_logger_writes_at_the_warning_level(capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "pulumi.log", raising=False)
    logger("flux-preflight", "warn")("cluster not read")
    assert capsys.readouterr().err == "warning: [flux-preflight] cluster not read\n"
    said = []

    class Log:
        @staticmethod
        def info(line):
            said.append(("info", line))

        @staticmethod
        def warn(line):
            said.append(("warn", line))

    monkeypatch.setitem(sys.modules, "pulumi.log", Log)
    logger("flux-preflight", "warn")("cluster not read")
    logger("flux-preflight")("kubeconfig not known")
    assert said == [("warn", "[flux-preflight] cluster not read"), ("info", "[flux-preflight] kubeconfig not known")]
    assert capsys.readouterr().err == ""


def test_an_unknown_log_level_is_refused_naming_the_levels():
    with pytest.raises(ValueError, match=r"^log level 'debug': use one of info, warn$"):
        logger("gpu-vm", "debug")


def test_old_names_held_lists_only_old_spellings_without_their_new_name():
    from components.renamed_keys import get_key, old_names_held

    old_names = {"iommuGroups": "iommu_groups", "subsystemIds": "subsystem_ids", "apiKey": "api_key"}
    state = {"iommu_groups": {"3b:00.0": 31}, "subsystemIds": {}, "subsystem_ids": {}, "drivers": {}}
    assert old_names_held(state, old_names) == ["iommu_groups"]
    assert old_names_held({"iommuGroups": {}}, old_names) == []
    assert get_key(state, "iommuGroups", old_names) == {"3b:00.0": 31}
    assert get_key(state, "apiKey", old_names, "none") == "none"


def test_canonical_keys_reads_either_spelling_and_gives_a_missing_key_its_default():
    from components.renamed_keys import canonical_keys

    old_names = {"vmId": "vm_id", "checkMappings": "check_mappings"}
    keys = ("node", "vmId", "checkMappings")
    assert canonical_keys({"node": "pve5", "vm_id": 1105}, keys, old_names, {"checkMappings": True}) == \
        {"node": "pve5", "vmId": 1105, "checkMappings": True}
    assert canonical_keys({"vmId": 7, "vm_id": 1105, "check_mappings": False}, keys, old_names) == \
        {"node": None, "vmId": 7, "checkMappings": False}, "the current name wins; no default means None"
