"""The one room that talks SSH (paramiko): what to connect to and how the
host's key is pinned (:mod:`.keys`), opening a connection (:mod:`.connect`,
its failures in words in :mod:`.diagnose`), running commands with time
limits and masked logs (:mod:`.transport`), and the atomic file write as a
shell snippet (:mod:`.atomic`). Nothing here decides anything about a host."""
