"""A Hetzner server that deletes itself at ``max_runtime`` (the opt-in ``self_destruct="delete"``).

Hetzner Cloud has no "delete on shutdown": a server that powers itself off still exists and
is still billed. So by default (``self_destruct="poweroff"``) the core's boot script only
powers the server off at ``max_runtime``, and ``nexus cloud reap``/``terminate`` or the
autoscaler delete it; the provider warns once per command that such servers keep billing
if the coordinator dies.

With ``self_destruct="delete"`` the server gets, in its user data, a small Python script
(standard library only) and an API token (``self_destruct_token``, else
``HCLOUD_SELF_DESTRUCT_TOKEN``). Shortly before ``max_runtime`` the script

1. reads its own server id from the metadata service
   (``http://169.254.169.254/hetzner/v1/metadata/instance-id``; digits only, else nothing),
2. reads that server from the API and goes on only when it has the name the coordinator gave
   this server and the label ``nexus/managed=true`` (so a wrong id never deletes another
   server),
3. sends ``DELETE /servers/{own id}``, retrying with backoff until ``max_runtime``,
4. and powers off when that did not work (the core's scheduled poweroff stays as well).

Hetzner API tokens cannot be narrowed to one server: the token is valid for the whole
project, read and write, and anything that runs on the server (your tasks included) can read
it from the user data. Give the burst servers a Hetzner project of their own, so that the
token reaches nothing else. The docs page says so.
"""

from __future__ import annotations

import json

#: The metadata service's base URL (the script reads ``NEXUS_HETZNER_METADATA_URL`` first, for tests).
METADATA_URL = "http://169.254.169.254/hetzner/v1/metadata"
#: Where the script lives on the server (root only: it holds the token).
SCRIPT_PATH = "/root/.config/nexus/self-destruct.py"
#: The environment variable of the token when ``self_destruct_token`` is not set.
TOKEN_VARIABLE = "HCLOUD_SELF_DESTRUCT_TOKEN"
_END = "NEXUS_SELF_DESTRUCT_EOF"

# The script that runs on the server. Kept free of anything but the standard library, and
# of the heredoc terminator; the values are filled in as JSON literals (also valid Python).
_SCRIPT = '''#!/usr/bin/env python3
"""Nexus self-destruct (written by nexus-hetzner): delete this server at max_runtime."""
import json, os, subprocess, sys, time, urllib.error, urllib.request

NAME = @NAME@
ENDPOINT = @ENDPOINT@
TOKEN = @TOKEN@
DELETE_AT = @DELETE_AT@  # seconds after this script starts (at boot)
GIVE_UP_AT = @GIVE_UP_AT@  # max_runtime: power off if the server is not deleted by then
METADATA = os.environ.get("NEXUS_HETZNER_METADATA_URL") or @METADATA@
POWEROFF = os.environ.get("NEXUS_SELF_DESTRUCT_POWEROFF") or "shutdown -h now"


def log(message):
    print("nexus-self-destruct: " + message, flush=True)


def call(method, url, token=None):
    request = urllib.request.Request(url, method=method)
    request.add_header("User-Agent", "nexus-hetzner-self-destruct")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


def own_id():
    text = call("GET", METADATA.rstrip("/") + "/instance-id").decode().strip()
    if not text.isdigit():
        raise ValueError("the metadata service's instance-id %r is not a server id" % text)
    return text


def main():
    started = time.monotonic()
    time.sleep(max(0.0, DELETE_AT))
    server, pause, attempt = None, 2.0, 0
    while time.monotonic() - started < GIVE_UP_AT and attempt < 100:
        attempt += 1
        try:
            if server is None:
                server = own_id()
            found = json.loads(call("GET", "%s/servers/%s" % (ENDPOINT, server), TOKEN))["server"]
            labels = found.get("labels") or {}
            if found.get("name") != NAME or labels.get("nexus/managed") != "true":
                log("server %s is %r, not %r made by Nexus: not deleting it" % (server, found.get("name"), NAME))
                break
            call("DELETE", "%s/servers/%s" % (ENDPOINT, server), TOKEN)
            log("deleted server %s (%s): max_runtime reached" % (server, NAME))
            return 0
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and server is not None:
                log("server %s is already gone" % server)
                return 0
            log("the API answered %s to attempt %d" % (exc.code, attempt))
            if exc.code in (401, 403):
                break  # a token the API refuses will not start working
        except Exception as exc:  # the network, the metadata service: try again
            log("attempt %d failed: %s: %s" % (attempt, type(exc).__name__, exc))
        time.sleep(max(0.0, min(pause, GIVE_UP_AT - (time.monotonic() - started))))
        pause = min(pause * 2, 30.0)
    log("could not delete this server: powering off (it is billed until deleted; nexus cloud reap deletes it)")
    subprocess.run(POWEROFF, shell=True, check=False)
    return 1


if __name__ == "__main__":
    sys.exit(main())
'''


