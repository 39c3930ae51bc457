"""`doctor`: the guide's Verification and Troubleshooting sections, run against
a stack's host, VM, Talos node, cluster and Jellyfin pod.

    python -m components.doctor --stack homelab [--json] [--layer host ...]
"""
