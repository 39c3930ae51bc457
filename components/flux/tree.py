"""`render --flux DIR`: write the Flux tree (components.flux.objects) into a
folder of the user's GitOps repository without dropping anyone's edits.

The folder is read first (which other nodes' ConfigMap entries are in app/,
what each file holds now), the change is planned, and only then written: a
file that exists with other content (edited by hand, or the guide's version)
stops the run before anything is written, naming the files, unless
``force``; unchanged files are not touched; nothing else in the folder is
removed, but YAML files in app/ that app/kustomization.yaml does not list are
named, since Flux does not apply them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import StackConfig
from components.flux.objects import config_entry_patch_name, flux_tree, is_entry_patch


@dataclass(frozen=True)
class TreeWrite:
    out: Path
    written: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # existing files with other content; nothing was written
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 1 if self.refused else 0

    def report(self) -> str:
        lines = [f"{self.out / path}" for path in self.written]
        lines += [f"{self.out / path} (unchanged)" for path in self.unchanged]
        if self.refused:
            lines.append(f"render --flux: nothing written: {len(self.refused)} file(s) in {self.out} hold other content "
                         "(edited by hand, or the guide's version):")
            lines += [f"  {path}" for path in self.refused]
            lines.append("Compare them with a render into an empty folder; to replace them, run again with --force "
                         "(in a Git checkout, `git diff` shows what changed).")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None


def plan_tree(files: dict[str, str], existing: dict[str, str | None]) -> tuple[list[str], list[str], list[str]]:
    """(to write, unchanged, differing): pure."""
    to_write = sorted(path for path in files if existing.get(path) != files[path])
    unchanged = sorted(path for path in files if existing.get(path) == files[path])
    differing = sorted(path for path in to_write if existing.get(path) is not None)
    return to_write, unchanged, differing


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _notes(cfg: StackConfig, files: dict[str, str], out: Path) -> list[str]:
    app = out / "app"
    present = sorted(path.name for path in app.glob("*.y*ml")) if app.is_dir() else []
    if cfg.gpu_stack.owns_cluster_objects:
        ours = {path.removeprefix("app/") for path in files if path.startswith("app/")}
        return [f"app/{name} is not listed in app/kustomization.yaml, so Flux does not apply it (the guide's chart source? "
                "then delete it)" for name in present if name not in ours and not is_entry_patch(name)]
    patch = config_entry_patch_name(cfg)
    if patch not in (_read(app / "kustomization.yaml") or ""):
        return [f"app/kustomization.yaml does not list app/{patch} yet: render the owner stack with --flux into {out} "
                "(it lists every node's entry), or add it under `patches:` by hand"]
    return []


def render_flux(cfg: StackConfig, stack: str, out: Path, *, dump: Callable[[Any], str], force: bool = False) -> TreeWrite:
    """Read ``out``, plan the tree, and write it unless a file would lose
    other content (then write nothing, unless ``force``)."""
    app = out / "app"
    entries = sorted(path.name for path in app.glob("*.yaml")) if app.is_dir() else []
    files = {path: comment + dump(document) for path, (comment, document) in flux_tree(cfg, stack, entries).items()}
    to_write, unchanged, differing = plan_tree(files, {path: _read(out / path) for path in files})
    notes = tuple(_notes(cfg, files, out))
    if differing and not force:
        return TreeWrite(out, unchanged=tuple(unchanged), refused=tuple(differing), notes=notes)
    for path in to_write:
        _write_atomically(out / path, files[path])
    return TreeWrite(out, written=tuple(to_write), unchanged=tuple(unchanged), notes=notes)
