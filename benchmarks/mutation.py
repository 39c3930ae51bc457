"""Mutation run: how many one-line bugs the tests catch, per module.

    .venv/bin/python benchmarks/mutation.py [--jobs 2] [MODULE ...]

For each module of [tool.mutmut].only_mutate in pyproject.toml (or the ones
named), in a temporary copy of the repository (the checkout is never
written): mutmut mutates that module alone and runs, for each mutant, the
tests [tool.mutation-run.modules] lists for it. Prints each module's kill
rate and its surviving mutants with their diffs. Mutants listed in
benchmarks/mutation-equivalent.md (first cell of a table row, the mutant's
name in backticks, then the reason) change no behaviour and are left out of
the rate; mutmut names mutants by function and position, so after a
module changes, check that list against the printed diffs.

Kill rate = (killed + timed out) / (mutants run - equivalent), where a
listed mutant that a test kills after all counts as killed and is named as
a stale row of the list. Too slow for CI: minutes per module on two cores."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "benchmarks" / "mutation-equivalent.md"
KILLED = {"killed", "timeout", "caught by type check"}


def equivalent_mutants() -> dict[str, str]:
    """Mutant name -> why it changes no behaviour."""
    found = {}
    for line in EQUIVALENT.read_text().splitlines() if EQUIVALENT.exists() else []:
        match = re.match(r"^\|\s*`([^`]+__mutmut_\d+)`\s*\|(.*)\|\s*$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def tally(statuses: Mapping[str, str], equivalent: Iterable[str]) -> dict[str, Any]:
    """One module's figures from mutmut's status per mutant. A listed
    equivalent is left out of the rate only while it survives; one a test
    kills is counted as killed and reported as stale, so the list cannot
    make the rate exceed what the tests do."""
    listed = set(equivalent)
    killed = sum(1 for status in statuses.values() if status in KILLED)
    left_out = sorted(name for name, status in statuses.items() if name in listed and status not in KILLED)
    return {"killed": killed, "judged": len(statuses) - len(left_out), "equivalent": left_out,
            "stale": sorted(name for name, status in statuses.items() if name in listed and status in KILLED),
            "survivors": sorted(name for name, status in statuses.items() if status not in KILLED and name not in listed)}


def repository_files() -> list[str]:
    """Tracked and new (not ignored) files: what a commit would hold."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [name for name in listed.splitlines() if (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "mutants", "render", "state", "__pycache__"}
        return [str(path.relative_to(ROOT)) for path in ROOT.rglob("*") if path.is_file() and not skip & set(path.relative_to(ROOT).parts)]


