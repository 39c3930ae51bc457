"""The owned machine-config values and the GPU patch, case by case as data:
Talos version and overrides in, the whole patch (as people review it) out;
every problem of a patch named whole."""

from __future__ import annotations

import pytest

from components.talos.machine_config import (
    NodeSpec,
    OwnedValues,
    cri_plugin_key,
    gpu_patch,
    gpu_patch_yaml,
    node_spec,
    nvidia_default_runtime_toml,
    owned_values,
    patch_problems,
)
from tests.talos.conftest import make_cfg

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"
LABELS = {"drmoo.io/role": "worker", "drmoo.io/zone": "pve5", "drmoo.io/storage": "rook-osd-node", "drmoo.io/gpu": "nvidia-t4"}
HEAD = """\
machine:
  install:
    disk: /dev/sda
    image: IMAGE
    wipe: false
  kernel:
    modules:
    - name: nvidia
    - name: nvidia_uvm
    - name: nvidia_drm
    - name: nvidia_modeset
"""
SYSCTL = """\
  sysctls:
    net.core.bpf_jit_harden: '1'
"""
NODE_LABELS = """\
  nodeLabels:
    drmoo.io/role: worker
    drmoo.io/zone: pve5
    drmoo.io/storage: rook-osd-node
    drmoo.io/gpu: nvidia-t4
"""
DEFAULT_RUNTIME = """\
  files:
  - op: create
    path: /etc/cri/conf.d/20-customization.part
    permissions: 420
    content: |
      [plugins]
        [plugins."io.containerd.cri.v1.runtime"]
          [plugins."io.containerd.cri.v1.runtime".containerd]
            default_runtime_name = "nvidia"
"""

# (case, talos keys) -> the patch as `pulumi preview` and `render` show it
PATCHES = [
    ("1.13: the guide's four modules only", {}, HEAD + NODE_LABELS),
    ("1.12: the guide's sysctl and default runtime too", {"version": "v1.12.11"}, HEAD + SYSCTL + NODE_LABELS + DEFAULT_RUNTIME),
    ("1.13 with both overrides on", {"bpfJitHarden": True, "nvidiaDefaultRuntime": True}, HEAD + SYSCTL + NODE_LABELS + DEFAULT_RUNTIME),
    ("1.12 with both overrides off and no labels", {"version": "v1.12.11", "bpfJitHarden": False, "nvidiaDefaultRuntime": False, "nodeLabels": {}}, HEAD),
    ("another install disk", {"installDisk": "/dev/nvme0n1"}, HEAD.replace("/dev/sda", "/dev/nvme0n1") + NODE_LABELS),
]


@pytest.mark.parametrize(("talos", "text"), [case[1:] for case in PATCHES], ids=[case[0] for case in PATCHES])
def test_the_patch_as_people_review_it(homelab, talos, text):
    assert gpu_patch_yaml(make_cfg(homelab, **talos), "IMAGE") == text


@pytest.mark.parametrize(("version", "key"), [("v1.7.9", "io.containerd.grpc.v1.cri"), ("v1.8.0", "io.containerd.cri.v1.runtime")])
def test_containerds_runtime_table_moved_with_containerd_2(version, key):
    assert cri_plugin_key(version) == key
    assert nvidia_default_runtime_toml(version) == (
        f'[plugins]\n  [plugins."{key}"]\n    [plugins."{key}".containerd]\n      default_runtime_name = "nvidia"\n')


# (case, Talos version the node runs next, overrides) -> the values owned at that version
OWNED = [
    ("1.12: the guide's tweaks", "v1.12.11", (None, None), (True, True)),
    ("1.13.0: the CDI toolkit, none", "v1.13.0", (None, None), (False, False)),
    ("1.13 with both on", "v1.13.9", (True, True), (True, True)),
    ("1.12 with both off", "v1.12.11", (False, False), (False, False)),
    ("each override alone", "v1.13.9", (True, None), (True, False)),
    ("the other override alone", "v1.12.11", (None, False), (True, False)),
]


@pytest.mark.parametrize(("version", "overrides", "owned"), [case[1:] for case in OWNED], ids=[case[0] for case in OWNED])
def test_owned_values_follow_the_guide_of_each_version_unless_overridden(homelab, version, overrides, owned):
    spec = NodeSpec("v1.13.9", SID, "metal", LABELS, *overrides)
    expected = OwnedValues(version, f"factory.talos.dev/metal-installer/{SID}:{version}", LABELS, *owned)
    assert spec.owned(version) == expected
    assert expected.sysctls == ({"net.core.bpf_jit_harden": "1"} if owned[0] else {})
    cfg = make_cfg(homelab, bpfJitHarden=overrides[0], nvidiaDefaultRuntime=overrides[1])
    assert owned_values(cfg.talos, version, "IMAGE") == OwnedValues(version, "IMAGE", LABELS, *owned)


