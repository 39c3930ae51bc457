"""Dynamic resource that adopts the node's running machine config: it merges
in only the paths this program owns (components.talos.adopt) and applies the
result with ``talosctl apply-config``, staged when an upgrade follows so that
the upgrade's reboot applies it.

Why not pulumiverse-talos ``ConfigurationApply``: it applies a whole config
computed before the node is read, so it cannot show a preview diff against
what the node runs, has no staged mode tied to the upgrade that follows, and
cannot put back the values it replaced on destroy.

Pickled by reference with dill: no import-time side effects, nothing held on
the instance; talosctl runs inside each method. The talosconfig and the
originals (they may hold the node's own secrets) are outputs only because
delete needs them, and both are marked secret by the resource.

``check`` and ``diff`` only read the node (``talosctl version``, ``get
extensions``, ``get machineconfig`` as the node's version serves it, see
components.talos.node_config, and an ``apply-config --dry-run`` that Talos
validates without applying).
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.dynamic import NOT_KNOWN_YET, cannot_read, changed_keys, outputs, updating
from components.log import logger
from components.talos.adopt import plan_adoption, restore
from components.talos.adopt_originals import Originals
from components.talos.config_documents import AdoptError, load_documents
from components.talos.config_reboots import reboot_paths
from components.talos.machine_config import NodeSpec

# Re-exported: the node's state moved to components.talos.node_state.
from components.talos.node_state import apply_plan, read_node_state, unchanged_since  # noqa: F401
from components.talos.talosctl import TalosctlError, apply_config
from components.talos.versions import PathRefused, next_boot_version
from components.unknowns import UNKNOWN

_WANTED = ("node", "endpoint", "spec")
_STATE = ("originals", "mode", "rebootPaths", "lastChanges", "talosSays", "appliedVersion")


_say = logger("talos-config")


def plan_for(props: dict[str, Any], state, originals: dict[str, Any] | None):
    """The adoption plan for the version the node boots next: the first step
    of its upgrade path (staged, for that step's reboot), or the target."""
    spec = NodeSpec.from_dict(props["spec"])
    version = next_boot_version(state.version, spec.target_version, list(props.get("upgradePath") or []))
    upgrade_follows = (state.version, state.schematic) != (spec.target_version, spec.schematic_id)
    return plan_adoption(state, spec.owned(version), upgrade_follows=upgrade_follows,
                         originals=Originals.from_dict(originals) if originals else None)


class TalosMachineConfigProvider(ResourceProvider):
    """Adopts the node's config; restores the replaced values on delete."""
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:

        failures = [CheckFailure(name, f"{name} is required") for name in (*_WANTED, "talosconfig") if not news.get(name)]
        inputs = dict(news)
        if failures:
            return CheckResult(inputs, failures)
        factory = news.get("factorySchematicId")
        if factory and factory != UNKNOWN and isinstance(news.get("spec"), dict) and factory != news["spec"].get("schematicId"):
            failures.append(CheckFailure("factorySchematicId", f"the Image Factory's schematic ID {factory} is not the one computed offline, {news['spec'].get('schematicId')}"))
            return CheckResult(inputs, failures)
        # The spec is computed offline, so only the node and the credentials
        # can still be unknown in a preview.
        if any(news.get(name) == UNKNOWN for name in (*_WANTED, "talosconfig")):
            inputs["pendingChanges"] = [NOT_KNOWN_YET]
            return CheckResult(inputs, failures)
        # The originals travel in the checked inputs (kept secret: the
        # program passes a secret placeholder under this name), so that a
        # preview plans with the values recorded at the first adoption.
        recorded = olds.get("originals") or None
        inputs["originals"] = recorded or {}
        try:
            state = read_node_state(str(news["node"]), str(news["endpoint"]), str(news["talosconfig"]))
            plan = plan_for(news, state, recorded)
        except (AdoptError, PathRefused) as error:
            return CheckResult(inputs, [CheckFailure("spec", str(error))])
        except (TalosctlError, ValueError) as error:
            # Preview must not fail only because the node does not answer yet
            # (a new VM, a node rebooting); create/update read it again.
            inputs["pendingChanges"] = [cannot_read(str(news["node"]), error)]
            return CheckResult(inputs, failures)
        inputs["originals"] = plan.merged.originals.to_dict()
        lines = plan.lines() + plan.diff
        if plan.changed:
            try:
                said = apply_config(plan.merged.text(), str(news["node"]), str(news["endpoint"]), mode=plan.mode,
                                    talosconfig=str(news["talosconfig"]), dry_run=True)
                lines.append("talos (dry run): " + " ".join(said.strip().splitlines()[:2]))
            except TalosctlError as error:
                return CheckResult(inputs, [CheckFailure("spec", f"Talos refuses the merged config: {error}")])
        inputs["pendingChanges"] = lines
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = changed_keys(olds, news, (*_WANTED, "upgradePath"))
        pending = news.get("pendingChanges") or []
        drift = bool(pending) and not str(pending[0]).startswith("nothing to do")
        return updating(bool(changed) or drift)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['node']}-machine-config", outs=self._converge(props, props.get("originals") or None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._converge(news, olds.get("originals") or news.get("originals") or None))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if not props.get("originals"):
            return
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        state = read_node_state(node, endpoint, talosconfig)
        stored = load_documents(state.stored)
        restored = restore(stored, Originals.from_dict(props["originals"]), NodeSpec.from_dict(props["spec"]).target)
        if restored.conflicts:
            raise RuntimeError(
                f"not restoring {node}'s machine config: owned paths were changed by someone else since this program set them: "
                + "; ".join(restored.conflicts)
                + ". Put them back (talosctl edit machineconfig) or remove this resource from the state with `pulumi state delete`")
        if not restored.changes:
            return
        # Never reboot on destroy: a change that needs one waits for the next.
        mode = "staged" if reboot_paths(load_documents(state.running), restored.documents, state.version) else "no-reboot"
        for change in restored.changes:
            _say(f"restore {change.line()}")
        unchanged_since(state, node, endpoint, talosconfig)
        _say(apply_config(restored.text(), node, endpoint, mode=mode, talosconfig=talosconfig).strip())

    def _converge(self, props: dict[str, Any], originals: dict[str, Any] | None) -> dict[str, Any]:
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        state = read_node_state(node, endpoint, talosconfig)
        plan = plan_for(props, state, originals)
        for line in plan.lines():
            _say(line)
        said = apply_plan(plan, state, node, endpoint, talosconfig)
        return outputs(props, (*_STATE, "pendingChanges"), originals=plan.merged.originals.to_dict(), mode=plan.mode,
                       rebootPaths=plan.reboot_paths, lastChanges=plan.lines(), talosSays=said, appliedVersion=plan.owned.version)
