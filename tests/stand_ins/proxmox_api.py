"""A stand-in Proxmox VE API: a real HTTPS server on loopback that proxmoxer
talks to as it talks to pveproxy. It keeps each VM's config *file text* and
answers from it as qemu-server does. Each behaviour, with the upstream file
it mirrors (qemu-server 9.2.6, pve-guest-common 4a8f6cb, pve-manager 14a22df3,
pve-http-server 5c9e4ea, pve-access-control 9.1.1, pve-common 9.2.1):

| behaviour | upstream |
|---|---|
| config file: ``#`` description lines, then ``key: value`` sorted, ``[PENDING]`` section with ``delete: a,b`` | qemu-server src/PVE/QemuServer.pm ``write_vm_config`` / ``parse_vm_config`` |
| ``digest`` = SHA-1 hex of the file text | QemuServer.pm ``parse_vm_config`` (``Digest::SHA::sha1_hex($raw)``) |
| ``GET .../config``: pending values applied, pending deletes dropped; ``current=1``: the current values | pve-guest-common AbstractConfig.pm ``load_current_config``; PVE/API2/Qemu.pm ``vm_config`` |
| ``GET .../pending``: ``[{key, value, pending, delete}]`` | Qemu.pm ``vm_pending``; pve-guest-common GuestHelpers.pm ``config_with_pending_array`` |
| ``PUT .../config`` (sync) / ``POST`` (async, a UPID): digest mismatch -> 500 "checksum mismatch (file change by other user?)"; ``delete=`` of an unset key only warns; changes go to ``[PENDING]``, then ``cleanup_pending``; a stopped VM takes them at once (``vmconfig_apply_pending``); a running one keeps ``hostpciN`` and a balloon on/off change pending (``vmconfig_hotplug_pending`` "skip"), fast-plug keys (name, description, tags, onboot, ...) apply | Qemu.pm ``update_vm_api``; AbstractConfig.pm ``cleanup_pending``; QemuServer.pm ``vmconfig_hotplug_pending`` |
| a raw ``hostpciN`` id from anyone but root@pam (a token too) -> "only root can set 'hostpciN' config for non-mapped devices" | Qemu.pm ``check_hostpci_perm`` |
| missing VM -> 500 "Configuration file 'nodes/N/qemu-server/V.conf' does not exist" | AbstractConfig.pm ``load_config`` |
| ``status/reboot`` of a stopped VM -> 500 "VM V not running"; else a ``qmreboot`` task that ends once the VM has stopped; qmeventd's cleanup then starts it, and the start applies the pending changes | Qemu.pm ``vm_reboot``; QemuServer.pm ``vm_reboot``, ``vm_start_nolock``; src/PVE/CLI/qm.pm ``cleanup`` |
| ``/nodes/N/tasks/UPID/status``: ``status`` running/stopped, ``exitstatus`` OK | pve-manager PVE/API2/Tasks.pm ``read_task_status``; UPID form ``UPID:node:pid:pstart:starttime:type:id:user:`` (pve-common PVE/UPID.pm) |
| ``/cluster/resources?type=vm``: ``{id: qemu/V, type: qemu, vmid, node, name, status}`` | pve-manager PVE/API2/Cluster.pm ``resources`` |
| ``/cluster/mapping/pci``: ``{id, map: ["node=..,path=..,id=.."]}`` | pve-manager PVE/API2/Cluster/Mapping/PCI.pm ``index`` |
| errors: HTTP status, the message as reason phrase, JSON ``{"data": null, "message": ...}`` | pve-http-server AnyEvent.pm ``error``, Formatter/Standard.pm |
| ``POST /access/ticket`` with a wrong password -> 401 "authentication failure"; a bad token or ticket -> 401 "Authentication failed!"; no credentials -> 401 "No ticket"; a ticket without CSRFPreventionToken on a write -> 401 "Permission denied - invalid csrf token" | pve-access-control PVE/API2/AccessControl.pm; pve-manager PVE/HTTPServer.pm ``auth_handler``; pve-http-server AnyEvent.pm |

Time does not pass by itself: a reboot moves on one step per status poll
(``steps_to_stop`` task polls, then ``steps_to_start`` status polls), so no
test depends on the machine's speed.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

# Keys Proxmox changes on a running VM without hotplug (QemuServer.pm $fast_plug_option, subset).
FAST_PLUG = {"name", "description", "tags", "onboot", "protection", "lock", "startup", "hookscript", "shares", "vmstatestorage"}


def parse_config(raw: str) -> tuple[dict[str, str], dict[str, str]]:
    """(current, pending) of a config file; ``pending`` holds ``delete`` as written."""
    current: dict[str, str] = {}
    pending: dict[str, str] = {}
    section, descr = current, []
    for line in raw.split("\n"):
        if not line.strip():
            continue
        if re.fullmatch(r"\[PENDING\]\s*", line, re.I):
            section = pending
            continue
        if line.startswith("#") and section is current:
            descr.append(line[1:])
            continue
        match = re.match(r"^([a-z][a-z_\-]*\d*):\s*(.+?)\s*$", line)
        if match:
            section[match.group(1)] = match.group(2)
    if descr:
        current["description"] = "\n".join(descr)
    return current, pending


def render_config(current: dict[str, str], pending: dict[str, str]) -> str:
    def block(conf: dict[str, str]) -> str:
        raw = "".join(f"#{line}\n" for line in conf["description"].split("\n")) if conf.get("description") else ""
        return raw + "".join(f"{key}: {conf[key]}\n" for key in sorted(conf) if key != "description")

    raw = block(current)
    if pending:
        raw += "\n[PENDING]\n" + block(pending)
    return raw


def _deletes(pending: dict[str, str]) -> list[str]:
    return [key.lstrip("!") for key in re.split(r"[,;\s]+", pending.get("delete", "")) if key]


class ApiError(Exception):
    def __init__(self, code: int, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.code, self.message, self.errors = code, message, errors


@dataclass
class Vm:
    node: str
    raw: str
    running: bool = True
    starts: int = 0  # QEMU process starts (cold starts)
    started_with: dict[str, str] = field(default_factory=dict)  # the config the running QEMU process was started with
    reboot: dict[str, Any] | None = None  # an ongoing status/reboot


@dataclass
class Task:
    upid: str
    node: str
    polls_left: int
    exitstatus: str = "OK"
    on_stop: Any = None


class ProxmoxSim:
    def __init__(self, *, tokens: dict[str, str] | None = None, passwords: dict[str, str] | None = None,
                 steps_to_stop: int = 2, steps_to_start: int = 2):
        self.vms: dict[int, Vm] = {}
        self.mappings: dict[str, list[str]] = {}
        self.tokens = tokens or {"root@pam!pulumi": "5ecret-t0ken"}
        self.passwords = passwords or {"root@pam": "hunter2"}
        self.tickets: dict[str, str] = {}
        self.tasks: dict[str, Task] = {}
        self.steps_to_stop, self.steps_to_start = steps_to_stop, steps_to_start
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.writes: list[dict[str, str]] = []  # bodies of config writes that reached the VM
        self.on_stop: list[Any] = []  # callbacks(vmid) when a VM stops / starts (e.g. its Kubernetes node)
        self.on_start: list[Any] = []
        self.lock = threading.Lock()
        self._pid = 4000

    # -- set-up and inspection for tests -----------------------------------

    def add_vm(self, vmid: int, node: str, raw: str, *, running: bool = True) -> None:
        vm = Vm(node=node, raw=raw, running=running)
        vm.started_with = parse_config(raw)[0] if running else {}
        self.vms[vmid] = vm

    def current(self, vmid: int) -> dict[str, str]:
        return parse_config(self.vms[vmid].raw)[0]

    def edit(self, vmid: int, **values: str) -> None:
        """A change by someone else (``qm set`` on the host): writes the file directly."""
        current, pending = parse_config(self.vms[vmid].raw)
        current.update(values)
        self.vms[vmid].raw = render_config(current, pending)

    # -- the API -----------------------------------------------------------

    def _vm(self, node: str, vmid: int) -> Vm:
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:
            raise ApiError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    def _upid(self, node: str, kind: str, vmid: int, user: str) -> str:
        self._pid += 1
        return f"UPID:{node}:{self._pid:08X}:{self._pid * 7:08X}:{0x66000000 + self._pid:08X}:{kind}:{vmid}:{user}:"

    def _start(self, vmid: int) -> None:
        """``vm_start_nolock``: pending changes apply, then a new QEMU process runs."""
        vm = self.vms[vmid]
        current, pending = parse_config(vm.raw)
        for key in _deletes(pending):
            current.pop(key, None)
        current.update({k: v for k, v in pending.items() if k != "delete"})
        vm.raw = render_config(current, {})
        vm.running, vm.starts, vm.started_with, vm.reboot = True, vm.starts + 1, current, None
        for callback in self.on_start:
            callback(vmid)

    def _stop(self, vmid: int) -> None:
        self.vms[vmid].running = False
        for callback in self.on_stop:
            callback(vmid)

    def cold_restart(self, vmid: int) -> None:
        """The host rebooted (or `qm stop` + `qm start`): the VM's next start applies what is pending."""
        self._stop(vmid)
        self._start(vmid)

    def handle(self, method: str, path: str, params: dict[str, str], user: str) -> Any:
        self.requests.append((method, path))
        parts = path.strip("/").split("/")
        if parts == ["cluster", "resources"]:
            return [{"id": f"qemu/{vmid}", "type": "qemu", "vmid": vmid, "node": vm.node, "name": parse_config(vm.raw)[0].get("name", ""),
                     "status": "running" if vm.running else "stopped"} for vmid, vm in sorted(self.vms.items())
                    if params.get("type") in (None, "vm")]
        if parts == ["cluster", "mapping", "pci"]:
            return [{"id": name, "map": maps, "description": ""} for name, maps in sorted(self.mappings.items())]
        if len(parts) == 5 and parts[0] == "nodes" and parts[2] == "tasks" and parts[4] == "status":
            return self._task(parts[1], parts[3])
        if len(parts) >= 5 and parts[0] == "nodes" and parts[2] == "qemu" and parts[3].isdigit():
            node, vmid, rest = parts[1], int(parts[3]), parts[4:]
            vm = self._vm(node, vmid)
            if rest == ["config"] and method == "GET":
                current, pending = parse_config(vm.raw)
                if params.get("current") not in ("1", "true"):
                    current.update({k: v for k, v in pending.items() if k != "delete"})
                    for key in _deletes(pending):
                        current.pop(key, None)
                return {**current, "digest": hashlib.sha1(vm.raw.encode()).hexdigest()}
            if rest == ["config"] and method in ("PUT", "POST"):
                self._update(vm, vmid, dict(params), user)
                return self._finished_task(node, "qmconfig", vmid, user) if method == "POST" else None
            if rest == ["pending"]:
                current, pending = parse_config(vm.raw)
                deletes = set(_deletes(pending))
                rows = []
                for key in sorted(set(current) | set(pending) - {"delete"}):
                    row: dict[str, Any] = {"key": key}
                    if key in current:
                        row["value"] = current[key]
                    if key in pending and key != "delete":
                        row["pending"] = pending[key]
                    if key in deletes:
                        row["delete"] = 1
                    rows.append(row)
                return rows
            if rest == ["status", "current"]:
                self._advance(vmid)
                return {"vmid": vmid, "status": "running" if vm.running else "stopped", "qmpstatus": "running" if vm.running else "stopped",
                        "name": parse_config(vm.raw)[0].get("name", "")}
            if rest == ["status", "reboot"] and method == "POST":
                if not vm.running:
                    raise ApiError(500, f"VM {vmid} not running")
                upid = self._upid(node, "qmreboot", vmid, user)
                self.tasks[upid] = Task(upid, node, self.steps_to_stop, on_stop=lambda: self._rebooted(vmid))
                return upid
        raise ApiError(501, f"Method '{method} /{path.strip('/')}' not implemented")

    def _update(self, vm: Vm, vmid: int, params: dict[str, str], user: str) -> None:
        digest = params.pop("digest", None)
        if digest and digest != hashlib.sha1(vm.raw.encode()).hexdigest():
            raise ApiError(500, "checksum mismatch (file change by other user?)")
        delete = [key for key in re.split(r"[,;\s]+", params.pop("delete", "")) if key]
        if not delete and not params:
            raise ApiError(500, "no options specified")
        for key, value in params.items():
            if re.fullmatch(r"hostpci\d+", key) and user != "root@pam" and "mapping=" not in value:
                raise ApiError(500, f"only root can set '{key}' config for non-mapped devices")
        current, pending = parse_config(vm.raw)
        pending_deletes = [k for k in _deletes(pending) if k not in params]
        for key in delete:
            if key not in current and key not in pending:
                continue  # "cannot delete '$opt' - not set in current configuration!" is only a warning
            pending.pop(key, None)
            if key in current and key not in pending_deletes:
                pending_deletes.append(key)
        for key, value in params.items():
            pending[key] = value
        pending.pop("delete", None)
        # cleanup_pending: a pending value equal to the current one, a delete of an unset key
        pending = {k: v for k, v in pending.items() if current.get(k) != v}
        pending_deletes = [k for k in pending_deletes if k in current]
        if pending_deletes:
            pending["delete"] = ",".join(sorted(pending_deletes))
        if not vm.running:  # vmconfig_apply_pending
            for key in _deletes(pending):
                current.pop(key, None)
            current.update({k: v for k, v in pending.items() if k != "delete"})
            pending = {}
        else:  # vmconfig_hotplug_pending: only what can change live leaves [PENDING]
            for key in [k for k in pending if k in FAST_PLUG]:
                current[key] = pending.pop(key)
            kept = [k for k in _deletes(pending) if k not in FAST_PLUG]
            for key in set(_deletes(pending)) - set(kept):
                current.pop(key, None)
            pending.pop("delete", None)
            if kept:
                pending["delete"] = ",".join(sorted(kept))
        vm.raw = render_config(current, pending)
        self.writes.append({**params, **({"delete": ",".join(delete)} if delete else {})})

    def _rebooted(self, vmid: int) -> None:
        self._stop(vmid)
        self.vms[vmid].reboot = {"start_in": self.steps_to_start}

    def _advance(self, vmid: int) -> None:
        vm = self.vms[vmid]
        if vm.reboot is not None:
            vm.reboot["start_in"] -= 1
            if vm.reboot["start_in"] <= 0:
                self._start(vmid)

    def _finished_task(self, node: str, kind: str, vmid: int, user: str) -> str:
        upid = self._upid(node, kind, vmid, user)
        self.tasks[upid] = Task(upid, node, 0)
        return upid

    def _task(self, node: str, upid: str) -> dict[str, Any]:
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise ApiError(400, "Parameter verification failed.", {"upid": "no such task"})
        fields = upid.split(":")
        out = {"upid": upid, "node": node, "pid": int(fields[2], 16), "pstart": int(fields[3], 16), "starttime": int(fields[4], 16),
               "type": fields[5], "id": fields[6], "user": fields[7]}
        if task.polls_left > 0:
            task.polls_left -= 1
            if task.polls_left == 0 and task.on_stop:
                task.on_stop()
                task.on_stop = None
            return {**out, "status": "running"}
        return {**out, "status": "stopped", "exitstatus": task.exitstatus}

    # -- authentication (PVE/HTTPServer.pm auth_handler) --------------------

    def login(self, username: str, password: str) -> dict[str, str]:
        if self.passwords.get(username) != password:
            raise ApiError(401, "authentication failure")
        ticket = f"PVE:{username}:{hashlib.sha1(f'{username}{len(self.tickets)}'.encode()).hexdigest().upper()}"
        self.tickets[ticket] = username
        return {"ticket": ticket, "CSRFPreventionToken": f"csrf-{ticket[-8:]}", "username": username}

    def authenticate(self, method: str, headers: Any) -> str:
        auth = headers.get("Authorization", "")
        if auth.startswith("PVEAPIToken="):
            token_id, _, secret = auth[len("PVEAPIToken="):].partition("=")
            if self.tokens.get(token_id) != secret:
                raise ApiError(401, "Authentication failed!")
            return token_id
        cookies = dict(part.strip().partition("=")[::2] for part in headers.get("Cookie", "").split(";") if "=" in part)
        ticket = cookies.get("PVEAuthCookie")
        if not ticket:
            raise ApiError(401, "No ticket")
        if ticket not in self.tickets:
            raise ApiError(401, "Authentication failed!")
        if method != "GET" and headers.get("CSRFPreventionToken") != f"csrf-{ticket[-8:]}":
            raise ApiError(401, "Permission denied - invalid csrf token")
        return self.tickets[ticket]


