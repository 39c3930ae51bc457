"""Realistic running machine configs of a worker like the guide's
``moody-good`` (its Phase 3.2 worker config, filled in), as ``talosctl read
/system/state/config.yaml`` prints them, plus the variants the adoption must
handle: a multi-document config, a node that already lists some NVIDIA
modules, labels and files, and one with its own CRI customization file."""

from __future__ import annotations

import copy
from typing import Any

from components.talos.config_documents import dump_documents


def worker_documents(version: str) -> list[dict[str, Any]]:
    """A realistic worker config as `talosctl gen config` writes it for this
    Talos version (v1alpha1 document plus, on 1.13, network documents)."""
    machine: dict[str, Any] = {
        "type": "worker",
        "token": "abcdef.0123456789abcdef",
        "ca": {"crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "key": ""},
        "certSANs": [],
        "kubelet": {
            "image": "ghcr.io/siderolabs/kubelet:v1.36.2" if version >= "v1.13" else "ghcr.io/siderolabs/kubelet:v1.34.3",
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
            "extraArgs": {"rotate-server-certificates": "true", "system-reserved": "cpu=1000m,memory=2Gi,ephemeral-storage=2Gi"},
        },
        "install": {"disk": "/dev/sda", "image": "ghcr.io/siderolabs/installer:" + version, "wipe": False},
        "sysctls": {"vm.nr_hugepages": "1024", "net.core.rmem_max": "67108864"},
        "kernel": {"modules": [{"name": "nbd"}]},
        "files": [{"op": "overwrite", "path": "/etc/nfsmount.conf", "permissions": 0o644,
                   "content": "[ NFSMount_Global_Options ]\nnfsvers=4.2\n"}],
        "features": {"kubePrism": {"enabled": True, "port": 7445},
                     "hostDNS": {"enabled": True, "forwardKubeDNSToHost": True, "resolveMemberNames": True}},
    }
    documents: list[dict[str, Any]] = []
    if version < "v1.12":
        machine["network"] = {
            "hostname": "moody-good",
            "nameservers": ["8.8.8.8", "1.1.1.1"],
            "interfaces": [{"deviceSelector": {"hardwareAddr": "94:96:cc:43:7d:80"}, "addresses": ["192.168.8.123/24"],
                            "routes": [{"network": "0.0.0.0/0", "gateway": "192.168.8.1"}]}],
        }
        machine["features"].update(rbac=True, stableHostname=True, apidCheckExtKeyUsage=True)
    else:
        documents += [
            {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "moody-good"},
            {"apiVersion": "v1alpha1", "kind": "ResolverConfig", "nameservers": [{"address": "8.8.8.8"}, {"address": "1.1.1.1"}]},
            {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": "enx9496cc437d80",
             "addresses": [{"address": "192.168.8.123/24"}], "routes": [{"gateway": "192.168.8.1"}]},
        ]
    v1alpha1 = {
        "version": "v1alpha1",
        "debug": False,
        "machine": machine,
        "cluster": {
            "id": "Q2x1c3RlcklEc3RhbmRpbg==",
            "secret": "Y2x1c3Rlci1zZWNyZXQtc3RhbmQtaW4=",
            "controlPlane": {"endpoint": "https://192.168.8.99:6443"},
            "clusterName": "homelab",
            "network": {"dnsDomain": "cluster.local", "podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["10.96.0.0/12"]},
            "token": "abcdef.0123456789abcdef",
            "ca": {"crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "key": ""},
            "discovery": {"enabled": True},
        },
    }
    return [v1alpha1, *documents]


def with_node_gpu_bits(version: str) -> list[dict[str, Any]]:
    """A node someone started to set up by hand: it lists nvidia (with a
    parameter) and nvidia_uvm, carries one of the stack's labels with another
    value, has the sysctl at the kernel's default and two files."""
    documents = worker_documents(version)
    machine = documents[0]["machine"]
    machine["kernel"]["modules"] += [{"name": "nvidia", "parameters": ["NVreg_OpenRmEnableUnsupportedGpus=1"]}, {"name": "nvidia_uvm"}]
    machine["nodeLabels"] = {"drmoo.io/gpu": "none", "topology.kubernetes.io/zone": "pve5"}
    machine["sysctls"]["net.core.bpf_jit_harden"] = "2"
    machine["files"].append({"op": "create", "path": "/var/etc/motd", "permissions": 0o600, "content": "moody-good\n"})
    return documents


def with_own_cri_file(version: str, content: str | None = None) -> list[dict[str, Any]]:
    """A node with its own containerd customization (the Talos docs'
    metrics and pause-image examples)."""
    documents = worker_documents(version)
    documents[0]["machine"]["files"].append({
        "op": "create", "path": "/etc/cri/conf.d/20-customization.part", "permissions": 0o644,
        "content": content if content is not None else (
            "[metrics]\n  address = \"0.0.0.0:11234\"\n\n"
            "[plugins]\n  [plugins.\"io.containerd.cri.v1.images\".pinned_images]\n    sandbox = \"registry.k8s.io/pause:3.8\"\n"),
    })
    return documents


def multi_document(version: str = "v1.13.9") -> list[dict[str, Any]]:
    """The 1.13 worker (network documents) plus a user volume and trusted
    roots, which the program must pass through untouched."""
    documents = worker_documents(version)
    documents += [
        {"apiVersion": "v1alpha1", "kind": "UserVolumeConfig", "name": "ceph-wal",
         "provisioning": {"diskSelector": {"match": "disk.size > 100u * GB && !system_disk"}, "minSize": "50GiB", "maxSize": "100GiB"}},
        {"apiVersion": "v1alpha1", "kind": "TrustedRootsConfig", "name": "homelab-ca",
         "certificates": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2FzdGxlIENBIHN0YW5kLWluMA0K\n-----END CERTIFICATE-----\n"},
    ]
    return documents


def as_text(documents: list[dict[str, Any]]) -> str:
    return dump_documents(copy.deepcopy(documents))
