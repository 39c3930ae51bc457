"""The rule of direction, checked on the code: the import graph of
components/, tools/ and __main__.py (built with ``ast`` by
tools/layout_report.py, function-level imports included) has no cycle, and no
module imports from a layer above its own (the layer table, LAYERS, is in
tools/layout_report.py). The config and the planners import without the
Pulumi SDK."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools import layout_report
from tools.layout_report import LAYERS, cycles, graph, layer_of, modules, upward_imports

ROOT = Path(__file__).resolve().parents[1]

# Cycles and upward imports accepted for a while (none today): each entry
# would say how it is to be removed; the tests fail once it is gone.
KNOWN_CYCLES: dict[frozenset[str], str] = {}

KNOWN_UPWARD: dict[tuple[str, str], str] = {}

# Must load without the Pulumi SDK: the config, the planners and the facts a
# CLI verb uses (python -m components.hostprep facts/plan is checked against
# the simulated host in tests/hostprep/test_cli_imports.py).
WITHOUT_PULUMI = (
    "components.config", "components.config.rules", "components.gpu_capabilities", "components.cluster",
    "components.hostprep.facts", "components.hostprep.plan", "components.hostprep.engine",
    "components.hostprep.__main__", "components.gpu_migration_plan", "components.wait",
    "tools.hostprep", "tools.hostprep_offline", "tools.stacks", "tools.gpunode", "tools.vm", "components.stacks",
    "components.gpu_migration_facts",
)

# The old `python -m components.<x>` forms (and the console script of an
# install from before tools/ existed): each imports one tool and calls its main.
SHIMS = {
    "components.render": "tools.render", "components.stacks": "tools.stacks", "components.gpunode": "tools.gpunode",
    "components.hostprep.__main__": "tools.hostprep", "components.talos.__main__": "tools.talos", "components.vm.__main__": "tools.vm",
    "components.monitoring.panel_map": "tools.panel_map",
}
CLI_LAYER = next(index for index, (name, _, _) in enumerate(LAYERS) if name == "programs and CLIs")


@pytest.fixture(scope="module")
def edges():
    return graph()


def test_every_module_is_in_a_layer():
    missing = []
    for name in modules():
        try:
            layer_of(name)
        except LookupError as error:
            missing.append(str(error))
    assert not missing, "\n".join(missing)


def test_the_import_graph_has_no_cycle_but_the_known_ones(edges):
    found = {frozenset(cycle) for cycle in cycles(edges)}
    new = found - set(KNOWN_CYCLES)
    assert not new, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)
    gone = set(KNOWN_CYCLES) - found
    assert not gone, f"no longer a cycle, remove it from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def test_no_module_imports_from_a_higher_layer(edges):
    up = {(source, target): line for source, target, line in upward_imports(edges)}
    new = [f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]}) at line {line}"
           for (source, target), line in up.items() if (source, target) not in KNOWN_UPWARD]
    assert not new, "upward imports:\n" + "\n".join(new)
    gone = set(KNOWN_UPWARD) - set(up)
    assert not gone, f"no longer upward, remove it from KNOWN_UPWARD: {sorted(gone)}"


def test_lazy_reexports_are_the_only_edges_left_out(edges):
    full = graph(reexports=True)
    for source, target in layout_report.LAZY_REEXPORTS:
        assert target in full[source], f"{source} no longer re-exports from {target}: remove it from LAZY_REEXPORTS"
        assert target not in edges[source]


def test_function_level_and_relative_imports_are_edges(tmp_path):
    package = tmp_path / "components"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("X = 1\n")
    (package / "inner" / "__init__.py").write_text("")
    (package / "inner" / "top.py").write_text(textwrap.dedent("""\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from components.inner import hidden
        def f():
            from ..low import X
            return X
        """))
    (package / "inner" / "hidden.py").write_text("import components.inner.top\n")
    (package / "inner" / "other.py").write_text("from . import top\n")
    found = graph(tmp_path)
    assert found["components.inner.top"] == {"components.low": 5}
    assert found["components.inner.other"] == {"components.inner.top": 1}
    assert cycles(found) == []
    found["components.low"]["components.inner.top"] = 1
    assert cycles(found) == [["components.inner.top", "components.low"]]


def test_only_the_command_line_layer_imports_tools_and_the_program_does_not(edges):
    wrong = [f"{source} imports {target} at line {line}" for source, targets in edges.items() for target, line in targets.items()
             if target.split(".")[0] == "tools" and (layer_of(source) != CLI_LAYER or source in ("__main__", "components.program"))]
    assert not wrong, "only a command-line tool or its shim imports tools/:\n" + "\n".join(wrong)


def test_pulumi_up_loads_nothing_of_tools(edges):
    seen, todo = set(), ["__main__"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, {}))
    assert not sorted(name for name in seen if name.split(".")[0] == "tools"), "__main__.py reaches tools/"


def test_each_old_command_form_is_a_shim_over_its_tool(edges):
    for shim, tool in SHIMS.items():
        assert layer_of(shim) == CLI_LAYER, shim
        assert set(edges[shim]) - {"components.cli"} == {tool}, f"{shim} imports {sorted(edges[shim])}, not only {tool}"
        assert modules()[shim].lines <= 20, f"{shim} is a shim: it imports {tool}'s main and calls it, nothing more"
    cli_modules = [name for name, module in modules().items() if name.startswith("components.")
                   and (name.endswith(".__main__") or 'if __name__ == "__main__":' in module.path.read_text())]
    assert set(cli_modules) - {"components.doctor.__main__"} <= set(SHIMS), "a python -m form in components/ that is not a shim"


@pytest.mark.parametrize("module", WITHOUT_PULUMI)
def test_imports_without_the_pulumi_sdk(module):
    code = (f"import sys, {module}; "
            "loaded = sorted(m for m in sys.modules if m == 'pulumi' or m.startswith('pulumi.')); "
            "assert not loaded, loaded[:5]")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"importing {module} loads the Pulumi SDK: {run.stderr.strip().splitlines()[-1:]}"


def test_config_error_has_no_sdk_base_until_the_program_loads_the_engine_reader():
    code = ("import components.config as c, components.config_issues as i; "
            "assert i.ConfigError.__bases__ == (i.ProgramError,); "
            "import pulumi, components.config.engine; "
            "assert issubclass(c.ConfigError, pulumi.RunError)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_the_report_lists_every_file_with_its_lines():
    text = layout_report.report()
    for module in modules().values():
        assert f"{module.lines:6d}  {module.path.relative_to(ROOT)}  [" in text
