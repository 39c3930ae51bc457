"""The existing-mode planner on its own (pure: facts in, plan out): which
keys it writes, what it records for undo, what it refuses and what undo puts
back. The same cases through the stand-in Proxmox API are in
test_adopt_engine.py."""

from __future__ import annotations

import pytest

from components.vm.adopt import AdoptSpec, SlotSpec, VmFacts, parse_hostpci, plan_attach, plan_undo

GPU = SlotSpec(index=0, slot="hostpci0", mapping="moody-good-gpu0", path="0000:3b:00.0", pcie=True, rombar=True, xvga=False)
SPEC = AdoptSpec(node="pve5", vm_id=1105, name="moody-good", slots=(GPU,))
MAPPINGS = {"moody-good-gpu0": ("0000:3b:00.0",)}
BASE = {"machine": "q35", "balloon": "16384", "memory": "243712", "scsi1": "ceph-osd:vm-1105-disk-1,size=2000G"}


def facts(**config: str) -> VmFacts:
    merged = {k: v for k, v in {**BASE, **config}.items() if v != ""}
    return VmFacts(exists=True, config=merged, digest="d1", mappings=MAPPINGS)


def test_attach_writes_only_the_slot_and_the_balloon_with_the_digest_read() -> None:
    plan = plan_attach(SPEC, facts())
    assert plan.params() == {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0", "digest": "d1"}
    assert plan.previous == {"hostpci0": None, "balloon": "16384"} and not plan.refused


def test_attach_on_an_adopted_vm_is_a_noop_that_keeps_the_first_recorded_values() -> None:
    plan = plan_attach(SPEC, facts(hostpci0="mapping=moody-good-gpu0,pcie=1", balloon="0"), {"hostpci0": None, "balloon": "16384"})
    assert plan.is_noop and plan.previous == {"hostpci0": None, "balloon": "16384"}
    assert plan.notes == ("hostpci0 is mapping=moody-good-gpu0,pcie=1 already", "balloon is 0 already")


@pytest.mark.parametrize(("flags", "value"), [
    ({"pcie": False}, "mapping=moody-good-gpu0"),
    ({"rombar": False}, "mapping=moody-good-gpu0,pcie=1,rombar=0"),
    ({"xvga": True}, "mapping=moody-good-gpu0,pcie=1,x-vga=1"),
    ({"mapping": None}, "0000:3b:00.0,pcie=1"),
])
def test_the_slot_value_carries_only_flags_that_differ_from_proxmoxs_defaults(flags, value) -> None:
    slot = SlotSpec(**{**GPU.__dict__, **flags})
    assert slot.value == value


def test_the_same_device_with_other_flags_is_rewritten_not_refused() -> None:
    (change,) = [c for c in plan_attach(SPEC, facts(hostpci0="0000:3b:00.0")).changes if c.key == "hostpci0"]
    assert change.old == "0000:3b:00.0" and change.new == "mapping=moody-good-gpu0,pcie=1" and change.reason == "same device, this program's flags"


@pytest.mark.parametrize(("config", "others", "start"), [
    ({"hostpci0": "0000:af:00.0"}, {}, "gpus[0].slot = 'hostpci0': VM 1105's hostpci0 holds another device"),
    ({"hostpci3": "0000:3b:00"}, {}, "gpus[0].slot = 'hostpci0': VM 1105 has this GPU in hostpci3 already"),
    ({}, {1200: {"hostpci1": "0000:3b:00.0;0000:3b:00.1"}}, "gpus[0].address = '0000:3b:00.0': the GPU is already configured on VM 1200"),
    ({}, {1200: {"hostpci0": "mapping=moody-good-gpu0"}}, "gpus[0].mappingName = 'moody-good-gpu0': the GPU is already configured on VM 1200"),
    ({"machine": ""}, {}, "gpus[0].pcie = True: VM 1105's machine type is i440fx (the default)"),
    ({"machine": "pc-i440fx-9.0"}, {}, "gpus[0].pcie = True: VM 1105's machine type is pc-i440fx-9.0"),
])
def test_each_refusal_names_its_key_and_plans_no_change(config, others, start) -> None:
    found = facts(**config)
    plan = plan_attach(SPEC, VmFacts(exists=True, config=found.config, digest="d1", others=others, mappings=MAPPINGS))
    assert plan.refused and plan.changes == () and any(r.startswith(start) for r in plan.refusals), plan.refusals


def test_another_function_of_another_card_is_not_the_gpu() -> None:
    plan = plan_attach(SPEC, VmFacts(exists=True, config=facts().config, others={1200: {"hostpci0": "0000:3c:00.0"}}, mappings=MAPPINGS))
    assert not plan.refused


def test_q35_with_options_is_q35() -> None:
    assert not plan_attach(SPEC, facts(machine="pc-q35-9.0,viommu=intel")).refused
    assert not plan_attach(SPEC, facts(machine="type=q35")).refused


def test_a_missing_mapping_is_refused_only_where_it_is_checked() -> None:
    none = VmFacts(exists=True, config=facts().config, mappings={})
    assert plan_attach(SPEC, none).refusals[0].startswith("gpus[0].mappingName = 'moody-good-gpu0': there is no PCI mapping")
    assert not plan_attach(AdoptSpec(**{**SPEC.__dict__, "check_mappings": False}), none).refused


def test_a_missing_vm_is_one_refusal_naming_vm_source_create() -> None:
    (refusal,) = plan_attach(SPEC, VmFacts(exists=False)).refusals
    assert refusal.startswith("vm.vmId = 1105: there is no VM 1105 on Proxmox node pve5") and "vm.source: create" in refusal


def test_undo_deletes_the_added_slot_and_restores_the_balloon() -> None:
    written = {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0"}
    plan = plan_undo(SPEC, facts(**written), {"hostpci0": None, "balloon": "16384"}, written)
    assert plan.params() == {"balloon": "16384", "delete": "hostpci0", "digest": "d1"}


def test_undo_of_a_balloon_that_was_unset_deletes_it() -> None:
    written = {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0"}
    plan = plan_undo(SPEC, facts(**written), {"hostpci0": None, "balloon": None}, written)
    assert plan.params()["delete"] == "hostpci0,balloon"


def test_undo_leaves_a_key_someone_changed_and_one_already_back() -> None:
    written = {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0"}
    plan = plan_undo(SPEC, facts(hostpci0="", balloon="4096"), {"hostpci0": None, "balloon": "16384"}, written)
    assert plan.is_noop
    assert plan.notes == ("hostpci0 holds what it held before (unset)",
                          "balloon was changed by someone else since this program wrote '0' (now '4096'): left as it is")


def test_parse_hostpci_takes_the_bare_first_item_as_host() -> None:
    assert parse_hostpci("0000:3b:00.0;0000:3b:00.1,pcie=1,x-vga=1") == {"host": "0000:3b:00.0;0000:3b:00.1", "pcie": "1", "x-vga": "1"}
