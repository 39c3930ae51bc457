"""Open one SSH connection: TCP, key exchange with the pinned host key only,
public-key login. Every failure is one TransportError naming
``user@host:port`` and what to check."""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass, field

import paramiko

from components.ssh.diagnose import PARAMIKO_LOG, handshake_failure, handshake_timeout, reason, route_paramiko_logging, tcp_failure
from components.ssh.errors import HostKeyError, TransportError
from components.ssh.keys import ALGORITHMS_FOR_TYPE, fingerprint, load_private_key, parse_host_key_pin

log = logging.getLogger(__name__)

# Pulumi.homelab.yaml ships this fingerprint as a placeholder no host matches.
_PLACEHOLDER_PIN = re.compile(r"^SHA256:A{43}$")


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


def open_transport(target: SshTarget, timeout: float = 10.0) -> paramiko.Transport:
    """Open a connection, accepting only the pinned host key.

    Every failure is one :class:`TransportError` that names ``user@host:port``
    and says what to check; nothing else reaches the caller. Each step
    (TCP, SSH banner, key exchange, authentication) waits at most
    ``timeout`` seconds. paramiko's own log lines (its transport thread
    logs tracebacks) go to the debug log of :mod:`components.ssh.diagnose` only."""
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
        attempts = [tuple(a for kind in pin.key_types for a in ALGORITHMS_FOR_TYPE[kind]), None]
    else:
        attempts = [None, *ALGORITHMS_FOR_TYPE.values()]
    for algorithms in attempts:
        transport = _handshake(target, timeout, algorithms)
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
                raise TransportError(f"{target.label}: authentication failed: {reason(error)}") from None
            log.debug("connected to %s (host key %s %s)", target.label, key.get_name(), fingerprint(blob))
            return transport
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


def _handshake(target: SshTarget, timeout: float, algorithms: tuple[str, ...] | None) -> paramiko.Transport | None:
    """TCP connect and SSH key exchange. None when the host holds no key
    of the requested types; TransportError for anything else."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError as error:
        raise TransportError(f"{target.label}: {tcp_failure(error, target.host, target.port, timeout)}") from None
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
        raise TransportError(f"{target.label}: {handshake_failure(error, transport, timeout)}") from None
    except (OSError, EOFError) as error:
        transport.close()
        raise TransportError(f"{target.label}: {handshake_failure(error, transport, timeout)}") from None
    if not (transport.is_active() and transport.initial_kex_done):
        transport.close()  # start_client returns silently when its timeout runs out
        raise TransportError(f"{target.label}: {handshake_timeout(transport, timeout)}")
    PARAMIKO_LOG.take_banner_lines(transport)
    return transport
