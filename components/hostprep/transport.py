"""The one module that talks SSH (paramiko): connect with a pinned host key,
run a command, write a file atomically. Secrets are masked in every log line;
round trips are counted for the benchmark and the tests.

Nothing here decides anything about the host: callers build the commands.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import select
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from components.masking import mask

log = logging.getLogger(__name__)

# Host-key algorithms to offer for each key type a pin can name. paramiko 5
# no longer signs with SHA-1, so an `ssh-rsa` pin means the SHA-2 variants.
_ALGORITHMS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}
TEMP_MARK = ".ptg-tmp-"  # temp files are `.<name>.ptg-tmp-<token>` next to their target


class TransportError(ConnectionError):
    """The host could not be reached, or the connection dropped."""


class HostKeyError(TransportError):
    """The host offered a key that does not match the pin; nothing was sent."""


class CommandTimeoutError(TransportError):
    """A command did not finish in time; the client stopped waiting (the
    connection is still up, so the caller can stop the command on the host)."""

    def __init__(self, message: str, *, elapsed: float, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.elapsed = elapsed
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    private_key: str = field(repr=False)  # OpenSSH private key text; never logged
    host_key: str = ""  # SHA256:<fingerprint> or known_hosts line(s)

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


# --------------------------------------------------------------------------
# Host-key pins (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HostKeyPin:
    fingerprints: frozenset[str]  # "SHA256:..." without padding
    keys: tuple[tuple[str, bytes], ...]  # (key type, key blob) from known_hosts lines

    def matches(self, blob: bytes) -> bool:
        return fingerprint(blob) in self.fingerprints or any(data == blob for _, data in self.keys)

    @property
    def key_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(kind for kind, _ in self.keys))


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (`ssh-keygen -lf`)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_host_key_pin(text: str) -> HostKeyPin:
    """A SHA256 fingerprint, or one or more known_hosts lines (host field ignored:
    the pin is already specific to this host)."""
    prints: set[str] = set()
    keys: list[tuple[str, bytes]] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("SHA256:"):
            prints.add(line.rstrip("="))
            continue
        fields = line.split()
        if fields[0].startswith("@"):
            if fields[0] == "@revoked":
                continue
            fields = fields[1:]
        if len(fields) < 3 or fields[1] not in _ALGORITHMS_FOR_TYPE:
            raise ValueError(f"host key pin: not a SHA256 fingerprint or a known_hosts line `<host> <key-type> <base64-key>`: {line[:60]!r}")
        try:
            keys.append((fields[1], base64.b64decode(fields[2], validate=True)))
        except ValueError:
            raise ValueError(f"host key pin: the key of {fields[1]} is not valid base64") from None
    if not prints and not keys:
        raise ValueError("host key pin is empty: give a SHA256 fingerprint or a known_hosts line")
    return HostKeyPin(frozenset(prints), tuple(keys))


def known_hosts_lines_for(text: str, host: str, port: int) -> list[str]:
    """The known_hosts lines (plain or hashed) that name ``host`` at ``port``."""
    name = host if port == 22 else f"[{host}]:{port}"
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] == "@revoked":
            continue
        if fields[0].startswith("@"):
            fields = fields[1:]
        if len(fields) < 3:
            continue
        for pattern in fields[0].split(","):
            if pattern.startswith("|1|"):
                if paramiko.HostKeys.hash_host(name, pattern) == pattern:
                    found.append(line)
                    break
            elif pattern == name:
                found.append(line)
                break
    return found


def load_private_key(text: str) -> paramiko.PKey:
    """Parse an OpenSSH/PEM private key held in memory (never written to disk)."""
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise TransportError("the SSH private key is passphrase-protected; give an unencrypted key (kept as a Pulumi secret)") from None
        except (paramiko.SSHException, ValueError, IndexError):
            continue  # not this type; the errors could quote key material, so they are not kept
    raise TransportError("the SSH private key could not be read as an Ed25519, ECDSA or RSA key")


# --------------------------------------------------------------------------
# Atomic writes (shell snippets, so a batch can run in one round trip)
# --------------------------------------------------------------------------


def temp_path(path: str, token: str) -> str:
    directory, _, name = path.rpartition("/")
    return f"{directory}/.{name}{TEMP_MARK}{token}"


def atomic_write_snippet(path: str, content: bytes, token: str, *, mode: str = "0644") -> str:
    """POSIX sh that writes ``content`` to ``path`` via a temp file in the same
    directory, fsyncs it and renames it over the target. Owner and mode follow
    the file it replaces (``mode`` for a new file). A reader sees the old or
    the new content, never a mix."""
    tmp = temp_path(path, token)
    payload = base64.b64encode(content).decode()
    q_path, q_tmp, q_dir = shlex.quote(path), shlex.quote(tmp), shlex.quote(path.rpartition('/')[0] or '/')
    return "\n".join([
        f"mkdir -p -- {q_dir}",
        f"if ! base64 -d > {q_tmp} <<'PTG_EOF'",
        payload,
        "PTG_EOF",
        # A full disk (ENOSPC) or any other write error: drop the partial temp
        # file, leave the target as it was, and say which file and how much room.
        "then",
        f"  rm -f -- {q_tmp}",
        f"  printf 'cannot write %s (%s bytes): %s; it was left as it was\\n' {q_path} {len(content)} "
        f"\"$(df -Pk -- {q_dir} 2>/dev/null | awk 'NR==2 {{print $4 \" KiB free on \" $6}}')\" >&2",
        "  exit 77",
        "fi",
        f"if [ -e {q_path} ]; then chmod --reference={q_path} {q_tmp} && chown --reference={q_path} {q_tmp}; else chmod {mode} {q_tmp}; fi",
        f"sync -- {q_tmp}",
        f"mv -f -- {q_tmp} {q_path}",
        f"sync -- {q_dir} 2>/dev/null || true",
    ])


# --------------------------------------------------------------------------
# Connection failures in words, and paramiko's log (helpers of connect)
# --------------------------------------------------------------------------

# Pulumi.homelab.yaml ships this fingerprint as a placeholder no host matches.
_PLACEHOLDER_PIN = re.compile(r"^SHA256:A{43}$")
_PORT_HINT = "check proxmox-talos-gpu:host.port (SSH is usually 22)"


class _ParamikoLog(logging.Handler):
    """Where paramiko's records go: this module's debug log, one line each,
    without the tracebacks its transport thread logs at ERROR (the failure
    reaches the caller as one TransportError instead). The lines a server
    sent before (instead of) its SSH banner are kept per transport thread, so
    a failed handshake can say what answered."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._banners: dict[int, list[str]] = {}
        self._in_traceback: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        thread = record.thread or 0
        if message.startswith("Traceback (most recent call last)"):
            self._in_traceback.add(thread)
            return
        if thread in self._in_traceback:
            if message and not message[0].isspace():  # the exception's own line ends it
                self._in_traceback.discard(thread)
            return
        if not message.strip() or message.startswith("During handling of the above exception"):
            return
        if message.startswith("Banner: "):
            lines = self._banners.setdefault(thread, [])
            if len(lines) < 3:
                lines.append(message[len("Banner: "):].strip()[:80])
            while len(self._banners) > 32:  # threads that never asked for theirs
                self._banners.pop(next(iter(self._banners)))
        log.debug("paramiko: %s", message)

    def take_banner_lines(self, transport: paramiko.Transport) -> list[str]:
        return self._banners.pop(transport.ident or 0, [])


