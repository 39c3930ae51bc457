"""The old command forms, ``python -m components.<x>`` (and the console
script of an install from before tools/ existed, ``components.gpunode:main``),
are the tools in tools/: the same help, the same one-line refusal of a bad
flag, the same exit codes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from tests.test_import_graph import SHIMS


def run(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("old", "new"), sorted(SHIMS.items()), ids=sorted(SHIMS))
def test_the_old_form_is_its_tool(old, new):
    old_help, new_help = run(old, "--help"), run(new, "--help")
    assert (old_help.returncode, old_help.stderr) == (0, "") and old_help.stdout.strip(), old_help.stderr
    assert (old_help.returncode, old_help.stdout, old_help.stderr) == (new_help.returncode, new_help.stdout, new_help.stderr)
    old_bad, new_bad = run(old, "--no-such-flag"), run(new, "--no-such-flag")
    assert old_bad.returncode == new_bad.returncode == 2, old_bad.stderr
    assert old_bad.stderr == new_bad.stderr and "Traceback" not in old_bad.stderr


def test_an_old_console_script_runs_the_tool():
    code = "import sys; from components.gpunode import main; sys.argv = ['gpunode', 'stacks', 'which', '--help']; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: gpunode stacks which"), done.stdout


# What an editable install made before tools/ existed puts on sys.path: a
# finder that maps only the components package to this checkout.
OLD_INSTALL = textwrap.dedent("""
    import importlib.util, sys
    root = sys.argv.pop(1)
    spec = importlib.util.spec_from_file_location("components", root + "/components/__init__.py",
                                                  submodule_search_locations=[root + "/components"])
    components = importlib.util.module_from_spec(spec)
    sys.modules["components"] = components
    spec.loader.exec_module(components)
    from components.gpunode import main
    sys.argv = ["gpunode", "stacks", "which", "--help"]
    sys.exit(main())
""")


def test_the_console_script_of_an_install_from_before_tools_existed_still_runs(tmp_path):
    done = subprocess.run([sys.executable, "-I", "-c", OLD_INSTALL, str(ROOT)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: gpunode stacks which"), done.stdout
