"""GPU consumers: the workload spec pods use to get a GPU share, and Jellyfin's
NVENC/NVDEC transcoding settings.

Submodules are imported directly (``components.consumers.workload`` ...), so
importing the package has no side effects and pulls in no Pulumi resources.
"""
