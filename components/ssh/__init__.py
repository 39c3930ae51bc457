"""The one room that talks SSH (paramiko): what to connect to and how the
host's key is pinned (:mod:`.keys`), opening a connection (:mod:`.connect`,
its failures in words in :mod:`.diagnose`), running commands with time
limits and masked logs (:mod:`.transport`), and the atomic file write as a
shell snippet (:mod:`.atomic`). Nothing here decides anything about a host."""

import sys

# paramiko's ssh_config reader imports invoke at import time, for `Match
# exec` only: about 70 ms of CPU in every host-prep run
# (benchmarks/hostprep_cpu.py). This program never reads an ssh_config, so
# paramiko loads without it (paramiko/config.py catches the ImportError and
# only a `Match exec` line would then fail). An invoke loaded before stays.
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