def copy_repository(target: Path, module: str, settings: dict) -> None:
    for name in repository_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    (target / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    text = (target / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^only_mutate = \[.*?\]$", f'only_mutate = ["{module}"]', text)
    tests = ", ".join(f'"{test}"' for test in settings.get("tests", ["tests/"]))
    text = re.sub(r"(?m)^pytest_add_cli_args_test_selection = .*$", f"pytest_add_cli_args_test_selection = [{tests}]", text)
    (target / "pyproject.toml").write_text(text)


class ModuleFailed(Exception):
    """mutmut could not run a module: its own output says why."""


def _tail(done: subprocess.CompletedProcess, lines: int = 20) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def widen_test_selection(stats_file: Path, module: str) -> None:
    """mutmut runs, for a mutant, the tests that called its function while
    it collected stats. A call made while a module- or session-scoped
    fixture is set up counts for the first test that used the fixture only,
    so the tests that assert on that fixture's result would never see the
    mutant. Give each function of ``module`` every test of each test file
    that reached it."""
    if not stats_file.exists():
        raise ModuleFailed(f"mutmut collected no stats for {module}")
    stats = json.loads(stats_file.read_text())
    by_file: dict[str, set[str]] = {}
    for test in stats["duration_by_test"]:
        by_file.setdefault(test.split("::", 1)[0], set()).add(test)
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    for function, tests in stats["tests_by_mangled_function_name"].items():
        if function.startswith(prefix):
            files = {test.split("::", 1)[0] for test in tests}
            stats["tests_by_mangled_function_name"][function] = sorted(set(tests).union(*(by_file.get(name, set()) for name in files)))
    stats_file.write_text(json.dumps(stats))


def run_module(module: str, settings: dict, jobs: int, equivalent: dict[str, str], keep: bool, show: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="mutation-"))
    try:
        copy_repository(workdir, module, settings)
        mutmut = [sys.executable, "-m", "mutmut"]
        names = settings.get("mutants", [])
        started = time.monotonic()
        # Phase 1: mutants and coverage stats only (a filter that matches no
        # mutant stops mutmut right after it has saved its stats).
        collected = subprocess.run([*mutmut, "run", "--max-children", str(jobs), "collect.stats.only"], cwd=workdir, capture_output=True, text=True)
        try:
            widen_test_selection(workdir / "mutants" / "mutmut-stats.json", module)
        except ModuleFailed as error:
            # Most often a listed test fails on the unmutated code: mutmut needs them all green.
            raise ModuleFailed(f"{error}:\n{_tail(collected)}") from None
        # Phase 2: every mutant against the tests chosen for its function.
        done = subprocess.run([*mutmut, "run", "--max-children", str(jobs), *names], cwd=workdir, capture_output=True, text=True)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            raise ModuleFailed(f"mutmut failed on {module} (exit {done.returncode}):\n{_tail(done)}")
        listed = subprocess.run([*mutmut, "results", "--all", "true"], cwd=workdir, capture_output=True, text=True, check=True).stdout
        statuses = dict(re.findall(r"^\s+(\S+): (.+)$", listed, re.MULTILINE))
        if names:
            statuses = {name: status for name, status in statuses.items() if any(fnmatch.fnmatch(name, pattern) for pattern in names)}
        statuses = {name: status for name, status in statuses.items() if status != "not checked"}
        figures = tally(statuses, equivalent)
        diffs = {name: subprocess.run([*mutmut, "show", name], cwd=workdir, capture_output=True, text=True).stdout if index < show else ""
                 for index, name in enumerate(figures["survivors"])}
        return {**figures, "module": module, "counts": Counter(statuses.values()), "survivors": diffs, "seconds": elapsed}
    finally:
        if keep:
            print(f"(work folder kept: {workdir})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    modules_config = config.get("mutation-run", {}).get("modules", {})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=config["mutmut"]["only_mutate"], help="e.g. components/cluster.py")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="mutants run in parallel (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep each module's work folder (mutants/, mutmut's results)")
    parser.add_argument("--diffs", type=int, default=60, help="print the diffs of at most this many survivors per module (default 60)")
    args = parser.parse_args(argv)
    equivalent = equivalent_mutants()
    results, failed = [], []
    for module in args.modules:
        try:
            result = run_module(module, modules_config.get(module, {}), args.jobs, equivalent, args.keep, args.diffs)
        except ModuleFailed as error:
            print(f"{module}: not measured: {error}", flush=True)
            failed.append(module)
            continue
        results.append(result)
        killed, judged = result["killed"], result["judged"]
        rate = 100 * killed / judged if judged else 100.0
        print(f"{module}: {rate:.1f}% killed ({killed} of {judged}; {len(result['equivalent'])} equivalent; "
              f"{dict(sorted(result['counts'].items()))}; {result['seconds']:.0f} s)", flush=True)
        for name in result["stale"]:
            print(f"  listed as equivalent but killed (remove its row from {EQUIVALENT.name}): {name}", flush=True)
        for name, diff in result["survivors"].items():
            print(f"  survived: {name}" + "".join(f"\n    {line}" for line in diff.strip().splitlines()[1:]), flush=True)
    killed = sum(result["killed"] for result in results)
    judged = sum(result["judged"] for result in results)
    print(f"all: {100 * killed / judged if judged else 100.0:.1f}% killed ({killed} of {judged} non-equivalent mutants)"
          + (f"; not measured: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
