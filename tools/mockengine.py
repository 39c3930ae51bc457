"""Run the Pulumi program in-process under Pulumi's mock engine and record
every resource registration (type, name, parent, dependencies, inputs, the
provider it goes to and its resource options).

Tests use it to assert the dependency graph the real engine would see;
`render` uses it to draw that graph. No CLI, no plugins, no credentials.
In tools/, beside its one non-test user (tools/render.py), because it drives
private SDK internals (``_sync_await``, the runtime settings) that ``pulumi up`` never loads."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.config import PROJECT

# Structurally valid stand-ins for the stack's secrets, for runs that need no
# credentials (tests, render). They never reach a real provider.
PLACEHOLDER_MACHINE_SECRETS = """\
cluster:
    id: Q2x1c3RlcklEc3RhbmRpbg==
    secret: Y2x1c3Rlci1zZWNyZXQtc3RhbmQtaW4=
secrets:
    bootstraptoken: abcdef.0123456789abcdef
    secretboxencryptionsecret: c2VjcmV0Ym94LXN0YW5kLWluLXZhbHVlLTMyYnl0ZXM=
trustdinfo:
    token: trustd.0123456789abcdef
certs:
    etcd:
        crt: RVRDRC1DUlQtU1RBTkQtSU4=
        key: RVRDRC1LRVktU1RBTkQtSU4=
    k8s:
        crt: SzhTLUNSVC1TVEFORC1JTg==
        key: SzhTLUtFWS1TVEFORC1JTg==
    k8saggregator:
        crt: QUdHLUNSVC1TVEFORC1JTg==
        key: QUdHLUtFWS1TVEFORC1JTg==
    k8sserviceaccount:
        key: U0EtS0VZLVNUQU5ELUlO
    os:
        crt: T1MtQ1JULVNUQU5ELUlO
        key: T1MtS0VZLVNUQU5ELUlO
"""

PLACEHOLDER_TALOSCONFIG = """\
context: homelab
contexts:
    homelab:
        endpoints:
            - 192.168.8.99
        nodes:
            - 192.168.8.123
        ca: Q0EtQ0VSVElGSUNBVEUtU1RBTkQtSU4=
        crt: Q0xJRU5ULUNFUlQtU1RBTkQtSU4=
        key: Q0xJRU5ULUtFWS1TVEFORC1JTg==
"""

PLACEHOLDER_SECRETS = {
    "proxmoxApiToken": "root@pam!placeholder=00000000-0000-0000-0000-000000000000",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nplaceholder\n-----END OPENSSH PRIVATE KEY-----\n",
    "talosMachineSecrets": PLACEHOLDER_MACHINE_SECRETS,
    "talosClientConfiguration": PLACEHOLDER_TALOSCONFIG,
    "kubeconfig": "apiVersion: v1\nkind: Config\nclusters: []\n",
    "jellyfinApiKey": "00000000000000000000000000000000",
}

SCHEMATIC_TYPE = "talos:imageFactory/schematic:Schematic"
GET_CONFIGURATION = "talos:machine/getConfiguration:getConfiguration"


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    inputs: dict[str, Any]  # secrets still wrapped: see is_secret()
    custom: bool
    depends_on_urns: set[str] = field(default_factory=set)
    # "<provider urn>::<provider id>" for a custom resource given an explicit
    # provider (``provider=`` / ``providers=`` from a parent); "" when the
    # engine would pick the default provider (ambient credentials).
    provider: str = ""
    # Component resources: package -> provider reference passed to children.
    providers: dict[str, str] = field(default_factory=dict)
    # Resource options as the engine receives them. ``retain_on_delete`` is
    # None when not set (the engine's default: delete).
    protect: bool = False
    retain_on_delete: bool | None = None
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)

    @property
    def provider_urn(self) -> str:
        """The URN part of :attr:`provider` ("" when none was given)."""
        return self.provider.rpartition("::")[0] if self.provider else ""


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def reveal(value: Any) -> Any:
    """Strip secret wrappers recursively (for asserting on values)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


class StateMocks(Mocks):
    """Echo inputs as outputs; ``outputs[type]`` adds computed outputs."""

    def __init__(self, outputs: Mapping[str, Callable[[MockResourceArgs], dict]] | None = None,
                 calls: Mapping[str, Callable[[MockCallArgs], dict]] | None = None):
        self.outputs = dict(outputs or {})
        self.calls = dict(calls or {})

    def new_resource(self, args: MockResourceArgs):
        state = dict(args.inputs)
        extra = self.outputs.get(args.typ)
        if extra:
            state.update(extra(args))
        return f"{args.name}-id", state

    def call(self, args: MockCallArgs):
        handler = self.calls.get(args.token)
        # MockMonitor.Invoke iterates the second item (the failures).
        return (handler(args) if handler else {}), []


