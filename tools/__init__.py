"""The command-line tools (``python -m components.<x>`` and ``gpunode`` run
them), the mock-engine harness and the maintainer tools: nothing here is
part of what ``pulumi up`` imports."""
