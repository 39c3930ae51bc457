"""Resource options shared by the components."""

from __future__ import annotations

from typing import Any

import pulumi


def child_options(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None, *,
                  depends_on: list[Any] | None = None, **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a component's child: ``parent=parent`` plus the component's
    own ``depends_on``. The engine does not pass a component's dependencies down
    to its children, so without this a child could start before what its
    component waits for (e.g. Kubernetes objects before the GPU node exists)."""
    inherited: list[Any] = []
    if opts is not None and opts.depends_on is not None:
        inherited = list(opts.depends_on) if isinstance(opts.depends_on, (list, tuple)) else [opts.depends_on]
    return pulumi.ResourceOptions(parent=parent, depends_on=inherited + list(depends_on or []), **kwargs)