class ProgramMocks(StateMocks):
    """What the whole program needs from the engine: the Image Factory answers
    a schematic with the sha256 of its YAML (the factory's rule), and
    getConfiguration answers with a minimal worker config."""

    def __init__(self, outputs: Mapping[str, Callable[[MockResourceArgs], dict]] | None = None,
                 calls: Mapping[str, Callable[[MockCallArgs], dict]] | None = None):
        super().__init__(outputs, {GET_CONFIGURATION: self._worker_configuration, **dict(calls or {})})

    @staticmethod
    def _worker_configuration(args: MockCallArgs) -> dict:
        return {"machineConfiguration": "version: v1alpha1\nmachine:\n    type: worker\n",
                "clusterName": args.args.get("clusterName")}

    def new_resource(self, args: MockResourceArgs):
        resource_id, state = super().new_resource(args)
        if args.typ == SCHEMATIC_TYPE:
            resource_id = hashlib.sha256(args.inputs["schematic"].encode()).hexdigest()
        return resource_id, state


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={key: list(value.urns) for key, value in request.propertyDependencies.items()},
                inputs=rpc.deserialize_properties(request.object, keep_internal=True) if request.object else {},
                custom=request.custom,
                provider=request.provider,
                providers=dict(request.providers),
                protect=bool(request.protect),
                retain_on_delete=request.retainOnDelete if request.HasField("retainOnDelete") else None,
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                custom_timeouts={name: getattr(request.customTimeouts, name)
                                 for name in ("create", "update", "delete") if getattr(request.customTimeouts, name)},
            ))
        return response


@dataclass
class ProgramRun:
    registrations: list[Registration]
    outputs: dict[str, Any]

    def by_type(self, type_: str) -> list[Registration]:
        return [reg for reg in self.registrations if reg.type == type_]

    def one(self, type_: str) -> Registration:
        found = self.by_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.urn for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(reg for reg in self.registrations if reg.urn == urn)

    def ancestors(self, reg: Registration) -> list[str]:
        chain, current = [], reg
        while current.parent and any(r.urn == current.parent for r in self.registrations):
            current = self.by_urn(current.parent)
            chain.append(current.urn)
        return chain

    def direct_dependencies(self, reg: Registration) -> set[str]:
        """URNs ``reg`` waits on: its own dependencies and property
        dependencies. Not its parent's: the engine does not order a child
        after what its component depends on (see components.options)."""
        urns = set(reg.dependencies)
        for deps in reg.property_dependencies.values():
            urns.update(deps)
        return urns

    def depends_on(self, reg: Registration, other: Registration) -> bool:
        """True when ``reg`` waits on ``other``, directly or through a chain
        of dependencies (what the engine's ordering guarantees)."""
        seen: set[str] = set()
        pending = list(self.direct_dependencies(reg))
        while pending:
            urn = pending.pop()
            if urn == other.urn:
                return True
            if urn in seen or not any(r.urn == urn for r in self.registrations):
                continue
            seen.add(urn)
            pending.extend(self.direct_dependencies(self.by_urn(urn)))
        return False


def run_program(program: Callable[[], Any], config: Mapping[str, Any], *,
                secret_keys: Mapping[str, str] | None = None, stack: str = "test",
                preview: bool = False, mocks: Mocks | None = None) -> ProgramRun:
    """Run ``program`` with ``config`` (top-level key -> value, no namespace)
    and ``secret_keys`` (key -> plain value, registered as secrets)."""
    monitor = RecordingMonitor(mocks or ProgramMocks())
    pulumi.runtime.settings.ROOT.set(None)  # a fresh Stack per run
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    all_config = {f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    secrets = dict(secret_keys or {})
    all_config.update({f"{PROJECT}:{key}": value for key, value in secrets.items()})
    pulumi.runtime.set_all_config(all_config, [f"{PROJECT}:{key}" for key in secrets])
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    exported: dict[str, Any] = {}

    # The SDK's serialize_provider (pulumi.dynamic) wraps
    # pickle._Pickler._batch_setitems in a sorting wrapper on every call and
    # never unwraps it: each dynamic resource adds one frame to every later
    # pickle of a dict. A real `pulumi up` runs the program once; a process
    # that runs it many times (the test suite) ends in RecursionError. Put
    # the method back after each run.
    batch_setitems = pickle._Pickler._batch_setitems
    try:
        _sync_await(run_pulumi_func(program))
        stack_resource = pulumi.runtime.get_root_resource()
        if stack_resource is not None and getattr(stack_resource, "outputs", None):
            for key, value in stack_resource.outputs.items():
                exported[key] = _sync_await(pulumi.Output.from_input(value).future(with_unknowns=True))
    finally:
        pickle._Pickler._batch_setitems = batch_setitems
    return ProgramRun(monitor.registrations, exported)
