"""The layout of the code as a maintainer reads it: the import graph of
``components/`` (and ``tools/``, ``__main__.py``), the layer each module
belongs to, and every file with its line count.

    python -m tools.layout_report            # print the report (docs/layout.md quotes it)
    python -m tools.layout_report --graph    # also every import edge, one a line
    python -m tools.layout_report --write-docs   # rewrite the report's block in docs/layout.md

The layer table (``LAYERS``) is the one declaration of the rule of direction:
a module imports only from its own layer or a lower one.
tests/test_import_graph.py checks it, and that the graph has no cycle. An
import counts wherever it is written (module level or inside a function: both
run); only ``if TYPE_CHECKING:`` blocks, which never run, are left out.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import gc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "tools")

# Bottom to top. Each entry: (layer, what it holds, module patterns). A
# module takes the first layer whose pattern matches it (fnmatch on the
# dotted name), so specific names go before a package's catch-all.
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("base", "tool runners, shared helpers and node facts that know no config: kubectl, talosctl, SSH, the CLI edge, "
             "child resource options, the bounded wait, Proxmox limits, chip names, the config issue type", (
        "components.dynamic",
        "components.log",
        "components.cli", "components.kubectl", "components.masking", "components.unknowns", "components.renamed_keys", "components.options", "components.wait", "components.proxmox_limits",
        "components.gpu_chips", "components.config_issues", "components.semver", "components.pci",
        "components.talos.talosctl",
        "components.ssh",
        "components.ssh.errors",
        "components.ssh.keys",
        "components.ssh.atomic",
        "components.ssh.diagnose",
        "components.ssh.connect",
        "components.ssh.transport",
        "components.flux.in_cluster", "components",
        "components.facts",
        "components.facts.parsing",
        "components.facts.nvidia",
        "components.facts.linux",
        "components.facts.ffmpeg",
        "components.facts.proxmox",
        "components.facts.talos",
    )),
    ("config tables", "the tables the config rules check against: GPU capabilities, Talos releases", (
        "components.gpu_capabilities", "components.talos.versions",
    )),
    ("config", "types, schema, cross-field rules, secrets, the stack-file reader (no Pulumi SDK)", (
        "components.config",
        "components.config.values",
        "components.config.host",
        "components.config.vm",
        "components.config.talos",
        "components.config.gpu_stack",
        "components.config.consumers",
        "components.config.stack",
        "components.config.secrets",
        "components.config.rules",
        "components.config.parse",
        "components.config.stack_file",
    )),
    ("facts and planners", "node facts (parsers of what a tool prints) and pure planners: config + facts -> plan", (
        "components.cluster", "components.hostprep.facts", "components.hostprep.plan",
        "components.hostprep.binding", "components.hostprep.ha", "components.talos.schematic",
        "components.talos.machine_config", "components.talos.adopt", "components.talos.node_config",
        "components.talos.upgrade", "components.talos.upgrade_route", "components.talos.walk_plan",
        "components.talos.module_documents",
        "components.talos.goyaml", "components.talos.schematic_format",
        "components.talos.config_documents", "components.talos.cri_customization", "components.talos.adopt_originals",
        "components.talos.adopt_changes", "components.talos.adopt_guard", "components.talos.config_reboots",
        "components.talos.config_diff",
        "components.talos.secrets", "components.vm.adopt", "components.vm.create", "components.monitoring.metrics",
        "components.monitoring.rules", "components.monitoring.dashboard", "components.monitoring.artifacts",
        "components.flux.objects", "components.flux.tree", "components.consumers.workload",
        "components.consumers.jellyfin", "components.consumers.capabilities",
        "components.consumers.encoding_spec",
        "components.readiness.gate", "components.gpu_migration_plan",
        "components.gpu_migration_facts",
        "components.hostprep.offline",
        "components.hostprep.errors",
        "components.hostprep.scripts",
        "components.hostprep.results",
        "components.hostprep.inputs",
        "components.hostprep.plan_model",
        "components.hostprep.cmdline",
        "components.hostprep.vfio_file",
        "components.hostprep.module_files",
        "components.hostprep.hand_edits",
        "components.hostprep.refusals",
        "components.hostprep.verify",
        "components.hostprep.undo",
        "components.hostprep.spec",
        "components.vm.inputs",
        "components.hostprep.facts_boot",
        "components.hostprep.facts_pci",
        "components.hostprep.facts_guests",
        "components.hostprep.facts_read",
        "components.facts.kubernetes",
        "components.facts.gpu_ready",
    )),
    ("engines", "what carries a plan out through a transport: host prep, the Proxmox API, drains, Flux checks", (
        "components.hostprep.connections",
        "components.hostprep.steps",
        "components.hostprep.node_drain",
        "components.hostprep.reboot",
        "components.hostprep.engine", "components.vm.api", "components.vm.engine", "components.vm.restart",
        "components.talos.upgrade_drain", "components.talos.upgrade_evidence", "components.talos.node_state", "components.flux.preflight", "components.flux.status",
                "components.talos.upgrade_waits",
    )),
    ("components", "what `pulumi up` registers: dynamic providers, ComponentResources, the engine's config reader", (
        "components.config.engine",
        "components.providers", "components.gpu_migration", "components.gpu_stack",
        "components.*.provider", "components.*.component", "components.*.resources", "components.talos.config_provider",
        "components.talos.upgrade_provider", "components.hostprep", "components.vm", "components.talos",
        "components.flux", "components.readiness", "components.consumers", "components.monitoring",
    )),
    ("programs and CLIs", "the Pulumi program, the command-line tools, the mock-engine harness, maintainer tools", (
        "__main__", "components.program", "components.render", "components.stacks",
        "components.*.__main__", "components.gpunode",
        "tools.gpunode",
        "tools.render",
        "tools.stacks",
        "tools.hostprep",
        "tools.hostprep_offline",
        "tools.talos",
        "tools.vm",
        "tools.panel_map",
        "components.monitoring.panel_map",  # only the shim of its old python -m form
        "tools.mockengine",
        "tools", "tools.*",
        "components.doctor",  # only the shim of `python -m components.doctor` (its __main__ runs tools/doctor)
    )),
)

# Imports that point up on purpose: a name moved down the layers stays
# importable at its old path through a lazy module ``__getattr__`` (PEP 562),
# which runs only when a caller asks for that name. Each is an edge of the
# graph, listed here so that no other edge may do it.
LAZY_REEXPORTS: dict[tuple[str, str], str] = {
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    lines: int


def modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the packages, and the program, by dotted name."""
    found: dict[str, Module] = {}
    paths = [root / "__main__.py"] + [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    for path in paths:
        if not path.exists() or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), path, len(path.read_text().splitlines()))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the body only runs under a type checker
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def parse(path: Path) -> ast.Module:
    """``ast.parse`` with the garbage collector held off. On CPython 3.11.7,
    parsing in a test process after a mock-engine run (which leaves asyncio
    futures and worker threads behind) failed with "SystemError: AST
    constructor recursion depth mismatch" (the error of python/cpython#106905);
    with no collection in the middle of building the tree it does not."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), filename=str(path))
    finally:
        if enabled:
            gc.enable()


def imports_of(module: Module, known: dict[str, Module]) -> dict[str, int]:
    """The project modules ``module`` imports, each with the first line."""
    tree = parse(module.path)
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        # "import a.b.c" and "from a.b import c" load every package on the way;
        # the edge that matters is the deepest project module named.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module.name:
            found.setdefault(target, line)

    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            add(full if full in known else base, node.lineno)
    return found


def graph(root: Path = ROOT, *, reexports: bool = False) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line}; without ``reexports`` the edges of
    LAZY_REEXPORTS are left out (they are listed, not followed)."""
    known = modules(root)
    edges = {name: imports_of(module, known) for name, module in sorted(known.items())}
    if not reexports:
        for source, target in LAZY_REEXPORTS:
            edges.get(source, {}).pop(target, None)
    return edges


