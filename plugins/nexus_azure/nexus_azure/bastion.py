"""``connection="bastion"``: an ``az network bastion tunnel`` per VM, for nexus-ssh.

Each tunnel is an ``az`` subprocess listening on a free port of 127.0.0.1; the host is
handed to nexus-ssh as ``127.0.0.1:PORT``. A tunnel is ready once its port accepts a
connection; it is stopped when the ``nexus`` process ends (the run, or ``nexus hosts
list``). When ``az`` exits before its port opens, its stderr is the error.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from nexus_azure.arm import parse_id
from nexus_azure.errors import CONFIG, CONNECTION, AzureError

#: Seconds a tunnel may take to accept connections.
READY_TIMEOUT = 60.0
#: Bytes of az's stderr shown in an error.
STDERR_TAIL = 2000

_LOCK = threading.Lock()
_OPEN: list[Tunnel] = []


@dataclass
class Tunnel:
    """One running ``az network bastion tunnel``: its process and local port."""

    proc: subprocess.Popen[bytes]
    port: int
    target: str
    stderr_path: str

    def stderr(self) -> str:
        """The last lines az wrote to stderr."""
        try:
            with open(self.stderr_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-STDERR_TAIL:].decode("utf-8", "replace").strip()

    def stop(self) -> None:
        """Stop the az process (its whole process group) and remove its stderr file."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(OSError):
            os.unlink(self.stderr_path)


def bastion_of(setting: str, vm_resource_group: str) -> tuple[str, str]:
    """(name, resource group) of the bastion from ``azure_bastion``: a resource ID, or a name
    (then in the VM's resource group)."""
    if setting.startswith("/"):
        parts = parse_id(setting)
        name, group = parts.get("bastionhosts", ""), parts.get("resourcegroups", "")
        if not name or not group:
            raise AzureError(
                f"azure_bastion={setting!r} is not the resource ID of a bastion",
                hint="give /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Network/"
                "bastionHosts/NAME, or the bastion's name when it is in the VMs' resource group",
                exit_code=CONFIG,
            )
        return name, group
    return setting, vm_resource_group


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def open_tunnel(bastion: str, resource_group: str, vm_id: str, *, timeout: float = READY_TIMEOUT) -> Tunnel:
    """Start ``az network bastion tunnel`` to port 22 of ``vm_id``; return once it accepts."""
    az = shutil.which("az")
    if az is None:
        raise AzureError(
            "connection='bastion' needs the Azure CLI (az), which is not installed here",
            hint="install it (https://aka.ms/azure-cli) with its bastion and ssh extensions",
            exit_code=CONFIG,
        )
    port = _free_port()
    argv = [
        az, "network", "bastion", "tunnel", "--name", bastion, "--resource-group", resource_group,
        "--target-resource-id", vm_id, "--resource-port", "22", "--port", str(port),
    ]  # fmt: skip
    fd, err_path = tempfile.mkstemp(prefix="nexus-bastion-", suffix=".err")
    with os.fdopen(fd, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # fmt: skip
    tunnel = Tunnel(proc, port, vm_id, err_path)
    with _LOCK:
        _OPEN.append(tunnel)
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline
        if proc.poll() is not None:
            said = tunnel.stderr() or "(nothing on stderr)"
            tunnel.stop()
            raise AzureError(
                f"the bastion tunnel to {vm_id.rsplit('/', 1)[-1]} did not start "
                f"(az exited with code {proc.returncode})",
                context=[f"command: {' '.join(argv[1:])}", *(f"az: {line}" for line in said.splitlines())],
                hint="check azure_bastion, `az login`, and that the bastion extension is installed "
                "(az extension add --name bastion); the bastion must be of the Standard SKU "
                "with native client support",
                exit_code=CONNECTION,
            )
        if _accepts(port):
            return tunnel
        if time.monotonic() > deadline:
            said = tunnel.stderr()
            tunnel.stop()
            raise AzureError(
                f"the bastion tunnel to {vm_id.rsplit('/', 1)[-1]} did not accept connections "
                f"within {timeout:g} s",
                context=[f"command: {' '.join(argv[1:])}", *(f"az: {line}" for line in said.splitlines())],
                exit_code=CONNECTION,
            )
        time.sleep(0.1)


def close_all() -> None:
    """Stop every tunnel this process opened (registered with atexit)."""
    with _LOCK:
        tunnels = list(_OPEN)
        _OPEN.clear()
    for t in tunnels:
        t.stop()


atexit.register(close_all)