def test_the_node_spec_round_trips_through_the_providers_state(homelab):
    spec = node_spec(make_cfg(homelab, version="v1.12.11", platform="nocloud", bpfJitHarden=False, nvidiaDefaultRuntime=True).talos, SID)
    state = spec.to_dict()
    assert state == {"targetVersion": "v1.12.11", "schematicId": SID, "platform": "nocloud", "nodeLabels": LABELS,
                     "bpfJitHarden": False, "nvidiaDefaultRuntime": True}
    assert NodeSpec.from_dict(state) == spec
    assert spec.target == OwnedValues("v1.12.11", f"factory.talos.dev/nocloud-installer/{SID}:v1.12.11", LABELS, False, True)
    assert spec.owned("v1.13.9") == OwnedValues("v1.13.9", f"factory.talos.dev/nocloud-installer/{SID}:v1.13.9", LABELS, False, True)
    assert NodeSpec.from_dict({"targetVersion": "v1.13.9", "schematicId": SID, "platform": "metal"}) == NodeSpec(
        "v1.13.9", SID, "metal", {}, None, None), "state from before labels and overrides were kept"


def test_owned_values_round_trip_through_the_providers_state():
    owned = OwnedValues("v1.12.11", "IMAGE", LABELS, True, False)
    assert owned.to_dict() == {"version": "v1.12.11", "image": "IMAGE", "nodeLabels": LABELS, "bpfJitHarden": True, "defaultRuntime": False}
    assert OwnedValues.from_dict(owned.to_dict()) == owned
    assert OwnedValues.from_dict({"version": "v1.13.9", "image": "I", "bpfJitHarden": 0, "defaultRuntime": 1}) == OwnedValues(
        "v1.13.9", "I", {}, False, True)


FACTORY = f"factory.talos.dev/metal-installer/{SID}:v1.13.9"
MODULES = [{"name": "nvidia"}, {"name": "nvidia_uvm"}, {"name": "nvidia_drm"}, {"name": "nvidia_modeset"}]
ROW_8 = "the extension does not load them (README, 'What the guide gets wrong', row 8)"

# (case, install section, kernel modules) -> every problem, in order
PROBLEMS = [
    ("sound", {"image": FACTORY, "wipe": False}, MODULES, []),
    ("no install section and no modules", None, None, [
        "install.image '' is not an Image Factory installer: the NVIDIA extensions would not be installed",
        "install.wipe must be false: this node's disks may hold Ceph OSDs",
        f"kernel.modules lacks nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset: {ROW_8}"]),
    ("the generic installer of another version, wiping, modules as bare names", {"image": f"factory.talos.dev/installer/{SID}:v1.12.0", "wipe": True},
     ["nvidia", {"name": "nvidia_uvm"}], [
        "install.image is for Talos v1.12.0 but talos.version is v1.13.9 (README, 'What the guide gets wrong', row 16: versions must agree)",
        f"install.image 'factory.talos.dev/installer/{SID}:v1.12.0' is not the metal-installer form; from Talos v1.10 the generic "
        "installer/ form loses the platform's kernel arguments",
        "install.wipe must be false: this node's disks may hold Ceph OSDs",
        f"kernel.modules lacks nvidia, nvidia_drm, nvidia_modeset: {ROW_8}"]),
    ("another platform's installer, wipe left out", {"image": f"factory.talos.dev/nocloud-installer/{SID}:v1.13.9"}, MODULES, [
        f"install.image 'factory.talos.dev/nocloud-installer/{SID}:v1.13.9' is not the metal-installer form; from Talos v1.10 the generic "
        "installer/ form loses the platform's kernel arguments",
        "install.wipe must be false: this node's disks may hold Ceph OSDs"]),
    ("not a factory image", {"image": "ghcr.io/siderolabs/installer:v1.13.9", "wipe": False}, MODULES, [
        "install.image 'ghcr.io/siderolabs/installer:v1.13.9' is not an Image Factory installer: the NVIDIA extensions would not be installed"]),
]


@pytest.mark.parametrize(("install", "modules", "problems"), [case[1:] for case in PROBLEMS], ids=[case[0] for case in PROBLEMS])
def test_patch_problems_are_named_whole(homelab, install, modules, problems):
    machine = {key: value for key, value in (("install", install), ("kernel", None if modules is None else {"modules": modules})) if value is not None}
    assert patch_problems({"machine": machine}, make_cfg(homelab)) == problems


@pytest.mark.parametrize(("version", "problems"), [
    ("v1.9.6", []),
    ("v1.10.0", [f"install.image 'factory.talos.dev/installer/{SID}:v1.10.0' is not the metal-installer form; from Talos v1.10 the generic "
                 "installer/ form loses the platform's kernel arguments"]),
])
def test_the_generic_installer_form_is_a_problem_from_1_10(homelab, version, problems):
    cfg = make_cfg(homelab, version=version)
    patch = {"machine": {"install": {"image": f"factory.talos.dev/installer/{SID}:{version}", "wipe": False}, "kernel": {"modules": MODULES}}}
    assert patch_problems(patch, cfg) == problems
    assert patch_problems(gpu_patch(cfg, f"factory.talos.dev/metal-installer/{SID}:{version}"), cfg) == []