def layer_of(name: str) -> int:
    for index, (_, _, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return index
    raise LookupError(f"{name} is in no layer of LAYERS (tools/layout_report.py): add it where it belongs")


def upward_imports(edges: dict[str, dict[str, int]]) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a higher layer."""
    return [(source, target, line) for source, targets in edges.items() for target, line in targets.items()
            if layer_of(target) > layer_of(source)]


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan),
    each sorted: every module in one can reach every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def report(root: Path = ROOT, with_graph: bool = False) -> str:
    known = modules(root)
    edges = graph(root)
    out = ["Layers, bottom to top (a module imports only from its own layer or a lower one):", ""]
    for number, (layer, holds, _) in enumerate(LAYERS):
        members = [name for name in known if layer_of(name) == number]
        out.append(f"{number + 1}. {layer} ({len(members)} modules, {sum(known[m].lines for m in members)} lines): {holds}")
    out += ["", "Files (lines, layer):", ""]
    for name, module in sorted(known.items(), key=lambda item: str(item[1].path)):
        out.append(f"{module.lines:6d}  {module.path.relative_to(root)}  [{LAYERS[layer_of(name)][0]}]")
    total = sum(module.lines for module in known.values())
    over = [module for module in known.values() if module.lines > 400]
    out += ["", f"{len(known)} files, {total} lines; {len(over)} over 400 lines: "
            + (", ".join(f"{m.path.relative_to(root)} ({m.lines})" for m in sorted(over, key=lambda m: -m.lines)) or "none")]
    found = cycles(edges)
    out.append("import cycles: " + ("; ".join(" <-> ".join(c) for c in found) if found else "none"))
    up = upward_imports(edges)
    out.append("upward imports: " + (", ".join(f"{s} -> {t} (line {line})" for s, t, line in up) if up else "none"))
    out.append("lazy re-exports for old import paths: "
               + (", ".join(f"{s} -> {t} ({why})" for (s, t), why in LAZY_REEXPORTS.items()) or "none"))
    if with_graph:
        out += ["", "Imports:", ""]
        out += [f"{source} -> {target}" for source, targets in edges.items() for target in sorted(targets)]
    return "\n".join(out)


DOCS = ROOT / "docs" / "layout.md"
BEGIN, END = "<!-- BEGIN python -m tools.layout_report -->", "<!-- END python -m tools.layout_report -->"


def write_docs(path: Path = DOCS, root: Path = ROOT) -> None:
    """Replace the block between BEGIN and END in docs/layout.md with the report."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to rewrite")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n```text\n{report(root)}\n```\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.layout_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", action="store_true", help="also list every import edge")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the report's block in {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.write_docs:
        write_docs()
        return 0
    print(report(with_graph=args.graph))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
