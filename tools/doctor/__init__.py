"""`doctor`: the guide's Verification and Troubleshooting sections, run against
a stack's host, VM, Talos node, cluster and Jellyfin pod. It reads the node
facts with components/facts and changes nothing.

    python -m components.doctor --stack homelab [--json] [--layer host ...]
    gpunode doctor --stack homelab ...
"""
