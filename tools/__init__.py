"""Maintainer tools that are not part of `pulumi up`."""