class _Handler(BaseHTTPRequestHandler):
    sim: ProxmoxSim

    def log_message(self, *_args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any], reason: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code, reason)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(url.query)) | dict(parse_qsl(body, keep_blank_values=True))
        if not url.path.startswith("/api2/json/"):
            self._reply(501, {"data": None}, "no such uri")
            return
        path = url.path[len("/api2/json"):]
        try:
            with self.sim.lock:
                if path == "/access/ticket" and method == "POST":
                    data = self.sim.login(params.get("username", ""), params.get("password", ""))
                else:
                    user = self.sim.authenticate(method, self.headers)
                    data = self.sim.handle(method, path, params, user)
        except ApiError as error:
            body = {"data": None, "message": error.message + "\n"} | ({"errors": error.errors} if error.errors else {})
            self._reply(error.code, body, error.message)
            return
        self._reply(200, {"data": data})

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._serve("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (pveproxy's own is self-signed too)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve5.test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "pve-ssl.pem", directory / "pve-ssl.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class ProxmoxApiServer:
    """``with ProxmoxApiServer(sim, tmp_path) as server: server.endpoint``"""

    def __init__(self, sim: ProxmoxSim, directory: Path):
        self.sim = sim
        cert, key = self_signed(directory)
        handler = type("Handler", (_Handler,), {"sim": sim})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.cert = cert
        self.endpoint = f"https://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ProxmoxApiServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