def timing(max_runtime: float) -> tuple[float, float]:
    """(seconds to the delete, seconds to giving up): the delete starts a tenth of
    ``max_runtime`` (at most 2 minutes) before it, so retries end by ``max_runtime``."""
    early = min(120.0, max_runtime / 10)
    return round(max(0.0, max_runtime - early), 3), float(max_runtime)


def script(*, name: str, endpoint: str, token: str, max_runtime: float) -> str:
    """The self-destruct script of server ``name`` (Python, standard library only)."""
    delete_at, give_up_at = timing(max_runtime)
    values = {
        "@NAME@": json.dumps(name),
        "@ENDPOINT@": json.dumps(endpoint.rstrip("/")),
        "@TOKEN@": json.dumps(token),
        "@DELETE_AT@": repr(delete_at),
        "@GIVE_UP_AT@": repr(give_up_at),
        "@METADATA@": json.dumps(METADATA_URL),
    }
    out = _SCRIPT
    for key, value in values.items():
        out = out.replace(key, value)
    return out


def user_data_block(*, name: str, endpoint: str, token: str, max_runtime: float) -> str:
    """Shell lines that write the script (root only) and start it in the background: a
    transient systemd service when there is systemd (it outlives cloud-init), else nohup."""
    body = script(name=name, endpoint=endpoint, token=token, max_runtime=max_runtime)
    if any(line.strip() == _END for line in body.splitlines()):  # pragma: no cover - json escapes newlines
        raise ValueError("the self-destruct script cannot be embedded")
    return "\n".join(
        [
            '# nexus-hetzner: delete this server at max_runtime (self_destruct="delete"); the poweroff stays',
            "( set -e; umask 077; mkdir -p /root/.config/nexus",
            f"cat > {SCRIPT_PATH} <<'{_END}'",
            body.rstrip("\n"),
            _END,
            f"chmod 700 {SCRIPT_PATH}",
            "if command -v systemd-run >/dev/null 2>&1; then",
            f"  systemd-run --unit nexus-self-destruct --description 'Nexus self-destruct' \"$(command -v python3)\" "
            f"{SCRIPT_PATH}",
            "else",
            f"  nohup python3 {SCRIPT_PATH} >/var/log/nexus-self-destruct.log 2>&1 &",
            "fi ) || echo 'nexus: the self-destruct could not be set up; the poweroff above stays' >&2",
        ]
    )


def with_self_destruct(bootstrap: str, block: str) -> str:
    """The core's boot script with ``block`` right after its scheduled poweroff (before
    ``set -e`` and anything that can fail); at the top when the script has no such line."""
    lines = bootstrap.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("shutdown -h"):
            return "\n".join([*lines[: i + 1], block, *lines[i + 1 :]]) + "\n"
    if lines and lines[0].startswith("#!"):
        return "\n".join([lines[0], block, *lines[1:]]) + "\n"
    return "#!/bin/sh\n" + block + "\n" + bootstrap