_PARAMIKO_LOG = _ParamikoLog()


def route_paramiko_logging() -> None:
    """paramiko logs only to :data:`_PARAMIKO_LOG` (so, at most, to this
    module's debug log), never to the terminal through the root logger or
    Python's last-resort handler. Idempotent."""
    logger = logging.getLogger("paramiko")
    if _PARAMIKO_LOG not in logger.handlers:
        logger.addHandler(_PARAMIKO_LOG)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)  # the banner lines are debug records


def _reason(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def _tcp_failure(error: OSError, target: SshTarget, timeout: float) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name {target.host!r} ({error.strerror}); check proxmox-talos-gpu:host.address"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused: nothing listens on port {target.port} (is sshd running?); {_PORT_HINT}"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (the host is down, or a firewall drops the connection)"
    return f"cannot connect: {error.strerror or _reason(error)}"


def _handshake_failure(error: BaseException, transport: paramiko.Transport, target: SshTarget, timeout: float) -> str:
    lines = _PARAMIKO_LOG.take_banner_lines(transport)
    if lines:
        return f"not an SSH server: it answered {lines[0]!r} instead of an SSH banner; {_PORT_HINT}"
    text = _reason(error)
    if "banner" in text.lower() or isinstance(error, EOFError):
        return f"the server closed the connection without an SSH banner (not an SSH server, or sshd turned the connection away); {_PORT_HINT}"
    if isinstance(error, paramiko.IncompatiblePeer):
        return f"the server and this client share no SSH algorithm ({text}); is its sshd very old?"
    if isinstance(error, TimeoutError):
        return f"the SSH handshake did not finish within {timeout:g} s"
    return f"SSH handshake failed: {text}"


def _handshake_timeout(transport: paramiko.Transport, timeout: float) -> str:
    """Why ``start_client`` ran out of time (it returns silently then)."""
    lines = _PARAMIKO_LOG.take_banner_lines(transport)
    if lines:
        return f"not an SSH server: it answered {lines[0]!r} instead of an SSH banner; {_PORT_HINT}"
    if not transport.remote_version:
        return (f"no SSH banner within {timeout:g} s: the port accepts connections but sends nothing "
                "(not the SSH port, a stuck sshd, or a firewall); check proxmox-talos-gpu:host.address and host.port")
    return f"the SSH key exchange did not finish within {timeout:g} s (the server announced {transport.remote_version!r})"


# --------------------------------------------------------------------------
# The transport
# --------------------------------------------------------------------------


class SshTransport:
    """One SSH connection. ``round_trips`` counts commands run over it."""

    def __init__(self, target: SshTarget, transport: paramiko.Transport, *, command_timeout: float):
        self.target = target
        self._transport = transport
        self.command_timeout = command_timeout
        self.round_trips = 0
        self._secrets = [target.private_key]

    @classmethod
    def connect(cls, target: SshTarget, timeout: float = 10.0, *, command_timeout: float = 900.0) -> SshTransport:
        """Open a connection, accepting only the pinned host key.

        Every failure is one :class:`TransportError` that names ``user@host:port``
        and says what to check; nothing else reaches the caller. Each step
        (TCP, SSH banner, key exchange, authentication) waits at most
        ``timeout`` seconds. paramiko's own log lines (its transport thread
        logs tracebacks) go to this module's debug log only."""
        route_paramiko_logging()
        if not target.host_key:
            raise HostKeyError(f"{target.label}: no host key pinned; refusing to connect to an unverified host")
        try:
            pin = parse_host_key_pin(target.host_key)
        except ValueError as error:
            raise HostKeyError(f"{target.label}: {error}") from None
        try:
            pkey = load_private_key(target.private_key)
        except TransportError as error:
            raise TransportError(f"{target.label}: {error}") from None
        offered: list[str] = []
        # A known_hosts pin names its key type: ask for that type (then, only
        # to report what the host offers, for any). A bare fingerprint does
        # not: try the host's default key, then each type, until one matches.
        attempts: list[tuple[str, ...] | None]
        if pin.keys:
            attempts = [tuple(a for kind in pin.key_types for a in _ALGORITHMS_FOR_TYPE[kind]), None]
        else:
            attempts = [None, *_ALGORITHMS_FOR_TYPE.values()]
        for algorithms in attempts:
            transport = cls._handshake(target, timeout, algorithms)
            if transport is None:
                continue
            key = transport.get_remote_server_key()
            blob = key.asbytes()
            if pin.matches(blob):
                try:
                    transport.auth_publickey(target.user, pkey)
                except paramiko.AuthenticationException as error:
                    transport.close()
                    if "timeout" in str(error).lower():
                        raise TransportError(f"{target.label}: the host did not answer the login within {timeout:g} s") from None
                    raise TransportError(f"{target.label}: the host refused the SSH key for user {target.user} "
                                         f"(is its public key in ~{target.user}/.ssh/authorized_keys there?)") from None
                except (paramiko.SSHException, OSError, EOFError) as error:
                    transport.close()
                    raise TransportError(f"{target.label}: authentication failed: {_reason(error)}") from None
                log.debug("connected to %s (host key %s %s)", target.label, key.get_name(), fingerprint(blob))
                return cls(target, transport, command_timeout=command_timeout)
            transport.close()
            offered.append(f"{key.get_name()} {fingerprint(blob)}")
            if pin.keys:
                break
        if not offered:
            raise TransportError(f"{target.label}: SSH handshake failed for every host-key type")
        if pin.fingerprints and all(_PLACEHOLDER_PIN.match(value) for value in pin.fingerprints) and not pin.keys:
            advice = ("The pin is still the example's placeholder: check the host's key on its console "
                      "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and put that fingerprint in proxmox-talos-gpu:host.hostKey.")
        else:
            advice = ("If the host was reinstalled, check the new key on its console "
                      "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and update the pin.")
        raise HostKeyError(
            f"{target.label}: host key not accepted: the host offered {', '.join(dict.fromkeys(offered))}, "
            f"which does not match the pinned key (proxmox-talos-gpu:host.hostKey or --known-hosts). {advice}"
        )

    @staticmethod
    def _handshake(target: SshTarget, timeout: float, algorithms: tuple[str, ...] | None) -> paramiko.Transport | None:
        """TCP connect and SSH key exchange. None when the host holds no key
        of the requested types; TransportError for anything else."""
        try:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
        except OSError as error:
            raise TransportError(f"{target.label}: {_tcp_failure(error, target, timeout)}") from None
        # Small request/response exchanges: without TCP_NODELAY each channel
        # open waits out the peer's delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        # paramiko's own waits (15 s banner, 15 s handshake, 30 s auth) would
        # outlast a short timeout. start_client's deadline (``timeout``) comes
        # first, so a silent server is told apart from one that hung up.
        transport.banner_timeout = transport.handshake_timeout = timeout + 1
        transport.auth_timeout = timeout
        if algorithms is not None:
            options = transport.get_security_options()
            supported = [a for a in algorithms if a in options.key_types]
            if not supported:
                transport.close()
                return None
            options.key_types = supported
        try:
            transport.start_client(timeout=timeout)
        except paramiko.SSHException as error:
            transport.close()
            if algorithms is not None and "host key" in str(error).lower():
                return None  # the server holds no key of this type
            raise TransportError(f"{target.label}: {_handshake_failure(error, transport, target, timeout)}") from None
        except (OSError, EOFError) as error:
            transport.close()
            raise TransportError(f"{target.label}: {_handshake_failure(error, transport, target, timeout)}") from None
        if not (transport.is_active() and transport.initial_kex_done):
            transport.close()  # start_client returns silently when its timeout runs out
            raise TransportError(f"{target.label}: {_handshake_timeout(transport, timeout)}")
        _PARAMIKO_LOG.take_banner_lines(transport)
        return transport

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def add_secret(self, value: str) -> None:
        """Mask ``value`` in every later log line."""
        if value:
            self._secrets.append(value)

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float | None = None, label: str | None = None,
            progress: Callable[[str], None] | None = None, progress_every: float = 10.0,
            start_marker: bytes | None = None, wait_for_start: float | None = None) -> CommandResult:
        """Run ``command`` (through the login shell), feed ``stdin``, wait for it
        at most ``timeout`` seconds, telling ``progress`` every ``progress_every``
        seconds that it still runs. With ``start_marker`` the ``timeout``
        counts from the moment stdout shows that line (e.g. once a lock is
        taken), and waiting for it is bounded by ``wait_for_start``. Raises
        CommandTimeoutError when it takes longer, TransportError when the
        connection drops."""
        self.round_trips += 1
        shown = mask(label or command, self._secrets)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        started = time.monotonic()
        limit = timeout or self.command_timeout
        waiting = start_marker is not None
        deadline = started + (wait_for_start or limit if waiting else limit)
        next_progress = started + progress_every
        out, err = bytearray(), bytearray()
        try:
            channel = self._transport.open_session(timeout=10)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                if channel.recv_ready():
                    out += channel.recv(65536)
                    if waiting and start_marker in out:
                        waiting, started = False, time.monotonic()
                        deadline, next_progress = started + limit, started + progress_every
                    continue
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    continue
                if channel.exit_status_ready() and channel.eof_received:
                    break
                if channel.closed or not self._transport.is_active():
                    break
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    channel.close()
                    what = f"did not start within {wait_for_start or limit:.0f} s" if waiting else f"did not finish within {limit:.0f} s"
                    raise CommandTimeoutError(f"{self.target.label}: `{shown}` {what}",
                                              elapsed=now - started, stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))
                if progress is not None and now >= next_progress and not waiting:
                    progress(f"`{shown}` still running: {now - started:.0f} s of at most {limit:.0f} s")
                    next_progress = now + progress_every
                select.select([channel], [], [], min(remaining, 1.0, max(0.05, next_progress - now)))
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            rc = channel.recv_exit_status() if channel.exit_status_ready() else -1
            eof = channel.eof_received
            channel.close()
        except TransportError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as error:
            log.info("run[%d] %s: %s -> connection lost (%s)", self.round_trips, self.target.label, shown, error)
            raise TransportError(f"{self.target.label}: connection lost while running `{shown}`: {error}") from None
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if rc == -1:
            if not eof or not self._transport.is_active():
                log.info("run[%d] %s: %s -> connection lost", self.round_trips, self.target.label, shown)
                raise TransportError(f"{self.target.label}: connection lost while running `{shown}`")
            # The connection is fine but no exit status came: sshd reports a signal instead.
            stderr += "\n(ended without an exit status: killed by a signal)"
        log.debug("run[%d] %s: %s -> rc=%d in %.3f s%s", self.round_trips, self.target.label, shown, rc,
                  time.monotonic() - started, f"; stderr: {mask(stderr.strip()[:300], self._secrets)}" if stderr.strip() else "")
        return CommandResult(rc, stdout, stderr)

    def run_script(self, script: str, *, label: str, timeout: float | None = None,
                   progress: Callable[[str], None] | None = None, progress_every: float = 10.0,
                   start_marker: bytes | None = None, wait_for_start: float | None = None) -> CommandResult:
        """Run a POSIX sh script fed on stdin (no length limit, nothing on the command line)."""
        return self.run("sh -s", stdin=script.encode(), timeout=timeout, label=label, progress=progress, progress_every=progress_every,
                        start_marker=start_marker, wait_for_start=wait_for_start)

    def write_atomic(self, path: str, content: bytes, *, token: str, mode: str = "0644") -> None:
        """Write one file atomically (temp file + fsync + rename in its directory)."""
        result = self.run_script("set -e\n" + atomic_write_snippet(path, content, token, mode=mode) + "\n", label=f"write {path} atomically")
        if not result.ok:
            raise TransportError(f"{self.target.label}: writing {path} failed: {mask(result.stderr.strip(), self._secrets)}")
