"""The Pulumi program's own edge: ``__main__.py`` runs only under the Pulumi
engine (``pulumi preview`` / ``pulumi up``), which connects it to a resource
monitor before it runs it (pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec:
``pulumi.runtime.configure(Settings(monitor=args.monitor, ...))`` and then
``runpy.run_path(PROGRAM)``). Started by hand (``python __main__.py``) there is
no monitor: say in one line what to run instead, rather than fail deep in the
config reading with a traceback."""

from __future__ import annotations

import sys

import pulumi

NOT_UNDER_ENGINE = (
    "__main__.py is the Pulumi program: it runs under `pulumi preview` or `pulumi up` (./setup.sh STACK preview); "
    "to see what it would do offline, without the Pulumi CLI, run `python -m components.render --stack STACK` "
    "(or ./setup.sh STACK render)"
)
EXIT_USAGE = 2


def under_engine() -> bool:
    """True when the Pulumi engine (or its mocks) runs the program."""
    return pulumi.runtime.settings.get_monitor() is not None


def require_engine() -> None:
    """Exit 2 with one line when the program was started by hand."""
    if not under_engine():
        print(NOT_UNDER_ENGINE, file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
