"""`SshTransport.connect` against endpoints that are not a healthy sshd: each
failure is one TransportError naming user@host:port and what to check, in
bounded time, and paramiko's own log lines (tracebacks from its transport
thread) never reach the terminal."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest

from components.ssh.connect import SshTarget
from components.ssh.errors import HostKeyError, TransportError
from components.ssh.transport import SshTransport
from tests.hostile import banner_only_port, closed_port, http_port, silent_port


def _target(port: int, private_key: str, pin: str = "SHA256:" + "B" * 43) -> SshTarget:
    return SshTarget("127.0.0.1", port, "root", private_key=private_key, host_key=pin)


# The bound the tests check is paramiko's own default banner timeout (15 s),
# not the machine's speed: a 1 s timeout that is not wired through would
# wait that long; one that is returns after about 1 s, however busy the
# machine (the margin is 14 s).
PARAMIKO_DEFAULT_BANNER_TIMEOUT = 15.0


def _connect_fails(target: SshTarget, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(TransportError) as error:
        SshTransport.connect(target, timeout=timeout)
    return str(error.value), time.monotonic() - started


@pytest.fixture
def client_key(keys) -> str:
    return keys.client_private


def test_silent_port_is_one_error_after_the_timeout(client_key, capfd):
    with silent_port() as port:
        message, took = _connect_fails(_target(port, client_key), timeout=1.0)
    assert message.startswith(f"root@127.0.0.1:{port}: no SSH banner within 1 s"), message
    assert "host.port" in message
    assert took < PARAMIKO_DEFAULT_BANNER_TIMEOUT, f"took {took:.1f} s with a 1 s timeout"
    assert capfd.readouterr().err == ""


def test_banner_without_key_exchange_is_one_error_after_the_timeout(client_key, capfd):
    with banner_only_port() as port:
        message, took = _connect_fails(_target(port, client_key), timeout=1.0)
    assert "the SSH key exchange did not finish within 1 s" in message and "OpenSSH_9.2p1" in message, message
    assert took < PARAMIKO_DEFAULT_BANNER_TIMEOUT
    assert capfd.readouterr().err == ""


def test_http_server_on_the_port_is_named_as_not_ssh(client_key, capfd):
    with http_port() as port:
        message, _ = _connect_fails(_target(port, client_key), timeout=3.0)
    # Named from what the port answered, not from a timeout ("no SSH banner within 3 s").
    assert message.startswith(f"root@127.0.0.1:{port}: not an SSH server: it answered "), message
    err = capfd.readouterr().err
    assert "Traceback" not in err and err == ""


def test_closed_port_says_connection_refused(client_key):
    port = closed_port()
    message, _ = _connect_fails(_target(port, client_key), timeout=1.0)
    assert message == (f"root@127.0.0.1:{port}: connection refused: nothing listens on port {port} (is sshd running?); "
                       "check proxmox-talos-gpu:host.port (SSH is usually 22)")


@pytest.mark.sshd
def test_placeholder_pin_is_named_and_paramiko_logs_no_traceback(make_sim, capfd, caplog):
    from tests.stand_ins.proxmox_host_spec import SimSpec, t4

    sim = make_sim(SimSpec(devices=t4()))
    placeholder = dataclasses.replace(sim.target, host_key="SHA256:" + "A" * 43)
    with caplog.at_level(logging.DEBUG, logger="components.ssh"):
        with pytest.raises(HostKeyError) as error:
            SshTransport.connect(placeholder, timeout=5)
    assert "still the example's placeholder" in str(error.value) and "host.hostKey" in str(error.value)
    # Trying every host-key type makes paramiko's thread log IncompatiblePeer
    # tracebacks at ERROR; they are debug lines of this module, without the traceback.
    relayed = [record.getMessage() for record in caplog.records if record.name == "components.ssh.diagnose"]
    assert any("Incompatible ssh peer" in line for line in relayed), relayed
    assert not any("Traceback" in line or line.startswith("  File ") for line in relayed)
    assert not [record for record in caplog.records if record.name.startswith("paramiko")]
    assert capfd.readouterr().err == ""


@pytest.mark.sshd
def test_a_real_pin_still_connects_after_the_routing(make_sim):
    from tests.stand_ins.proxmox_host_spec import SimSpec, t4

    sim = make_sim(SimSpec(devices=t4()))
    with SshTransport.connect(sim.target, timeout=5) as transport:
        assert transport.run("echo ok").stdout == "ok\n"
