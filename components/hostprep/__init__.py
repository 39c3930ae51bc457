"""Host VFIO preparation over SSH: facts -> plan -> apply -> verify.

Modules: ``facts`` and ``facts_*`` (what the host has: one remote script,
pure parsers), ``inputs``, ``spec`` (the provider's inputs), ``plan`` and
the rooms it draws on (``cmdline``, ``vfio_file``, ``module_files``,
``hand_edits``, ``refusals``, ``verify``, ``undo``: pure), ``engine`` and
its parts (``connections``, ``steps``, ``reboot``, ``node_drain``: carry a
plan out over ``components.ssh``), ``provider`` (the Pulumi dynamic
provider) and ``component`` (``HostVfioPrep``). The CLI is tools/hostprep.py.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy, so the CLI and the provider do not import the Pulumi component.
    if name == "HostVfioPrep":
        from components.hostprep.component import HostVfioPrep

        return HostVfioPrep
    raise AttributeError(name)
