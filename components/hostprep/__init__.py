"""Host VFIO preparation over SSH: facts -> plan -> apply -> verify.

Modules: ``transport`` (the only paramiko user), ``facts`` (one remote
script and pure parsers), ``plan`` (pure planner, verifier, undo planner),
``engine`` (carries a plan out), ``provider`` (Pulumi dynamic provider),
``component`` (``HostVfioPrep``) and ``__main__`` (the CLI).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy, so the CLI and the provider do not import the Pulumi component.
    if name == "HostVfioPrep":
        from components.hostprep.component import HostVfioPrep

        return HostVfioPrep
    raise AttributeError(name)
