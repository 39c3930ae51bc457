"""The one module that talks to the Proxmox API (with proxmoxer): read the
facts the adopt planner needs, write a plan with its digest, reboot the VM
and follow the task. It decides nothing.

Endpoints (qemu-server PVE/API2/Qemu.pm, pve-manager PVE/API2/Cluster.pm,
PVE/API2/Cluster/Mapping/PCI.pm, PVE/API2/Tasks.pm):
``GET /cluster/resources?type=vm``, ``GET /cluster/mapping/pci``,
``GET|PUT /nodes/{node}/qemu/{vmid}/config``, ``GET .../pending``,
``GET .../status/current``, ``POST .../status/reboot``,
``GET /nodes/{node}/tasks/{upid}/status``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from components.vm.adopt import VmFacts

_HOSTPCI = re.compile(r"^hostpci\d+$")


class ProxmoxApiError(RuntimeError):
    """Proxmox answered, and refused (the message is Proxmox's own)."""


class ProxmoxUnreachable(RuntimeError):
    """No answer, a TLS problem, or the credentials refused."""


@dataclass(frozen=True)
class ApiTarget:
    endpoint: str  # proxmox.endpoint, e.g. https://pve5.lan:8006/
    insecure: bool = False
    api_token: str | None = None  # user@realm!tokenid=secret
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    def __repr__(self) -> str:  # never the secrets
        return f"ApiTarget({self.endpoint!r}, insecure={self.insecure}, auth={'token' if self.api_token else 'password'})"


def _token_parts(token: str) -> tuple[str, str, str]:
    match = re.fullmatch(r"([^!\s]+@[^!\s]+)!([^=\s]+)=(\S+)", token.strip())
    if not match:
        raise ProxmoxUnreachable("the Proxmox API token (proxmoxApiToken / PROXMOX_VE_API_TOKEN) is not of the form user@realm!tokenid=secret")
    return match.group(1), match.group(2), match.group(3)


def connect(target: ApiTarget) -> ProxmoxVmApi:
    """A client for ``target``; ProxmoxUnreachable when it cannot log in."""
    # Lazy: requests and proxmoxer cost more than `python -m tools.vm --help`; only a call needs them.
    import requests
    from proxmoxer import AuthenticationError, ProxmoxAPI

    if target.insecure:  # asked for (proxmox.insecure): say it once in the docs, not on every request
        import urllib3  # lazy with requests (its dependency)

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    url = urlparse(target.endpoint)
    if url.scheme != "https" or not url.hostname:
        raise ProxmoxUnreachable(f"proxmox.endpoint {target.endpoint!r} is not an https:// URL")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    kwargs: dict[str, Any] = {"port": url.port or 8006, "verify_ssl": not target.insecure, "timeout": target.timeout}
    try:
        if target.api_token:
            user, name, value = _token_parts(target.api_token)
            api = ProxmoxAPI(host, user=user, token_name=name, token_value=value, **kwargs)
        elif target.username and target.password:
            api = ProxmoxAPI(host, user=target.username, password=target.password, **kwargs)
        else:
            raise ProxmoxUnreachable("no Proxmox credentials: set proxmoxApiToken (PROXMOX_VE_API_TOKEN), or proxmox.username with proxmoxPassword")
    except AuthenticationError:
        raise ProxmoxUnreachable(f"Proxmox at {target.endpoint} refused the password of {target.username} (authentication failure)") from None
    except requests.exceptions.SSLError:
        raise ProxmoxUnreachable(f"the TLS certificate of {target.endpoint} is not trusted: install its CA, or set proxmox.insecure: true") from None
    except requests.exceptions.RequestException as error:
        raise ProxmoxUnreachable(f"cannot reach Proxmox at {target.endpoint}: {type(error).__name__}") from None
    return ProxmoxVmApi(api, target.endpoint)


def _call(endpoint: str, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    # Lazy as in connect(): loaded by then, so this is a dict lookup.
    import requests
    from proxmoxer import ResourceException

    try:
        return fn(*args, **kwargs)
    except ResourceException as error:
        message = str(error.content).strip() or error.status_message
        if error.status_code == 401:
            raise ProxmoxUnreachable(f"Proxmox at {endpoint} refused the credentials ({message})") from None
        raise ProxmoxApiError(f"{what}: Proxmox answered {error.status_code}: {message}"
                              + (f" ({'; '.join(f'{k}: {v}' for k, v in error.errors.items())})" if isinstance(error.errors, dict) and error.errors else "")) from None
    except requests.exceptions.SSLError:
        raise ProxmoxUnreachable(f"the TLS certificate of {endpoint} is not trusted: install its CA, or set proxmox.insecure: true") from None
    except requests.exceptions.RequestException as error:
        raise ProxmoxUnreachable(f"cannot reach Proxmox at {endpoint}: {type(error).__name__}") from None


class ProxmoxVmApi:
    def __init__(self, api: Any, endpoint: str):
        self._api, self.endpoint = api, endpoint

    def _vm(self, node: str, vmid: int) -> Any:
        return self._api.nodes(node).qemu(vmid)

    def facts(self, node: str, vmid: int) -> VmFacts:
        rows = _call(self.endpoint, "list the cluster's VMs", self._api.cluster.resources.get, type="vm")
        mine = [r for r in rows or [] if r.get("type") == "qemu" and int(r.get("vmid", -1)) == vmid]
        if not mine or mine[0].get("node") != node:
            return VmFacts(exists=False)
        others: dict[int, dict[str, str]] = {}
        for row in rows:
            if row.get("type") != "qemu" or int(row["vmid"]) == vmid or row.get("node") != node:
                continue  # a device passes through to VMs of its own host only
            config = _call(self.endpoint, f"read VM {row['vmid']}'s config", self._vm(node, int(row["vmid"])).config.get)
            slots = {k: str(v) for k, v in (config or {}).items() if _HOSTPCI.match(k)}
            if slots:
                others[int(row["vmid"])] = slots
        config = _call(self.endpoint, f"read VM {vmid}'s config", self._vm(node, vmid).config.get)
        pending = _call(self.endpoint, f"read VM {vmid}'s pending changes", self._vm(node, vmid).pending.get)
        status = _call(self.endpoint, f"read VM {vmid}'s status", self._vm(node, vmid).status.current.get)
        digest = str(config.pop("digest", ""))
        return VmFacts(exists=True, config={k: str(v) for k, v in config.items()}, digest=digest,
                       pending=pending_keys(pending), status=str(status.get("status", "unknown")), others=others,
                       mappings=self.mappings(node))

    def mappings(self, node: str) -> dict[str, tuple[str, ...]] | None:
        """PCI mapping name -> its host paths on ``node``; None when not readable (Mapping.Audit missing)."""
        try:
            rows = _call(self.endpoint, "list the PCI mappings", self._api.cluster.mapping.pci.get)
        except ProxmoxApiError:
            return None
        found: dict[str, tuple[str, ...]] = {}
        for row in rows or []:
            paths = []
            for entry in row.get("map", []):
                parts = dict(item.partition("=")[::2] for item in str(entry).split(","))
                if parts.get("node") == node and parts.get("path"):
                    paths.append(parts["path"])
            found[str(row["id"])] = tuple(paths)
        return found

    def pending(self, node: str, vmid: int) -> frozenset[str]:
        return pending_keys(_call(self.endpoint, f"read VM {vmid}'s pending changes", self._vm(node, vmid).pending.get))

    def status(self, node: str, vmid: int) -> str:
        return str(_call(self.endpoint, f"read VM {vmid}'s status", self._vm(node, vmid).status.current.get).get("status", "unknown"))

    def write(self, node: str, vmid: int, params: dict[str, str]) -> None:
        """``PUT .../config`` (the synchronous ``update_vm``) with the digest read."""
        _call(self.endpoint, f"write VM {vmid}'s config", self._vm(node, vmid).config.put, **params)

    def reboot(self, node: str, vmid: int, timeout: int) -> str:
        return str(_call(self.endpoint, f"reboot VM {vmid}", self._vm(node, vmid).status.reboot.post, timeout=timeout))

    def task(self, node: str, upid: str) -> dict[str, Any]:
        return dict(_call(self.endpoint, f"follow task {upid}", self._api.nodes(node).tasks(upid).status.get))


def pending_keys(rows: list[dict[str, Any]] | None) -> frozenset[str]:
    """Keys of ``GET .../pending`` with a pending value or a pending delete
    (PVE::GuestHelpers ``config_with_pending_array``)."""
    return frozenset(str(r["key"]) for r in rows or [] if "pending" in r or r.get("delete"))
