"""Host-key pins (a SHA256 fingerprint or known_hosts lines) and the client's
private key, read from memory (never written to disk). Pure but for
paramiko's key parsers."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import paramiko

from components.ssh.errors import TransportError

# Host-key algorithms to offer for each key type a pin can name. paramiko 5
# no longer signs with SHA-1, so an `ssh-rsa` pin means the SHA-2 variants.
ALGORITHMS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}


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
        if len(fields) < 3 or fields[1] not in ALGORITHMS_FOR_TYPE:
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

