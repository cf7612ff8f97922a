"""The ``azure`` transport: commands of ``azure://VM`` hosts run through Run Command.

No inbound port is needed: the VM agent fetches the script from Azure. Two APIs
(``azure_run_command``):

* **managed run commands** (``virtualMachines/runCommands``, the default): one resource
  per command, created with ``asyncExecution`` and a per-command ``timeoutInSeconds``,
  then polled (``$expand=instanceView``) until it ends; its ``executionState``,
  ``exitCode``, ``output`` and ``error`` give the result, and the output lines are handed
  over as the instance view shows them. Several run at once on one VM. Deleting the
  resource stops the script (cancel and timeout do that) and is done after every command.
* the **action Run Command** (``virtualMachines/runCommand``, the fallback when a VM
  refuses managed ones, or forced with ``azure_run_command="action"``): one script at a
  time per VM (commands for one VM queue here), the output truncated by Azure to its last
  4 KB per stream and only known at the end, no exit code (a last line the script prints
  carries it), and no way to stop a script once sent (its time limit is enforced on the
  VM with ``timeout``).

Commands run as root (the agent's user) with a POSIX shell; ``sudo=`` is then a no-op
and ``user=`` goes through sudo. The status-file wrapper of :mod:`nexus_core.markers`
records each command's exit code on the VM, so ``nexus resume`` asks the VM what a
command did instead of running it again.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nexus_core.plugin import (
    Cancel,
    Capabilities,
    Command,
    CommandResult,
    Executor,
    ExecutorContext,
    Host,
    OutputCallback,
    shell,
)

from nexus_azure.arm import COMPUTE_API, Arm, parse_id
from nexus_azure.errors import AzureError

TAIL_LINES = 20
#: The last stdout line of an action Run Command script: its exit code.
RC_MARK = "\x1eNEXUS-RC "
#: Bytes of each stream the action Run Command keeps.
ACTION_OUTPUT_BYTES = 4096
#: Seconds of the first polls of a managed run command (then ``azure_poll_interval``).
FIRST_POLL = 0.2
#: Seconds a delete of a cancelled run command is waited for (the script stops with it).
DELETE_WAIT = 30.0

#: ARM error codes of a VM that cannot take managed run commands (``auto`` falls back).
_NO_MANAGED = {"operationnotallowed", "operationnotsupported", "notsupported", "badrequest"}


@dataclass(frozen=True)
class Target:
    """Where a command runs: a VM (``instance`` empty) or one instance of a scale set."""

    subscription: str
    resource_group: str
    name: str  # the VM's name, or the scale set's
    location: str = ""
    instance: str = ""

    @classmethod
    def from_id(cls, resource_id: str, location: str = "") -> Target:
        """The target of an ARM resource ID (VM or scale set instance)."""
        p = parse_id(resource_id)
        if "virtualmachinescalesets" in p:
            return cls(
                p["subscriptions"],
                p["resourcegroups"],
                p["virtualmachinescalesets"],
                location,
                p.get("virtualmachines", ""),
            )
        if "virtualmachines" not in p or "subscriptions" not in p or "resourcegroups" not in p:
            raise AzureError(f"{resource_id!r} is not the resource ID of a virtual machine", exit_code=2)
        return cls(p["subscriptions"], p["resourcegroups"], p["virtualmachines"], location)

    @property
    def label(self) -> str:
        """``rg/vm`` or ``rg/scaleset/instance``."""
        return "/".join(x for x in (self.resource_group, self.name, self.instance) if x)


def script_for(command: Command, *, action: bool = False) -> str:
    """The shell script Run Command runs for ``command`` (status-file wrapper included).

    ``action``: a last stdout line carries the exit code, and the script is bounded with
    ``timeout`` (the action API cannot be stopped from outside).
    """
    text = shell.body(command.cmd, sudo=False, user=command.user, env=command.env, cwd=command.cwd)
    if command.marker is not None:
        text = shell.wrap(text, command.marker)
    run = f"/bin/sh -c {shell.quote(text)} </dev/null"
    if action and command.timeout and command.timeout > 0:
        run = f"timeout -s KILL {math.ceil(command.timeout)} {run}"
    head = 'HOME="${HOME:-/root}"; export HOME\n'
    if action:
        return f"{head}{run}\nnexus_rc=$?\nprintf '\\n{RC_MARK.strip()} %s\\n' \"$nexus_rc\""
    return f"{head}exec {run}"


class _Lines:
    """Cumulative text of one stream as the service shows it -> complete new lines."""

    def __init__(self, stream: str, emit: Callable[[str, str], None]) -> None:
        self.stream, self.emit = stream, emit
        self.done = 0
        self.rewound = False

    def update(self, text: str, final: bool = False) -> None:
        if len(text) < self.done:  # the service kept only the end of the output
            self.rewound = True
            self.done = 0
        end = len(text) if final else text.rfind("\n") + 1
        if end <= self.done:
            return
        chunk = text[self.done : end]
        self.done = end
        if final and chunk and not chunk.endswith("\n"):
            chunk += "\n"
        for line in chunk.split("\n")[:-1]:
            self.emit(self.stream, line)


class AzureExecutor(Executor):
    """Runs commands on Azure VMs and scale set instances through Run Command."""

    name = "azure"
    supports_markers = True
    capabilities = Capabilities(streams_output=True, file_transfer=False, connection=False)

    def __init__(self, context: ExecutorContext, arm: Arm | None = None) -> None:
        super().__init__(context)
        self.arm = arm or Arm(context.config)
        self._targets: dict[str, Target] = {}
        self._action_only: set[str] = set()
        self._vm_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # --- targets ----------------------------------------------------------------------------

    def target(self, host: Host) -> Target:
        """The VM ``host`` stands for: its ``azure_id`` fact, else found by name (Resource Graph)."""
        rid = str(host.facts.get("azure_id") or "")
        if rid:
            return Target.from_id(rid, str(host.facts.get("location") or ""))
        with self._lock:
            found = self._targets.get(host.name)
        if found is not None:
            return found
        from nexus_azure.discovery import find_vm

        vm = find_vm(self.arm, host.name)
        found = Target.from_id(vm.id, vm.location)
        with self._lock:
            self._targets[host.name] = found
        return found

    def _location(self, t: Target) -> str:
        if t.location:
            return t.location
        compute = self.arm.compute(t.subscription)
        if t.instance:
            doc = self.arm.call(
                t.subscription,
                f"get scale set {t.name}",
                lambda: compute.virtual_machine_scale_sets.get(
                    t.resource_group, t.name, api_version=COMPUTE_API
                ),
            )
        else:
            doc = self.arm.call(
                t.subscription,
                f"get VM {t.name}",
                lambda: compute.virtual_machines.get(t.resource_group, t.name, api_version=COMPUTE_API),
            )
        return str(doc.location)

    # --- commands ---------------------------------------------------------------------------

    def run(
        self, host: Host, command: Command, on_output: OutputCallback, cancel: Cancel, timeout: float
    ) -> CommandResult:
        """Run ``command`` on the VM ``host`` names; output lines as the service shows them."""
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def emit(stream: str, line: str) -> None:
            tail.append(line)
            on_output(stream, line)

        if cancel.level >= Cancel.INTERRUPT:
            return CommandResult("interrupted", None, 0.0, "not started: the run is stopping")
        if str(host.facts.get("os") or "").lower() == "windows":
            return CommandResult(
                "error",
                None,
                0.0,
                f"{host.name} is a Windows VM: the azure transport runs POSIX shell scripts only",
                hint='- leave Windows VMs out with discover("azure", os="linux", ...)',
                retryable=False,
            )
        try:
            t = self.target(host)
            mode = str(self.context.config.get("azure_run_command") or "auto")
            if mode != "action" and t.label not in self._action_only:
                result = self._managed(t, command, emit, cancel, timeout, started, tail, mode == "auto")
                if result is not None:
                    return result
                with self._lock:
                    self._action_only.add(t.label)
                emit(
                    "stderr",
                    f"[nexus] {t.label} refuses managed run commands: using the action Run Command "
                    "(one script at a time, last 4 KB of output)",
                )
            return self._action(t, command, emit, cancel, timeout, started, tail)
        except AzureError as exc:
            status = "error" if exc.exit_code == 2 else "unreachable"
            return CommandResult(
                status,
                None,
                time.monotonic() - started,
                exc.headline,
                tuple(tail),
                retryable=status == "unreachable",
                hint="\n".join([*exc.context, *([f"- {exc.hint}"] if exc.hint else [])]),
            )

    # --- managed run commands ---------------------------------------------------------------

    def _ops(self, t: Target) -> tuple[Any, tuple[Any, ...], Any]:
        """(operations, leading arguments, get method) of ``t``'s managed run commands."""
        compute = self.arm.compute(t.subscription)
        if t.instance:
            ops = compute.virtual_machine_scale_set_vm_run_commands
            return ops, (t.resource_group, t.name, t.instance), ops.get
        ops = compute.virtual_machine_run_commands
        return ops, (t.resource_group, t.name), ops.get_by_virtual_machine

    def _managed(
        self,
        t: Target,
        command: Command,
        emit: Callable[[str, str], None],
        cancel: Cancel,
        timeout: float,
        started: float,
        tail: deque[str],
        fallback: bool,
    ) -> CommandResult | None:
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.compute import models

        ops, args, get = self._ops(t)
        name = f"nexus-{uuid.uuid4().hex[:20]}"
        body = models.VirtualMachineRunCommand(
            location=self._location(t),
            properties=models.VirtualMachineRunCommandProperties(
                source=models.VirtualMachineRunCommandScriptSource(script=script_for(command)),
                async_execution=True,
                treat_failure_as_deployment_failure=False,
                timeout_in_seconds=math.ceil(timeout) if timeout and timeout > 0 else None,
            ),
        )
        what = f"run command on {t.label}"
        try:
            poller = self.arm.call(
                t.subscription,
                what,
                lambda: ops.begin_create_or_update(*args, name, body, api_version=COMPUTE_API),
            )
        except AzureError as exc:
            cause = exc.__cause__
            if fallback and isinstance(cause, HttpResponseError) and cause.status_code in (400, 409):
                code = str(getattr(getattr(cause, "error", None), "code", "") or "").lower()
                if code in _NO_MANAGED and "is stopped" not in str(cause) and "deallocated" not in str(cause):
                    return None
            raise
        out, err = _Lines("stdout", emit), _Lines("stderr", emit)
        deadline = started + timeout if timeout and timeout > 0 else math.inf

        def stopped() -> CommandResult | None:
            """The result when a cancel or the timeout ends the command (its run command deleted)."""
            if cancel.level >= Cancel.INTERRUPT:
                status, reason, retry = "interrupted", "interrupted", False
            elif time.monotonic() >= deadline:
                status, reason, retry = "timeout", f"timed out after {timeout:.3g}s", True
            else:
                return None
            self._delete(ops, args, name, wait=True)
            took = time.monotonic() - started
            return CommandResult(status, None, took, reason, tuple(tail), retryable=retry)

        try:
            for _ in range(1 << 40):  # ends with the command, its timeout or a cancel
                ended = stopped()
                if ended is not None:
                    return ended
                if poller.done():
                    break
                poller.wait(min(FIRST_POLL, max(0.0, deadline - time.monotonic())))
            for i in range(1 << 40):
                doc = self.arm.call(
                    t.subscription,
                    what,
                    lambda: get(*args, name, expand="instanceView", api_version=COMPUTE_API),
                )
                view = doc.instance_view
                state = _text(getattr(view, "execution_state", None)) or "Pending"
                final = state not in ("Pending", "Running", "Unknown")
                out.update(str(getattr(view, "output", "") or ""), final)
                err.update(str(getattr(view, "error", "") or ""), final)
                if final:
                    return self._managed_result(
                        view, state, timeout, started, tail, out.rewound or err.rewound
                    )
                pause = FIRST_POLL if i < 10 else self.arm.poll_interval
                for _ in range(math.ceil(pause / 0.05)):  # cancel and timeout seen within 50 ms
                    if cancel.level >= Cancel.INTERRUPT or time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
                ended = stopped()
                if ended is not None:
                    return ended
            raise AssertionError("unreachable")
        finally:
            self._delete(ops, args, name, wait=False)

    def _managed_result(
        self, view: Any, state: str, timeout: float, started: float, tail: deque[str], rewound: bool
    ) -> CommandResult:
        took = time.monotonic() - started
        if state == "TimedOut":
            return CommandResult(
                "timeout", None, took, f"timed out after {timeout:.3g}s (Run Command stopped it)", tuple(tail)
            )
        if state == "Canceled":
            return CommandResult(
                "interrupted",
                None,
                took,
                "the run command was cancelled in Azure",
                tuple(tail),
                retryable=False,
            )
        code = getattr(view, "exit_code", None)
        hint = "- Run Command kept only the end of the output" if rewound else ""
        if code is None:
            msg = str(getattr(view, "execution_message", "") or state)
            return CommandResult(
                "error",
                None,
                took,
                f"Run Command ended {state} without an exit code: {msg}",
                tuple(tail),
                retryable=False,
            )
        code = int(code)
        if code == 0:
            return CommandResult("ok", 0, took, "", tuple(tail), hint=hint)
        return CommandResult("failed", code, took, f"exit code {code}", tuple(tail), hint=hint)

    def _delete(self, ops: Any, args: tuple[Any, ...], name: str, *, wait: bool) -> None:
        """Delete a run command (stops its script); ``wait``: until Azure says it is gone."""
        with contextlib.suppress(Exception):
            poller = ops.begin_delete(*args, name, api_version=COMPUTE_API)
            if wait:
                poller.wait(DELETE_WAIT)

    # --- the action Run Command ---------------------------------------------------------------

    def _vm_lock(self, t: Target) -> threading.Lock:
        with self._lock:
            return self._vm_locks.setdefault(t.label, threading.Lock())

    def _action(
        self,
        t: Target,
        command: Command,
        emit: Callable[[str, str], None],
        cancel: Cancel,
        timeout: float,
        started: float,
        tail: deque[str],
    ) -> CommandResult:
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.compute import models
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        compute = self.arm.compute(t.subscription)
        body = models.RunCommandInput(command_id="RunShellScript", script=[script_for(command, action=True)])
        what = f"Run Command on {t.label}"

        def send() -> Any:
            if t.instance:
                return compute.virtual_machine_scale_set_vms.begin_run_command(
                    t.resource_group, t.name, t.instance, body, api_version=COMPUTE_API
                )
            return compute.virtual_machines.begin_run_command(
                t.resource_group, t.name, body, api_version=COMPUTE_API
            )

        def busy(exc: BaseException) -> bool:  # another script runs on the VM (from elsewhere)
            return (
                isinstance(exc, HttpResponseError)
                and exc.status_code == 409
                and cancel.level < Cancel.INTERRUPT
            )

        lock = self._vm_lock(t)  # one script at a time per VM: this run's commands queue here
        for _ in range(1 << 40):
            if lock.acquire(timeout=0.1):
                break
            if cancel.level >= Cancel.INTERRUPT:
                return CommandResult(
                    "interrupted", None, time.monotonic() - started, "not started: the run is stopping"
                )
        try:
            poller = None
            for attempt in Retrying(
                retry=retry_if_exception(busy),
                wait=wait_exponential(multiplier=1, max=15),
                stop=stop_after_delay(max(timeout, 1) if timeout and timeout > 0 else 600),
                reraise=True,
            ):
                with attempt:
                    poller = send()
            assert poller is not None
            deadline = started + timeout + 30 if timeout and timeout > 0 else math.inf
            for _ in range(1 << 40):
                if poller.done():
                    break
                if cancel.level >= Cancel.INTERRUPT:
                    return CommandResult(
                        "interrupted",
                        None,
                        time.monotonic() - started,
                        "interrupted (the action Run Command cannot be stopped: the script "
                        "may still run on the VM)",
                        tuple(tail),
                        retryable=False,
                    )
                if time.monotonic() >= deadline:
                    return CommandResult(
                        "timeout",
                        None,
                        time.monotonic() - started,
                        f"timed out after {timeout:.3g}s",
                        tuple(tail),
                    )
                poller.wait(0.1)
            result = poller.result()
        except HttpResponseError as exc:
            raise self.arm.error(exc, what) from exc
        except AzureError:
            raise
        except Exception as exc:
            raise self.arm.error(exc, what) from exc
        finally:
            lock.release()
        return self._action_result(result, emit, timeout, started, tail)

    def _action_result(
        self, result: Any, emit: Callable[[str, str], None], timeout: float, started: float, tail: deque[str]
    ) -> CommandResult:
        message = ""
        for status in getattr(result, "value", None) or ():
            message += str(getattr(status, "message", "") or "")
        out, err = _split_action_message(message)
        truncated = (
            len(out.encode()) >= ACTION_OUTPUT_BYTES - 64 or len(err.encode()) >= ACTION_OUTPUT_BYTES - 64
        )
        code: int | None = None
        lines = out.split("\n")
        while lines and lines[-1] == "":
            lines.pop()
        if lines and lines[-1].startswith(RC_MARK.strip()):
            with contextlib.suppress(ValueError):
                code = int(lines[-1].split()[-1])
            lines.pop()
            if lines and lines[-1] == "":
                lines.pop()  # the newline the marker line starts with
        if truncated:
            emit("stderr", "[nexus] the action Run Command kept only the last 4 KB of each stream")
        for line in lines:
            emit("stdout", line)
        err = err[:-1] if err.endswith("\n") else err
        for line in err.split("\n") if err else ():
            emit("stderr", line)
        took = time.monotonic() - started
        if code is None:
            return CommandResult(
                "error",
                None,
                took,
                "Run Command gave no exit code (the output was cut?)",
                tuple(tail),
                retryable=False,
            )
        if code == 137 and timeout and took >= timeout:
            return CommandResult("timeout", None, took, f"timed out after {timeout:.3g}s", tuple(tail))
        if code == 0:
            return CommandResult("ok", 0, took, "", tuple(tail))
        return CommandResult("failed", code, took, f"exit code {code}", tuple(tail))

    def prepare(self, hosts: Sequence[Host]) -> None:
        """Make the credential and clients before the first command (no request is sent)."""
        with contextlib.suppress(Exception):
            self.arm.credential()

    def close(self) -> None:
        """Nothing to release: the SDK clients close their sessions with the process."""


def _text(value: Any) -> str:
    """An SDK enum's value, or the string itself ("" for None)."""
    return str(getattr(value, "value", value) or "")


def _split_action_message(message: str) -> tuple[str, str]:
    """(stdout, stderr) of a Linux action Run Command's ``Enable succeeded: [stdout] ... [stderr] ...``."""
    out, err = "", ""
    if "[stdout]\n" in message:
        rest = message.split("[stdout]\n", 1)[1]
        if "\n[stderr]\n" in rest:
            out, err = rest.split("\n[stderr]\n", 1)
        else:
            out = rest
    elif "[stderr]\n" in message:
        err = message.split("[stderr]\n", 1)[1]
    return out, err
